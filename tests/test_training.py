"""The restructured trainer: the objective against hand computations, honest model selection
(validation split), resuming a finished run, NaN before any checkpoint, a reused config, and
the public Python API."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.training.objectives import Batch, CrossEntropy, Distillation, Objective

FAST = ["--epochs", "1", "--progress", "none", "--threads", "1"]


# ------------------------------------------------------------------------- the objective
def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class _FixedTeacher:
    def __init__(self, logits):
        self.t = torch.tensor(logits)

    def logits(self, x01):
        return self.t


def test_objective_matches_hand_computation_and_torch_autograd():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(4, 5)) * 3  # student logits
    t = rng.normal(size=(4, 5)) * 3  # teacher logits
    y = np.array([0, 3, 1, 4])
    eps, T, alpha = 0.1, 4.0, 0.7
    # by hand: smoothed CE, and Hinton's alpha T^2 KL(p_t^T || p_s^T) + (1 - alpha) CE
    q = np.full((4, 5), eps / 5)
    q[np.arange(4), y] += 1 - eps
    ce = -(q * np.log(_softmax(z))).sum(1).mean()
    ps, pt = _softmax(z / T), _softmax(t / T)
    kl = (pt * np.log(pt / ps)).sum(1).mean()
    hand = (1 - alpha) * ce + alpha * T * T * kl
    obj = Objective([(1 - alpha, CrossEntropy(eps)),
                     (alpha, Distillation(_FixedTeacher(t.astype(np.float32)), T))])
    batch = Batch(torch.zeros(4, 1, 2, 2), torch.from_numpy(y))
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    total, parts = obj(zt, batch)
    assert abs(total.item() - hand) < 1e-5
    assert abs(parts["ce"].item() - ce) < 1e-9
    total.backward()
    loss_np, parts_np, grad_np = obj.numpy(z.astype(np.float32), batch)  # the NumPy engine's
    assert abs(loss_np - hand) < 1e-5
    np.testing.assert_allclose(grad_np, zt.grad.numpy(), rtol=1e-4, atol=1e-7)
    # the gradient's closed form, by hand: (1-a)(softmax(z) - q)/B + a T (p_s - p_t)/B
    by_hand = ((1 - alpha) * (_softmax(z) - q) + alpha * T * (ps - pt)) / 4
    np.testing.assert_allclose(zt.grad.numpy(), by_hand, rtol=1e-4, atol=1e-7)  # float32 KD


def test_auxiliary_heads_compose_without_a_branch_in_the_loop():
    from cnnlab.config import make_config
    from cnnlab.training.objectives import build_objective

    class WithAux(torch.nn.Module):  # GoogLeNet's protocol: aux logits kept from forward
        aux_outputs = [torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.0]])]

    y = torch.tensor([0])
    obj = build_objective(make_config(label_smoothing=0.0, aux_weight=0.3), WithAux())
    main_logits = torch.tensor([[1.0, 1.0, 1.0]])
    total, parts = obj(main_logits, Batch(torch.zeros(1, 1, 1, 1), y))
    ce = lambda z: float(np.log(np.exp(z).sum()) - z[0])  # noqa: E731 - label 0, by hand
    aux = ce(np.array([2.0, 0.0, -1.0])) + ce(np.array([0.0, 1.0, 0.0]))
    assert total.item() == pytest.approx(np.log(3) + 0.3 * aux, rel=1e-6)
    assert parts["ce"].item() == pytest.approx(np.log(3), rel=1e-6)  # what the log shows


# ----------------------------------------------------------------------- model selection
@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    out = tmp_path_factory.mktemp("sel") / "run"
    assert main(["train", *FAST, "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_validation_split_picks_the_checkpoint_and_the_test_set_is_used_once(run2, capsys):
    final = json.loads((run2 / "final.json").read_text())
    rows = [json.loads(r) for r in (run2 / "metrics.jsonl").read_text().splitlines()]
    assert all(r.get("val_acc") is not None and "test_acc" not in r for r in rows)
    best = min(range(len(rows)), key=lambda i: (rows[i]["val_loss"], i))  # lowest val loss
    assert final["checkpoint"] == {"name": "best", "epoch": best + 1,
                                   "selected_on": "validation loss"}
    assert final["val_accuracy"] == pytest.approx(rows[best]["val_acc"])
    assert final["val_images"] == 144  # 10% of the 1,437 digits training images, stratified
    assert main(["eval", str(run2), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(final["test_accuracy"])


def test_val_split_zero_keeps_the_last_epoch_and_refuses_early_stop(tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["train", *FAST, "--val-split", "0", "--out", str(out)]) == 0
    final = json.loads((out / "final.json").read_text())
    assert final["checkpoint"]["name"] == "last" and final["val_images"] == 0
    assert not (out / "checkpoints" / "best.safetensors").exists()
    row = json.loads((out / "metrics.jsonl").read_text())
    assert row["test_acc"] == pytest.approx(final["test_accuracy"])  # the same model
    assert main(["train", *FAST, "--val-split", "0", "--early-stop", "2",
                 "--out", str(tmp_path / "no")]) == 2
    assert "--early-stop 2: needs a validation split" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


# --------------------------------------------------------------- resuming a finished run
def test_resume_of_a_finished_run_changes_nothing_then_extends(run2, tmp_path, capsys):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(run2, run)
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    for extra in ([], ["--epochs", "2"], ["--epochs", "1"]):
        assert main(["train", "--resume", str(run), *extra]) == 0
        out = capsys.readouterr().out
        assert "already finished 2 epochs; nothing to do" in out and "None" not in out
    assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert main(["train", "--resume", str(run), "--epochs", "3", "--progress", "none"]) == 0
    assert "after 3 epochs" in capsys.readouterr().out
    final = json.loads((run / "final.json").read_text())
    assert final["epochs"] == 3 and final["test_accuracy"] is not None
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3


def test_nan_before_any_checkpoint_does_not_claim_one(tmp_path, monkeypatch, capsys):
    import torch.nn.functional as tF

    real = tF.cross_entropy

    def poisoned(*a, **k):  # step 2 of epoch 1: no checkpoint exists yet
        poisoned.n += 1
        out = real(*a, **k)
        return out * torch.nan if poisoned.n >= 2 else out
    poisoned.n = 0
    monkeypatch.setattr(tF, "cross_entropy", poisoned)
    assert main(["train", *FAST, "--out", str(tmp_path / "nan")]) == 1
    err = capsys.readouterr().err
    assert "loss became nan at epoch 1, step 2" in err
    assert "no checkpoint had been written yet" in err and "last good checkpoint" not in err


def test_one_epoch_says_epoch_and_a_reused_config_gets_its_own_folder(run2, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = (run2 / "final.json").read_bytes()
    assert main(["train", "--config", str(run2 / "config.yaml"), "--epochs", "1",
                 "--progress", "none"]) == 0
    cap = capsys.readouterr()
    assert "after 1 epoch " in cap.out and "1 epochs" not in cap.out
    assert "already holds a run; writing a new run directory" in cap.err
    assert (run2 / "final.json").read_bytes() == before
    assert len(list((tmp_path / "runs").iterdir())) == 1


# ------------------------------------------------------------------------ the Python API
def test_import_cnnlab_is_light_and_train_shows_its_options():
    code = ("import sys, inspect, cnnlab; assert 'torch' not in sys.modules; "
            "p = inspect.signature(cnnlab.train).parameters; "
            "assert {'teacher', 'init', 'freeze', 'val_split', 'epochs'} <= set(p); "
            "assert callable(cnnlab.load_model) and callable(cnnlab.evaluate); "
            "assert callable(cnnlab.predict) and callable(cnnlab.summary); "
            "assert callable(cnnlab.train); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "ok", r.stderr[-1500:]


def test_python_train_and_its_options(tmp_path):
    import cnnlab

    s = cnnlab.train(epochs=1, out=str(tmp_path / "py"), progress="none", threads=1,
                     val_split=0.2)
    assert s["epochs"] == 1 and s["val_images"] == 288 and 0 < s["test_accuracy"] <= 1
    with pytest.raises(ValueError, match="unknown config key 'epoch'"):
        cnnlab.train(epoch=1)
