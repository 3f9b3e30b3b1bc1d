"""The test session's own promises: the cache redirect is in force at collection time, and
the browser tests are counted (conftest.py)."""

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from cnnlab.utils import cache_dir

# Evaluated while pytest collects this module, before any fixture has run.
CACHE_AT_COLLECTION = cache_dir()


def test_cache_is_redirected_before_any_fixture():
    if "CNNLAB_TEST_KEEP_CACHE" in os.environ:
        return
    tmp = Path(tempfile.gettempdir()).resolve()
    assert CACHE_AT_COLLECTION.resolve().is_relative_to(tmp), CACHE_AT_COLLECTION
    assert not CACHE_AT_COLLECTION.resolve().is_relative_to(Path.home() / ".cache")


def _pytest(tmp_path, env_ci: str, chromium_exists: bool):
    """A throwaway test session with this conftest and one fake browser test."""
    conftest = (Path(__file__).parent / "conftest.py").read_text()
    if not chromium_exists:
        conftest = conftest.replace('Path("/usr/bin/chromium")', 'Path("/nonexistent/chromium")')
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_b.py").write_text(textwrap.dedent("""
        import pytest
        from conftest import CHROMIUM

        @pytest.fixture
        def browser():
            if not CHROMIUM.exists():
                pytest.skip("no chromium")
            return object()

        def test_page(browser):
            pass

        def test_other():
            pass
        """))
    env = {**os.environ, "CI": env_ci}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)


def test_browser_tests_are_counted_and_fail_under_ci(tmp_path):
    (tmp_path / "a").mkdir()
    r = _pytest(tmp_path / "a", "", chromium_exists=False)
    assert r.returncode == 0, r.stdout[-1500:]
    assert "browser tests: 0 ran, 1 skipped" in r.stdout
    (tmp_path / "b").mkdir()
    r = _pytest(tmp_path / "b", "true", chromium_exists=False)
    assert r.returncode == 1, r.stdout[-1500:]
    assert "browser tests: 0 ran, 1 skipped" in r.stdout and "CI=true" in r.stdout
    (tmp_path / "c").mkdir()
    r = _pytest(tmp_path / "c", "true", chromium_exists=True)
    if Path("/usr/bin/chromium").exists():
        assert r.returncode == 0 and "browser tests: 1 ran, 0 skipped" in r.stdout, r.stdout
