"""Canonical formats (IDX, CIFAR binary) and the resumable, checksummed downloader.

Everything runs on tiny files in tmp_path and a local http.server on 127.0.0.1: no network.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from cnnlab.data import canonical, load_data
from cnnlab.data.cifar import read_cifar10, read_cifar100, read_cifar_records
from cnnlab.data.download import download, fetch, Resource
from cnnlab.data.idx import parse_idx, read_idx, read_idx_pair, write_idx
from cnnlab.errors import UserError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))


def _rng():
    return np.random.default_rng(0)


# -- IDX -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_roundtrip_uint8(tmp_path, name):
    x = _rng().integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p = write_idx(tmp_path / name, x)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    y = read_idx(p)
    assert y.dtype == np.uint8 and y.shape == (5, 7, 3)
    np.testing.assert_array_equal(y, x)
    y[0, 0, 0] = 1  # a writable copy, not a view of the file's bytes


def test_idx_header_bytes_exact(tmp_path):
    """The magic and the big-endian sizes, byte by byte, as the MNIST page describes them."""
    raw = write_idx(tmp_path / "l", np.array([3, 1, 4], np.uint8)).read_bytes()
    assert raw == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


@pytest.mark.parametrize("dtype", ["i1", "i2", "i4", "f4", "f8"])
def test_idx_other_dtypes_big_endian(tmp_path, dtype):
    x = (_rng().standard_normal((2, 3)) * 100).astype(dtype)
    raw = write_idx(tmp_path / "x", x).read_bytes()
    assert raw[12:] == x.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    y = read_idx(tmp_path / "x")
    assert y.dtype == np.dtype(dtype) and y.dtype.isnative
    np.testing.assert_array_equal(y, x)


def test_idx_bad_magic(tmp_path):
    p = tmp_path / "bad.idx"
    p.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(UserError, match=r"bad\.idx: not an IDX file \(bad magic number 0x01020801"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x00")  # unknown type code 0x07
    with pytest.raises(UserError, match="bad magic number 0x00000701"):
        read_idx(p)


def test_idx_truncated(tmp_path):
    raw = write_idx(tmp_path / "x", np.zeros((4, 2, 2), np.uint8)).read_bytes()
    (tmp_path / "t").write_bytes(raw[:-3])
    with pytest.raises(UserError, match=r"t: truncated IDX file \(shape \(4, 2, 2\) of uint8 "
                                        r"needs 16 data bytes, found 13\)"):
        read_idx(tmp_path / "t")
    (tmp_path / "h").write_bytes(raw[:9])
    with pytest.raises(UserError, match="h: truncated IDX header"):
        read_idx(tmp_path / "h")
    with pytest.raises(UserError, match="truncated IDX file"):
        parse_idx(b"\x00\x00")
    (tmp_path / "extra").write_bytes(raw + b"\x00")
    with pytest.raises(UserError, match="1 unexpected bytes after the IDX data"):
        read_idx(tmp_path / "extra")


def test_idx_truncated_gzip(tmp_path):
    gz = gzip.compress(write_idx(tmp_path / "x", np.zeros((50, 9), np.uint8)).read_bytes())
    (tmp_path / "x.gz").write_bytes(gz[: len(gz) // 2])
    with pytest.raises(UserError, match=r"x\.gz: truncated or corrupt gzip file"):
        read_idx(tmp_path / "x.gz")


def test_idx_pair_and_label_range(tmp_path):
    imgs = _rng().integers(0, 256, (6, 4, 5), dtype=np.uint8)
    write_idx(tmp_path / "i.gz", imgs)
    write_idx(tmp_path / "l", np.array([0, 1, 2, 9, 3, 4], np.uint8))
    x, y = read_idx_pair(tmp_path / "i.gz", tmp_path / "l", 10)
    assert x.shape == (6, 1, 4, 5) and y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 0], imgs)
    write_idx(tmp_path / "l", np.array([0, 1, 12, 9, 3, 10], np.uint8))
    with pytest.raises(UserError, match=r"l: label 12 at index 2 out of range 0\.\.9 \(2 bad"):
        read_idx_pair(tmp_path / "i.gz", tmp_path / "l", 10)
    write_idx(tmp_path / "l", np.zeros(5, np.uint8))
    with pytest.raises(UserError, match="5 labels for 6 images"):
        read_idx_pair(tmp_path / "i.gz", tmp_path / "l", 10)


# -- CIFAR binary ------------------------------------------------------------------------------

def _cifar_records(labels: list[list[int]], rng) -> tuple[bytes, np.ndarray]:
    """Records of label bytes + 3072 pixel bytes; returns (bytes, images (N, 3, 32, 32))."""
    images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
    raw = b"".join(bytes(lab) + im.tobytes() for lab, im in zip(labels, images))
    return raw, images


def _write_cifar10(folder: Path, n_per_batch: int = 3, rng=None):
    rng = rng or _rng()
    folder.mkdir(parents=True)
    out = {}
    for split, files in [("train", [f"data_batch_{i}.bin" for i in range(1, 6)]),
                         ("test", ["test_batch.bin"])]:
        xs, ys = [], []
        for f in files:
            labels = rng.integers(0, 10, n_per_batch).tolist()
            raw, images = _cifar_records([[v] for v in labels], rng)
            (folder / f).write_bytes(raw)
            xs.append(images)
            ys += labels
        out[split] = (np.concatenate(xs), np.array(ys))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
             "truck"]
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return out, names


def _write_cifar100(folder: Path, rng=None):
    rng = rng or _rng()
    folder.mkdir(parents=True)
    out = {}
    for split, n in [("train", 4), ("test", 2)]:
        coarse, fine = rng.integers(0, 20, n), rng.integers(0, 100, n)
        raw, images = _cifar_records([[c, f] for c, f in zip(coarse, fine)], rng)
        (folder / f"{split}.bin").write_bytes(raw)
        out[split] = (images, coarse, fine)
    (folder / "fine_label_names.txt").write_text("\n".join(f"f{i}" for i in range(100)))
    (folder / "coarse_label_names.txt").write_text("\n".join(f"c{i}" for i in range(20)))
    return out


def test_cifar10_read_bit_exact(tmp_path):
    truth, names = _write_cifar10(tmp_path / "cifar-10-batches-bin")
    for split in ("train", "test"):
        x, y, classes = read_cifar10(tmp_path / "cifar-10-batches-bin", split)
        assert x.dtype == np.uint8 and x.shape == (len(truth[split][0]), 3, 32, 32)
        np.testing.assert_array_equal(x, truth[split][0])
        np.testing.assert_array_equal(y, truth[split][1])
        assert classes == names
    assert len(read_cifar10(tmp_path / "cifar-10-batches-bin", "train")[0]) == 15


def test_cifar_pixel_layout_is_rgb_planes(tmp_path):
    """Bytes 1..1024 are red row-major, then green, then blue (the CIFAR page's layout)."""
    rec = bytes([7]) + bytes([10] * 1024 + [20] * 1024 + [30] * 1024)
    rec = bytearray(rec)
    rec[1 + 32 + 5] = 99  # red, row 1, column 5
    (tmp_path / "b.bin").write_bytes(bytes(rec))
    x, y = read_cifar_records(tmp_path / "b.bin", 1, 0, 10)
    assert y.tolist() == [7] and x[0, 0, 1, 5] == 99
    assert x[0, 0, 0, 0] == 10 and x[0, 1, 31, 31] == 20 and x[0, 2, 0, 0] == 30


def test_cifar100_fine_and_coarse(tmp_path):
    truth = _write_cifar100(tmp_path / "c")
    for split in ("train", "test"):
        x, y, classes = read_cifar100(tmp_path / "c", split)
        np.testing.assert_array_equal(x, truth[split][0])
        np.testing.assert_array_equal(y, truth[split][2])
        assert len(classes) == 100 and classes[3] == "f3"
        _, yc, cc = read_cifar100(tmp_path / "c", split, label="coarse")
        np.testing.assert_array_equal(yc, truth[split][1])
        assert len(cc) == 20


def test_cifar_record_length_and_label_errors(tmp_path):
    raw, _ = _cifar_records([[1], [2]], _rng())
    (tmp_path / "t.bin").write_bytes(raw[:-1])
    with pytest.raises(UserError, match=r"t\.bin: 6145 bytes is not a whole number of 3073-byte"):
        read_cifar_records(tmp_path / "t.bin", 1, 0, 10)
    (tmp_path / "e.bin").write_bytes(b"")
    with pytest.raises(UserError, match="0 bytes is not a whole number"):
        read_cifar_records(tmp_path / "e.bin", 1, 0, 10)
    raw, _ = _cifar_records([[1], [10]], _rng())
    (tmp_path / "l.bin").write_bytes(raw)
    with pytest.raises(UserError, match=r"l\.bin: label 10 in record 1 out of range 0\.\.9"):
        read_cifar_records(tmp_path / "l.bin", 1, 0, 10)


def test_cifar_meta_count(tmp_path):
    _write_cifar10(tmp_path / "f")
    (tmp_path / "f" / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match=r"batches\.meta\.txt: expected 10 class names"):
        read_cifar10(tmp_path / "f", "test")


# -- named loaders -----------------------------------------------------------------------------

def test_named_mnist_from_placed_files(tmp_path):
    root = tmp_path / "cache" / "datasets" / "mnist"
    root.mkdir(parents=True)
    rng = _rng()
    truth = {}
    for split, (fi, fl) in canonical.IDX_FILES.items():
        x = rng.integers(0, 256, (4, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, 4).astype(np.uint8)
        write_idx(root / fi, x)
        write_idx(root / fl.removesuffix(".gz"), y)  # a gunzipped file is accepted too
        truth[split] = (x, y)
    d = load_data("mnist", progress=False)
    assert d.name == "mnist" and d.classes == [str(i) for i in range(10)]
    for split in ("train", "test"):
        data = getattr(d, split)
        np.testing.assert_array_equal(data.images[:, 0], truth[split][0])
        np.testing.assert_array_equal(data.labels, truth[split][1])
    assert len(list((tmp_path / "cache" / "arrays").glob("mnist-*.npz"))) == 2
    again = canonical.NAMED_LOADERS["mnist"](progress=False)  # from the .npz cache
    np.testing.assert_array_equal(again.train.images, d.train.images)


def test_named_mnist_offline_message(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{_free_port()}/"
    monkeypatch.setitem(canonical.DATASETS, "mnist",
                        dataclasses.replace(canonical.DATASETS["mnist"], url=url))
    root = tmp_path / "cache" / "datasets" / "mnist"
    with pytest.raises(UserError) as e:
        load_data("mnist", progress=False)
    msg = str(e.value)
    assert msg.startswith("--data mnist: could not download") and "Offline?" in msg
    for f in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]:
        assert f"{root / f} from {url}{f}" in msg
    assert "\n" not in msg


# -- downloads against a local server ----------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list = []
    honour_range = True

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        start = int(rng.removeprefix("bytes=").rstrip("-")) if rng and self.honour_range else 0
        if start >= len(body) and rng:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.files, _Handler.ranges, _Handler.honour_range = {}, [], True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler
    httpd.shutdown()
    httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BODY = bytes(range(256)) * 40  # 10,240 bytes
BODY_MD5 = hashlib.md5(BODY).hexdigest()


def test_download_ok(tmp_path, server):
    url, h = server
    h.files["/f.bin"] = BODY
    dest = download(f"{url}/f.bin", tmp_path / "d" / "f.bin", BODY_MD5, progress=False)
    assert dest.read_bytes() == BODY and not (tmp_path / "d" / "f.bin.part").exists()
    assert h.ranges == [None]
    download(f"{url}/f.bin", dest, BODY_MD5, progress=False)  # present: no request
    assert h.ranges == [None]


def test_download_checksum_mismatch(tmp_path, server):
    url, h = server
    h.files["/f.bin"] = BODY
    with pytest.raises(UserError, match=r"checksum mismatch for f\.bin \(md5 [0-9a-f]{32}, "
                                        r"expected 0{32}\)"):
        download(f"{url}/f.bin", tmp_path / "f.bin", "0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the final file nor the part file


def test_download_resumes_with_range(tmp_path, server):
    url, h = server
    h.files["/f.bin"] = BODY
    (tmp_path / "f.bin.part").write_bytes(BODY[:3000])
    dest = download(f"{url}/f.bin", tmp_path / "f.bin", BODY_MD5, progress=False)
    assert h.ranges == ["bytes=3000-"]
    assert dest.read_bytes() == BODY


def test_download_restarts_when_range_ignored(tmp_path, server):
    url, h = server
    h.files["/f.bin"], h.honour_range = BODY, False
    (tmp_path / "f.bin.part").write_bytes(b"garbage" * 100)
    dest = download(f"{url}/f.bin", tmp_path / "f.bin", BODY_MD5, progress=False)
    assert dest.read_bytes() == BODY


def test_download_complete_part_416(tmp_path, server):
    url, h = server
    h.files["/f.bin"] = BODY
    (tmp_path / "f.bin.part").write_bytes(BODY)
    assert download(f"{url}/f.bin", tmp_path / "f.bin", BODY_MD5,
                    progress=False).read_bytes() == BODY


def test_download_http_error(tmp_path, server):
    url, _ = server
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{url}/missing", tmp_path / "m", progress=False)


def test_fetch_offline_lists_every_file(tmp_path):
    base = f"http://127.0.0.1:{_free_port()}"
    res = [Resource(f"{base}/a.gz", tmp_path / "x" / "a.gz"),
           Resource(f"{base}/b.gz", tmp_path / "x" / "b.gz")]
    with pytest.raises(UserError, match=r"^--data t: could not download .*Offline\? Put the files"
                                        r" in place by hand: .*a\.gz from .*/a\.gz; .*b\.gz from"):
        fetch(res, "--data t", progress=False)


def test_named_cifar10_download_extract_read(tmp_path, server, monkeypatch):
    """The full path: download the archive (md5-checked), extract safely, read, cache."""
    src = tmp_path / "src"
    truth, names = _write_cifar10(src / "cifar-10-batches-bin", n_per_batch=2)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(src / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    url, h = server
    h.files["/cifar-10-binary.tar.gz"] = buf.getvalue()
    md5 = {"cifar-10-binary.tar.gz": hashlib.md5(buf.getvalue()).hexdigest()}
    ds = dataclasses.replace(canonical.DATASETS["cifar10"], url=f"{url}/cifar-10-binary.tar.gz",
                             md5=md5)
    monkeypatch.setitem(canonical.DATASETS, "cifar10", ds)
    d = load_data("cifar10", progress=False)
    assert d.classes == names and d.train.images.shape == (10, 3, 32, 32)
    np.testing.assert_array_equal(d.train.images, truth["train"][0])
    np.testing.assert_array_equal(d.test.labels, truth["test"][1])
    root = tmp_path / "cache" / "datasets" / "cifar10"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-bin",
                                                      "cifar-10-binary.tar.gz"]


def test_named_cifar100_from_placed_folder(tmp_path):
    truth = _write_cifar100(tmp_path / "cache" / "datasets" / "cifar100" / "cifar-100-binary")
    d = canonical.NAMED_LOADERS["cifar100"](progress=False)
    np.testing.assert_array_equal(d.train.images, truth["train"][0])
    np.testing.assert_array_equal(d.train.labels, truth["train"][2])
    assert len(d.classes) == 100


def test_named_cifar_incomplete_folder(tmp_path):
    f = tmp_path / "cache" / "datasets" / "cifar100" / "cifar-100-binary"
    _write_cifar100(f)
    (f / "test.bin").unlink()
    with pytest.raises(UserError, match=r"--data cifar100: .*cifar-100-binary lacks test\.bin"):
        load_data("cifar100", progress=False)


def test_unsafe_archive_refused(tmp_path, monkeypatch):
    """A member escaping the folder ("../") is refused by tarfile's "data" filter."""
    root = tmp_path / "cache" / "datasets" / "cifar10"
    root.mkdir(parents=True)
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(UserError, match=r"cifar-10-binary\.tar\.gz: not a readable \.tar\.gz"):
        load_data("cifar10", progress=False)
    assert not (root.parent / "evil.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-binary.tar.gz"]
