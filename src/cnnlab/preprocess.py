"""Image files -> model inputs, with NumPy and Pillow only (no torch).

One code path for every runtime: ``cnnlab predict`` with a checkpoint (torch) and with an
exported ``.onnx`` file (onnxruntime, torch never imported) both call :func:`load_image` and
:func:`normalize`, so the same file gives the same input tensor, bit for bit.

The input spec is the one stored in checkpoints and in exported models' metadata::

    {"channels": 1, "size": [28, 28], "mean": [0.1307], "std": [0.3081],
     "resize": "bilinear"}        # or "pad" or "crop"; absent means "bilinear"

Image files are read by :mod:`cnnlab.data.decode`, the decoder training uses too (EXIF
orientation, reduced-scale JPEG decoding), so a photo reaches the model the same way in
``train``, ``eval``, ``predict``, ``viz`` and ``serve``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.decode import (FORMATS_TEXT, IMAGE_EXTS, RESIZE_POLICIES,  # noqa: F401
                                ImageReadError, fit_size, open_image, read_image, to_chw,
                                to_mode)
from cnnlab.errors import UserError


class InputMismatchWarning(UserWarning):
    """An image plainly unlike the model's training input (colour, polarity, aspect ratio)."""


def check_spec(spec, where: str = "input spec") -> dict:
    """``spec`` if it is a usable input spec; else a UserError naming ``where``."""
    try:
        c, (h, w) = int(spec["channels"]), (int(v) for v in spec["size"])
        mean, std = [float(v) for v in spec["mean"]], [float(v) for v in spec["std"]]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{where}: not a cnnlab input spec ({type(e).__name__}: {e}); expected "
                        f'{{"channels": 1 or 3, "size": [H, W], "mean": [...], "std": [...]}}'
                        ) from e
    if c not in (1, 3) or h < 1 or w < 1 or len(mean) != c or len(std) != c or min(std) <= 0:
        raise UserError(f"{where}: input spec channels={c} size={h}x{w} mean={mean} std={std}: "
                        f"expected 1 or 3 channels, a positive size, one mean and one positive "
                        f"std per channel")
    resize = spec.get("resize", "bilinear")
    if resize not in RESIZE_POLICIES:
        raise UserError(f"{where}: resize policy {resize!r}: expected one of {RESIZE_POLICIES}")
    return {"channels": c, "size": [h, w], "mean": mean, "std": std, "resize": resize}


def list_images(inputs) -> list:
    """Files and folders -> image paths: a folder is searched recursively (sorted, only
    files with an image extension); a file is kept as given, whatever its extension.
    PIL images and arrays pass through unchanged."""
    out: list = []
    for item in inputs:
        if isinstance(item, (Image.Image, np.ndarray)):
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS
                           and f.is_file())
            if not found:
                raise UserError(f"{p}: folder has no images (searched recursively for "
                                f"{', '.join(sorted(IMAGE_EXTS))})")
            out += found
        elif p.exists():
            out.append(p)
        else:
            raise UserError(f"{p}: no such image file or folder")
    return out


def load_image(path, spec: dict, notes: dict | None = None) -> np.ndarray:
    """Any PNG/JPEG/BMP, gray or colour, any size -> uint8 ``(C, H, W)`` as the model expects:
    EXIF orientation applied, converted to the model's channels (L or RGB), resized to its
    input size by the spec's policy. ``path`` may also be a PIL image or a uint8 array
    ``(H, W)`` or ``(H, W, 1 or 3)``.

    ``notes`` (optional dict) collects what :func:`mismatch_notes` finds, for one warning
    per kind over many images.
    """
    c, (h, w) = spec["channels"], spec["size"]
    policy = spec.get("resize", "bilinear")
    if isinstance(path, (Image.Image, np.ndarray)):
        im = path if isinstance(path, Image.Image) else _from_array(path)
        p = "<PIL image>" if isinstance(path, Image.Image) else \
            f"<array {'x'.join(map(str, path.shape))}>"
        colourful, aspect = c == 1 and _is_colour(im), (im.width / im.height) / (w / h)
        a = to_chw(fit_size(to_mode(im, c), h, w, policy))
    elif notes is None:
        p, a = Path(path), read_image(path, c, (h, w), policy)
    else:  # the mismatch notes need the picture before its conversion: open it once here
        p = Path(path)
        im = open_image(p, (h, w), policy)
        colourful, aspect = c == 1 and _is_colour(im), (im.width / im.height) / (w / h)
        a = to_chw(fit_size(to_mode(im, c), h, w, policy))
    if notes is not None:
        for kind in mismatch_notes(a, spec, colourful, aspect):
            notes.setdefault(kind, []).append(str(p))
    return a


def _from_array(a: np.ndarray) -> Image.Image:
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3))):
        raise UserError(f"image array of shape {a.shape} and dtype {a.dtype}: expected uint8 "
                        f"(H, W), (H, W, 1) or (H, W, 3)")
    return Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)


def _is_colour(im: Image.Image) -> bool:
    """True when the picture has real colour: mean spread between channels over 8% of 255."""
    if im.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return False
    small = np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.int16)
    return float((small.max(2) - small.min(2)).mean()) > 0.08 * 255


