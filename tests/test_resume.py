"""Nothing lost: exact resume after SIGKILL, Ctrl-C saves, NaN stops with the last good
checkpoint kept, and data-parallel training over 2 processes (gloo) matches 1 process."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

from cnnlab.cli import main

# Small and deterministic: LeNet-5 on digits, 1 thread, checkpoints every 5 steps.
ARGS = ["--epochs", "3", "--batch-size", "32", "--save-every", "5", "--threads", "1",
        "--progress", "none", "--seed", "3"]


def _cnnlab(*argv):
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _weights(run):
    return load_file(str(run / "checkpoints" / "last.safetensors"))


def _wait_for_mid_epoch_checkpoint(proc, run, timeout=120):
    """Poll until a checkpoint saved in the middle of epoch 2 exists, then return."""
    t = time.time()
    while time.time() - t < timeout:
        meta = run / "checkpoints" / "last.json"
        if meta.exists():
            try:
                m = json.loads(meta.read_text())
            except json.JSONDecodeError:
                continue
            if m["epoch"] == 1 and m["step"] > 45 + 10:  # 45 steps per epoch
                return m
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.005)
    pytest.fail("no mid-epoch checkpoint appeared")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "uninterrupted"
    assert main(["train", *ARGS, "--out", str(ref)]) == 0

    run = tmp_path / "killed"
    proc = _cnnlab("train", *ARGS, "--out", str(run))
    _wait_for_mid_epoch_checkpoint(proc, run)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["step"] % 45 != 0 or meta["epoch"] < 3  # it really stopped mid-run

    assert main(["train", "--resume", str(run), "--progress", "none"]) == 0
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), f"{k} differs after resume"
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3"]  # no duplicated epoch row
    ref_rows = (ref / "metrics.csv").read_text().splitlines()
    strip = lambda rs: [",".join(r.split(",")[:6]) for r in rs]  # noqa: E731 - all but seconds
    assert strip(rows) == strip(ref_rows)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "interrupted"
    proc = _cnnlab("train", *ARGS, "--save-every", "0", "--out", str(run))
    t = time.time()
    while not (run / "checkpoints" / "last.json").exists():  # wait for epoch 1's checkpoint
        assert time.time() - t < 120 and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("training finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and f"--resume {run}" in err and "Traceback" not in err
    assert main(["train", "--resume", str(run), "--progress", "none"]) == 0
    assert json.loads((run / "final.json").read_text())["epochs"] == 3


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                        capsys):
    import torch

    import torch.nn.functional as tF

    real = tF.cross_entropy
    calls = {"n": 0}

    def poisoned(*a, **k):  # epoch 1 trains normally (23 steps of 64), then the loss is NaN
        calls["n"] += 1
        out = real(*a, **k)
        return out * torch.nan if calls["n"] > 30 and torch.is_grad_enabled() else out

    monkeypatch.setattr(tF, "cross_entropy", poisoned)
    run = tmp_path / "nan"
    assert main(["train", "--epochs", "3", "--out", str(run), "--progress", "none"]) == 1
    err = capsys.readouterr().err
    assert "loss became nan at epoch 2, step" in err and "last good checkpoint is kept" in err
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    assert meta["epoch"] == 1
    w = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert all(np.isfinite(v).all() for v in w.values())


def test_config_file_with_overrides_and_unknown_keys(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nlr: 0.02\nbatch_size: 128\n")
    run = tmp_path / "r"
    assert main(["train", "--config", str(cfg), "--lr", "0.03", "--out", str(run),
                 "--progress", "none"]) == 0
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["lr"] == 0.03 and saved["batch_size"] == 128
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown config key 'epoch'; did you mean epochs?" in capsys.readouterr().err


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    """Data parallel over 2 CPU processes with the same global batch ends where 1 process does
    (gradients are the mean over the same 64 images; only float summation order differs)."""
    common = ["--epochs", "2", "--batch-size", "64", "--augment", "none", "--threads", "1",
              "--device", "cpu", "--progress", "none", "--seed", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *common, "--out", str(one)]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--nproc", "2", *common,
                        "--out", str(two)], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    f1 = json.loads((one / "final.json").read_text())
    f2 = json.loads((two / "final.json").read_text())
    assert f2["processes"] == 2
    assert abs(f1["test_accuracy"] - f2["test_accuracy"]) <= 0.01
    a, b = _weights(one), _weights(two)
    for k in a:  # 46 steps of float32 round-off, including the uneven last batch (15/14)
        rel = np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-12)
        assert rel < 1e-4, (k, rel)  # measured: <= 3e-6
