"""Bad data is refused or skipped, named on one line, and never damages the cache: damaged
archives, corrupt images and decompression bombs inside a dataset, interrupted extraction,
progress output, and `cnnlab cache`."""

import gzip
import os
import struct
import subprocess
import sys
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image_folder
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import archive as archive_mod
from cnnlab.data import load_data, progress
from cnnlab.data.archive import extract_verified
from cnnlab.utils import sha256_file
from cnnlab.errors import UserError
from cnnlab.utils import cache_dir


def _tar_gz(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return dest


def png_declaring(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header declares ``width`` x ``height`` gray pixels:
    a decompression bomb as far as any decoder that trusts the header is concerned."""
    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name or p.name.startswith(".extract-")]


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    return _tar_gz(make_image_folder(root / "tiny", 30, 6), root / "tiny.tar.gz")


def _damaged(good: Path, tmp: Path, where: float, name: str) -> Path:
    """A copy of ``good`` with 64 bytes of its compressed stream flipped at ``where``."""
    b = bytearray(good.read_bytes())
    i = int(len(b) * where)
    b[i:i + 64] = bytes(x ^ 0x5A for x in b[i:i + 64])
    (tmp / name).write_bytes(bytes(b))
    return tmp / name


# -- archives ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flipped-early", "flipped-late", "truncated", "not-gzip",
                                  "trailing-garbage-in-tar"])
def test_damaged_archive_is_one_line_naming_it_and_nothing_is_cached(kind, good_archive,
                                                                      tmp_path, capsys):
    if kind.startswith("flipped"):
        bad = _damaged(good_archive, tmp_path, 0.3 if kind == "flipped-early" else 0.9,
                       "bad.tar.gz")
    elif kind == "truncated":
        bad = tmp_path / "bad.tar.gz"
        bad.write_bytes(good_archive.read_bytes()[: good_archive.stat().st_size // 2])
    elif kind == "not-gzip":
        bad = tmp_path / "bad.tar.gz"
        bad.write_bytes(os.urandom(5000))
    else:  # a valid gzip whose tar stops at a garbage header part-way (the silent case)
        raw = gzip.decompress(good_archive.read_bytes())
        cut = len(raw) // 2 // 512 * 512
        bad = tmp_path / "bad.tar.gz"
        bad.write_bytes(gzip.compress(raw[:cut] + b"\xff" * 512 + raw[cut:]))
    before = bad.read_bytes()
    code = main(["train", "--data", str(bad), "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--progress", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(bad) in err[0] and "archive" in err[0], err
    assert "Traceback" not in err[0]
    assert bad.read_bytes() == before and not (tmp_path / "run").exists()
    extracted = cache_dir() / "extracted"
    assert not _leftovers(cache_dir())
    assert not any(p.name.startswith(sha256_file(bad)[:16])
                   for p in (extracted.iterdir() if extracted.exists() else []))


def test_empty_archive_is_one_line_naming_the_data(tmp_path, capsys):
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    assert main(["train", "--data", str(empty), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--data {empty}: the folder is empty" in err[0], err
    assert not _leftovers(cache_dir())


def test_unsafe_member_is_refused_and_leaves_nothing(tmp_path):
    bad = tmp_path / "evil.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        data = b"x"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        import io
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(UserError, match="evil.tar.gz"):
        extract_verified(bad, tmp_path / "cache" / "out")
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "cache" / "out").exists()
    assert not _leftovers(tmp_path)


def test_interrupted_extraction_leaves_no_tmp_and_stale_tmp_is_removed(good_archive, tmp_path,
                                                                      monkeypatch):
    dest = tmp_path / "extracted" / "k-v2"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / "extracted" / f"other-v2.tmp{dead}"  # left by a killed process
    (stale / "sub").mkdir(parents=True)

    def interrupted(stream, archive):
        raise KeyboardInterrupt
    monkeypatch.setattr(archive_mod, "_drain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_verified(good_archive, dest)
    assert not dest.exists() and not _leftovers(tmp_path)  # the stale one went too
    monkeypatch.undo()
    assert (extract_verified(good_archive, dest) / archive_mod.VERIFIED).read_text().strip() \
        == str(good_archive.resolve())
    assert sorted(p.name for p in (dest / "tiny").iterdir()) == ["test", "train"]


def test_extraction_progress_is_plain_lines_when_asked(good_archive, tmp_path, monkeypatch,
                                                      capsys):
    monkeypatch.setattr(progress, "LINE_EVERY", 0.0)
    monkeypatch.setattr(progress, "QUIET_BELOW", 0.0)
    extract_verified(good_archive, tmp_path / "x", progress="lines")
    err = capsys.readouterr().err
    assert "\r" not in err and "extracting tiny.tar.gz: done" in err
    assert progress.resolve_mode(True) == "lines"  # stderr is not a terminal under pytest
    assert progress.resolve_mode("none") == progress.resolve_mode(False) == "none"


# -- images inside a dataset ---------------------------------------------------------------

def test_corrupt_and_bomb_images_are_skipped_listed_and_warned_again_from_cache(tmp_path):
    root = make_image_folder(tmp_path / "d", 6, 2)
    (root / "train" / "a" / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    (root / "train" / "b" / "junk.png").write_bytes(b"not an image at all")
    for run in ("first", "cached"):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            d = load_data(str(root), progress="none")
        msgs = [str(x.message) for x in w if "skipped" in str(x.message)]
        assert len(msgs) == 1, (run, [str(x.message) for x in w])
        assert "skipped 2 unreadable image(s)" in msgs[0]
        assert "bomb.png (refused as a decompression bomb" in msgs[0] and "junk.png" in msgs[0]
        assert len(d.train) == 18 and len(d.test) == 6  # every good image kept
    assert (root / "train" / "a" / "bomb.png").stat().st_size < 200  # untouched


def test_large_honest_image_is_decoded_without_pillow_warning(tmp_path):
    root = make_image_folder(tmp_path / "d", 3, 1)
    # 12000x12000 = 144 megapixels: over Pillow's warning limit (89 M), under its error (179 M)
    Image.new("1", (12000, 12000), 1).save(root / "train" / "c" / "big.png")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = load_data(str(root), progress="none", size=(12, 12))
    assert not [x for x in w if issubclass(x.category, Image.DecompressionBombWarning)]
    assert d.train.shape == (1, 12, 12)  # the big image is read straight at the model's size
    assert len(d.train) == 10  # the big image is kept, resized to 12x12
    assert d.train.images[d.train.labels == 2].max() == 255  # its white pixels survive


def test_warnings_print_as_one_clean_line(tmp_path):
    root = make_image_folder(tmp_path / "d", 6, 2)
    (root / "train" / "b" / "junk.png").write_bytes(b"not an image")
    env = {**os.environ, "CNNLAB_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "cnnlab", "augment-preview", "--data", str(root),
                        "--n", "4", "--out", str(tmp_path / "g.png")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert lines == [f"cnnlab augment-preview: warning: skipped 1 unreadable image(s): "
                     f"{root / 'train' / 'b' / 'junk.png'} (not a readable image)"]


# -- cnnlab cache --------------------------------------------------------------------------

def test_cache_lists_sizes_and_cleans(good_archive, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "c"))
    legacy = tmp_path / "c" / "extracted" / "0123456789abcdef"  # an older cnnlab's, unverified
    (legacy / "tiny").mkdir(parents=True)
    load_data(str(good_archive), progress="none")
    capsys.readouterr()
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    extracted = next(p for p in (tmp_path / "c" / "extracted").iterdir() if p != legacy)
    assert "extracted/0123456789abcdef" in out and "unverified" in out
    size = sum(f.stat().st_blocks * 512 for f in extracted.rglob("*") if f.is_file())  # as du
    assert f"extracted/{extracted.name}" in out and str(good_archive.resolve()) in out
    assert "tiny.tar.gz (train)" in out and "total" in out.splitlines()[-1]
    from cnnlab.data.cache import cache_entries, human_bytes
    assert human_bytes(size) in out
    assert {e.kind for e in cache_entries()} == {"extracted", "arrays"}
    assert main(["cache", "clean", "--dry-run"]) == 0 and extracted.exists() and legacy.exists()
    assert main(["cache", "clean"]) == 0
    assert cache_entries() == [] and "removed 4 entries" in capsys.readouterr().out
    assert main(["cache", "clean", "bogus"]) == 2
    assert "unknown kind" in capsys.readouterr().err
