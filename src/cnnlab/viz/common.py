"""What every picture shares: loading a checkpoint and images the way ``cnnlab predict`` does,
finding layers by name, and saving a matplotlib figure (Agg backend, no display needed).

Preprocessing is :mod:`cnnlab.inference`'s (``load_model``, ``load_image``) and the trainer's
normaliser (the checkpoint's per-channel mean/std on the 0..1 scale): nothing is re-implemented
here, so a picture always shows what the model saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import UserError


PRETRAINED = "pretrained:"  # "pretrained:resnet18" or "pretrained:resnet50:IMAGENET1K_V1"


def load_checkpoint_model(checkpoint: str | Path, device: str = "cpu"):
    """(torch model in eval mode, metadata) from a checkpoint, run directory or .json sidecar
    (:func:`cnnlab.inference.load_model`: either engine's checkpoints load into torch), or
    ``"pretrained:NAME[:WEIGHTS]"``: zoo model NAME with torchvision's ImageNet weights
    (:func:`cnnlab.pretrained.load`; ``cnnlab viz ... --model NAME --pretrained``)."""
    if str(checkpoint).startswith(PRETRAINED):
        import cnnlab.pretrained as pre

        name, _, weights = str(checkpoint)[len(PRETRAINED):].partition(":")
        model, _, _ = pre.load(name, weights or None, device)
        return model, pre.meta(name, weights or None)
    from cnnlab.inference import load_model, resolve_checkpoint

    return load_model(resolve_checkpoint(checkpoint), engine="torch", device=device)


def normalize(images: np.ndarray | torch.Tensor, spec: dict) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 (N, C, H, W), ``(x / 255 - mean) / std`` with the
    checkpoint's input spec (``meta["input"]``), as training and ``cnnlab predict`` do."""
    from cnnlab.training.evaluation import normalizer

    t = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    return normalizer(spec, t.device)(t.float() / 255)


def load_images(paths, spec: dict) -> np.ndarray:
    """Image files (PNG/JPEG/BMP, any size, gray or colour) -> uint8 (N, C, H, W) converted
    to the model's channels and size (:func:`cnnlab.inference.load_image`); an unreadable
    file raises UserError naming it."""
    from cnnlab.inference import load_image

    if not paths:
        raise UserError("images: expected at least one image file")
    return np.stack([load_image(p, spec) for p in paths])


def load_inputs(checkpoint: str | Path, paths, device: str = "cpu"):
    """(model, meta, uint8 images (N, C, H, W), normalized float x (N, C, H, W)) for image
    files, exactly as ``cnnlab predict`` prepares them."""
    model, meta = load_checkpoint_model(checkpoint, device)
    raw = load_images(paths, meta["input"])
    return model, meta, raw, normalize(raw, meta["input"]).to(device)


def to_display(images: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) -> float (N, H, W, 3) in [0, 1] for imshow (gray repeated)."""
    a = np.asarray(images, dtype=np.float32) / 255
    if a.shape[1] == 1:
        a = np.repeat(a, 3, axis=1)
    return a.transpose(0, 2, 3, 1)


def get_layer(model: nn.Module, name: str, valid: list[str] | None = None) -> nn.Module:
    """The submodule called ``name``; a UserError lists the valid names when there is none
    (``valid``: the names to suggest, by default the model's stages)."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        if valid is None:
            from cnnlab.viz.stages import stages

            valid = [n for n, _ in stages(model)]
        raise UserError(f"--layer {name}: no such layer in {type(model).__name__}; valid "
                        f"names: {', '.join(valid)}") from None


def check_class(target: int, num_classes: int) -> int:
    """``target`` if it is a class index, else a UserError stating the range."""
    if not isinstance(target, (int, np.integer)) or not 0 <= int(target) < num_classes:
        raise UserError(f"--class {target}: expected a class index 0..{num_classes - 1}")
    return int(target)


class train_mode_kept:
    """Context manager: puts ``model`` in eval mode and restores its train/eval flags (every
    submodule's, in case a caller mixed them) on exit, even after an error."""

    def __init__(self, model: nn.Module, mode: bool = False):
        self.model, self.mode = model, mode

    def __enter__(self):
        self.flags = [(m, m.training) for m in self.model.modules()]
        self.model.train(self.mode)
        return self.model

    def __exit__(self, *exc):
        for m, t in self.flags:
            m.training = t
        return False


def new_figure(width: float, height: float):
    """A matplotlib figure made outside pyplot (any backend, or none; shown inline in a
    notebook): :class:`cnnlab.viz.figure.NotebookFigure`."""
    from cnnlab.viz.figure import new_figure

    return new_figure(width, height)


def save_figure(fig, out: str | Path | None, dpi: int = 100):
    """Write ``fig`` as PNG at ``out`` and return the path; with ``out`` None return the
    figure, unwritten (:func:`cnnlab.viz.figure.save_figure`)."""
    from cnnlab.viz.figure import save_figure

    return save_figure(fig, out, dpi)


def load_split(meta: dict, data: str | None = None, split: str = "test"):
    """The ``split`` ("train"/"test") of ``data`` (default: the data the checkpoint was
    trained on, with its seed and test fraction) as :class:`cnnlab.data.ImageData`, held in
    memory; a UserError when its image size or classes do not fit the model."""
    from cnnlab.data import load_data

    if "config" not in meta and "pretrained" in meta and data is None:
        raise UserError(f"--pretrained {meta['model']}: ImageNet's images are not here; give "
                        f"image files (or --data)")
    cfg = meta.get("config", {})
    source = data or cfg.get("data", "digits")
    import warnings

    from cnnlab.data.resize import fit_split_to_spec, read_as_trained  # as in training
    from cnnlab.config import run_test_split

    test_split = run_test_split(cfg)  # moot when the data has its own test/ folder
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*--test-split ignored.*")
        splits = load_data(source, val_split=test_split, seed=cfg.get("seed", 0),
                           progress=False, in_memory="yes", **read_as_trained(meta["input"]))

    return fit_split_to_spec(getattr(splits, split), meta, source)


def take(n: int, available: int, what: str = "--n") -> int:
    """``n`` if 1 <= n <= available, else a UserError naming both."""
    if n < 1 or n > available:
        raise UserError(f"{what} {n}: expected 1..{available} (the dataset has {available} "
                        f"images)")
    return n


def batched(model: nn.Module, x: torch.Tensor, fn, batch_size: int = 512):
    """``torch.cat([fn(x[i:i+b]) ...])`` in eval mode without gradients, mode restored."""
    outs = []
    with train_mode_kept(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(fn(x[i:i + batch_size]))
    return torch.cat(outs)
