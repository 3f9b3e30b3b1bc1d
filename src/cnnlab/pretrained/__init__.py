"""ImageNet-pretrained weights for the zoo models whose layout matches torchvision's.

cnnlab's ResNet-18/34/50/101/152 and VGG-11/13/16/19 (with and without batch norm) keep
torchvision's state-dict keys and shapes (a test checks every entry against torchvision
0.26's key list), so torchvision's published checkpoints load with no mapping::

    model, spec, classes = cnnlab.pretrained.load("resnet50")          # IMAGENET1K_V2
    model, spec, classes = cnnlab.pretrained.load("resnet50", "IMAGENET1K_V1")

The table (:data:`WEIGHTS`) carries, per weight set, torchvision's URL, the SHA-256 prefix
its file name carries, the evaluation transform (resize the shorter side, centre-crop 224,
ImageNet mean/std) and the top-1/top-5 torchvision reports on the ImageNet-1K validation
set. Where torchvision has two sets (ResNet-50/101/152), ``IMAGENET1K_V2`` (its newer
training recipe, evaluated at resize 232) is the default, as in torchvision.

Downloads go to torch's hub cache (``$TORCH_HOME/hub/checkpoints``); a file already there
is used offline, after its SHA-256 prefix is checked (torch only checks on download).
``CNNLAB_WEIGHTS_URL`` replaces the base URL (a mirror; the tests use a loopback server).
Torch is imported only when weights are fetched: ``import cnnlab.pretrained`` is cheap.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.utils import sha256_file

BASE_URL = "https://download.pytorch.org/models/"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, 0..1 scale: torchvision's ImageClassification
IMAGENET_STD = (0.229, 0.224, 0.225)
DOWNLOAD_TIMEOUT = 10.0  # seconds per blocking socket operation: offline fails fast


@dataclass(frozen=True)
class WeightSet:
    """One published checkpoint: ``model`` (cnnlab registry name) and ``name`` (torchvision's
    enum member, e.g. ``IMAGENET1K_V1``); ``file`` carries the SHA-256 prefix after its last
    ``-``; ``resize``/``crop``: the evaluation transform (shorter side, then centre crop);
    ``top1``/``top5``: torchvision's reported ImageNet-1K validation accuracy (%)."""

    model: str
    name: str
    file: str
    top1: float
    top5: float
    resize: int = 256
    crop: int = 224

    @property
    def sha256_prefix(self) -> str:
        return re.search(r"-([0-9a-f]+)\.", self.file).group(1)

    @property
    def url(self) -> str:
        base = os.environ.get("CNNLAB_WEIGHTS_URL") or BASE_URL
        return base.rstrip("/") + "/" + self.file

    @property
    def key(self) -> str:
        return f"{self.model}.{self.name}"


_W = WeightSet
# torchvision.models.{resnet,vgg}: *_Weights (URLs, "_metrics" ImageNet-1K acc@1/acc@5,
# ImageClassification(crop_size=224[, resize_size=232]))
WEIGHTS: tuple[WeightSet, ...] = (
    _W("resnet18", "IMAGENET1K_V1", "resnet18-f37072fd.pth", 69.758, 89.078),
    _W("resnet34", "IMAGENET1K_V1", "resnet34-b627a593.pth", 73.314, 91.420),
    _W("resnet50", "IMAGENET1K_V1", "resnet50-0676ba61.pth", 76.130, 92.862),
    _W("resnet50", "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", 80.858, 95.434, resize=232),
    _W("resnet101", "IMAGENET1K_V1", "resnet101-63fe2227.pth", 77.374, 93.546),
    _W("resnet101", "IMAGENET1K_V2", "resnet101-cd907fc2.pth", 81.886, 95.780, resize=232),
    _W("resnet152", "IMAGENET1K_V1", "resnet152-394f9c45.pth", 78.312, 94.046),
    _W("resnet152", "IMAGENET1K_V2", "resnet152-f82ba261.pth", 82.284, 96.002, resize=232),
    _W("vgg11", "IMAGENET1K_V1", "vgg11-8a719046.pth", 69.020, 88.628),
    _W("vgg11_bn", "IMAGENET1K_V1", "vgg11_bn-6002323d.pth", 70.370, 89.810),
    _W("vgg13", "IMAGENET1K_V1", "vgg13-19584684.pth", 69.928, 89.246),
    _W("vgg13_bn", "IMAGENET1K_V1", "vgg13_bn-abd245e5.pth", 71.586, 90.374),
    _W("vgg16", "IMAGENET1K_V1", "vgg16-397923af.pth", 71.592, 90.382),
    _W("vgg16_bn", "IMAGENET1K_V1", "vgg16_bn-6c64b313.pth", 73.360, 91.516),
    _W("vgg19", "IMAGENET1K_V1", "vgg19-dcbb9e9d.pth", 72.376, 90.876),
    _W("vgg19_bn", "IMAGENET1K_V1", "vgg19_bn-c79401a0.pth", 74.218, 91.842),
)
DEFAULT = {"resnet50": "IMAGENET1K_V2", "resnet101": "IMAGENET1K_V2",
           "resnet152": "IMAGENET1K_V2"}  # torchvision's DEFAULT; IMAGENET1K_V1 elsewhere


