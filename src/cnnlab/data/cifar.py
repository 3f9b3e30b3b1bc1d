"""CIFAR-10 and CIFAR-100, *binary* versions: raw fixed-length records, no pickle.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009);
https://www.cs.toronto.edu/~kriz/cifar.html ("Binary version"):
- CIFAR-10 (``cifar-10-batches-bin/``): ``data_batch_1..5.bin`` (train), ``test_batch.bin``,
  each 10,000 records of 1 label byte + 3,072 pixel bytes; class names in
  ``batches.meta.txt``, one per line.
- CIFAR-100 (``cifar-100-binary/``): ``train.bin`` (50,000 records), ``test.bin`` (10,000),
  records of 1 coarse label byte + 1 fine label byte + 3,072 pixel bytes; names in
  ``coarse_label_names.txt`` and ``fine_label_names.txt``.

The 3,072 pixel bytes are the 1,024 red values, then green, then blue, each 32x32 row-major:
exactly (3, 32, 32) in C order, so a record reshapes to NCHW without a transpose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

IMAGE_SHAPE = (3, 32, 32)
IMAGE_BYTES = 3 * 32 * 32  # 3,072

CIFAR10_FOLDER = "cifar-10-batches-bin"
CIFAR10_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
CIFAR10_META = "batches.meta.txt"
CIFAR100_FOLDER = "cifar-100-binary"
CIFAR100_FILES = {"train": ["train.bin"], "test": ["test.bin"]}
CIFAR100_META = {"fine": "fine_label_names.txt", "coarse": "coarse_label_names.txt"}


def read_cifar_records(path: Path | str, label_bytes: int, label_index: int,
                       num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch file -> (uint8 (N, 3, 32, 32), int64 (N,)).

    Each record is ``label_bytes`` label bytes then 3,072 pixel bytes; the label used is byte
    ``label_index`` of the record (CIFAR-10: 1, 0; CIFAR-100 fine: 2, 1; coarse: 2, 0).
    """
    path = Path(path)
    record = label_bytes + IMAGE_BYTES
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from e
    if raw.size == 0 or raw.size % record:
        raise UserError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte "
                        f"records ({label_bytes} label byte(s) + {IMAGE_BYTES} pixel bytes); "
                        f"truncated, or not a CIFAR binary file")
    rows = raw.reshape(-1, record)
    labels = rows[:, label_index].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if len(bad):
        raise UserError(f"{path}: label {int(labels[bad[0]])} in record {int(bad[0])} out of "
                        f"range 0..{num_classes - 1} ({len(bad)} bad records)")
    images = np.ascontiguousarray(rows[:, label_bytes:]).reshape(-1, *IMAGE_SHAPE)
    return images, labels


def read_label_names(path: Path | str, expected: int) -> list[str]:
    """Class names, one per non-empty line; exactly ``expected`` of them."""
    path = Path(path)
    try:
        names = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    except OSError as e:
        raise UserError(f"{path}: cannot read the class names ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a text file of class names ({e})") from e
    if len(names) != expected:
        raise UserError(f"{path}: expected {expected} class names, one per line; found "
                        f"{len(names)}")
    return names


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def read_cifar10(folder: Path | str, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``cifar-10-batches-bin/`` and ``"train"``/``"test"`` -> (images, labels, class names)."""
    folder = Path(folder)
    classes = read_label_names(folder / CIFAR10_META, 10)
    parts = [read_cifar_records(folder / f, 1, 0, 10) for f in CIFAR10_FILES[split]]
    return (*_concat(parts), classes)


def read_cifar100(folder: Path | str, split: str,
                  label: str = "fine") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``cifar-100-binary/`` and a split -> (images, labels, names); ``label``: fine or coarse."""
    if label not in CIFAR100_META:
        raise ValueError(f"read_cifar100: label must be 'fine' or 'coarse', got {label!r}")
    folder = Path(folder)
    n, index = (100, 1) if label == "fine" else (20, 0)
    classes = read_label_names(folder / CIFAR100_META[label], n)
    images, labels = read_cifar_records(folder / CIFAR100_FILES[split][0], 2, index, n)
    return images, labels, classes


def cifar_files(folder_name: str) -> list[str]:
    """Every file the loader needs inside ``folder_name`` (for checks and error messages)."""
    if folder_name == CIFAR10_FOLDER:
        return [*CIFAR10_FILES["train"], *CIFAR10_FILES["test"], CIFAR10_META]
    return [*CIFAR100_FILES["train"], *CIFAR100_FILES["test"], CIFAR100_META["fine"]]
