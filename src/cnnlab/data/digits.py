"""scikit-learn's digits (1,797 real 8x8 handwritten digits, values 0..16), brought to
LeNet-5's 32x32 input.

Each 8x8 image is scaled to 0..255 and upsampled 4x with bilinear interpolation to 32x32
(PIL's resize, the same one ``cnnlab predict`` uses on user images), so the digit fills the
field as MNIST digits do. The split is a fixed stratified 80/20 split (seed 0): 1,437 train
and 360 test images, the same for every run so results compare across seeds and models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data import DataSplits, ImageData, stratified_split

SIZE = 32  # LeNet-5's input
SPLIT_SEED = 0  # fixed: the split never changes with the training seed


def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images float (1797, 8, 8) in 0..16, labels (1797,)) as ``load_digits`` returns them.

    Read straight from the CSV that scikit-learn ships (``sklearn/datasets/data/
    digits.csv.gz``: 64 pixel columns and the label, the file ``load_digits`` parses), found
    without importing sklearn: ``import sklearn.datasets`` pulls in scipy.stats and takes
    about 1 s, longer than training LeNet-5 on these digits for a few epochs.
    """
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    csv = (Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
           if spec is not None and spec.origin else None)
    if csv is None or not csv.is_file():  # an unusual install: let sklearn find its data
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.images, d.target
    with gzip.open(csv, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 1, 32, 32), labels int64 (1797,))."""
    images, target = _raw_digits()
    raw = np.clip(np.rint(images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    up = np.stack([np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.BILINEAR))
                   for im in raw])
    return up[:, None], target.astype(np.int64)


def load_digits_splits() -> DataSplits:
    images, labels = digits_arrays()
    classes = [str(i) for i in range(10)]
    tr, te = stratified_split(labels, 0.2, seed=SPLIT_SEED)
    return DataSplits(
        name="digits",
        train=ImageData(images[tr], labels[tr], classes),
        test=ImageData(images[te], labels[te], classes),
        source="sklearn.datasets.load_digits",
        notes=["8x8 digits (0..16) scaled to 0..255 and upsampled 4x (bilinear) to 32x32",
               "fixed stratified 80/20 split (seed 0): 1437 train / 360 test"],
    )
