import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache so tests never depend on a user's ~/.cache."""
    if "CNNLAB_TEST_KEEP_CACHE" not in os.environ:
        monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def one_torch_thread():
    """Small tensors: one torch thread avoids OpenMP spin-waits that dominate on a busy 2-core
    machine (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def shared_dataset(name: str) -> Path:
    p = SHARED / "datasets" / name
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is beside the repo only on the team's machines)")
    return p


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def make_image_folder(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """``root/{train,test}/{a,b,c}/NN.png``: 12x12 gray noise with a bright band whose row
    depends on the class, so a small model can learn it."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        for c, name in enumerate(["a", "b", "c"]):
            for i in range(n):
                a = rng.integers(0, 60, (12, 12), dtype=np.uint8)
                a[4 * c:4 * c + 4] = 200 + i
                write_png(root / split / name / f"{i:02d}.png", a)
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """3 classes x (8 train, 3 test) images (see make_image_folder)."""
    return make_image_folder(tmp_path / "tiny", 8, 3)
