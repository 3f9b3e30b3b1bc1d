"""Knowledge distillation: teachers from both engines, the teacher's own input spec, the
teacher recorded in the student, exact resume with a teacher, 2 gloo processes, and bad
teachers refused before anything is written. (The loss itself is checked by hand in
tests/test_training.py.)"""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

import cnnlab.training.loop as L
from cnnlab.cli import main
from cnnlab.training.teacher import Teacher

FAST = ["--progress", "none", "--threads", "1", "--epochs", "1"]
SMALL_MLP = ["--model", "mlp", "--model-kwargs", '{"hidden": [32]}']


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A torch LeNet-5 and a NumPy-engine MLP, 1 epoch each on the digits."""
    root = tmp_path_factory.mktemp("teachers")
    assert main(["train", *FAST, "--out", str(root / "torch")]) == 0
    assert main(["train", *FAST, "--engine", "numpy", *SMALL_MLP, "--batch-size", "32",
                 "--out", str(root / "numpy")]) == 0
    return root


def test_both_engines_teach_both_engines_and_the_student_records_its_teacher(teachers, tmp_path):
    for teacher, engine in (("torch", "numpy"), ("numpy", "torch")):
        out = tmp_path / f"{teacher}-teaches-{engine}"
        assert main(["train", *FAST, *SMALL_MLP, "--engine", engine, "--teacher",
                     str(teachers / teacher), "--kd-temperature", "20", "--kd-alpha", "0.5",
                     "--out", str(out)]) == 0
        meta = json.loads((out / "checkpoints" / "last.json").read_text())
        ck = teachers / teacher / "checkpoints" / "best.safetensors"
        assert meta["teacher"]["path"] == str(ck.resolve())
        assert meta["teacher"]["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
        assert meta["teacher"]["engine"] == teacher and meta["config"]["kd_temperature"] == 20
        assert json.loads((out / "final.json").read_text())["teacher"]["sha256"]


def test_the_teacher_sees_the_batch_through_its_own_input_spec():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4))
    spec = {"channels": 3, "size": [16, 16], "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7]}
    t = Teacher(net, {"model": "x", "input": spec}, None, "cpu")
    x01 = torch.rand(2, 1, 32, 32)  # a grey 32x32 student batch
    x = torch.nn.functional.interpolate(x01.expand(-1, 3, -1, -1), size=(16, 16),
                                        mode="bilinear", antialias=True)
    mean, std = (torch.tensor(spec[k]).view(1, 3, 1, 1) for k in ("mean", "std"))
    x = (x - mean) / std
    net.train()  # the teacher runs in eval mode whatever the caller did
    assert torch.allclose(t.logits(x01), net(x), atol=1e-6) and not net.training
    assert all(not p.requires_grad for p in net.parameters())


def test_exact_resume_with_a_teacher(teachers, tmp_path, monkeypatch):
    args = [*FAST, "--epochs", "2", "--teacher", str(teachers / "torch"), "--save-every", "5",
            "--batch-size", "64", "--kd-temperature", "4"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *args, "--out", str(ref)]) == 0
    real = L.lr_factor

    def crash(cfg, step, total, spe):
        if step == 27:
            raise RuntimeError("killed")
        return real(cfg, step, total, spe)
    monkeypatch.setattr(L, "lr_factor", crash)
    assert main(["train", *args, "--out", str(run)]) == 1
    monkeypatch.undo()
    assert main(["train", "--resume", str(run)]) == 0
    a, b = (load_file(str(r / "checkpoints" / "last.safetensors")) for r in (ref, run))
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_distillation_under_two_gloo_processes_matches_one(teachers, tmp_path):
    common = [*FAST, "--batch-size", "64", "--augment", "none", "--device", "cpu",
              "--teacher", str(teachers / "torch"), "--kd-temperature", "4"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", *common, "--out", str(one)]) == 0
    r = subprocess.run([sys.executable, "-m", "cnnlab", "train", "--nproc", "2", *common,
                        "--out", str(two)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((two / "final.json").read_text())["processes"] == 2
    a, b = (load_file(str(r / "checkpoints" / "last.safetensors")) for r in (one, two))
    for k in a:  # the same global batches: only float summation order differs
        rel = np.abs(a[k] - b[k]).max() / (np.abs(a[k]).max() + 1e-12)
        assert rel < 1e-4, (k, rel)


def test_bad_teachers_exit_2_in_one_line_and_leave_no_run_directory(teachers, tmp_path, capsys):
    from cnnlab.checkpoint import load_checkpoint, save_checkpoint

    w, meta = load_checkpoint(teachers / "torch")
    save_checkpoint(tmp_path / "other", w, {**meta, "classes": list("abcdefghij")})
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    cases = [(str(tmp_path / "other.safetensors"), "are not the student's 10 classes"),
             (str(tmp_path / "junk.safetensors"), "not a cnnlab checkpoint"),
             (str(tmp_path / "missing"), "no such checkpoint")]
    for i, (teacher, message) in enumerate(cases):
        out = tmp_path / f"run{i}"
        assert main(["train", *FAST, "--teacher", teacher, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"--teacher {teacher}: " in err and message in err, err
        assert len(err.strip().splitlines()) == 1 and not out.exists()
    for flag, value in (("--kd-temperature", "0"), ("--kd-alpha", "1.5")):
        try:  # refused while parsing the arguments (argparse exits) or by the trainer
            rc = main(["train", *FAST, "--teacher", str(teachers / "torch"), flag, value,
                       "--out", str(tmp_path / "bad")])
        except SystemExit as e:
            rc = e.code
        assert rc == 2
        assert flag in capsys.readouterr().err and not (tmp_path / "bad").exists()
