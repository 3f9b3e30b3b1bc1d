"""``cnnlab.train`` with a user's own ``nn.Module`` and in-memory arrays (Keras's ``fit(x, y)``,
Lightning's ``Trainer.fit(model, data)``): every trainer feature, ``load_model`` rebuilding the
class from ``module:Class``, resume with the same arrays, and the one training loop."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
import cnnlab.training.loop as T  # the loop looks lr_factor up here
from cnnlab.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    """Importable (module level): ``load_model`` rebuilds it as ``TinyNet(**get_config())``."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.num_classes, self.width = num_classes, width
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width),
                                      nn.ReLU(), nn.MaxPool2d(4))  # N x w x 8 x 8
        self.classifier = nn.Linear(width * 8 * 8, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))

    def get_config(self) -> dict:
        return {"num_classes": self.num_classes, "width": self.width}


@pytest.fixture(scope="module")
def arrays():
    """((x_train, y_train), (x_test, y_test)): the built-in digits, uint8 (N, 1, 32, 32)."""
    from cnnlab.data import load_data

    d = load_data("digits", progress=False)
    return (d.train.images[:600], d.train.labels[:600]), (d.test.images[:200], d.test.labels[:200])


FAST = dict(epochs=2, batch_size=32, threads=1, progress="none", seed=1)


def test_own_module_on_arrays_with_validation_split_then_load_model(arrays, tmp_path, capsys):
    torch.manual_seed(0)
    net = TinyNet(width=6)
    run = tmp_path / "run"
    s = cnnlab.train(model=net, data=arrays, val_split=0.2, out=str(run), **FAST)
    assert s["model"] == f"{__name__}:TinyNet" and s["val_images"] == 120
    assert s["checkpoint"]["name"] == "best" and s["test_accuracy"] > 0.3
    assert "in-memory arrays" in capsys.readouterr().err  # eval/viz cannot reload them
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert meta["model"] == f"{__name__}:TinyNet"
    assert meta["model_kwargs"] == {"num_classes": 10, "width": 6}
    assert meta["data_fingerprint"]["train"]["shape"] == [600, 1, 32, 32]

    model, meta = cnnlab.load_model(run)
    assert type(model) is TinyNet and model.width == 6
    x = torch.randn(5, 1, 32, 32)
    net.eval()
    with torch.no_grad():  # trained in place: the instance holds the chosen checkpoint
        assert torch.allclose(model(x), net(x), atol=1e-5)
    with pytest.raises(UserError, match="in-memory arrays"):
        cnnlab.evaluate(run)


def _interrupt_at(step):
    real = T.lr_factor

    def hook(cfg, s, total, spe):
        if s == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real(cfg, s, total, spe)

    return hook