def models_with_weights() -> list[str]:
    return sorted({w.model for w in WEIGHTS}, key=lambda m: (re.sub(r"\d.*", "", m),
                                                              int(re.sub(r"\D", "", m)), m))


def weight_set(model: str, name: str | None = None, flag: str = "--pretrained") -> WeightSet:
    """The table entry for ``model`` and weight set ``name`` (None or "default": the
    default); a UserError naming ``flag`` lists what exists otherwise."""
    sets = [w for w in WEIGHTS if w.model == model]
    if not sets:
        raise UserError(f"{flag}: model {model!r} has no published ImageNet weights; models "
                        f"with them: {', '.join(models_with_weights())}")
    if name in (None, "default", "DEFAULT"):
        name = DEFAULT.get(model, "IMAGENET1K_V1")
    name = name.removeprefix(model + ".")
    for w in sets:
        if w.name == name.upper():
            return w
    raise UserError(f"{flag} {name}: model {model} has weight sets "
                    f"{', '.join(w.name for w in sets)} (or 'default')")


def input_spec(ws: WeightSet) -> dict:
    """The input spec of a weight set: RGB, ``crop`` x ``crop``, ImageNet mean/std, resized
    by "crop" (shorter side to size, centre crop: torchvision's evaluation transform)."""
    return {"channels": 3, "size": [ws.crop, ws.crop], "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD), "resize": "crop"}


def normalize_text(channels: int) -> str:
    """``--normalize imagenet`` as MEAN/STD text for ``channels`` (1: the channel means, for
    grey images fed to a first convolution summed over RGB)."""
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (
        (round(sum(IMAGENET_MEAN) / 3, 4),), (round(sum(IMAGENET_STD) / 3, 4),))
    return f"{','.join(map(str, mean))}/{','.join(map(str, std))}"


def class_names() -> list[str]:
    """The 1,000 ImageNet-1K class names in output order (torchvision's
    ``_IMAGENET_CATEGORIES``), from ``imagenet_classes.txt`` beside this file."""
    names = (Path(__file__).with_name("imagenet_classes.txt")
             .read_text(encoding="utf-8").splitlines())
    assert len(names) == 1000, len(names)
    return names


def cache_dir() -> Path:
    """torch's hub checkpoint folder: ``$TORCH_HOME/hub/checkpoints`` (default
    ``~/.cache/torch/hub/checkpoints``)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(ws: WeightSet) -> Path:
    return cache_dir() / ws.file


def fetch(ws: WeightSet, progress: bool = True, flag: str = "--pretrained") -> Path:
    """Path of the weight set's file in the cache, downloaded there when absent (checked
    against its SHA-256 prefix either way). Offline, a failed or a corrupt download: a
    UserError naming the URL, the cache path to put the file at, and ``--init FILE``."""
    import torch

    path = cached_path(ws)
    where = f"{flag} {ws.key}"
    if path.exists():
        _check_hash(path, ws, where)
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{where}: cannot create the cache folder {path.parent} "
                        f"({e.strerror or e}); set TORCH_HOME to a writable folder") from e
    import http.client
    import socket

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)  # urllib's urlopen in torch.hub takes none
    try:
        torch.hub.download_url_to_file(ws.url, str(path), hash_prefix=ws.sha256_prefix,
                                       progress=progress)
    except (OSError, RuntimeError, http.client.HTTPException, ValueError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise UserError(f"{where}: cannot download {ws.url} ({reason[:200]}); put the file at "
                        f"{path} (then it is used offline) or start from a local file with "
                        f"--init FILE") from e
    finally:
        socket.setdefaulttimeout(old)
    return path


def _check_hash(path: Path, ws: WeightSet, where: str) -> None:
    actual = sha256_file(path)
    if not actual.startswith(ws.sha256_prefix):
        raise UserError(f"{where}: {path} has SHA-256 {actual[:len(ws.sha256_prefix)]}..., "
                        f"expected {ws.sha256_prefix}... (a corrupt or truncated file); "
                        f"delete it to download again")


def state_dict(model: str, weights: str | None = None, progress: bool = True,
               flag: str = "--pretrained") -> dict:
    """The weight set's state dict (name -> torch tensor), checked, read with
    ``torch.hub.load_state_dict_from_url(..., check_hash=True, weights_only=True)``."""
    import torch

    ws = weight_set(model, weights, flag)
    path = fetch(ws, progress, flag)
    try:
        return torch.hub.load_state_dict_from_url(ws.url, model_dir=str(path.parent),
                                                  map_location="cpu", progress=progress,
                                                  check_hash=True, file_name=ws.file,
                                                  weights_only=True)
    except (RuntimeError, ValueError, EOFError, OSError) as e:  # hash fine, pickle not
        raise UserError(f"{flag} {ws.key}: {path}: cannot read it as a state dict "
                        f"({str(e).splitlines()[0][:200]})") from e


def meta(model: str, weights: str | None = None) -> dict:
    """Checkpoint-like metadata of a pretrained model (what :func:`cnnlab.deploy.export.
    export_model` and the predictors read): model, classes, input spec, weight set. Export:
    ``export_model(load(name)[0], meta(name), "resnet50.onnx")`` (``cnnlab export --model
    resnet50 --pretrained``)."""
    ws = weight_set(model, weights)
    return {"model": model, "model_kwargs": {"num_classes": 1000}, "classes": class_names(),
            "input": input_spec(ws), "pretrained": record(ws)}


def record(ws: WeightSet) -> dict:
    """What a run or an export records of its weight set."""
    return {"model": ws.model, "weights": ws.name, "file": ws.file,
            "sha256_prefix": ws.sha256_prefix, "url": ws.url,
            "imagenet_top1": ws.top1, "imagenet_top5": ws.top5}


def load(name: str, weights: str | None = None, device: str = "cpu", progress: bool = True):
    """(torch model in eval mode, input spec dict, 1,000 class names) of zoo model ``name``
    with ImageNet weights (``weights``: a weight-set name, None for the default)."""
    from cnnlab.registry import get_model

    ws = weight_set(name, weights)
    sd = state_dict(name, ws.name, progress)
    model = get_model(name, num_classes=1000)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise UserError(f"--pretrained {ws.key}: {cached_path(ws)} does not fit model {name} "
                        f"({str(e).splitlines()[0][:200]})") from e
    return model.to(device).eval(), input_spec(ws), class_names()


def predict(name: str, images, weights: str | None = None, topk: int = 3,
            device: str = "cpu", workers: int | None = None, batch_size: int = 64,
            progress: bool = True) -> list[dict]:
    """Top-k ImageNet classes for image files and folders, as :func:`cnnlab.predict` gives
    for a checkpoint (the same decoding and normalisation, :mod:`cnnlab.preprocess`)."""
    import numpy as np
    import torch

    from cnnlab import preprocess as P

    if topk < 1:
        raise UserError(f"--topk {topk}: expected a positive integer")
    paths = P.list_images(list(images))
    model, spec, classes = load(name, weights, device, progress)
    spec = P.check_spec(spec, f"--pretrained {name}")
    batch, notes, paths = P.load_batch(paths, spec, P.default_workers(len(paths))
                                       if workers is None else workers)
    P.warn_mismatches(notes, len(paths))
    probs, norm = [], P.Normalizer(spec)
    with torch.inference_mode():
        for i in range(0, len(batch), batch_size):
            x = torch.from_numpy(norm(batch[i:i + batch_size])).to(device)
            probs.append(P.softmax(model(x).float().cpu().numpy()))
    return P.results(paths, np.concatenate(probs), classes, topk)


def format_table() -> str:
    """The weight sets as a text table (``cnnlab models --pretrained``)."""
    rows = [f"{'model':<10} {'weights':<14} {'top-1':>7} {'top-5':>7}  eval    file"]
    for w in WEIGHTS:
        d = " (default)" if DEFAULT.get(w.model, "IMAGENET1K_V1") == w.name else ""
        rows.append(f"{w.model:<10} {w.name:<14} {w.top1:6.2f}% {w.top5:6.2f}%  "
                    f"{w.resize}/{w.crop} {w.file}{d}")
    return "\n".join(rows)


__all__ = ["WEIGHTS", "WeightSet", "load", "predict", "state_dict", "fetch",
           "weight_set", "input_spec", "class_names", "models_with_weights", "meta"]
