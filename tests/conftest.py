import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHROMIUM = Path("/usr/bin/chromium")  # where test_serve_browser.py looks for the browser

# The cache redirect is in force from import on, before any fixture, test module or
# collection-time code builds data: `make test` never writes to the user's ~/.cache/cnnlab.
# CNNLAB_TEST_KEEP_CACHE=1 keeps the caller's $CNNLAB_CACHE (to reuse downloaded datasets).
TEST_CACHE = Path(tempfile.mkdtemp(prefix="cnnlab-test-cache-"))
if "CNNLAB_TEST_KEEP_CACHE" not in os.environ:
    os.environ["CNNLAB_CACHE"] = str(TEST_CACHE)


def pytest_unconfigure(config):
    shutil.rmtree(TEST_CACHE, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch):
    """Every test starts with the session's temporary cache, even after one that changed it."""
    if "CNNLAB_TEST_KEEP_CACHE" not in os.environ:
        monkeypatch.setenv("CNNLAB_CACHE", str(TEST_CACHE))


# ------------------------------------------------------------------ browser tests, counted
_BROWSER_TESTS: set[str] = set()


def pytest_collection_finish(session):
    """A browser test is a selected test that uses a ``browser`` fixture (the explorer's in
    test_serve_browser.py, the docs site's in test_docs.py)."""
    _BROWSER_TESTS.update(i.nodeid for i in session.items
                          if "browser" in getattr(i, "fixturenames", ()))


def _browser_counts(stats: dict) -> tuple[int, int]:
    ran = {r.nodeid for k in ("passed", "failed") for r in stats.get(k, [])
           if r.nodeid in _BROWSER_TESTS and r.when == "call"}
    skipped = {r.nodeid for r in stats.get("skipped", []) if r.nodeid in _BROWSER_TESTS}
    return len(ran), len(skipped - ran)


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def pytest_sessionfinish(session, exitstatus):
    """Under CI=true a browser test that could not run (no Chromium) fails the run."""
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or not _ci() or not _BROWSER_TESTS:
        return
    if _browser_counts(tr.stats)[1] and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _BROWSER_TESTS:
        return
    ran, skipped = _browser_counts(terminalreporter.stats)
    line = f"browser tests: {ran} ran, {skipped} skipped"
    if skipped and not CHROMIUM.exists():
        line += f" ({CHROMIUM} is missing: apt-get install chromium"
        line += "; CI=true, so this run fails)" if _ci() else ")"
    terminalreporter.write_line(line, red=bool(skipped and _ci()), yellow=bool(skipped))


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
