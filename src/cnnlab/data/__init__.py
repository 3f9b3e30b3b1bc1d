"""Datasets as uint8 arrays.

Every source ends up as an :class:`ImageData`: ``images`` uint8 ``(N, C, H, W)`` and
``labels`` int64 ``(N,)`` with a list of class names. Small datasets are held whole (on the
GPU if there is one) so the training loop never runs per-image Python; image folders too big
for memory stream from disk instead (:mod:`cnnlab.data.stream`).

Sources (``load_data(spec)``):
- ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``: the canonical files
  (IDX, CIFAR binary), downloaded when missing (see :mod:`cnnlab.data.canonical`).
- ``"digits"``: scikit-learn's 1,797 8x8 digits, shipped inside scikit-learn, upscaled to
  LeNet's 32x32 (see :mod:`cnnlab.data.digits`); a fixed stratified 80/20 split.
- a path to an image-folder tree (``train/<class>/*``, ``test/<class>/*``; or one tree of
  ``<class>/*`` with ``val_split``) or a ``.tar.gz`` of one (see :mod:`cnnlab.data.folder`);
  with ``in_memory="no"`` (or "auto" over the memory budget) its splits are
  :class:`~cnnlab.data.stream.StreamingImageData`, decoded batch by batch from disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cnnlab.errors import UserError


@dataclass
class ImageData:
    """One split: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,), class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __post_init__(self):
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"ImageData.images must be uint8 (N, C, H, W), got "
                             f"{self.images.dtype} {self.images.shape}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"ImageData: {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])


@dataclass
class DataSplits:
    """A dataset's train and test splits, with where it came from."""

    name: str  # short name used in run directory names: "digits", "mnist", ...
    train: ImageData
    test: ImageData
    source: str = ""  # path or built-in name
    notes: list[str] = field(default_factory=list)  # what was done to the data (resize, ...)
    read_size: tuple[int, int] | None = None  # (h, w) photos were read at, None: as stored

    @property
    def classes(self) -> list[str]:
        return self.train.classes


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int = 0):
    """Indices (train_idx, test_idx) of a stratified split, the same for the same seed.

    scikit-learn's ``train_test_split`` (stratified), remembered in the cache by the labels,
    fraction and seed: importing ``sklearn.model_selection`` takes about 1 s, a third of a
    whole ``cnnlab train`` on the built-in digits.
    """
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"split fraction {test_fraction}: expected a fraction between 0 and 1")
    import hashlib

    from cnnlab.utils import cache_dir, read_npz, write_npz

    labels = np.ascontiguousarray(labels)
    key = hashlib.sha256(labels.tobytes() + f"|{labels.dtype}|{test_fraction!r}|{seed}".encode())
    cache = cache_dir() / "splits" / f"{key.hexdigest()[:16]}.npz"
    if (z := read_npz(cache)) is not None and {"train", "test"} <= z.keys():
        return z["train"], z["test"]
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    tr, te = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    tr, te = np.sort(tr), np.sort(te)
    try:
        write_npz(cache, train=tr, test=te)
    except OSError:  # an unwritable cache only costs the import next time
        pass
    return tr, te


IN_MEMORY = ("auto", "yes", "no")


def load_data(spec: str = "digits", val_split: float | None = None, seed: int = 0,
              progress="auto", in_memory: str = "yes", size=None, resize: str = "bilinear",
              default_size=None, model: str = "") -> DataSplits:
    """Load a dataset by name or path (see the module docstring).

    Sizes (image folders and .tar.gz only): a folder of same-size small images is read as
    stored. Photos and folders whose sizes differ are read at ``size`` (h, w) when given,
    else at ``default_size`` (the model's native size; ``model`` names it in the line that
    says so), each image decoded straight to it by the ``resize`` policy ("bilinear",
    "pad" or "crop"); with neither, a UserError asks for a size. Whatever the folder holds,
    train and test come back at one size.

    ``in_memory`` (image folders and .tar.gz only; built-in and canonical datasets are always
    held in memory): "yes" decodes every image into one uint8 array; "no" streams them from
    disk (:class:`cnnlab.data.stream.StreamingImageData`); "auto" streams when the decoded
    training set (file count x a sampled image's C*H*W bytes) would exceed
    ``CNNLAB_MEMORY_BUDGET_GB`` (default: 25% of physical RAM).

    ``progress`` (extracting, decoding): "auto" or True (a bar on a terminal, plain lines
    otherwise), "bar", "lines", or "none" / False (:mod:`cnnlab.data.progress`).
    """
    from cnnlab.data import digits, folder
    from cnnlab.data.progress import resolve_mode

    progress = resolve_mode(progress)
    if in_memory not in IN_MEMORY:
        raise UserError(f"--in-memory {in_memory}: expected auto, yes or no")

    if spec == "digits":
        return digits.load_digits_splits()
    loaders = _named_loaders()
    if spec in loaders:
        return loaders[spec](progress=progress)
    from cnnlab.data.files import SizeRequest

    pair = lambda v: None if v is None else tuple(int(x) for x in v)  # noqa: E731
    req = SizeRequest(pair(size), pair(default_size), resize, model)
    return folder.load_folder_splits(spec, val_split=val_split, seed=seed, progress=progress,
                                     in_memory=in_memory, req=req)


def _named_loaders() -> dict:
    """Canonical datasets by name (MNIST IDX, CIFAR binary, ...), where available."""
    try:
        from cnnlab.data.canonical import NAMED_LOADERS
    except ImportError:
        return {}
    return NAMED_LOADERS
