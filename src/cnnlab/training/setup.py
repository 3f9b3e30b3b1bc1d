"""Setting a run up: device, processes, threads, data (with its validation split), input spec,
model arguments. Shared by both engines.
"""

from __future__ import annotations

import inspect
import os
import sys
from dataclasses import dataclass, replace

import numpy as np
import torch

from cnnlab.config import TrainConfig
from cnnlab.data import DataSplits, load_data, stratified_split
from cnnlab.errors import UserError
from cnnlab.registry import model_info
from cnnlab.training.usermodel import is_path


# ------------------------------------------------------------------------ device, processes
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from e


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, str]:
    """Join torchrun's process group (gloo on CPU, NCCL on GPU) when launched by torchrun,
    even with one process (so the DDP path runs the same way at every scale)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return Dist(), device_name
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local), device_name


SMALL_MODEL_PARAMS = 1_000_000  # below this, one CPU thread (see choose_threads)


def choose_threads(requested: int | None, n_params: int, world: int = 1) -> int:
    """CPU threads for torch: ``requested`` if given, else 1 for a small model, else torch's.

    Why: a small model's per-step kernels are short, so a second thread saves little (LeNet-5
    on the digits: ~12% idle on 2 cores) while a busy core makes every intra-op barrier wait
    for the slow thread (2.8x slower with one competing CPU-bound process; measured in
    benchmarks/RESULTS.md, "Threads on a busy machine"). Several processes share the cores
    between them.
    """
    if requested is not None:
        if requested < 1:
            raise UserError(f"--threads {requested}: expected 1 or more")
        return requested
    if n_params < SMALL_MODEL_PARAMS:
        return 1
    return max(1, torch.get_num_threads() // max(world, 1))


# ------------------------------------------------------------------------------------ data
def load_training_data(cfg: TrainConfig, progress, splits: DataSplits | None = None
                       ) -> tuple[DataSplits, object | None]:
    """(data, validation split or None): the run's data after checking batch size and epochs.

    ``splits``: data already in memory (:mod:`cnnlab.data.memory`), instead of ``cfg.data``.

    With ``cfg.input_size`` every split is brought to that size by ``cfg.resize``
    (:func:`cnnlab.data.resize.apply_input_size`: in memory once, streamed per batch).

    The validation split is ``cfg.val_split`` of the training images, stratified by class and
    fixed by the seed (:func:`cnnlab.data.stratified_split`); it is removed from
    ``data.train``. It picks the best checkpoint and drives early stopping, so the test set
    is looked at once, for the chosen model only.
    """
    if splits is not None:
        data, stored = splits, None
        if cfg.resize == "auto":
            cfg.resize = "bilinear"
    else:
        data, stored = _load_at_model_size(cfg, progress)
    if cfg.workers < 0:
        raise UserError(f"--workers {cfg.workers}: expected 0 or more worker processes")
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise UserError(f"--batch-size and --epochs must be positive (got {cfg.batch_size}, "
                        f"{cfg.epochs})")
    val = None
    if cfg.val_split:
        if not 0 < cfg.val_split < 1:
            raise UserError(f"--val-split {cfg.val_split}: expected a fraction in (0, 1), or 0 "
                            f"to train on every training image")
        labels = np.asarray(data.train.labels)
        k, n_val = len(np.unique(labels)), round(cfg.val_split * len(labels))
        if min(n_val, len(labels) - n_val) < k:  # too few to hold one image per class out
            print(f"--val-split {cfg.val_split:g}: {len(labels)} training images are too few "
                  f"to hold out one per class ({k} classes); training on all of them, the "
                  f"last epoch is the model", file=sys.stderr)
            cfg.val_split = 0.0
        else:
            tr, va = stratified_split(labels, cfg.val_split, seed=cfg.seed)
            val = _subset(data.train, va)
            data = replace(data, train=_subset(data.train, tr), notes=[
                *data.notes, f"validation: {len(va)} of the training images held out "
                             f"(--val-split {cfg.val_split:g})"])
    if cfg.batch_size > len(data.train):  # a tiny dataset: one batch of all of it
        world = int(os.environ.get("WORLD_SIZE", "1"))
        clamped = max(world, len(data.train) // world * world)
        print(f"--batch-size {cfg.batch_size}: the training set has {len(data.train)} images; "
              f"using {clamped}", file=sys.stderr)
        cfg.batch_size = clamped
    from cnnlab.data.resize import apply_input_size, resize_split  # once, as uint8

    if not cfg.input_size and stored is None and not _accepts(cfg, data):
        h, w = model_info(cfg.model).input_size[1:]  # a fixed-input model (LeNet-5's 32)
        print(f"--model {cfg.model} takes {w}x{h} images, the data are "
              f"{data.test.shape[2]}x{data.test.shape[1]}: every image resized to {w}x{h} "
              f"(--resize {cfg.resize}; --input-size HxW to choose)", file=sys.stderr)
        cfg.input_size = f"{h}x{w}"

    if stored is not None:  # training photos kept larger: evaluation takes their centre
        (h, w), (sh, sw) = stored, data.train.shape[1:]
        data = replace(data, test=resize_split(data.test, stored, "crop"), notes=[
            *data.notes, f"photos stored at {sw}x{sh} for random-resized {w}x{h} crops in "
                         f"training; validation and test read the centre {w}x{h}"])
        return data, (resize_split(val, stored, "crop") if val is not None else None)
    return apply_input_size(data, val, cfg.input_size, cfg.resize)


IMAGENET_SIDE = 200  # a model whose native input is at least this is an ImageNet-size model


def _load_at_model_size(cfg: TrainConfig, progress):
    """(data, the model's (h, w) when its training images are kept larger, else None).

    Photos and mixed sizes are read at ``--input-size`` or else the model's native size
    (:func:`cnnlab.data.load_data`), by ``cfg.resize``; "auto" resolves (and is saved) as
    "crop" when an ImageNet-size model reads them at a size, else "bilinear". With "crop"
    and random-resized crops in the augmentation, photos are stored at 256/224 of the size
    (shorter side, centre square: the crop policy's first step) so the crops see more than
    the centre; evaluation then takes the centre, exactly the crop policy (Szegedy et al.
    2015's training crops, torchvision's Resize(256) + CenterCrop(224) for evaluation)."""
    from cnnlab.config import parse_input_size
    from cnnlab.data.decode import crop_side

    native = None if is_path(cfg.model) else tuple(model_info(cfg.model).input_size[1:])
    size = parse_input_size(cfg.input_size) if cfg.input_size else None
    policy = cfg.resize
    if policy == "auto":
        policy = "crop" if min(size or native or (0,)) >= IMAGENET_SIDE else "bilinear"
    model_size = size or native
    larger = None
    if policy == "crop" and model_size and _uses_rrc(cfg.augment, model_size):
        larger = (crop_side(max(model_size)),) * 2
    data = load_data(cfg.data, val_split=cfg.test_split, seed=cfg.seed, progress=progress,
                     in_memory=cfg.in_memory, size=larger if larger and size else size,
                     resize="square" if larger else policy, default_size=larger or native,
                     model=cfg.model)
    if cfg.resize == "auto":
        cfg.resize = policy if size is not None or data.read_size else "bilinear"
    if data.read_size is None:  # small same-size images, read as stored: nothing larger
        larger = None
    return data, (model_size if larger else None)


def _accepts(cfg: TrainConfig, data: DataSplits) -> bool:
    """Whether ``cfg.model`` builds for the data's images as they are (on the meta device:
    no memory, no time); LeNet-5 refuses anything but 28 or 32. A user's module: True (its
    own input sizes are its business)."""
    if is_path(cfg.model):
        return True
    c, h, w = data.test.shape
    spec = {"channels": c, "size": [h, w]}
    try:
        with torch.device("meta"):
            model_info(cfg.model).builder(**model_kwargs_for(cfg, spec, len(data.classes)))
    except ValueError as e:  # "too small" (VGG at 12x12) gets build_model's --input-size hint;
        # the user's own kwargs, their error: both said later
        return isinstance(e, UserError) or "too small" in str(e)
    return True


def _uses_rrc(augment: str, size) -> bool:
    """Whether the augmentation takes random-resized crops of (colour) ``size`` images."""
    from cnnlab.transforms import parse_augment

    try:
        steps = parse_augment("standard" if augment == "auto" else augment).resolve(
            (1, 3, *size))
    except ValueError:  # refused later, with the run's own message
        return False
    return any(name == "rrc" for name, _ in steps)


def _subset(split, idx):
    if streaming(split):
        return split.subset(idx)
    return replace(split, images=split.images[idx], labels=split.labels[idx])


def streaming(split) -> bool:
    return not hasattr(split, "images")


# ---------------------------------------------------------------------------- input spec
STREAM_STATS_SAMPLE = 10_000  # images decoded for a streaming set's mean/std


def input_spec(data: DataSplits, normalize: str = "auto", workers: int = 2) -> dict:
    """Channels, size and per-channel mean/std (on the [0, 1] scale) of the training set.

    Mean subtraction as VGG does (its mean RGB), plus division by the std so every channel
    has unit variance: faster, more stable optimisation and larger usable learning rates.
    A streaming training set is never decoded whole: its mean/std come from a seeded sample
    of up to ``STREAM_STATS_SAMPLE`` (10,000) training images, all of them when fewer.
    """
    c, h, w = data.test.shape  # the model's input (training photos may be stored larger)
    if normalize == "none":
        mean, std = [0.0] * c, [1.0] * c
    elif normalize != "auto":
        mean, std = given_stats(normalize, c)
    else:
        if streaming(data.train):
            chunks = _stream_stats_chunks(data.train, workers)
        else:
            x = data.train.images
            chunks = (x[i:i + 16384] for i in range(0, len(x), 16384))
        mean, std = channel_stats(chunks, c)
    return {"channels": c, "size": [h, w], "mean": mean, "std": std}


def channel_stats(chunks, c: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std (0..1 scale, 6 decimals) of uint8 (B, C, H, W) chunks.

    Exact: each channel's 256-bin histogram (integer counts, ``torch.bincount``, ~0.1 s for
    MNIST's 47M pixels) gives the mean and variance without summing a float copy.
    """
    hist = torch.zeros(c, 256, dtype=torch.int64)
    for xb in chunks:
        xb = torch.as_tensor(xb).reshape(len(xb), c, -1)
        for ch in range(c):
            hist[ch] += torch.bincount(xb[:, ch].reshape(-1), minlength=256)
    h = hist.double()
    v = torch.arange(256, dtype=torch.float64) / 255.0
    n = h.sum(1).clamp_min(1)
    mean = (h * v).sum(1) / n
    var = (h * (v - mean[:, None]) ** 2).sum(1) / n
    std = var.clamp_min(1e-12).sqrt()
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def _stream_stats_chunks(train, workers: int):
    """uint8 chunks of a seeded sample of up to STREAM_STATS_SAMPLE streamed training images."""
    n = len(train)
    pick = np.arange(n) if n <= STREAM_STATS_SAMPLE else np.sort(
        np.random.default_rng(0).choice(n, STREAM_STATS_SAMPLE, replace=False))
    for x, _ in train.batches([pick[i:i + 4096] for i in range(0, len(pick), 4096)], workers):
        yield x.numpy()


