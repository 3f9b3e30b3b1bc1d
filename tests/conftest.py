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


def shared_dataset(name: str) -> Path:
    p = SHARED / "datasets" / name
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is beside the repo only on the team's machines)")
    return p


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    """A train/test image folder of 3 classes of 12x12 gray images (bright band per class)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tiny"
    for split, n in (("train", 8), ("test", 3)):
        for c, name in enumerate(["a", "b", "c"]):
            for i in range(n):
                a = rng.integers(0, 40, (12, 12), dtype=np.uint8)
                a[4 * c:4 * c + 4] = 220
                write_png(root / split / name / f"{i}.png", a)
    return root
