"""Fine-tuning: --init from a cnnlab run or a torchvision-layout .pth, head replacement,
first-conv channel adaptation, --freeze (weights and batch-norm statistics bit-unchanged),
--unfreeze-at, exact resume with frozen layers, and one-line errors that leave nothing."""

import json

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

import cnnlab.training.loop as L
from cnnlab.cli import main
from cnnlab.registry import get_model
from cnnlab.training import finetune

FAST = ["--progress", "none", "--threads", "1", "--batch-size", "64"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """LeNet-5 trained 1 epoch on the digits: the pretrained weights."""
    out = tmp_path_factory.mktemp("src") / "run"
    assert main(["train", *FAST, "--epochs", "1", "--out", str(out)]) == 0
    return out


def _w(run, name="last"):
    return load_file(str(run / "checkpoints" / f"{name}.safetensors"))


def test_reset_classifier_replaces_only_the_head():
    for name, head in (("lenet5", "classifier.4"), ("resnet20", "fc")):
        m = get_model(name, num_classes=10, in_channels=1)
        before = {k: v.clone() for k, v in m.state_dict().items()}
        assert m.head_names() == [head]
        m.reset_classifier(3)
        sd = m.state_dict()
        assert sd[f"{head}.weight"].shape[0] == 3
        assert m.eval()(torch.zeros(2, 1, 32, 32)).shape == (2, 3)
        assert all(torch.equal(sd[k], v) for k, v in before.items() if not k.startswith(head))
    g = get_model("googlenet", num_classes=10)
    assert g.head_names() == ["fc", "aux1.fc2", "aux2.fc2"]
    g.reset_classifier(4)
    assert g.aux1.fc2.out_features == 4 and g.fc.out_features == 4


def test_torchvision_layout_pth_is_adapted_key_by_key(tmp_path):
    # torchvision's resnet18 key layout (torchvision/models/resnet.py): written by this test
    sd = get_model("resnet18", num_classes=1000).state_dict()
    for k, shape in (("conv1.weight", (64, 3, 7, 7)), ("bn1.running_var", (64,)),
                     ("layer1.0.conv1.weight", (64, 64, 3, 3)),
                     ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
                     ("layer4.1.bn2.bias", (512,)), ("fc.weight", (1000, 512))):
        assert tuple(sd[k].shape) == shape
    sd["extra.unused"] = torch.zeros(3)
    torch.save(sd, tmp_path / "resnet18.pth")
    target = get_model("resnet18", num_classes=10, in_channels=1)
    head = {"fc.weight", "fc.bias"}
    arrays = {k: v.numpy() for k, v in target.state_dict().items()}
    cfg = L.make_config(model="resnet18", init=str(tmp_path / "resnet18.pth"))
    load, rep, table = finetune.init_weights(cfg, arrays, head, [str(i) for i in range(10)])
    assert rep["head"] == "replaced" and "fc.weight" not in load
    assert rep["unexpected"] == ["extra.unused"] and rep["missing"] == []
    assert len(rep["matched"]) == len(sd) - 3  # all but fc.weight, fc.bias, extra.unused
    np.testing.assert_allclose(load["conv1.weight"], sd["conv1.weight"].sum(1, keepdim=True))
    assert "3 -> 1 input channels (weights summed)" in table and "matched" in table
    # the reverse: a 1-channel source on 3-channel data, replicated / 3
    w, how = finetune._adapt_first_conv(np.ones((4, 1, 3, 3), np.float32), 3)
    assert w.shape == (4, 3, 3, 3) and np.allclose(w, 1 / 3) and "replicated" in how


def test_init_from_a_run_and_freeze_backbone_keeps_weights_bit_identical(source, tmp_path,
                                                                         capsys):
    out = tmp_path / "probe"
    assert main(["train", *FAST, "--epochs", "1", "--init", str(source), "--freeze",
                 "backbone", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "init from" in err and "matched       10 tensors" in err and "head        kept" in err
    src, new = _w(source, "best"), _w(out)
    for k in src:
        if k.startswith("classifier.4"):
            assert not np.array_equal(src[k], new[k]), k  # the head trained
        else:
            assert np.array_equal(src[k], new[k]), k  # frozen: bit for bit
    meta = json.loads((out / "checkpoints" / "last.json").read_text())
    assert meta["init"]["source"] == str(source) and meta["init"]["matched"] == 10


def test_frozen_batch_norm_keeps_its_running_statistics():
    m = get_model("resnet20", num_classes=10, in_channels=1)
    head = {"fc.weight", "fc.bias"}
    finetune.apply_freeze(m, finetune.frozen_names(m, "until:layer1", head))
    before = {k: v.clone() for k, v in m.state_dict().items() if "running" in k}
    m.train()
    finetune.frozen_norm_eval(m)
    m(torch.randn(8, 1, 32, 32))
    after = m.state_dict()
    assert torch.equal(after["bn1.running_mean"], before["bn1.running_mean"])
    assert torch.equal(after["layer1.2.bn2.running_var"], before["layer1.2.bn2.running_var"])
    assert not torch.equal(after["layer2.0.bn1.running_mean"], before["layer2.0.bn1.running_mean"])


def test_unfreeze_at_and_exact_resume_with_frozen_layers(source, tmp_path, monkeypatch, capsys):
    args = [*FAST, "--epochs", "2", "--init", str(source), "--freeze", "until:features.3",
            "--unfreeze-at", "2", "--lr-backbone", "0.1", "--save-every", "5", "--seed", "2"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert main(["train", *args, "--out", str(ref)]) == 0
    assert "epoch 2: unfreezing 4 parameter tensors" in capsys.readouterr().err
    assert not np.array_equal(_w(ref)["features.0.weight"], _w(source, "best")["features.0.weight"])
    real = L.lr_factor

    def crash(cfg, step, total, spe):  # killed in epoch 2, after a --save-every checkpoint
        if step == 33:
            raise RuntimeError("killed")
        return real(cfg, step, total, spe)
    monkeypatch.setattr(L, "lr_factor", crash)
    assert main(["train", *args, "--out", str(run)]) == 1
    monkeypatch.undo()
    assert json.loads((run / "checkpoints" / "last.json").read_text())["step"] == 30
    assert main(["train", "--resume", str(run)]) == 0
    a, b = _w(ref), _w(run)
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra, message", [
    (["--freeze", "until:features.99"], "--freeze until:features.99: model LeNet5 has no layer "
                                        "'features.99'; its layers: features, features.0"),
    (["--freeze", "backbone", "--unfreeze-at", "5"], "--unfreeze-at 5: expected an epoch from 1"),
    (["--unfreeze-at", "1"], "--unfreeze-at 1: needs --freeze"),
])
def test_bad_fine_tuning_arguments_exit_2_and_leave_nothing(extra, message, tmp_path, capsys):
    out = tmp_path / "x"
    assert main(["train", *FAST, "--epochs", "1", *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_source_matching_nothing_is_refused(tmp_path, capsys):
    save_file({"encoder.w": np.zeros((3, 3), np.float32)}, str(tmp_path / "other.safetensors"))
    out = tmp_path / "x"
    assert main(["train", *FAST, "--init", str(tmp_path / "other.safetensors"),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "none of its 1 tensors match model 'lenet5'" in err and not out.exists()
