"""scikit-learn's digits (1,797 real 8x8 handwritten digits, values 0..16), brought to
LeNet-5's 32x32 input.

Each 8x8 image is scaled to 0..255 and upsampled 4x with bilinear interpolation to 32x32
(PIL's resize, the same one ``cnnlab predict`` uses on user images), so the digit fills the
field as MNIST digits do. The split is a fixed stratified 80/20 split (seed 0): 1,437 train
and 360 test images, the same for every run so results compare across seeds and models.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnnlab.data import DataSplits, ImageData, stratified_split

SIZE = 32  # LeNet-5's input
SPLIT_SEED = 0  # fixed: the split never changes with the training seed


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 1, 32, 32), labels int64 (1797,))."""
    from sklearn.datasets import load_digits

    d = load_digits()
    raw = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # (N, 8, 8)
    up = np.stack([np.asarray(Image.fromarray(im).resize((SIZE, SIZE), Image.BILINEAR))
                   for im in raw])
    return up[:, None], d.target.astype(np.int64)


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
