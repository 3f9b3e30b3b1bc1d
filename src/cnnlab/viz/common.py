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


def load_checkpoint_model(checkpoint: str | Path, device: str = "cpu"):
    """(torch model in eval mode, metadata) from a checkpoint, run directory or .json sidecar;
    :func:`cnnlab.inference.load_model` (either engine's checkpoints load into torch)."""
    from cnnlab.inference import load_model, resolve_checkpoint

    return load_model(resolve_checkpoint(checkpoint), engine="torch", device=device)


def normalize(images: np.ndarray | torch.Tensor, spec: dict) -> torch.Tensor:
    """uint8 images (N, C, H, W) -> float32 (N, C, H, W), ``(x / 255 - mean) / std`` with the
    checkpoint's input spec (``meta["input"]``), as training and ``cnnlab predict`` do."""
    from cnnlab.train import normalizer

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
            from cnnlab.viz.activations import stages

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
    """A matplotlib figure on the Agg backend (works with no display)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width, height), dpi=100)


def save_figure(fig, out: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG at ``out`` (folders created), close it, return the path."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=dpi, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return out


def load_split(meta: dict, data: str | None = None, split: str = "test"):
    """The ``split`` ("train"/"test") of ``data`` (default: the data the checkpoint was
    trained on, with its seed and test fraction) as :class:`cnnlab.data.ImageData`, held in
    memory; a UserError when its image size or classes do not fit the model."""
    from cnnlab.data import load_data

    cfg = meta.get("config", {})
    source = data or cfg.get("data", "digits")
    import warnings

    from cnnlab.config import run_test_split

    test_split = run_test_split(cfg)  # moot when the data has its own test/ folder
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*--test-split ignored.*")
        splits = load_data(source, val_split=test_split, seed=cfg.get("seed", 0),
                           progress=False, in_memory="yes")
    from cnnlab.data.resize import fit_split_to_spec  # --input-size: resized as in training

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