def test_resume_mid_epoch_with_the_same_arrays_equals_an_uninterrupted_run(
        arrays, tmp_path, monkeypatch):
    from safetensors.numpy import load_file

    opts = dict(FAST, val_split=0.2, save_every=4)
    torch.manual_seed(0)
    ref = tmp_path / "ref"
    cnnlab.train(model=TinyNet(), data=arrays, out=str(ref), **opts)

    run = tmp_path / "run"
    monkeypatch.setattr(T, "lr_factor", _interrupt_at(20))  # epoch 2 (15 steps an epoch)
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        cnnlab.train(model=TinyNet(), data=arrays, out=str(run), **opts)
    monkeypatch.undo()
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 21

    with pytest.raises(UserError, match="pass the same arrays again"):
        cnnlab.train(resume=str(run))
    (xtr, ytr), test = arrays
    other = ((xtr[::-1].copy(), ytr[::-1].copy()), test)
    with pytest.raises(UserError, match="these arrays differ"):
        cnnlab.train(resume=str(run), data=other)
    cnnlab.train(resume=str(run), data=arrays)  # the class is rebuilt from module:Class
    a = load_file(str(ref / "checkpoints" / "last.safetensors"))
    b = load_file(str(run / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    rows = [[{k: v for k, v in json.loads(r).items() if k != "seconds"}
             for r in (d / "metrics.jsonl").read_text().splitlines()] for d in (ref, run)]
    assert rows[0] == rows[1]


def test_a_class_defined_in_a_function_trains_and_says_load_model_needs_it(
        arrays, tmp_path, capsys):
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(32 * 32, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    rows = []
    (xtr, ytr), _ = arrays
    s = cnnlab.train(model=Local(), data=(xtr, ytr), out=str(tmp_path / "run"), val_split=0,
                     on_epoch=rows.append, **FAST)
    err = capsys.readouterr().err
    assert "defined inside a function" in err and "cnnlab.load_model(run, model=Local(...))" in err
    assert [r["epoch"] for r in rows] == [1, 2] and "test_acc" in rows[0]
    assert s["epochs"] == 2 and 0 <= s["test_accuracy"] <= 1  # test_split 0.2 held out
    with pytest.raises(UserError, match="defined inside a function"):
        cnnlab.load_model(tmp_path / "run")
    model, _ = cnnlab.load_model(tmp_path / "run", model=Local())
    assert isinstance(model, Local)


def test_bad_arrays_and_models_are_one_line_errors(tmp_path):
    x = np.zeros((20, 1, 8, 8), np.float32)
    with pytest.raises(UserError, match=r"images are float32 \(20, 1, 8, 8\), expected uint8 "
                                        r"\(N, C, H, W\); floats in 0..1"):
        cnnlab.train(model=TinyNet(), data=(x, np.zeros(20, int)), out=str(tmp_path / "a"))
    with pytest.raises(UserError, match="expected 20 integer labels"):
        cnnlab.train(data=(x.astype(np.uint8), np.zeros(19, int)), out=str(tmp_path / "b"))
    with pytest.raises(UserError, match="model: found int"):
        cnnlab.train(model=3, out=str(tmp_path / "c"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_help_shows_the_new_arguments_and_no_module_shadows_the_function():
    import importlib.util
    import inspect

    p = inspect.signature(cnnlab.train).parameters
    assert {"model", "data", "classes", "on_epoch", "epochs"} <= set(p)
    doc = inspect.getdoc(cnnlab.train)
    assert "torch.nn.Module" in doc and "get_config" in doc and "(x_train, y_train)" in doc
    assert importlib.util.find_spec("cnnlab.train") is None


def test_the_lab_trains_through_cnnlab_train(monkeypatch):
    from cnnlab.lab import _common as C
    from cnnlab.training import api

    calls = []
    real = api.train
    monkeypatch.setattr(api, "train", lambda *a, **k: calls.append(k) or real(*a, **k))
    x = torch.randint(0, 255, (64, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(64) % 2
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    h = C.fit(net, x, y, x[:16], y[:16], epochs=2, lr=0.05, prep=C.standardizer(x))
    assert len(calls) == 1 and calls[0]["model"] is net and calls[0]["val_split"] == 0
    assert calls[0]["normalize"] == C.standardizer(x).normalize  # the trainer standardises
    assert len(h["train_loss"]) == len(h["test_acc"]) == 2 and not h["diverged"]
    h = C.fit(net, x, y, x[:16], y[:16], epochs=2, lr=0.05, prep=lambda v: v * float("inf"))
    assert calls[1]["normalize"] == "none" and calls[1]["model"].net is net  # prep in front
    assert h["diverged"] and h["test_acc"] == []  # a NaN loss stops the run, as before
    assert "def fit(" in (ROOT / "src/cnnlab/lab/_common.py").read_text()
    assert "opt.step()" not in (ROOT / "src/cnnlab/lab/_common.py").read_text()  # no own loop


def test_no_import_cycles():
    r = subprocess.run([sys.executable, "/work/shared/tools/import_cycles.py", "src", "cnnlab"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    if r.returncode and "No such file" in r.stderr:
        pytest.skip("the shared import-cycle tool is not here")
    assert r.stdout.strip().splitlines()[-1] == "import cycles: 0", r.stdout
