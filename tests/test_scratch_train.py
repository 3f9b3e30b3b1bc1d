"""`cnnlab train --engine numpy`: the torch trainer's data, run directory and checkpoints,
with the arithmetic in cnnlab.scratch."""

import json

import numpy as np
import pytest
import torch

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli import main
from cnnlab.registry import get_model
from cnnlab import train


def test_cli_numpy_engine_run_directory_checkpoint_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--engine", "numpy", "--epochs", "2", "--out", str(out),
                 "--progress", "none"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    for name in ("config.yaml", "metrics.csv", "metrics.jsonl", "final.json",
                 "checkpoints/best.safetensors", "checkpoints/last.safetensors"):
        assert (out / name).exists(), name
    final = json.loads((out / "final.json").read_text())
    assert final["engine"] == "numpy" and final["epochs"] == 2
    # the numpy checkpoint loads into the torch model and predicts the same
    weights, meta = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert meta["engine"] == "numpy" and meta["model"] == "lenet5"
    tm = get_model("lenet5", **meta["model_kwargs"]).eval()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    nm = get_model("lenet5", engine="numpy", **meta["model_kwargs"]).eval()
    nm.load_state_dict(weights)
    x = np.random.default_rng(0).standard_normal((8, 1, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(nm(x), tm(torch.from_numpy(x)).detach().numpy(), atol=1e-4)
    # exact resume: one more epoch appended to the same run
    summary = train(resume=out, epochs=3)
    assert summary["epochs"] == 3 and summary["engine"] == "numpy"
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2, 3]


def test_numpy_engine_rejects_models_without_twin(tmp_path):
    with pytest.raises(ValueError, match="no NumPy twin"):
        train(engine="numpy", model="vgg11", epochs=1, out=str(tmp_path / "r"), progress="none")


@pytest.mark.slow
def test_default_digits_lenet5_reaches_97_percent(tmp_path):
    summary = train(engine="numpy", out=str(tmp_path / "r"), progress="none")
    assert summary["test_accuracy"] >= 0.97
