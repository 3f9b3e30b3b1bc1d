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

Every file is read by :mod:`cnnlab.data.decode` (EXIF orientation, reduced-scale JPEG
decoding), the decoder ``predict``, ``viz`` and ``serve`` use too. Policies, stated rather
than silent:
- size: a folder of same-size small images (a sample of up to 64 headers decides; small
  means at most 512x512) is kept at its own size; anything else - sizes that differ, or
  photos - is read at ``size`` (the model's input: ``--input-size``, else the model's
  native size, said in one line) by the resize policy, each image decoded straight to it in
  a worker process, so no image is ever held larger than the model reads it;
- colour: if any image has colour, grayscale images are converted to RGB (with a warning),
  otherwise all are kept as 1 channel;
- corrupt or truncated images, and decompression bombs (an image declaring more than 179
  million pixels), are skipped with a warning listing them. The skipped files are recorded
  in the cache with the arrays, so the warning comes back on every run.
"""

from __future__ import annotations

import hashlib
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from cnnlab.data import DataSplits, ImageData, stratified_split
from cnnlab.data.archive import ARCHIVE_SUFFIXES, extract_verified
from cnnlab.data.decode import IMAGE_EXTS
from cnnlab.data.files import (DataWarning, ReadPlan, SizeRequest, default_workers, list_split,
                               memory_budget, plan_read, read_chunk, skipped_message, unify)
from cnnlab.data.progress import Progress
from cnnlab.errors import UserError
from cnnlab.utils import cache_dir, read_npz, sha256_file, write_npz

# bump when the decoded format changes (2: skipped files recorded; 3: one decoder, EXIF
# orientation applied, photos read at the model's size)
CACHE_VERSION = 3


def extract_archive(path: Path, key: str | None = None, progress="auto") -> Path:
    """Extract ``path`` (a .tar.gz) once into ``$CNNLAB_CACHE/extracted/<key>``; return it.

    ``key``: the archive's content key (``sha256_file(path)[:16]``) when already known. The
    extraction is verified whole (CRC, no early end) before it enters the cache
    (:func:`cnnlab.data.archive.extract_verified`).
    """
    key = key or sha256_file(path)[:16]
    # "-v2": verified extractions; older, unverified ones (no suffix) are left for
    # `cnnlab cache clean` rather than deleted under a process that may be reading them
    return extract_verified(path, cache_dir() / "extracted" / f"{key}-v2", progress=progress)


def _find_root(root: Path, spec: str = "") -> Path:
    """Descend through single top folders (``mnist/``) to the one holding train/test or
    classes. Loose images beside folders are not a class: said, never silently dropped."""
    while True:
        subdirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
        if loose and len(subdirs) <= 1:
            where = f"{subdirs[0].name}/" if subdirs else "no class folder"
            raise UserError(f"--data {spec or root}: found {len(loose)} loose image(s) in "
                            f"{root} beside {where}; expected one folder per class "
                            f"({root}/<class>/<images>, or train/ and test/ of them)")
        if loose:
            warnings.warn(f"{len(loose)} loose image(s) in {root} are not in a class folder: "
                          f"not used (e.g. {loose[0].name})", DataWarning, stacklevel=3)
        if (root / "train").is_dir() or len(subdirs) != 1:
            return root
        root = subdirs[0]


def decode_images(paths: list[Path], desc: str = "decoding", progress="auto",
                  workers: int | None = None, plan: ReadPlan = ReadPlan()):
    """Read ``paths`` in worker processes -> (uint8 (N, C, H, W), kept mask, [(path, why)]
    skipped), each file by :func:`cnnlab.data.files.read_chunk` under ``plan``.

    ``progress``: "auto"/True, "bar", "lines" or "none"/False (:mod:`cnnlab.data.progress`);
    lines carry the images per second and the time left.
    """
    strs = [str(p) for p in paths]
    workers = workers or default_workers(len(strs))
    # chunks small enough for a progress line every few seconds on photos (~5 ms each),
    # large enough that 60,000 digits are not 60,000 round trips
    chunk = max(16, min(1000, len(strs) // (workers * 8) or 1))
    chunks = [strs[i:i + chunk] for i in range(0, len(strs), chunk)]
    args = (plan.target, plan.policy)
    results = []
    bar = Progress(len(strs), desc, progress, unit="img")
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(min(workers, len(chunks))) as ex:
            for r in ex.map(read_chunk, chunks, *([a] * len(chunks) for a in args)):
                results.append(r)
                bar.update(len(r[0]))
    else:
        for c in chunks:
            results.append(read_chunk(c, *args))
            bar.update(len(c))
    bar.close()
    arrays = [a for r in results for a in r[0]]
    bad = [b for r in results for b in r[1]]
    if bad:
        warnings.warn(skipped_message(bad), DataWarning, stacklevel=2)
    kept = np.array([a is not None for a in arrays], dtype=bool)
    good = [a for a in arrays if a is not None]
    del arrays, results
    if not good:
        raise UserError(f"{Path(strs[0]).parent.parent if strs else '?'}: none of the "
                        f"{len(strs)} images could be read")
    return unify(good, plan.fallback, plan.policy), kept, bad


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
    cache = _cache_path(key)
    return cache.exists() and cache.stat().st_size <= memory_budget()


def write_cache(key: str, data: ImageData, skipped=(), source: str = "") -> ImageData:
    """Cache ``data`` under ``key``, with the ``(path, error)`` pairs of skipped files and
    the folder it was decoded from (listed by ``cnnlab cache``)."""
    write_npz(_cache_path(key), images=data.images, labels=data.labels,
              classes=np.array(data.classes), source=np.array(source),
              skipped=np.array([list(b) for b in skipped], dtype=str).reshape(-1, 2))
    return data


def _load_split(root: Path, key: str | None, progress, classes: list[str] | None = None,
                req: SizeRequest = SizeRequest(), seed: int = 0):
    """Decode (or read from the cache) one split folder -> (ImageData, the (h, w) its
    images were read at, or None when read as stored).

    Cached under ``key`` (an archive's content hash; else the folder listing's hash) when
    read as stored, under ``key`` plus the size and policy when read at a size."""
    if key is not None and (data := read_cache(key)) is not None:
        return data, None  # an archive's key is its content hash: no need to list 60,000 files
    files, labels, names = list_split(root, classes)
    key = key or folder_key(root, files)  # a folder's key hashes its listing
    plan = plan_read(files, req.size, req.default, req.policy, req.model, seed)
    if plan.why and classes is None:  # said once (for the train split), on every run
        warnings.warn(f"{root.name}: {plan.why}", DataWarning, stacklevel=3)
    if (data := read_cache(key + plan.key())) is not None:
        return data, plan.target
    images, kept, bad = decode_images(files, desc=f"decoding {root.name}", progress=progress,
                                      plan=plan)
    return write_cache(key + plan.key(), ImageData(images, labels[kept], names), skipped=bad,
                       source=str(root)), plan.target


def load_folder_splits(spec: str, val_split: float | None = None, seed: int = 0,
                       progress="auto", in_memory: str = "yes",
                       req: SizeRequest = SizeRequest()) -> DataSplits:
    """Load an image-folder tree or a .tar.gz of one (see the module docstring).

    ``in_memory``: "yes" decodes everything (cached); "no" returns splits of
    :class:`~cnnlab.data.stream.StreamingImageData`; "auto" streams when the decoded training
    set would exceed :func:`~cnnlab.data.files.memory_budget`. ``req``: the size to read
    photos and mixed sizes at (:class:`SizeRequest`); train and test always end at one size.
    """
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"--data {spec}: no such file or folder (expected 'digits', an "
                        f"image-folder tree or a .tar.gz of one)")
    archive_key = None
    if path.is_file():
        if not path.name.endswith(ARCHIVE_SUFFIXES):
            raise UserError(f"--data {spec}: expected a folder or a .tar.gz archive")
        archive_key = sha256_file(path)[:16]
        path_root = extract_archive(path, archive_key, progress=progress)
    else:
        path_root = path
    if not any(p for p in path_root.iterdir() if not p.name.startswith(".")):
        raise UserError(f"--data {spec}: the folder is empty (expected train/<class>/<images> "
                        f"and test/<class>/<images>, or <class>/<images> with --test-split)")
    root = _find_root(path_root, spec)
    name = path.name.split(".")[0] if path.is_file() else root.name
    k = (lambda s: f"{archive_key}-{s}-v{CACHE_VERSION}") if archive_key else (lambda s: None)
    if in_memory == "auto" and archive_key and _cache_fits(k("train" if (root / "train").is_dir()
                                                             else "all")):
        in_memory = "yes"  # decoded before and fits: no need to list the files to decide
    if in_memory != "yes" and (streamed := _stream_splits(root, spec, name, path, val_split,
                                                          seed, in_memory, req)) is not None:
        return streamed
    if (root / "train").is_dir():
        train, at = _load_split(root / "train", k("train"), progress, req=req, seed=seed)
        if (root / "test").is_dir():
            test, at_test = _load_split(root / "test", k("test"), progress,
                                        classes=train.classes, req=req, seed=seed)
            if val_split is not None:
                warnings.warn("--test-split ignored: the data has its own test/ folder",
                              DataWarning, stacklevel=2)
            train, test = _same_size(train, test, req, spec)
            return DataSplits(name, train, test, source=str(path), read_size=at or at_test)
        root = root / "train"
    if val_split is None:
        raise UserError(f"--data {spec}: no test/ folder; pass --test-split F (e.g. 0.2; "
                        f"`cnnlab train` and `cnnlab eval` alike) to hold out "
                        f"a fraction of {root} for testing")
    full, at = _load_split(root, k("all"), progress, req=req, seed=seed)
    tr, te = stratified_split(full.labels, val_split, seed=seed)
    return DataSplits(name, ImageData(full.images[tr], full.labels[tr], full.classes),
                      ImageData(full.images[te], full.labels[te], full.classes), source=str(path),
                      notes=[f"stratified split: {val_split:g} of the images held out for testing"],
                      read_size=at)


def _same_size(train: ImageData, test: ImageData, req: SizeRequest, spec: str):
    """Train and test at one size: when each was read as stored but at different sizes
    (all 28x28 here, all 32x32 there), both are brought to the requested or native size."""
    if train.shape[1:] == test.shape[1:]:
        return train, test
    from cnnlab.data.resize import resize_split

    size = req.size or req.default
    if size is None:
        raise UserError(f"--data {spec}: train images are {train.shape[2]}x{train.shape[1]}, "
                        f"test images {test.shape[2]}x{test.shape[1]}: give the size to read "
                        f"both at (--input-size HxW)")
    return resize_split(train, size, req.policy), resize_split(test, size, req.policy)


def _stream_splits(root: Path, spec: str, name: str, path: Path, val_split, seed: int,
                   in_memory: str, req: SizeRequest) -> DataSplits | None:
    """Streaming splits, or None when ``in_memory="auto"`` and the train split fits the budget."""
    from cnnlab.data.stream import StreamingImageData

    has_train = (root / "train").is_dir()
    if not has_train and val_split is None:
        raise UserError(f"--data {spec}: no test/ folder; pass --test-split F (e.g. 0.2; "
                        f"`cnnlab train` and `cnnlab eval` alike) to hold out "
                        f"a fraction of {root} for testing")
    full = StreamingImageData.from_folder(root / "train" if has_train else root, seed=seed,
                                          req=req)
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
                                              shape=full.shape, req=req)
        return DataSplits(name, full, test, source=str(path), notes=[note],
                          read_size=full.read_at)
    if val_split is None:
        raise UserError(f"--data {spec}: no test/ folder; pass --test-split F (e.g. 0.2; "
                        f"`cnnlab train` and `cnnlab eval` alike) to hold out "
                        f"a fraction of {root / 'train'} for testing")
    tr, te = stratified_split(full.labels, val_split, seed=seed)
    return DataSplits(name, full.subset(tr), full.subset(te), source=str(path),
                      notes=[note, f"stratified split: {val_split:g} of the images held out "
                                   f"for testing"], read_size=full.read_at)