def given_stats(text: str, channels: int) -> tuple[list[float], list[float]]:
    """``"0.49,0.48,0.45/0.25,0.24,0.26"`` -> (mean, std), one value per channel (0..1 scale)."""
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in text.split("/"))
    except ValueError:
        mean = std = None
    if mean is None or len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise UserError(f"--normalize {text}: expected auto, none, or MEAN/STD with {channels} "
                        f"comma-separated value(s) each on the 0..1 scale (std > 0), e.g. "
                        f"{','.join(['0.5'] * channels)}/{','.join(['0.25'] * channels)}")
    return mean, std


SUGGESTED_SIZES = (32, 48, 64, 96, 128, 160, 224)  # tried for the --input-size hint


def build_model(engine, mkw: dict, spec: dict, cfg: TrainConfig, module=None) -> None:
    """``engine.build(mkw, spec)``; a model that refuses an input this small (VGG at 28x28:
    five halvings reach zero) is a UserError suggesting the smallest ``--input-size`` of
    :data:`SUGGESTED_SIZES` it builds at (tried on the meta device: no memory, no time)."""
    try:
        engine.build(mkw, spec, module)
    except ValueError as e:
        if (isinstance(e, UserError) or "too small" not in str(e) or "input_size" not in mkw
                or is_path(cfg.model)):
            raise
        h, w = spec["size"]
        fits = next((s for s in SUGGESTED_SIZES if s > min(h, w) and _builds(cfg.model, mkw, s)),
                    None)
        hint = (f"train it at a larger size, e.g. --input-size {fits}x{fits}" if fits else
                "use a larger input")
        if "small_input" not in mkw and _builds(cfg.model, {**mkw, "small_input": True}, h):
            hint += " (or keep this size with --model-kwargs '{\"small_input\": true}')"
        why = str(e).split(": ", 1)[-1].split(" Use a larger")[0].rstrip(".")
        raise UserError(f"--model {cfg.model}: {spec['channels']}x{h}x{w} images are too small "
                        f"({why}); {hint}") from e


