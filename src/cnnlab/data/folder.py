"""Image-folder trees and ``.tar.gz`` archives of them, decoded once and cached.

Layouts accepted (``<class>`` folders hold the images):
- ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``;
- ``ROOT/<class>/*`` with ``val_split`` (a fixed stratified split);
- a ``.tar.gz`` of either, possibly under one top folder (``mnist/train/...``), extracted
  once into ``$CNNLAB_CACHE/extracted/<sha>-v2`` (default ``~/.cache/cnnlab``), verified whole
  first (:mod:`cnnlab.data.archive`): a damaged archive is an error naming it.

Decoded images are cached as uint8 ``.npy`` arrays keyed by the source's content (the
archive's sha256, or the folder's file names, sizes and mtimes), so a second run loads
60,000 MNIST images in a fraction of a second instead of decoding 60,000 PNGs again.

Policies, stated rather than silent: images whose size differs from the most common size
are resized to it (bilinear) with a warning; if any image has colour, grayscale images are
converted to RGB (with a warning), otherwise all are kept as 1 channel; corrupt or
truncated images, and decompression bombs (an image declaring more than 179 million pixels),
are skipped with a warning listing them. The skipped files are recorded in the cache with
the arrays, so the warning comes back on every run.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.data import DataSplits, ImageData, stratified_split
from cnnlab.data.archive import ARCHIVE_SUFFIXES, extract_verified
from cnnlab.data.progress import Progress
from cnnlab.errors import UserError
from cnnlab.utils import cache_dir, read_npz, write_npz

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
CACHE_VERSION = 2  # bump when the decoded format changes (2: skipped files recorded)


class DataWarning(UserWarning):
    """Something was done to the data (files skipped, images resized): printed as one line."""


def _sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def extract_archive(path: Path, key: str | None = None, progress="auto") -> Path:
    """Extract ``path`` (a .tar.gz) once into ``$CNNLAB_CACHE/extracted/<key>``; return it.

    ``key``: the archive's content key (``_sha256_file(path)[:16]``) when already known. The
    extraction is verified whole (CRC, no early end) before it enters the cache
    (:func:`cnnlab.data.archive.extract_verified`).
    """
    key = key or _sha256_file(path)[:16]
    # "-v2": verified extractions; older, unverified ones (no suffix) are left for
    # `cnnlab cache clean` rather than deleted under a process that may be reading them
    return extract_verified(path, cache_dir() / "extracted" / f"{key}-v2", progress=progress)


def _find_root(root: Path) -> Path:
    """Descend through single top folders (``mnist/``) to the one holding train/test or classes."""
    while True:
        subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if (root / "train").is_dir() or len(subdirs) != 1:
            return root
        root = subdirs[0]


def _list_classes(root: Path) -> dict[str, list[Path]]:
    """``{class_name: sorted image paths}`` for the class folders under ``root``."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class folders found (expected {root}/<class>/<images>)")
    out = {}
    for c in classes:
        files = sorted(p for p in (root / c).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise UserError(f"{root / c}: class folder has no images "
                            f"(expected files with extensions {', '.join(sorted(IMAGE_EXTS))})")
        out[c] = files
    return out


def _decode_one(p: str) -> np.ndarray:
    """One image file -> uint8 HxWxC (C = 1 or 3).

    Pillow refuses images declaring more than ``2 * Image.MAX_IMAGE_PIXELS`` pixels
    (179 million: a 100000x100000 PNG of a few KB would ask for 30 GB) with
    ``DecompressionBombError``; between 1x and 2x (a real 12000x12000 photo) it only warns,
    and such an image is honest: decoded without passing Pillow's warning on.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(p) as im:
            im.load()
            mode = "L" if im.mode in ("1", "L", "I;16", "I", "F") else "RGB"
            a = np.asarray(im.convert(mode))
    return a[..., None] if a.ndim == 2 else a


def _decode_chunk(paths: list[str]):
    """Decode image files -> (list of arrays HxWxC or None, list of (path, error))."""
    arrays, bad = [], []
    for p in paths:
        try:
            arrays.append(_decode_one(p))
        except Image.DecompressionBombError as e:
            arrays.append(None)
            n = [int(v) for v in re.findall(r"\d+", str(e))] + [0, 0]
            bad.append((p, f"decompression bomb: declares {n[0]:,} pixels, over Pillow's "
                           f"limit of {n[1]:,}"))
        except UnidentifiedImageError:
            arrays.append(None)
            bad.append((p, "not an image Pillow can read"))
        except (OSError, SyntaxError, ValueError, MemoryError) as e:
            arrays.append(None)
            bad.append((p, str(e).splitlines()[0] if str(e) else type(e).__name__))
    return arrays, bad


def skipped_message(bad, cached: bool = False) -> str:
    """One line listing up to 10 skipped files: ``skipped 2 unreadable image(s): a (why); b``."""
    listed = "; ".join(f"{p} ({e})" for p, e in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    when = " when first decoded (recorded in the cache)" if cached else ""
    return f"skipped {len(bad)} unreadable image(s){when}: {listed}{more}"


def decode_images(paths: list[Path], desc: str = "decoding", progress="auto",
                  workers: int | None = None):
    """Decode ``paths`` in parallel -> (uint8 (N, C, H, W), kept mask, [(path, error)] skipped).

    ``progress``: "auto"/True, "bar", "lines" or "none"/False (:mod:`cnnlab.data.progress`).
    """
    strs = [str(p) for p in paths]
    chunk = 1000
    chunks = [strs[i:i + chunk] for i in range(0, len(strs), chunk)]
    workers = workers or min(len(chunks), os.cpu_count() or 1)
    results = []
    bar = Progress(len(strs), desc, progress, unit="img")
    if workers > 1:
        with ProcessPoolExecutor(workers) as ex:
            for r in ex.map(_decode_chunk, chunks):
                results.append(r)
                bar.update(len(r[0]))
    else:
        for c in chunks:
            results.append(_decode_chunk(c))
            bar.update(len(c))
    bar.close()
    arrays = [a for r in results for a in r[0]]
    bad = [b for r in results for b in r[1]]
    if bad:
        warnings.warn(skipped_message(bad), DataWarning, stacklevel=2)
    kept = np.array([a is not None for a in arrays], dtype=bool)
    good = [a for a in arrays if a is not None]
    if not good:
        raise UserError(f"{Path(strs[0]).parent.parent if strs else '?'}: none of the "
                        f"{len(strs)} images could be read")
    return _stack(good), kept, bad


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """Stack HxWxC arrays into (N, C, H, W), applying the size and colour policies."""
    channels = 3 if any(a.shape[2] == 3 for a in arrays) else 1
    if channels == 3:
        n_gray = sum(a.shape[2] == 1 for a in arrays)
        if n_gray:
            warnings.warn(f"{n_gray} grayscale image(s) in a colour dataset: converted to RGB "
                          f"by repeating the gray channel", DataWarning, stacklevel=3)
            arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
    size = Counter(a.shape[:2] for a in arrays).most_common(1)[0][0]
    n_resized = sum(a.shape[:2] != size for a in arrays)
    if n_resized:
        warnings.warn(f"{n_resized} image(s) differ from the most common size "
                      f"{size[0]}x{size[1]}: resized to it (bilinear)", DataWarning, stacklevel=3)
        arrays = [a if a.shape[:2] == size else _resize(a, size) for a in arrays]
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    im = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    r = np.asarray(im.resize((size[1], size[0]), Image.BILINEAR))
    return r[..., None] if r.ndim == 2 else r


def folder_key(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}:{root.resolve()}".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cache_path(key: str) -> Path:
    return cache_dir() / "arrays" / f"{key}.npz"


def read_cache(key: str) -> ImageData | None:
    """The decoded arrays cached under ``key``, or None (a damaged cache is deleted).

    Files skipped when the arrays were decoded are recorded with them and warned about
    again, on every run, so a cached dataset never hides that images are missing.
    """
    z = read_npz(_cache_path(key))
    if z is None or not {"images", "labels", "classes"} <= z.keys():
        return None
    if len(skipped := z.get("skipped", np.zeros((0, 2), dtype=str))):
        warnings.warn(skipped_message([tuple(map(str, r)) for r in skipped], cached=True),
                      DataWarning, stacklevel=3)
    return ImageData(z["images"], z["labels"], [str(c) for c in z["classes"]])


def _cache_fits(key: str) -> bool:
    """Whether decoded arrays are cached under ``key`` and fit the in-memory budget."""
    from cnnlab.data.stream import memory_budget

    cache = _cache_path(key)
    return cache.exists() and cache.stat().st_size <= memory_budget()


def write_cache(key: str, data: ImageData, skipped=(), source: str = "") -> ImageData:
    """Cache ``data`` under ``key``, with the ``(path, error)`` pairs of skipped files and
    the folder it was decoded from (listed by ``cnnlab cache``)."""
    write_npz(_cache_path(key), images=data.images, labels=data.labels,
              classes=np.array(data.classes), source=np.array(source),
              skipped=np.array([list(b) for b in skipped], dtype=str).reshape(-1, 2))
    return data


def list_split(root: Path, classes: list[str] | None = None):
    """(image paths, int64 labels, class names) of ``root/<class>/*``; ``classes`` (the train
    split's) must match when given."""
    listing = _list_classes(root)
    if classes is not None and list(listing) != classes:
        raise UserError(f"{root}: class folders {list(listing)} differ from the train split's "
                        f"{classes}")
    files = [p for c in listing for p in listing[c]]
    labels = np.array([i for i, c in enumerate(listing) for _ in listing[c]], dtype=np.int64)
    return files, labels, list(listing)


def _load_split(root: Path, key: str | None, progress: bool, classes: list[str] | None = None):
    """Decode (or read from the cache) one split folder -> ImageData."""
    if key is not None and (data := read_cache(key)) is not None:
        return data  # an archive's key is its content hash: no need to list 60,000 files
    files, labels, names = list_split(root, classes)
    if key is None:  # a folder's key hashes its listing (names, sizes, mtimes)
        key = folder_key(root, files)
        if (data := read_cache(key)) is not None:
            return data
    images, kept, bad = decode_images(files, desc=f"decoding {root.name}", progress=progress)
    return write_cache(key, ImageData(images, labels[kept], names), skipped=bad,
                       source=str(root))


def load_folder_splits(spec: str, val_split: float | None = None, seed: int = 0,
                       progress="auto", in_memory: str = "yes") -> DataSplits:
    """Load an image-folder tree or a .tar.gz of one (see the module docstring).

    ``in_memory``: "yes" decodes everything (cached); "no" returns splits of
    :class:`~cnnlab.data.stream.StreamingImageData`; "auto" streams when the decoded training
    set would exceed :func:`~cnnlab.data.stream.memory_budget`.
    """
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"--data {spec}: no such file or folder (expected 'digits', an "
                        f"image-folder tree or a .tar.gz of one)")
    archive_key = None
    if path.is_file():
        if not path.name.endswith(ARCHIVE_SUFFIXES):
            raise UserError(f"--data {spec}: expected a folder or a .tar.gz archive")
        archive_key = _sha256_file(path)[:16]
        path_root = extract_archive(path, archive_key, progress=progress)
    else:
        path_root = path
    if not any(p for p in path_root.iterdir() if not p.name.startswith(".")):
        raise UserError(f"--data {spec}: the folder is empty (expected train/<class>/<images> "
                        f"and test/<class>/<images>, or <class>/<images> with --test-split)")
    root = _find_root(path_root)
    name = path.name.split(".")[0] if path.is_file() else root.name
    k = (lambda s: f"{archive_key}-{s}-v{CACHE_VERSION}") if archive_key else (lambda s: None)
    if in_memory == "auto" and archive_key and _cache_fits(k("train" if (root / "train").is_dir()
                                                             else "all")):
        in_memory = "yes"  # decoded before and fits: no need to list the files to decide
    if in_memory != "yes" and (streamed := _stream_splits(root, spec, name, path, val_split,
                                                          seed, in_memory)) is not None:
        return streamed
    if (root / "train").is_dir():
        train = _load_split(root / "train", k("train"), progress)
        if (root / "test").is_dir():
            test = _load_split(root / "test", k("test"), progress, classes=train.classes)
            if val_split is not None:
                warnings.warn("--test-split ignored: the data has its own test/ folder",
                              DataWarning, stacklevel=2)
            return DataSplits(name, train, test, source=str(path))
        root = root / "train"
    if val_split is None:
        raise UserError(f"--data {spec}: no test/ folder; pass --test-split F (e.g. 0.2; "
                        f"`cnnlab train` and `cnnlab eval` alike) to hold out "
                        f"a fraction of {root} for testing")
    full = _load_split(root, k("all"), progress)
    tr, te = stratified_split(full.labels, val_split, seed=seed)
    return DataSplits(name, ImageData(full.images[tr], full.labels[tr], full.classes),
                      ImageData(full.images[te], full.labels[te], full.classes), source=str(path),
                      notes=[f"stratified split: {val_split:g} of the images held out for testing"])


def _stream_splits(root: Path, spec: str, name: str, path: Path, val_split, seed: int,
                   in_memory: str) -> DataSplits | None:
    """Streaming splits, or None when ``in_memory="auto"`` and the train split fits the budget."""
    from cnnlab.data.stream import StreamingImageData, memory_budget

    has_train = (root / "train").is_dir()
    if not has_train and val_split is None:
        raise UserError(f"--data {spec}: no test/ folder; pass --test-split F (e.g. 0.2; "
                        f"`cnnlab train` and `cnnlab eval` alike) to hold out "
                        f"a fraction of {root} for testing")
    full = StreamingImageData.from_folder(root / "train" if has_train else root, seed=seed)
    if in_memory == "auto" and full.nbytes <= memory_budget():  # the whole tree is decoded
        return None
    c, h, w = full.shape
    note = (f"streamed from disk ({len(full):,} files; {c} channel(s), {h}x{w} from a sample "
            f"of the images)")
    if has_train and (root / "test").is_dir():
        if val_split is not None:
            warnings.warn("--test-split ignored: the data has its own test/ folder", DataWarning,
                              stacklevel=3)
        test = StreamingImageData.from_folder(root / "test", classes=full.classes,
                                              shape=full.shape)
        return DataSplits(name, full, test, source=str(path), notes=[note])
    if val_split is None:
        raise UserError(f"--data {spec}: no test/ folder; pass --test-split F (e.g. 0.2; "
                        f"`cnnlab train` and `cnnlab eval` alike) to hold out "
                        f"a fraction of {root / 'train'} for testing")
    tr, te = stratified_split(full.labels, val_split, seed=seed)
    return DataSplits(name, full.subset(tr), full.subset(te), source=str(path),
                      notes=[note, f"stratified split: {val_split:g} of the images held out "
                                   f"for testing"])
