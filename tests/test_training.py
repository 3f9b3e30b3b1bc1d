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


def test_build_objective_weights_each_term_from_the_config():
    # issue 21: mutants of build_objective's weights and arguments survived the tests above
    from cnnlab.config import make_config
    from cnnlab.training.objectives import AuxiliaryCE, build_objective

    cfg = make_config(label_smoothing=0.1, aux_weight=0.25, kd_alpha=0.7, kd_temperature=3.0)
    plain = build_objective(cfg, torch.nn.Linear(2, 2))  # no teacher: CE alone, weight 1
    assert [(w, t.name) for w, t in plain.terms] == [(1.0, "ce")]
    assert plain.terms[0][1].eps == 0.1
    kd = build_objective(cfg, torch.nn.Linear(2, 2), teacher=_FixedTeacher(np.zeros((1, 2))))
    assert [t.name for _, t in kd.terms] == ["ce", "kd"]
    assert kd.terms[0][0] == pytest.approx(0.3) and kd.terms[1][0] == 0.7
    assert kd.terms[1][1].T == 3.0 and kd.describe() == "0.3 x ce + 0.7 x kd"
    _, parts = kd(torch.zeros(1, 2), Batch(torch.zeros(1, 1, 1, 1), torch.tensor([0])))
    assert parts["kd"].item() == pytest.approx(0.0, abs=1e-7)  # the teacher given is asked

    class Torchvision(torch.nn.Module):  # torchvision's GoogLeNet: the flag, no aux_outputs
        aux_logits = True

    class Flagged(torch.nn.Module):
        aux_logits = False

    aux = build_objective(cfg, Torchvision())
    assert [(w, t.name) for w, t in aux.terms] == [(1.0, "ce"), (0.25, "aux")]
    assert isinstance(aux.terms[1][1], AuxiliaryCE) and aux.terms[1][1].eps == 0.1
    assert [t.name for _, t in build_objective(cfg, Flagged()).terms] == ["ce"]
    main_z, aux_z, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([0])
    _, parts = aux((main_z, aux_z), Batch(torch.zeros(1, 1, 1, 1), y))  # aux heads in a tuple
    assert parts["aux"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(aux_z, y, label_smoothing=0.1).item(), rel=1e-6)


def test_distillation_asks_the_teacher_once_per_batch_in_both_engines():
    class Counting(_FixedTeacher):
        calls = 0

        def logits(self, x01):
            Counting.calls += 1
            assert x01 is batch.x01  # the teacher sees the batch's images
            return self.t

    obj = Objective([(1.0, Distillation(Counting(np.eye(3, dtype=np.float32)), 2.0))])
    batch = Batch(torch.zeros(3, 1, 1, 1), torch.tensor([0, 1, 2]))
    loss, _ = obj(torch.eye(3), batch)  # student == teacher: nothing to learn
    assert abs(loss.item()) < 1e-7
    loss_np, _, grad = obj.numpy(np.eye(3, dtype=np.float32), batch)
    assert abs(loss_np) < 1e-12 and np.abs(grad).max() < 1e-7
    assert Counting.calls == 1 and "teacher" in batch.cache


def test_numpy_objective_stays_finite_at_large_logits_and_defaults_to_no_smoothing():
    # issue 21: the max-subtraction of both log-softmaxes, the float32 gradient, the parts
    # the NumPy engine logs and the default label smoothing survived mutation
    from cnnlab.training.objectives import AuxiliaryCE

    z = np.array([[1000.0, 0.0, -5.0], [0.0, -1000.0, 3.0]], dtype=np.float32)
    y = torch.tensor([0, 2])
    teacher = _FixedTeacher(z[::-1].copy())
    obj = Objective([(0.5, CrossEntropy()), (0.5, Distillation(teacher, 1.0))])
    batch = Batch(torch.zeros(2, 1, 1, 1), y)
    zt = torch.tensor(z, requires_grad=True)
    total, parts = obj(zt, batch)
    total.backward()
    assert parts["ce"].item() == pytest.approx(
        torch.nn.functional.cross_entropy(torch.tensor(z), y).item(), rel=1e-6)
    loss_np, parts_np, grad_np = obj.numpy(z, batch)
    assert np.isfinite(loss_np) and loss_np == pytest.approx(total.item(), rel=1e-5)
    assert parts_np["ce"] == pytest.approx(parts["ce"].item(), rel=1e-5)
    assert parts_np["kd"] == pytest.approx(parts["kd"].item(), rel=1e-5)
    assert grad_np.dtype == np.float32
    np.testing.assert_allclose(grad_np, zt.grad.numpy(), rtol=1e-4, atol=1e-6)

    class WithAux(torch.nn.Module):
        aux_outputs = [torch.tensor([[0.0, 2.0, 1.0]])]

    one = Batch(torch.zeros(1, 1, 1, 1), torch.tensor([0]))
    assert AuxiliaryCE(WithAux())(torch.zeros(1, 3), one).item() == pytest.approx(
        torch.nn.functional.cross_entropy(WithAux.aux_outputs[0], one.y).item(), rel=1e-6)


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
