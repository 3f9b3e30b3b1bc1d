"""The image files of a class-folder tree: listing them, and reading them in chunks.

The floor under :mod:`cnnlab.data.folder` (decoded once, cached) and
:mod:`cnnlab.data.stream` (decoded batch by batch): both list and read files through here,
and every file is read by :mod:`cnnlab.data.decode`, the decoder every command shares.

Reading a chunk (:func:`read_chunk`) is what a worker process runs. With a ``target`` size
(the model's input, known before anything is decoded) an image larger than the target is
decoded straight to it (reduced-scale JPEG decoding, then the resize policy), so a worker
never returns a 12-megapixel photo; an image no larger than the target keeps its own size,
so a folder of same-size small images (MNIST, CIFAR-10) is read exactly as stored.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.decode import FORMATS_TEXT, IMAGE_EXTS, ImageReadError, probe, read_bounded
from cnnlab.errors import UserError


SMALL_SIDE = 512  # same-size images up to this are kept at their own size
PLAN_SAMPLE = 64  # headers read to decide the size policy


class DataWarning(UserWarning):
    """Something was done to the data (files skipped, images resized): printed as one line."""


def list_classes(root: Path) -> dict[str, list[Path]]:
    """``{class_name: sorted image paths}`` for the class folders under ``root``."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class folders found (expected {root}/<class>/<images>)")
    out = {}
    for c in classes:
        files = sorted(p for p in (root / c).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise UserError(f"{root / c}: class folder has no images (expected {FORMATS_TEXT} "
                            f"files: {', '.join(sorted(IMAGE_EXTS))})")
        out[c] = files
    return out


def list_split(root: Path, classes: list[str] | None = None):
    """(image paths, int64 labels, class names) of ``root/<class>/*``; ``classes`` (the train
    split's) must match when given."""
    listing = list_classes(root)
    if classes is not None and list(listing) != classes:
        raise UserError(f"{root}: class folders {list(listing)} differ from the train split's "
                        f"{classes}")
    files = [p for c in listing for p in listing[c]]
    labels = np.array([i for i, c in enumerate(listing) for _ in listing[c]], dtype=np.int64)
    return files, labels, list(listing)


@dataclass(frozen=True)
class SizeRequest:
    """What the caller knows of the size to read at: ``size`` (h, w) asked for
    (``--input-size``, a checkpoint's input), ``default`` (h, w) the model's native size for
    photos and mixed sizes, ``policy`` the resize policy, ``model`` its name (for the line)."""

    size: tuple[int, int] | None = None
    default: tuple[int, int] | None = None
    policy: str = "bilinear"
    model: str = ""


@dataclass(frozen=True)
class ReadPlan:
    """How a folder's images are read: at their own size (``target`` None) or brought to
    ``target`` (h, w) by ``policy``; ``fallback`` (h, w) for images that turn out to differ
    in size after all; ``why``: the line said when a size was chosen for the user."""

    target: tuple[int, int] | None = None
    policy: str = "bilinear"
    fallback: tuple[int, int] | None = None
    why: str = ""

    def key(self) -> str:
        """The part of a cache key that depends on the plan ("" when read as stored)."""
        return "" if self.target is None else f"-{self.target[0]}x{self.target[1]}-{self.policy}"


def plan_read(files: list[Path], size=None, default_size=None, policy: str = "bilinear",
              model: str = "", seed: int = 0) -> ReadPlan:
    """The :class:`ReadPlan` for ``files``, from a seeded sample of up to 64 headers (nothing
    decoded): one small size (at most 512x512, and no larger than ``size`` when given) is
    read as stored; else ``size`` (h, w) when given (``--input-size``); else (sizes differ,
    or photos) ``default_size``, the model's native size, said in one line naming ``model``.
    With neither, a UserError asks for a size."""
    fallback = next((tuple(int(v) for v in s) for s in (size, default_size) if s is not None),
                    None)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(files), min(PLAN_SAMPLE, len(files)), replace=False))
    sizes = set()
    for i in pick:
        try:
            sizes.add(probe(files[i])[:2])
        except Exception:  # noqa: BLE001 - an unreadable file is reported when it is read
            continue
    small = all(h <= SMALL_SIDE and w <= SMALL_SIDE and (size is None or h * w <= size[0] *
                                                         size[1]) for h, w in sizes)
    if len(sizes) <= 1 and small:
        return ReadPlan(None, policy, fallback)
    if size is not None:
        return ReadPlan(fallback, policy, fallback)
    what = (f"images differ in size ({describe_sizes(sizes)})" if len(sizes) > 1
            else f"images are {describe_sizes(sizes)}")
    if fallback is None:
        raise UserError(f"{Path(files[0]).parent.parent}: {what}: give the size to read them "
                        f"at (--input-size HxW, or size=(H, W) in Python)")
    who = f"{model}'s" if model else "the model's"
    h, w = fallback
    if policy == "square":  # stored larger for random-resized crops (training/setup.py)
        why = (f"{what}: stored at {w}x{h} (shorter side, centre square); training takes "
               f"random-resized crops of them at {who} input size, evaluation their centre "
               f"(--resize crop; --input-size HxW and --resize to choose)")
    else:
        why = (f"{what}: read at {who} native {w}x{h} (--resize {policy}; --input-size HxW "
               f"and --resize to choose)")
    return ReadPlan(fallback, policy, fallback, why)


