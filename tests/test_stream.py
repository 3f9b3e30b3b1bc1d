"""Streaming image folders: batches equal the in-memory arrays bit for bit, training on a
streamed folder gives the same weights as in memory, a corrupt file is skipped with a warning."""

import numpy as np
import pytest
from safetensors.numpy import load_file

from cnnlab.cli import main
from cnnlab.data import load_data
from cnnlab.data.stream import StreamingImageData, memory_budget

from conftest import make_image_folder

TRAIN_ARGS = ["--model", "mlp", "--model-kwargs", '{"hidden": [32]}', "--epochs", "2",
              "--batch-size", "16", "--threads", "1", "--progress", "none", "--seed", "5"]


@pytest.fixture
def folder(tmp_path):
    """3 classes x (20 train, 5 test) gray 12x12 PNGs (see conftest.make_image_folder)."""
    return make_image_folder(tmp_path / "imgs", 20, 5, seed=1)


def test_stream_batches_equal_in_memory_rows(folder):
    mem = load_data(str(folder), in_memory="yes")
    st = load_data(str(folder), in_memory="no")
    assert isinstance(st.train, StreamingImageData) and isinstance(st.test, StreamingImageData)
    assert st.train.shape == mem.train.shape == (1, 12, 12)
    assert st.classes == mem.classes and len(st.train) == len(mem.train) == 60
    np.testing.assert_array_equal(st.train.labels, mem.train.labels)
    idx = np.random.default_rng(0).permutation(60)
    batches = [idx[i:i + 16] for i in range(0, 60, 16)]
    for b, (x, y) in zip(batches, st.train.batches(batches, workers=2), strict=True):
        assert x.dtype.is_floating_point is False and x.shape == (len(b), 1, 12, 12)
        np.testing.assert_array_equal(x.numpy(), mem.train.images[b])
        np.testing.assert_array_equal(y.numpy(), mem.train.labels[b])
    x, _ = st.test.read(np.arange(15))
    np.testing.assert_array_equal(x, mem.test.images)


def test_auto_streams_over_the_budget(folder, monkeypatch):
    monkeypatch.setenv("CNNLAB_MEMORY_BUDGET_GB", "1e-6")  # ~1 KB: 60 x 144 B is over it
    assert memory_budget() == int(1e-6 * 2 ** 30)
    assert isinstance(load_data(str(folder), in_memory="auto").train, StreamingImageData)
    monkeypatch.setenv("CNNLAB_MEMORY_BUDGET_GB", "1")
    assert hasattr(load_data(str(folder), in_memory="auto").train, "images")
    assert hasattr(load_data("digits", in_memory="no").train, "images")  # built-ins stay


def test_train_streamed_equals_in_memory(folder, tmp_path):
    runs = {}
    for mode in ("yes", "no"):
        runs[mode] = tmp_path / f"run-{mode}"
        assert main(["train", "--data", str(folder), *TRAIN_ARGS, "--in-memory", mode,
                     "--workers", "2", "--out", str(runs[mode])]) == 0
    a = load_file(str(runs["yes"] / "checkpoints" / "last.safetensors"))
    b = load_file(str(runs["no"] / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_corrupt_file_skipped_with_warning(folder, tmp_path):
    bad = folder / "train" / "b" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.warns(UserWarning, match="bad.png"):
        rc = main(["train", "--data", str(folder), *TRAIN_ARGS, "--in-memory", "no",
                   "--workers", "2", "--out", str(tmp_path / "run")])
    assert rc == 0
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()


def test_bad_in_memory_value_is_one_line_error(folder, capsys):
    assert main(["train", "--data", str(folder), "--in-memory", "maybe"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--in-memory maybe" in err and "\n" not in err


def test_streamed_resume_mid_epoch_is_bit_identical(folder, tmp_path, monkeypatch):
    import json
    import os
    import signal

    import cnnlab.training.loop as T  # the loop looks lr_factor up here

    args = ["--data", str(folder), *TRAIN_ARGS, "--in-memory", "no", "--workers", "1"]
    ref = tmp_path / "ref"
    assert main(["train", *args, "--out", str(ref)]) == 0
    real = T.lr_factor

    def interrupt_at_step_5(cfg, step, total, spe):  # Ctrl-C during epoch 2 (4 steps/epoch)
        if step == 5:
            os.kill(os.getpid(), signal.SIGINT)
        return real(cfg, step, total, spe)

    run = tmp_path / "run"
    monkeypatch.setattr(T, "lr_factor", interrupt_at_step_5)
    assert main(["train", *args, "--out", str(run)]) == 130
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert (meta["epoch"], meta["step"]) == (1, 6)  # mid-epoch 2: steps 4 and 5 done
    monkeypatch.setattr(T, "lr_factor", real)
    assert main(["train", "--resume", str(run)]) == 0
    a = load_file(str(ref / "checkpoints" / "last.safetensors"))
    b = load_file(str(run / "checkpoints" / "last.safetensors"))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
