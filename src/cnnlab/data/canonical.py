"""Canonical datasets by name: ``--data mnist | fashion-mnist | cifar10 | cifar100``.

Each looks for its files in ``$CNNLAB_CACHE/datasets/<name>/`` (default
``~/.cache/cnnlab/datasets/<name>/``) and downloads the missing ones from the official
addresses, md5-checked (:mod:`cnnlab.data.download`). Offline, the error says which files to
put where and where they come from, so they can be copied in by hand.

- MNIST (LeCun et al. 1998): 60,000 + 10,000 28x28 digits in IDX format (:mod:`.idx`), from
  the mirror torchvision uses, the original site being unreliable.
- Fashion-MNIST (Xiao et al. 2017): the same layout, 10 kinds of clothing.
- CIFAR-10 / CIFAR-100 (Krizhevsky 2009): the *binary* archives (:mod:`.cifar`), extracted
  safely (``tarfile`` ``filter="data"``); CIFAR-100 uses the 100 fine labels.

IDX files may sit gunzipped (``train-images-idx3-ubyte``) or not (``...ubyte.gz``); either
the CIFAR archive or its extracted folder will do. Decoded arrays are cached as ``.npz``
under ``$CNNLAB_CACHE/arrays/``, keyed by the files' names, sizes and mtimes (the helpers of
:mod:`.folder`), so a changed file is decoded again.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path


from cnnlab.data import DataSplits, ImageData
from cnnlab.data import cifar
from cnnlab.data.archive import extract_verified
from cnnlab.data.download import Resource, fetch
from cnnlab.data.progress import resolve_mode
from cnnlab.data.folder import folder_key, read_cache, write_cache
from cnnlab.data.idx import read_idx_pair
from cnnlab.errors import UserError
from cnnlab.utils import cache_dir

IDX_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@dataclass(frozen=True)
class CanonicalDataset:
    """Where a canonical dataset comes from and what it holds."""

    name: str
    kind: str  # "idx" | "cifar10" | "cifar100"
    url: str  # IDX: base URL of the files; CIFAR: the archive's URL
    md5: dict  # file name -> md5 as published
    classes: tuple = ()  # IDX only; CIFAR reads its names from the archive
    folder: str = ""  # CIFAR: the folder inside the archive


DATASETS = {
    "mnist": CanonicalDataset(
        "mnist", "idx", "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
         "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
         "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
         "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"},
        classes=tuple(str(i) for i in range(10))),
    "fashion-mnist": CanonicalDataset(
        "fashion-mnist", "idx", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
         "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
         "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
         "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"},
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")),
    "cifar10": CanonicalDataset(
        "cifar10", "cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
        {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        folder=cifar.CIFAR10_FOLDER),
    "cifar100": CanonicalDataset(
        "cifar100", "cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
        {"cifar-100-binary.tar.gz": "03b5dce01913d631647c71ecec9e9cb8"},
        folder=cifar.CIFAR100_FOLDER),
}


def dataset_dir(name: str) -> Path:
    """``$CNNLAB_CACHE/datasets/<name>/``: where the raw files of ``name`` live."""
    return cache_dir() / "datasets" / name


def _cached(key: str, decode) -> ImageData:
    """The cached arrays under ``key``, or ``decode()`` written to the cache."""
    if (data := read_cache(key)) is not None:
        return data
    return write_cache(key, decode())


# -- IDX: MNIST, Fashion-MNIST -------------------------------------------------------------

def _idx_paths(ds: CanonicalDataset, root: Path, progress: str) -> dict[str, Path]:
    """File name -> path on disk (the gunzipped file if present), downloading what is missing."""
    paths, missing = {}, []
    for fname, md5 in ds.md5.items():
        raw, gz = root / fname.removesuffix(".gz"), root / fname
        paths[fname] = raw if raw.exists() else gz
        if not paths[fname].exists():
            missing.append(Resource(ds.url + fname, gz, md5))
    if missing:
        fetch(missing, f"--data {ds.name}", progress != "none",
              hint=" (gunzipped copies without .gz also do)")
    return paths


def _load_idx(ds: CanonicalDataset, root: Path, progress: str) -> DataSplits:
    paths = _idx_paths(ds, root, progress)
    splits = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        files = [paths[images_name], paths[labels_name]]
        key = f"{ds.name}-{split}-{folder_key(root, files)}"
        splits[split] = _cached(key, lambda f=files: ImageData(
            *read_idx_pair(f[0], f[1], len(ds.classes)), list(ds.classes)))
    return DataSplits(ds.name, splits["train"], splits["test"], source=str(root))


# -- CIFAR binary ----------------------------------------------------------------------------

def _extract_cifar(archive: Path, root: Path, folder: str, progress="auto") -> None:
    """Extract ``folder`` from ``archive`` into ``root``: verified whole, or not at all."""
    extract_verified(archive, root / folder, progress=progress, member=folder)


def _cifar_folder(ds: CanonicalDataset, root: Path, progress: str) -> Path:
    """The extracted folder, from the archive (downloaded if missing) when not there yet."""
    folder = root / ds.folder
    need = cifar.cifar_files(ds.folder)
    if folder.is_dir():
        if missing := [f for f in need if not (folder / f).exists()]:
            raise UserError(f"--data {ds.name}: {folder} lacks {', '.join(missing)} (delete the "
                            f"folder to extract the archive again)")
        return folder
    (archive_name, md5), = ds.md5.items()
    archive = root / archive_name
    if not archive.exists():
        fetch([Resource(ds.url, archive, md5)], f"--data {ds.name}", progress != "none",
              hint=f" (or its extracted {ds.folder}/ folder in {root})")
    _extract_cifar(archive, root, ds.folder, progress)
    return folder


def _load_cifar(ds: CanonicalDataset, root: Path, progress: str) -> DataSplits:
    folder = _cifar_folder(ds, root, progress)
    read = cifar.read_cifar10 if ds.kind == "cifar10" else cifar.read_cifar100
    files = [folder / f for f in cifar.cifar_files(ds.folder)]
    splits = {}
    for split in ("train", "test"):
        key = f"{ds.name}-{split}-{folder_key(folder, files)}"
        splits[split] = _cached(key, lambda s=split: ImageData(*read(folder, s)))
    return DataSplits(ds.name, splits["train"], splits["test"], source=str(folder))


def load_canonical(name: str, progress="auto", root: Path | str | None = None) -> DataSplits:
    """Load canonical dataset ``name`` (a key of :data:`DATASETS`), downloading if needed.

    ``root`` overrides the folder holding its files (default :func:`dataset_dir`);
    ``progress``: "auto"/True, "bar", "lines" or "none"/False (:mod:`cnnlab.data.progress`).
    """
    progress = resolve_mode(progress)
    if name not in DATASETS:
        raise UserError(f"--data {name}: unknown dataset (expected one of {', '.join(DATASETS)})")
    ds = DATASETS[name]
    root = Path(root).expanduser() if root is not None else dataset_dir(name)
    created = _make_dirs(root)
    try:
        return (_load_idx if ds.kind == "idx" else _load_cifar)(ds, root, progress)
    except BaseException:
        _remove_empty(created)  # a failed download leaves no empty `datasets/<name>` entry
        raise


def _make_dirs(path: Path) -> list[Path]:
    """``mkdir -p path``; the folders it created, deepest first."""
    created = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders we created, deepest first, while they are still empty (a part
    file kept for resuming keeps its folder)."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return


NAMED_LOADERS = {name: partial(load_canonical, name) for name in DATASETS}