def read_chunk(paths: list[str], target=None, policy: str = "bilinear",
               channels: int | None = None):
    """Read files -> (list of uint8 (C, H, W) arrays or None, list of (path, why) skipped).

    Each file by :func:`cnnlab.data.decode.read_bounded`: an image larger than ``target``
    (h, w) is read at it, a smaller one at its own size; ``channels`` None keeps 1 channel
    for grayscale files and 3 for the rest."""
    arrays, bad = [], []
    for p in paths:
        try:
            arrays.append(read_bounded(p, target, policy, channels))
        except ImageReadError as e:
            arrays.append(None)
            bad.append((p, e.reason))
    return arrays, bad


def skipped_message(bad, cached: bool = False) -> str:
    """One line listing up to 10 skipped files: ``skipped 2 unreadable image(s): a (why); b``."""
    listed = "; ".join(f"{p} ({e})" for p, e in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    when = " when first decoded (recorded in the cache)" if cached else ""
    return f"skipped {len(bad)} unreadable image(s){when}: {listed}{more}"


def unify(arrays: list[np.ndarray], target=None, policy: str = "bilinear", stacklevel: int = 3):
    """Same-channel, same-size uint8 (N, C, H, W) from (C, H, W) arrays (the list is emptied:
    its entries are set to None as they are copied).

    Colour: if any image has colour, grayscale ones are repeated to RGB (with a warning).
    Size: kept when every image has the same size; else every image not at ``target`` is
    brought to it by ``policy``. With differing sizes and no target, a UserError asks for
    one (never "the most common size": on a folder of phone photos that is 12 megapixels).
    """
    channels = 3 if any(a.shape[0] == 3 for a in arrays) else 1
    if channels == 3 and (n_gray := sum(a.shape[0] == 1 for a in arrays)):
        warnings.warn(f"{n_gray} grayscale image(s) in a colour dataset: converted to RGB "
                      f"by repeating the gray channel", DataWarning, stacklevel=stacklevel)
    sizes = {a.shape[1:] for a in arrays}
    if len(sizes) > 1 and target is None:
        raise UserError(f"images differ in size ({describe_sizes(sizes)}): give the size "
                        f"to read them at (--input-size HxW, or size=(H, W) in Python)")
    h, w = (int(v) for v in target) if len(sizes) > 1 else next(iter(sizes))
    # Filled in place, each array dropped once copied: the pages of `out` become resident
    # as the list's are freed, so the peak is one copy of the data, not two (np.stack).
    out = np.empty((len(arrays), channels, h, w), np.uint8)
    for i, a in enumerate(arrays):
        if a.shape[1:] != (h, w):
            a = resize_chw(a, (h, w), policy)
        out[i] = a  # a gray (1, H, W) broadcasts to RGB: the gray channel repeated
        arrays[i] = None
    return out


def describe_sizes(sizes) -> str:
    """``"28x28 to 4032x3024"``: the smallest and largest (by area) of (h, w) sizes."""
    s = sorted(sizes, key=lambda hw: (hw[0] * hw[1], hw))
    fmt = lambda hw: f"{hw[1]}x{hw[0]}"  # noqa: E731 - width x height, as image viewers say
    return fmt(s[0]) if len(s) == 1 else f"{fmt(s[0])} to {fmt(s[-1])}"


def resize_chw(a: np.ndarray, size, policy: str = "bilinear") -> np.ndarray:
    """uint8 (C, H, W) -> (C, h, w) by :func:`cnnlab.data.decode.fit_size`."""
    from cnnlab.data.decode import fit_size, to_chw

    im = Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))
    return to_chw(fit_size(im, int(size[0]), int(size[1]), policy))


def default_workers(n_files: int) -> int:
    """Worker processes for reading ``n_files``: one per core, none for a handful."""
    return 1 if n_files < 64 else max(1, min(os.cpu_count() or 1, 8))


def memory_budget() -> int:
    """Bytes of decoded images to hold in memory: ``CNNLAB_MEMORY_BUDGET_GB`` or 25% of RAM."""
    env = os.environ.get("CNNLAB_MEMORY_BUDGET_GB")
    if env:
        try:
            gb = float(env)
        except ValueError:
            gb = -1.0
        if not gb > 0:
            raise UserError(f"CNNLAB_MEMORY_BUDGET_GB={env}: expected a positive number of GB")
        return int(gb * 2 ** 30)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): assume 16 GB of RAM
        return 4 * 2 ** 30