def mismatch_notes(a: np.ndarray, spec: dict, colourful: bool, aspect: float) -> list[str]:
    """Kinds of plain mismatch between an image ``a`` uint8 (C, H, W) and the training data
    the spec describes: a colour photo into a gray model; inverted polarity (training images
    dark on average, as digits on black are, while this image's border - its background -
    is light, or the reverse); an aspect ratio over 2x off the model's."""
    kinds = []
    if colourful:
        kinds.append("a colour image given to a grayscale model")
    train_mean = float(np.mean(spec["mean"]))
    ring = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
    border = float(ring.mean()) / 255
    if (train_mean < 0.35 and border > 0.65) or (train_mean > 0.65 and border < 0.35):
        kinds.append(f"inverted polarity (background {border:.2f} on a 0-1 scale; the "
                     f"model's training images have mean {train_mean:.2f})")
    if not 0.5 <= aspect <= 2:
        h, w = spec["size"]
        kinds.append(f"an aspect ratio far from the model's {w}:{h}")
    return kinds


def warn_mismatches(notes: dict, total: int) -> None:
    """One InputMismatchWarning per kind of mismatch, naming how many images and one."""
    for kind, paths in notes.items():
        warnings.warn(f"{len(paths)} of {total} image(s) plainly unlike the model's input, "
                      f"{kind}: predictions may be meaningless (e.g. {paths[0]})",
                      InputMismatchWarning, stacklevel=3)


class Normalizer:
    """uint8 ``(N, C, H, W)`` -> float32 ``(x / 255 - mean) / std``, per channel: exactly what
    training fed the model (:func:`cnnlab.training.evaluation.normalizer` on the 0-1 scale), the same
    float32 operations in the same order. Built once per model: at batch 1 the constants'
    set-up would cost as much as the arithmetic."""

    def __init__(self, spec: dict):
        self.mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32)
        x /= np.float32(255)
        x -= self.mean
        x /= self.std
        return x


def normalize(batch: np.ndarray, spec: dict) -> np.ndarray:
    """:class:`Normalizer` ``(spec)(batch)``."""
    return Normalizer(spec)(batch)


class SkippedImagesWarning(UserWarning):
    """Some of the images given could not be read: listed, the rest predicted
    (``cnnlab predict`` then exits with code 1)."""


def _load_chunk(paths: list, spec: dict):
    """(arrays, mismatch notes, kept mask, [(path, why)] unreadable) of ``paths``."""
    notes: dict = {}
    arrays, kept, bad = [], [], []
    for p in paths:
        try:
            arrays.append(load_image(p, spec, notes))
            kept.append(True)
        except ImageReadError as e:
            kept.append(False)
            bad.append((str(p), e.reason))
    return arrays, notes, kept, bad


def load_batch(paths: list, spec: dict, workers: int = 0):
    """Decode ``paths`` -> (uint8 (N, C, H, W), mismatch notes, the paths read), in
    ``workers`` processes when > 1 (chunks in order: the same result as in one process).

    An unreadable file among several is skipped: one :class:`SkippedImagesWarning` lists
    them and the rest are returned; when none (or the only one) can be read, its error is
    raised (a UserError naming the file)."""
    if workers <= 1 or len(paths) < 2000:
        parts = [_load_chunk(paths, spec)]
    else:
        from concurrent.futures import ProcessPoolExecutor

        n = -(-len(paths) // workers)
        chunks = [paths[i:i + n] for i in range(0, len(paths), n)]
        with ProcessPoolExecutor(workers) as ex:
            parts = list(ex.map(_load_chunk, chunks, [spec] * len(chunks)))
    merged: dict = {}
    for _, notes, _, _ in parts:
        for k, v in notes.items():
            merged.setdefault(k, []).extend(v)
    arrays = [a for part in parts for a in part[0]]
    kept = [p for p, k in zip(paths, (k for part in parts for k in part[2])) if k]
    bad = [b for part in parts for b in part[3]]
    if bad and not arrays:
        if len(bad) == 1:
            load_image(paths[[str(p) for p in paths].index(bad[0][0])], spec)  # its own error
        raise UserError(f"none of the {len(bad)} images could be read: "
                        + "; ".join(f"{p} ({e})" for p, e in bad[:5])
                        + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""))
    if bad:
        warnings.warn(f"skipped {len(bad)} of {len(paths)} image(s), unreadable: "
                      + "; ".join(f"{p} ({e})" for p, e in bad[:10])
                      + (f" and {len(bad) - 10} more" if len(bad) > 10 else ""),
                      SkippedImagesWarning, stacklevel=2)
    batch = (np.stack(arrays) if arrays else
             np.zeros((0, spec["channels"], *spec["size"]), np.uint8))
    return batch, merged, kept


def default_workers(n_images: int) -> int:
    """Decode in worker processes only when there are enough images to repay starting them
    (~0.1 s each); at most one per core."""
    return min(os.cpu_count() or 1, 4) if n_images >= 2000 else 0


def topk(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, indices) of the ``k`` largest of each row, largest first; ties broken by
    the lower index, as ``torch.topk`` does on CPU."""
    idx = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(probs, idx, 1), idx


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    e /= e.sum(1, keepdims=True)
    return e


def results(paths, probs: np.ndarray, classes: list[str], k: int) -> list[dict]:
    """``[{"image": path, "top": [{"class", "probability"}, ...]}, ...]`` (k best each); an
    image given as a PIL image or an array is named by its position, ``"[3]"``."""
    vals, idx = topk(probs, min(k, probs.shape[1]))
    return [{"image": str(p) if isinstance(p, (str, Path)) else f"[{n}]",
             "top": [{"class": classes[i], "probability": v} for v, i in zip(vr, ir)]}
            for n, (p, vr, ir) in enumerate(zip(paths, vals.tolist(), idx.tolist()))]