def _builds(model: str, mkw: dict, size: int) -> bool:
    """Whether ``model`` builds with ``mkw`` at ``input_size=size`` (on the meta device)."""
    try:
        with torch.device("meta"):
            model_info(model).builder(**{**mkw, "input_size": size})
        return True
    except (ValueError, TypeError):
        return False


def model_kwargs_for(cfg: TrainConfig, spec: dict, num_classes: int) -> dict:
    """Constructor arguments: classes and channels from the data, plus the user's extras.

    A model whose builder takes ``input_size`` (LeNet-5's 28 vs 32) gets the data's size.
    A user's class (``module:Class``) is built from ``cfg.model_kwargs`` alone, exactly what
    its ``get_config()`` gave: the same arguments on every rebuild.
    """
    if is_path(cfg.model):
        return dict(cfg.model_kwargs)
    kw = {"num_classes": num_classes, "in_channels": spec["channels"], **cfg.model_kwargs}
    params = inspect.signature(model_info(cfg.model).builder).parameters
    takes = lambda k: k in params or any(p.kind == p.VAR_KEYWORD for p in params.values())  # noqa: E731
    if "input_size" in params and "input_size" not in cfg.model_kwargs:
        kw["input_size"] = spec["size"][0]
    return {k: v for k, v in kw.items() if takes(k)}
