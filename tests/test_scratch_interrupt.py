"""`cnnlab train --engine numpy` interrupted mid-epoch (Ctrl-C, or killed after a --save-every
checkpoint) and resumed ends with the same weights, bit for bit, as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

import cnnlab.training.loop as T  # the loop looks lr_factor up here
from cnnlab.cli import main

from conftest import make_image_folder

# A small MLP on the built-in digits: all 1,437 training images (no validation split), 45
# steps an epoch. The default augmentation (random shifts for digits) makes every step draw
# random numbers.
ARGS = ["train", "--engine", "numpy", "--model", "mlp", "--model-kwargs", '{"hidden": [32]}',
        "--epochs", "2", "--batch-size", "32", "--seed", "3", "--progress", "none",
        "--val-split", "0"]
STEPS_PER_EPOCH = 45


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    return out


def assert_same_run(ref, run):
    a = load_file(str(ref / "checkpoints" / "last.safetensors"))
    b = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    # the resumed epoch's train loss/accuracy come from the running sums in the checkpoint
    rows = [[{k: v for k, v in json.loads(r).items() if k != "seconds"}
             for r in (d / "metrics.jsonl").read_text().splitlines()] for d in (ref, run)]
    assert rows[0] == rows[1]


def _interrupt_at(step, exc=None):
    """lr_factor that sends this process SIGINT (or raises ``exc``) during global ``step``."""
    real = T.lr_factor

    def hook(cfg, s, total, spe):
        if s == step:
            if exc is not None:
                raise exc
            os.kill(os.getpid(), signal.SIGINT)
        return real(cfg, s, total, spe)

    return hook


def test_ctrl_c_mid_epoch_saves_the_position_and_resume_is_bit_identical(
        reference, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    monkeypatch.setattr(T, "lr_factor", _interrupt_at(50))  # epoch 2, its 6th step
    assert main([*ARGS, "--out", str(run)]) == 130
    assert (f"interrupted: checkpoint saved at epoch 2, step 6/{STEPS_PER_EPOCH}; continue "
            f"with cnnlab train --resume {run}") in capsys.readouterr().err
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert (meta["epoch"], meta["step"]) == (1, 51)  # the step in progress finished
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_run(reference, run)


def test_killed_after_a_save_every_checkpoint_resumes_bit_identical(reference, tmp_path,
                                                                     monkeypatch):
    run = tmp_path / "run"
    # a crash with no chance to save: the last checkpoint is --save-every's, at step 60
    monkeypatch.setattr(T, "lr_factor", _interrupt_at(70, RuntimeError("killed")))
    assert main([*ARGS, "--save-every", "20", "--out", str(run)]) == 1
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert (meta["epoch"], meta["step"]) == (1, 60)
    assert meta["train_state"]["file"] == "state-e0001-s00000060.safetensors"
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_run(reference, run)


def test_cli_sigint_from_outside_then_resume(reference, tmp_path):
    """The real thing: SIGINT sent to `python -m cnnlab train` once a checkpoint exists."""
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.json"
    proc = subprocess.Popen([sys.executable, "-m", "cnnlab", *ARGS, "--save-every", "5",
                             "--out", str(run)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, f"expected exit 130 after SIGINT, got {proc.returncode}: {err}"
    assert f"continue with cnnlab train --resume {run}" in err
    step = json.loads(last.read_text())["step"]
    assert 5 <= step < 2 * STEPS_PER_EPOCH
    assert main(["train", "--resume", str(run)]) == 0
    assert_same_run(reference, run)


def test_negative_save_every_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # refused at parse time, by argparse
        main([*ARGS, "--save-every", "-1", "--out", str(tmp_path / "run")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--save-every: -1 is out of range (expected save_every >= 0)" in err
    assert "\n" not in err


def test_streamed_data_is_a_one_line_error(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "imgs", 2, 1)
    assert main([*ARGS, "--data", str(folder), "--in-memory", "no", "--batch-size", "2",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--engine numpy: trains in memory only" in err and "\n" not in err
