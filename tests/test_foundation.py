"""Registry, checkpoints, data layer: shapes, round trips, and the error messages users see."""

import json
import tarfile
import warnings

import numpy as np
import pytest
import torch
from conftest import shared_dataset, write_png

import cnnlab
from cnnlab.checkpoint import load_checkpoint, read_meta, save_checkpoint
from cnnlab.data import load_data
from cnnlab.errors import UserError
from cnnlab.registry import register_model
from cnnlab.utils import atomic_write


# ----------------------------------------------------------------------------- registry
def test_registry_builds_lenet5_with_paper_parameter_count():
    assert "lenet5" in cnnlab.list_models()
    m = cnnlab.get_model("lenet5")
    assert sum(p.numel() for p in m.parameters()) == 61_706  # LeCun et al. 1998
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    m28 = cnnlab.get_model("lenet5", input_size=28)
    assert m28(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_registry_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown model 'lenet'.*Did you mean: lenet5"):
        cnnlab.get_model("lenet")


def test_registry_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5")(lambda: None)


# --------------------------------------------------------------------------- checkpoints
def _meta():
    return {"model": "lenet5", "model_kwargs": {"num_classes": 10}, "classes": list("0123456789"),
            "input": {"channels": 1, "size": [32, 32], "mean": [0.1], "std": [0.3]}, "epoch": 3}


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    m = cnnlab.get_model("lenet5")
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(4, 1, 32, 32)).sum().backward()
    opt.step()
    rng = torch.get_rng_state()
    save_checkpoint(tmp_path / "last", m.state_dict(), _meta(),
                    {"optimizer": opt.state_dict(), "rng": rng})
    expected = torch.rand(5)  # the draws the saved generator state gives next
    weights, meta, state = load_checkpoint(tmp_path / "last.safetensors", with_train_state=True)
    for k, v in m.state_dict().items():
        assert np.array_equal(weights[k], v.numpy()), k
    assert meta["epoch"] == 3 and meta["classes"] == list("0123456789")
    assert json.loads((tmp_path / "last.json").read_text())["model"] == "lenet5"
    opt2 = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(state["optimizer"])
    for k, s in opt.state_dict()["state"].items():
        assert torch.equal(s["momentum_buffer"], opt2.state_dict()["state"][k]["momentum_buffer"])
    assert state["rng"].dtype == torch.uint8 and torch.equal(state["rng"], rng)
    torch.set_rng_state(state["rng"])
    assert torch.equal(torch.rand(5), expected)  # restoring it replays the same draws


def test_corrupt_training_state_is_refused(tmp_path):
    """One flipped bit in the tensor data leaves a well-formed safetensors file with other
    values: only the sha256 recorded in the checkpoint's metadata can tell."""
    from safetensors.numpy import load_file

    m = cnnlab.get_model("lenet5")
    save_checkpoint(tmp_path / "last", m.state_dict(), _meta(), {"x": torch.arange(4.0)})
    state = next(tmp_path.glob("state-*.safetensors"))
    good = load_file(str(state))
    blob = bytearray(state.read_bytes())
    blob[-1] ^= 0x01  # the last byte of x's float32 data
    state.write_bytes(bytes(blob))
    assert not all(np.array_equal(v, good[k]) for k, v in load_file(str(state)).items())
    with pytest.raises(UserError, match=r"state-.*does not match its checksum in last"):
        load_checkpoint(tmp_path / "last.safetensors", with_train_state=True)
    weights, _ = load_checkpoint(tmp_path / "last.safetensors")  # the weights alone still load
    assert set(weights) == set(m.state_dict())


