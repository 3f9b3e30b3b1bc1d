"""In-memory data: NumPy arrays (or a dataset object holding them) as :class:`DataSplits`.

What ``cnnlab.train(data=...)`` takes beside a spec string, as Keras's ``fit(x, y)`` does:

- a :class:`~cnnlab.data.DataSplits` (used as it is);
- ``(x_train, y_train)``: a test split of ``test_split`` (default 0.2) is held out,
  stratified by class and fixed by the seed, as for a single ``<class>/*`` folder;
- ``((x_train, y_train), (x_test, y_test))``;
- an object with ``train`` and ``test`` attributes, each with ``images`` and ``labels``
  (``classes`` optional), or one with ``images`` and ``labels`` (train only, as above).

Images are uint8 ``(N, C, H, W)`` (NumPy arrays, or anything ``np.asarray`` reads: CPU torch
tensors too); labels integers ``0..K-1`` ``(N,)``. Class names: ``classes`` (one per label
value), else the dataset object's, else ``"0"``, ``"1"``, ...

A run directory does not keep the arrays: :func:`fingerprint` (shapes and a hash of a sample)
goes into every checkpoint, so a resume can check it is given the same arrays again.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cnnlab.data import DataSplits, ImageData, stratified_split
from cnnlab.errors import UserError

NAME = "<in-memory>"  # the run's ``data`` in its config: no spec can reload it
DEFAULT_TEST_SPLIT = 0.2  # held out when only training arrays are given
SAMPLE = 256  # images hashed by fingerprint (evenly spaced): milliseconds for any N


def is_spec(data) -> bool:
    """Whether ``data`` is a dataset spec (a name or a path) rather than data in memory."""
    import os

    return isinstance(data, (str, os.PathLike))


def as_splits(data, classes=None, test_split: float | None = None, seed: int = 0):
    """``(DataSplits, test_split used or None)`` from in-memory ``data`` (module docstring).

    Raises UserError naming ``data`` (or ``classes``) with what was received and what is
    expected: images not uint8 (N, C, H, W), labels of another length or out of range.
    """
    if isinstance(data, DataSplits):
        return data, None
    train, test = _parts(data)
    xtr, ytr = _arrays(train, "data (training)")
    names = _class_names(classes, getattr(data, "classes", None) or getattr(train, "classes", None),
                         ytr, test)
    if test is None:
        frac = DEFAULT_TEST_SPLIT if test_split is None else test_split
        tr, te = stratified_split(ytr, frac, seed=seed)
        splits = DataSplits(NAME, ImageData(xtr[tr], ytr[tr], names),
                            ImageData(xtr[te], ytr[te], names), source=NAME,
                            notes=[f"test: {len(te)} of the {len(ytr)} arrays held out "
                                   f"(test_split {frac:g})"])
        return splits, frac
    xte, yte = _arrays(test, "data (test)")
    if xte.shape[1:] != xtr.shape[1:]:
        raise UserError(f"data: test images are {xte.shape[1:]} (C, H, W), training images "
                        f"{xtr.shape[1:]}: expected the same shape")
    return DataSplits(NAME, ImageData(xtr, ytr, names), ImageData(xte, yte, names),
                      source=NAME), None


def _parts(data):
    """(train, test or None), each an (images, labels) pair or an object with that surface."""
    if hasattr(data, "train") and hasattr(data, "test"):
        return data.train, data.test
    if hasattr(data, "images") and hasattr(data, "labels"):
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 2:
        a, b = data
        if _is_pair(a) and _is_pair(b):
            return a, b
        return (a, b), None
    raise UserError(f"data: found {type(data).__name__}, expected a dataset name or path, "
                    f"a DataSplits, (x_train, y_train), ((x_train, y_train), (x_test, y_test)) "
                    f"of uint8 (N, C, H, W) images and integer labels, or an object with "
                    f"train/test (or images/labels) attributes")


def _is_pair(v) -> bool:
    return (isinstance(v, (tuple, list)) and len(v) == 2) or hasattr(v, "images")


def _arrays(part, what: str):
    x, y = (part.images, part.labels) if hasattr(part, "images") else part
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype != np.uint8 or x.ndim != 4:
        hint = ""
        if x.ndim == 3:
            hint = "; grey images (N, H, W) need a channel axis: x[:, None]"
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            hint = "; channels last (N, H, W, C)? use x.transpose(0, 3, 1, 2)"
        elif x.dtype.kind == "f":
            hint = "; floats in 0..1? use (x * 255).round().astype(np.uint8)"
        raise UserError(f"{what}: images are {x.dtype} {x.shape}, expected uint8 (N, C, H, W)"
                        f"{hint}")
    if y.ndim != 1 or len(y) != len(x) or (len(y) and y.dtype.kind not in "iu"):
        raise UserError(f"{what}: labels are {y.dtype} {y.shape}, expected {len(x)} integer "
                        f"labels (N,) for {len(x)} images")
    if len(y) and y.min() < 0:
        raise UserError(f"{what}: a label is {int(y.min())}, expected class indices 0..K-1")
    return np.ascontiguousarray(x), y.astype(np.int64)


def _class_names(classes, found, ytr, test) -> list[str]:
    k = int(ytr.max()) + 1 if len(ytr) else 0
    if test is not None:
        yte = np.asarray(test.labels if hasattr(test, "labels") else test[1])
        if len(yte):
            k = max(k, int(yte.max()) + 1)
    names = classes if classes is not None else found
    if names is None:
        return [str(i) for i in range(k)]
    names = [str(c) for c in names]
    if len(names) < k:
        raise UserError(f"classes: {len(names)} names for labels up to {k - 1}, expected one "
                        f"name per class ({k} or more)")
    return names


def fingerprint(splits: DataSplits) -> dict:
    """Shapes and a SHA-256 of evenly spaced sample images and of every label, per split:
    what a resume checks against the arrays it is given (a run directory keeps no copy)."""
    out = {}
    for key, split in (("train", splits.train), ("test", splits.test)):
        n = len(split)
        idx = np.unique(np.linspace(0, n - 1, min(n, SAMPLE)).astype(np.int64)) if n else []
        h = hashlib.sha256(np.ascontiguousarray(split.images[idx]).tobytes())
        h.update(np.ascontiguousarray(split.labels).astype(np.int64).tobytes())
        out[key] = {"shape": list(split.images.shape), "sha256": h.hexdigest()[:16]}
    return out
