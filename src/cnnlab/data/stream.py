"""Image folders too big to hold in memory: decoded batch by batch in worker processes.

A :class:`StreamingImageData` has the surface the trainer needs from
:class:`~cnnlab.data.ImageData` (``labels`` int64 ``(N,)``, ``classes``, ``shape`` ``(C, H, W)``,
``len``) but keeps only the file list. :meth:`StreamingImageData.batches` turns index batches
(the trainer's per-step slices of its permutation) into uint8 ``(B, C, H, W)`` tensors, one
whole batch per DataLoader item, decoded by ``workers`` processes ahead of the training step.

Policies (the same as :mod:`cnnlab.data.folder`'s, decided from the headers of a seeded
sample of up to 64 files, :func:`cnnlab.data.folder.plan_read`, since the images are never
all decoded):
- channels: 1 if every sampled image is grayscale, else 3; every image is converted to that
  (gray repeated to RGB, colour converted to gray with PIL's ``"L"``);
- size: one small size in the sample is kept; otherwise (photos, sizes that differ) the
  requested or model's native size; every image is read straight to it by
  :func:`cnnlab.data.decode.read_image` (reduced-scale JPEG decoding, EXIF orientation);
- a corrupt or unreadable file found while streaming is skipped with a warning naming it
  (that batch gets smaller): a long run never crashes on one bad file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.decode import ImageReadError, probe, read_image
from cnnlab.data.files import (DataWarning, SizeRequest, list_split,  # noqa: F401
                               memory_budget, plan_read)  # memory_budget re-exported
from cnnlab.errors import UserError

POLICY_SAMPLE = 64  # headers read to choose channels and size
_GRAY = ("1", "L", "I;16", "I;16B", "I;16L", "I", "F")


def decode_batch(files: list[str], labels: np.ndarray, idx, shape: tuple[int, int, int],
                 policy: str = "bilinear"):
    """Decode ``files[idx]`` -> (uint8 (B, C, H, W), int64 (B,), [(path, why)] skipped), each
    file read straight to ``shape`` by :func:`cnnlab.data.decode.read_image`."""
    idx = np.asarray(idx, dtype=np.int64)
    c, h, w = shape
    good, keep, bad = [], [], []
    for i in idx:
        try:
            good.append(read_image(files[i], c, (h, w), policy))
            keep.append(True)
        except ImageReadError as e:
            keep.append(False)
            bad.append((files[i], e.reason))
    x = np.stack(good) if good else np.empty((0, *shape), dtype=np.uint8)
    return x, labels[idx[np.array(keep, dtype=bool)]] if len(idx) else labels[:0], bad


class _BatchDataset(torch.utils.data.Dataset):
    """Item ``i`` = the whole ``i``-th index batch, decoded (so one worker call per step)."""

    def __init__(self, files: list[str], labels: np.ndarray, shape, policy, index_batches):
        self.files, self.labels, self.shape, self.policy = files, labels, shape, policy
        self.index_batches = [np.asarray(b, dtype=np.int64) for b in index_batches]

    def __len__(self) -> int:
        return len(self.index_batches)

    def __getitem__(self, i):
        x, y, bad = decode_batch(self.files, self.labels, self.index_batches[i], self.shape,
                                 self.policy)
        return torch.from_numpy(x), torch.from_numpy(y), bad


class StreamingImageData:
    """One split read from disk on demand: ``labels`` int64 (N,), classes, ``shape`` (C, H, W),
    every file brought to ``shape`` by the resize ``policy``."""

    def __init__(self, files: list[Path], labels: np.ndarray, classes: list[str],
                 shape: tuple[int, int, int], root: Path | None = None,
                 policy: str = "bilinear"):
        if len(files) != len(labels):
            raise ValueError(f"StreamingImageData: {len(files)} files but {len(labels)} labels")
        self.files = [str(p) for p in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.classes = list(classes)
        self.shape = tuple(int(v) for v in shape)
        self.root = root
        self.policy = policy

    @classmethod
    def from_folder(cls, root: Path, classes: list[str] | None = None,
                    shape: tuple[int, int, int] | None = None, seed: int = 0,
                    req: SizeRequest = SizeRequest()):
        """List ``root/<class>/*``; ``shape`` defaults to the policies on a sample (see module)."""
        files, labels, names = list_split(root, classes)
        read_at = None
        if shape is None:
            shape, read_at = _policy_shape(root, files, seed, req)
        split = cls(files, labels, names, shape, root=root, policy=req.policy)
        split.read_at = read_at  # (h, w) photos are read at; None: as stored
        return split

    def __len__(self) -> int:
        return len(self.files)

    @property
    def nbytes(self) -> int:
        """Bytes the decoded split would take in memory (N * C * H * W)."""
        return len(self) * int(np.prod(self.shape))

    def subset(self, idx) -> StreamingImageData:
        return StreamingImageData([self.files[i] for i in idx], self.labels[idx], self.classes,
                                  self.shape, self.root, self.policy)

    def read(self, idx) -> tuple[np.ndarray, np.ndarray]:
        """Decode ``idx`` in this process -> (uint8 (B, C, H, W), int64 (B,)); warns on skips."""
        x, y, bad = decode_batch(self.files, self.labels, idx, self.shape, self.policy)
        _warn_skipped(bad)
        return x, y

    def batches(self, index_batches, workers: int = 2, pin_memory: bool = False):
        """Yield (uint8 tensor (B, C, H, W), int64 tensor (B,)) per index batch, in order.

        Decoded by ``workers`` processes (0: in this process); unreadable files are dropped
        from their batch with a warning (raised here, in the calling process, naming them).
        """
        if workers < 0:
            raise UserError(f"--workers {workers}: expected 0 or more worker processes")
        ds = _BatchDataset(self.files, self.labels, self.shape, self.policy, index_batches)
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


def _policy_shape(root: Path, files: list, seed: int, req: SizeRequest):
    """((C, H, W), the plan's target) from the headers of a seeded sample: 1 channel if all
    sampled are gray; the size :func:`cnnlab.data.files.plan_read` chooses (one small size
    kept, else the requested or native size)."""
    plan = plan_read(files, req.size, req.default, req.policy, req.model, seed)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(files), min(POLICY_SAMPLE, len(files)), replace=False))
    heads = []
    for i in pick:
        try:
            heads.append(probe(files[i]))
        except Exception:  # noqa: BLE001 - unreadable files are skipped when streamed
            continue
    if not heads:
        raise UserError(f"{root}: none of {len(pick)} sampled images could be read")
    channels = 1 if all(m in _GRAY for _, _, m in heads) else 3
    h, w = plan.target or heads[0][:2]
    return (channels, h, w), plan.target