def test_checkpoint_keeps_only_referenced_training_states(tmp_path):
    m = cnnlab.get_model("lenet5")
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / "last", m.state_dict(), {**_meta(), "step": step},
                        {"x": torch.ones(2) * step})
    states = sorted(p.name for p in tmp_path.glob("state-*"))
    assert states == ["state-e0003-s00000003.safetensors"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(p) as f:
            f.write(b"partial new content")
            raise RuntimeError("crash while writing")
    assert p.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [p]  # no temp file left behind


def test_loading_a_foreign_file_names_it(tmp_path):
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(UserError, match=r"other.safetensors: not a cnnlab checkpoint"):
        read_meta(other)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x04pickle-ish bytes that must never be unpickled")
    with pytest.raises(UserError, match="junk.safetensors: not a cnnlab checkpoint"):
        load_checkpoint(junk)


# ---------------------------------------------------------------------------------- data
def test_digits_split_is_fixed_stratified_80_20():
    d = load_data("digits")
    assert d.train.images.shape == (1437, 1, 32, 32) and d.test.images.shape == (360, 1, 32, 32)
    assert d.train.images.dtype == np.uint8 and d.train.images.max() == 255
    counts = np.bincount(d.test.labels)
    assert counts.min() >= 35 and counts.max() <= 37  # ~20% of each class's ~180 images
    assert np.array_equal(load_data("digits").test.labels, d.test.labels)


def test_digits_read_from_sklearns_csv_equal_load_digits():
    # cnnlab reads sklearn's digits.csv.gz without importing sklearn (~1 s saved per run)
    from sklearn.datasets import load_digits

    from cnnlab.data.digits import _raw_digits

    images, labels = _raw_digits()
    ref = load_digits()
    assert np.array_equal(images, ref.images) and np.array_equal(labels, ref.target)


def test_image_folder_and_its_tar_gz_load_identically_and_are_cached(tiny_folder, tmp_path):
    d = load_data(str(tiny_folder))
    assert d.classes == ["a", "b", "c"]
    assert d.train.images.shape == (24, 1, 12, 12) and len(d.test) == 9
    archive = tmp_path / "tiny.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tiny_folder, arcname="tiny")  # one top folder above train/ and test/
    t = load_data(str(archive))
    assert np.array_equal(t.train.images, d.train.images)
    assert np.array_equal(t.test.labels, d.test.labels)
    from cnnlab.utils import cache_dir

    assert any((p / ".complete").exists() for p in (cache_dir() / "extracted").iterdir())
    again = load_data(str(archive))  # from the array cache
    assert np.array_equal(again.train.images, d.train.images)


def test_single_tree_needs_val_split(tmp_path):
    root = tmp_path / "flat"
    for c in ("x", "y"):
        for i in range(10):
            write_png(root / c / f"{i}.png", np.full((8, 8), 20 * i, np.uint8))
    with pytest.raises(UserError, match="no test/ folder; pass --test-split"):
        load_data(str(root))
    d = load_data(str(root), val_split=0.2)
    assert len(d.train) == 16 and len(d.test) == 4


def test_corrupt_images_are_skipped_with_a_warning_listing_them(tiny_folder):
    bad = tiny_folder / "train" / "a" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): .*broken.png"):
        d = load_data(str(tiny_folder))
    assert len(d.train) == 24


def test_mixed_sizes_and_gray_in_colour_follow_the_stated_policy(tmp_path):
    root = tmp_path / "mixed"
    write_png(root / "train" / "a" / "0.png", np.zeros((10, 10, 3), np.uint8))
    write_png(root / "train" / "a" / "1.png", np.zeros((10, 10, 3), np.uint8))
    write_png(root / "train" / "b" / "0.png", np.zeros((20, 16), np.uint8))  # gray, other size
    write_png(root / "test" / "a" / "0.png", np.zeros((10, 10, 3), np.uint8))
    write_png(root / "test" / "b" / "0.png", np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(UserError, match=r"images differ in size \(10x10 to 16x20\): give the "
                                         r"size to read them at \(--input-size HxW"):
        load_data(str(root))  # never guessed ("the most common size" of photos is 12 MP)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = load_data(str(root), size=(10, 10))  # the model's size: --input-size or native
    msgs = " ".join(str(x.message) for x in w)
    assert "converted to RGB" in msgs
    assert d.train.images.shape == (3, 3, 10, 10)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "nope", "no such file or folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "the folder is empty"),
    (lambda p: (p / "e2" / "train" / "a").mkdir(parents=True) or p / "e2",
     "class folder has no images"),
    (lambda p: (p / "x.txt").write_text("hi") and p / "x.txt", "expected a folder or a .tar.gz"),
    (lambda p: (p / "bad.tar.gz").write_bytes(b"not gzip") and p / "bad.tar.gz",
     "not a readable .tar.gz"),
])
def test_bad_data_paths_get_one_clear_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(UserError, match=message) as e:
        load_data(str(path))
    assert "\n" not in str(e.value) and path.name in str(e.value)


def test_train_and_test_class_names_must_agree(tiny_folder):
    (tiny_folder / "test" / "c").rename(tiny_folder / "test" / "z")
    with pytest.raises(UserError, match="differ from the train split"):
        load_data(str(tiny_folder))


@pytest.mark.slow
def test_shared_mnist_archive_loads_and_caches(monkeypatch):
    import cnnlab.data.folder as folder

    path = shared_dataset("mnist.tar.gz")
    d = load_data(str(path), progress=False)
    assert d.train.images.shape == (60000, 1, 28, 28) and len(d.test) == 10000
    assert d.classes == [str(i) for i in range(10)]

    def no_decoding(*a, **k):
        raise AssertionError("the second load must read the cached arrays, not decode PNGs")

    monkeypatch.setattr(folder, "decode_images", no_decoding)
    again = load_data(str(path), progress=False)  # ~0.1 s here; timings in benchmarks/
    assert np.array_equal(again.test.images, d.test.images)


def test_stratified_split_is_remembered_without_importing_sklearn_again():
    import subprocess
    import sys

    from cnnlab.data import stratified_split

    labels = np.repeat(np.arange(4), 25)
    tr, te = stratified_split(labels, 0.2, seed=3)
    assert len(te) == 20 and np.array_equal(np.bincount(labels[te]), [5, 5, 5, 5])
    assert np.array_equal(np.sort(np.concatenate([tr, te])), np.arange(100))
    # a second process (same CNNLAB_CACHE) gets the same split from the cache, no sklearn
    code = ("import sys, numpy as np; from cnnlab.data import stratified_split;"
            "tr, te = stratified_split(np.repeat(np.arange(4), 25), 0.2, seed=3);"
            "print(' '.join(map(str, te)), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    *idx, imported = out.stdout.split()
    assert [int(i) for i in idx] == te.tolist() and imported == "False"
