"""Image folders too big to hold in memory: decoded batch by batch in worker processes.

A :class:`StreamingImageData` has the surface the trainer needs from
:class:`~cnnlab.data.ImageData` (``labels`` int64 ``(N,)``, ``classes``, ``shape`` ``(C, H, W)``,
``len``) but keeps only the file list. :meth:`StreamingImageData.batches` turns index batches
(the trainer's per-step slices of its permutation) into uint8 ``(B, C, H, W)`` tensors, one
whole batch per DataLoader item, decoded by ``workers`` processes ahead of the training step.

Policies (the same helpers as :mod:`cnnlab.data.folder`, decided from a seeded sample of up
to 64 files rather than from every image, since the images are never all decoded):
- channels: 1 if every sampled image is grayscale, else 3; every image is converted to that
  (gray repeated to RGB, colour converted to gray with PIL's ``"L"``);
- size: the most common size among the sampled images; every other image is resized to it
  (bilinear), as the in-memory path does;
- a corrupt or unreadable file found while streaming is skipped with a warning naming it
  (that batch gets smaller): a long run never crashes on one bad file.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.folder import DataWarning, _decode_chunk, _resize, list_split
from cnnlab.errors import UserError

POLICY_SAMPLE = 64  # files decoded to choose channels and size


def _to_shape(a: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """HxWxC uint8 -> HxWxC' in the dataset's channels and size (colour first, as _stack)."""
    c, h, w = shape
    if a.shape[2] != c:
        a = (np.repeat(a, 3, axis=2) if c == 3
             else np.asarray(Image.fromarray(a).convert("L"))[..., None])
    if a.shape[:2] != (h, w):
        a = _resize(a, (h, w))
    return a


def decode_batch(files: list[str], labels: np.ndarray, idx, shape: tuple[int, int, int]):
    """Decode ``files[idx]`` -> (uint8 (B, C, H, W), int64 (B,), [(path, error)] skipped)."""
    idx = np.asarray(idx, dtype=np.int64)
    arrays, bad = _decode_chunk([files[i] for i in idx])
    keep = np.array([a is not None for a in arrays], dtype=bool)
    good = [_to_shape(a, shape) for a in arrays if a is not None]
    x = (np.ascontiguousarray(np.stack(good).transpose(0, 3, 1, 2)) if good
         else np.empty((0, *shape), dtype=np.uint8))
    return x, labels[idx[keep]] if len(idx) else labels[:0], bad


class _BatchDataset(torch.utils.data.Dataset):
    """Item ``i`` = the whole ``i``-th index batch, decoded (so one worker call per step)."""

    def __init__(self, files: list[str], labels: np.ndarray, shape, index_batches):
        self.files, self.labels, self.shape = files, labels, shape
        self.index_batches = [np.asarray(b, dtype=np.int64) for b in index_batches]

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, i):
        x, y, bad = decode_batch(self.files, self.labels, self.index_batches[i], self.shape)
        return torch.from_numpy(x), torch.from_numpy(y), bad


class StreamingImageData:
    """One split read from disk on demand: ``labels`` int64 (N,), classes, ``shape`` (C, H, W)."""

    def __init__(self, files: list[Path], labels: np.ndarray, classes: list[str],
                 shape: tuple[int, int, int], root: Path | None = None):
        if len(files) != len(labels):
            raise ValueError(f"StreamingImageData: {len(files)} files but {len(labels)} labels")
        self.files = [str(p) for p in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.shape = tuple(int(v) for v in shape)
        self.root = root

    @classmethod
    def from_folder(cls, root: Path, classes: list[str] | None = None,
                    shape: tuple[int, int, int] | None = None, seed: int = 0):
        """List ``root/<class>/*``; ``shape`` defaults to the policies on a sample (see module)."""
        files, labels, names = list_split(root, classes)
        if shape is None:
            shape = _policy_shape(root, [str(p) for p in files], seed)
        return cls(files, labels, names, shape, root=root)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded split would take in memory (N * C * H * W)."""
        return len(self) * int(np.prod(self.shape))

    def subset(self, idx) -> StreamingImageData:
        return StreamingImageData([self.files[i] for i in idx], self.labels[idx], self.classes,
                                  self.shape, self.root)

    def read(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """Decode ``idx`` in this process -> (uint8 (B, C, H, W), int64 (B,)); warns on skips."""
        x, y, bad = decode_batch(self.files, self.labels, idx, self.shape)
        _warn_skipped(bad)
        return x, y

    def batches(self, index_batches, workers: int = 2, pin_memory: bool = False):
        """Yield (uint8 tensor (B, C, H, W), int64 tensor (B,)) per index batch, in order.

        Decoded by ``workers`` processes (0: in this process); unreadable files are dropped
        from their batch with a warning (raised here, in the calling process, naming them).
        """
        if workers < 0:
            raise UserError(f"--workers {workers}: expected 0 or more worker processes")
        ds = _BatchDataset(self.files, self.labels, self.shape, index_batches)
        loader = torch.utils.data.DataLoader(
            ds, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory,
            prefetch_factor=2 if workers else None)
        for x, y, bad in loader:
            _warn_skipped(bad)
            yield x, y


def _warn_skipped(bad) -> None:
    for p, e in bad:
        warnings.warn(f"skipped unreadable image {p} ({e}) while streaming", DataWarning,
                      stacklevel=3)


def _policy_shape(root: Path, files: list[str], seed: int) -> tuple[int, int, int]:
    """(C, H, W) from a seeded sample: 1 channel if all sampled are gray, the commonest size."""
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(files), min(POLICY_SAMPLE, len(files)), replace=False))
    arrays, _ = _decode_chunk([files[i] for i in pick])
    good = [a for a in arrays if a is not None]
    if not good:
        raise UserError(f"{root}: none of {len(pick)} sampled images could be read")
    channels = 3 if any(a.shape[2] == 3 for a in good) else 1
    h, w = Counter(a.shape[:2] for a in good).most_common(1)[0][0]
    return channels, h, w


def memory_budget() -> int:
    """Bytes of decoded images to hold in memory: ``CNNLAB_MEMORY_BUDGET_GB`` or 25% of RAM."""
    import os

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
