"""Export (issue 13): every zoo model to ONNX, checked by onnx.checker and against torch with
onnxruntime on real test images (the built-in digits, through predict's own preprocessing);
.pt2 programs reload and match exactly; cnnlab's own layers; bad input exits 2."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from cnnlab.cli import main
from cnnlab.deploy.export import export_model, load_pt2
from cnnlab.errors import UserError
from cnnlab.nn import KMaxPool, MinPool2d, StochasticPool2d, stochastic_pool2d
from cnnlab.preprocess import load_image, normalize
from cnnlab.registry import get_model, list_models, model_info

from conftest import write_png

CLASSES = ["a", "b", "c"]
GRAY_28 = {"lenet5": dict(input_size=28), "mlp": {}, "linear": {}}


def small(name: str) -> tuple[dict, dict]:
    """(builder kwargs, input spec) of `name` at its small input (28 or 32 px), 3 classes."""
    info = model_info(name)
    kw = dict(GRAY_28.get(name, {} if info.input_size[1] <= 32 else {"small_input": True}))
    c, s = info.input_size[0], 28 if name in GRAY_28 else 32
    spec = {"channels": c, "size": [s, s], "mean": [0.2] * c, "std": [0.3] * c}
    return {**kw, "num_classes": len(CLASSES)}, spec


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """Eight real test digits (32x32 gray scans) as PNG files."""
    from cnnlab.data import load_data

    d = load_data("digits", progress=False)
    root = tmp_path_factory.mktemp("digits")
    return [write_png(root / f"{i}.png", d.test.images[i, 0]) for i in range(8)]


def real_batch(files, spec) -> torch.Tensor:
    """The digit files as the model sees them: predict's decoding and normalisation."""
    return torch.from_numpy(normalize(np.stack([load_image(f, spec) for f in files]), spec))


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """BatchNorm statistics of `x` (cumulative average), so logits have a trained model's
    scale rather than random init's compounding one; then eval mode."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


# One model per family and block type (CI's time budget: an export takes 1-5 s); every other
# zoo model is built from the same pieces (test_every_zoo_model_is_made_of_exported_pieces).
EXPORTED = {"lenet5": {}, "linear": {}, "mlp": {}, "alexnet": {"groups": 2}, "zfnet": {},
            "vgg11": {}, "vgg11_bn": {}, "googlenet": {}, "resnet18": {}, "resnet50": {},
            "resnet20": {}, "plain20": {}}


def leaf_types(model: nn.Module) -> set:
    return {type(m) for m in model.modules() if not list(m.children())}


def block_type(model: nn.Module):
    """The residual block class of a ResNet (None for other models)."""
    return type(model.layer1[0]) if hasattr(model, "layer1") else None


@pytest.fixture(scope="module")
def exported_pieces() -> list:
    with torch.device("meta"):
        reps = [get_model(r, **small(r)[0], **EXPORTED[r]) for r in EXPORTED]
    return [(type(m), block_type(m), leaf_types(m)) for m in reps]


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_is_made_of_exported_pieces(name, exported_pieces):
    """A model not exported in CI is built by the same class from the same layer and block
    types as one that is (ResNet-152 as ResNet-50, plain-110 as plain-20, ...), so it
    exports the same way."""
    with torch.device("meta"):
        model = get_model(name, **small(name)[0])
    assert any(type(model) is cls and block_type(model) is block and leaf_types(model) <= types
               for cls, block, types in exported_pieces)


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_zoo_models_export_to_onnx_matching_torch(name, digit_files, tmp_path):
    """onnx.checker, metadata, and onnxruntime's logits against torch's on real digits: to
    1e-4, or to torch's own float32 error (against float64) where that is larger: a deep
    plain network at random init amplifies any rounding difference (plain-110: 0.8), as He
    et al. 2016 found for its gradients. Without torch.onnx's optional graph clean-up (a
    quarter of the export time; the CLI test exports with it): the checks are the same."""
    torch.manual_seed(0)
    kw, spec = small(name)
    kw.update(EXPORTED[name])
    x = real_batch(digit_files, spec)
    model = calibrate(get_model(name, **kw), x)
    out = tmp_path / f"{name}.onnx"
    r = export_model(model, {"model": name, "model_kwargs": kw, "classes": CLASSES,
                             "input": spec}, out, dynamic_batch=True, optimize=False)
    assert r.path == out and r.max_abs_logit > 0
    proto = onnx.load(str(out), load_external_data=False)
    onnx.checker.check_model(proto)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["cnnlab.classes"]) == CLASSES
    assert json.loads(props["cnnlab.input"]) == {**spec, "resize": "bilinear"}
    assert (props["cnnlab.model"], json.loads(props["cnnlab.model_kwargs"])) == (name, kw)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
        exact = model.double()(x.double()).numpy()
    tol = max(1e-4, 2 * float(np.abs(want - exact).max()))
    assert np.abs(got - want).max() <= tol


@pytest.mark.parametrize("name", ["lenet5", "resnet20"])
def test_pt2_reloads_and_matches_exactly(name, digit_files, tmp_path):
    kw, spec = small(name)
    x = real_batch(digit_files, spec)
    model = calibrate(get_model(name, **kw), x)
    r = export_model(model, {"model": name, "classes": CLASSES, "input": spec},
                     tmp_path / "m.pt2", "pt2", dynamic_batch=True)
    assert r.max_abs_diff == 0
    program, meta = load_pt2(r.path)
    assert json.loads(meta["cnnlab.classes"]) == CLASSES
    with torch.no_grad():
        assert torch.equal(program(x), model(x))
        assert torch.equal(program(x[:3]), model(x[:3]))  # any batch size



class _OffSession(ort.InferenceSession):
    """onnxruntime, with its logits moved by ``shift`` (an exporter that got an operator
    wrong): the export's check must see it."""

    shift = 0.5

    def run(self, *args, **kwargs):
        return [o + np.float32(self.shift) for o in super().run(*args, **kwargs)]


@pytest.mark.parametrize("shift, refused", [(0.5, True), (float("nan"), True), (1e-6, False)])
def test_export_refuses_an_onnx_file_whose_logits_differ(shift, refused, monkeypatch, tmp_path):
    torch.manual_seed(0)
    kw, spec = small("lenet5")
    meta = {"model": "lenet5", "model_kwargs": kw, "classes": CLASSES, "input": spec}
    monkeypatch.setattr(_OffSession, "shift", shift)
    monkeypatch.setattr(ort, "InferenceSession", _OffSession)
    out = tmp_path / "m.onnx"
    if refused:
        with pytest.raises(UserError, match=r"onnxruntime's logits differ from torch's by "
                                            r"(0\.5|nan) \(allowed 0\.001.*no file written"):
            export_model(get_model("lenet5", **kw), meta, out)
        assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary
    else:
        r = export_model(get_model("lenet5", **kw), meta, out)
        assert 0 < r.max_abs_diff <= 1e-5 and out.exists()


def test_export_refuses_a_pt2_program_whose_logits_differ(monkeypatch, tmp_path):
    from cnnlab.deploy import export as E

    kw, spec = small("lenet5")
    real = E.load_pt2
    monkeypatch.setattr(E, "load_pt2", lambda p: (lambda x: real(p)[0](x) + 0.5, {}))
    with pytest.raises(UserError, match="the reloaded program's logits differ"):
        export_model(get_model("lenet5", **kw), {"classes": CLASSES, "input": spec},
                     tmp_path / "m.pt2", "pt2")
    assert list(tmp_path.iterdir()) == []


def test_export_parity_allows_torchs_own_float32_error():
    from cnnlab.deploy.export import _check_parity

    ref = np.array([[2.0, -3.0]])
    _check_parity(0.002, ref, 1e-3, "onnx")  # 1e-3 x scale 3
    with pytest.raises(UserError, match="allowed 0.003"):
        _check_parity(0.01, ref, 1e-3, "onnx")
    _check_parity(0.01, ref, 1e-3, "onnx", lambda: 0.006)  # torch itself is off by 0.006
    with pytest.raises(UserError, match="allowed 0.012"):
        _check_parity(0.02, ref, 1e-3, "onnx", lambda: 0.006)

class OwnLayers(nn.Module):
    """cnnlab.nn's pooling layers in one small network."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), StochasticPool2d(2),
                                  nn.Conv2d(6, 8, 3), MinPool2d(2))
        self.kmax = KMaxPool(4)
        self.fc = nn.Linear(8 * 4, 3)

    def forward(self, x):
        return self.fc(self.kmax(self.body(x)).flatten(1))


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_cnnlabs_own_layers_export_in_inference_form(fmt, digit_files, tmp_path):
    torch.manual_seed(0)
    spec = {"channels": 1, "size": [20, 20], "mean": [0.2], "std": [0.3]}
    x = real_batch(digit_files, spec)
    model = OwnLayers().eval()
    r = export_model(model, {"classes": CLASSES, "input": spec}, tmp_path / f"own.{fmt}", fmt,
                     dynamic_batch=True)
    with torch.no_grad():
        want = model(x).numpy()  # StochasticPool2d in eval mode: the probability-weighted sum
        h = model.body[1](model.body[0](x))
        assert torch.equal(model.body[2](h), stochastic_pool2d(h, 2, training=False))
    if fmt == "onnx":
        sess = ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"input": x.numpy()})[0], want,
                                   rtol=1e-5, atol=1e-5)
    else:
        with torch.no_grad():
            np.testing.assert_allclose(load_pt2(r.path)[0](x).numpy(), want, rtol=1e-6,
                                       atol=1e-6)


class Branchy(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x  # a branch on the data: no static graph holds it


def test_a_layer_that_cannot_export_is_named(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), Branchy(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    spec = {"channels": 1, "size": [8, 8], "mean": [0.0], "std": [1.0]}
    with pytest.raises(UserError, match=r"cannot export this model: layer 1 \(Branchy\)"):
        export_model(model, {"classes": CLASSES, "input": spec}, tmp_path / "b.onnx")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--progress", "none"]) == 0
    return out / "checkpoints" / "best.safetensors"


def test_cli_export_writes_beside_the_checkpoint_and_refuses_to_overwrite(digits_ckpt, capsys):
    assert main(["export", str(digits_ckpt)]) == 0
    line = capsys.readouterr().out.strip()
    onnx_path = digits_ckpt.with_suffix(".onnx")
    assert line.startswith(f"wrote {onnx_path} (ONNX opset")
    assert "max |onnxruntime - torch|" in line
    before = onnx_path.read_bytes()
    assert main(["export", str(digits_ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cnnlab export: error: {onnx_path}: already exists; pass --force to "
                   f"overwrite it")
    assert onnx_path.read_bytes() == before
    assert main(["export", str(digits_ckpt), "--force", "--dynamic-batch", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dynamic_batch"] is True


@pytest.mark.parametrize("argv, message", [
    (["--format", "tflite"], "--format tflite: unknown format; expected one of onnx, pt2"),
    (["--opset", "3"], "--opset 3: expected an ONNX opset from 7 to"),
    (["--format", "pt2", "--opset", "18"], "--opset 18: only for --format onnx"),
    (["--opset", "11"], "--opset 11: this model's operators cannot be written in opset 11"),
])
def test_cli_export_bad_arguments_exit_2_with_one_line(digits_ckpt, argv, message, tmp_path,
                                                        capsys):
    out = tmp_path / "m.out"
    assert main(["export", str(digits_ckpt), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_cli_export_of_a_checkpoint_whose_model_cannot_be_built(digits_ckpt, tmp_path, capsys):
    from cnnlab.checkpoint import load_checkpoint, save_checkpoint

    weights, meta = load_checkpoint(digits_ckpt)
    bad = save_checkpoint(tmp_path / "bad", weights, {**meta, "model": "lenet55"})
    assert main(["export", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(bad) in err and "lenet55" in err and "\n" not in err


def test_cli_export_refuses_a_mismatch_exit_2_and_keeps_nothing(digits_ckpt, monkeypatch,
                                                               tmp_path, capsys):
    monkeypatch.setattr(ort, "InferenceSession", _OffSession)
    out = tmp_path / "m.onnx"
    assert main(["export", str(digits_ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnlab export: error: export check failed: onnxruntime's logits "
                          "differ from torch's by 0.5") and "\n" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_bench_measures_each_runtime_and_batch(capsys):
    assert main(["bench", "lenet5", "--input", "1x28x28", "--batch", "1,3", "--runtime",
                 "torch,onnx", "--seconds", "0.05", "--threads", "1", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["input"] == [1, 28, 28] and r["threads"] == 1
    assert sorted((row["runtime"], row["batch"]) for row in r["rows"]) == [
        ("onnx", 1), ("onnx", 3), ("torch", 1), ("torch", 3)]
    for row in r["rows"]:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["calls"] >= 5
        # throughput is images over the summed call times, and at least half of the calls
        # take p50 or longer: the mean call is at least p50 / 2
        assert 0 < row["images_per_s"] <= 2 * row["batch"] * 1e3 / row["p50_ms"]
    assert set(r["fastest"]) == {"1", "3"} and r["fastest"]["1"] in ("torch", "onnx")


def test_bench_throughput_is_images_over_summed_call_times():
    from cnnlab.deploy.bench import _row

    times = np.array([0.001, 0.002, 0.003, 0.010])  # s
    row = _row("torch", 8, times, 0.0)
    assert row.images_per_s == pytest.approx(8 * 4 / 0.016, rel=1e-12)  # 2,000 images/s
    assert row.p50_ms == pytest.approx(2.5) and row.calls == 4


@pytest.mark.parametrize("argv, message", [
    (["bench", "lenet5", "--runtime", "tensorrt"], "--runtime tensorrt: unknown ['tensorrt']"),
    (["bench", "lenet55"], "Unknown model 'lenet55'. Did you mean: lenet5"),
    (["bench", "lenet5", "--batch", "0,4"], "argument --batch: '0,4': expected positive int"),
    (["bench", "lenet5", "--threads", "-1"], "argument --threads: '-1': expected a positive"),
    (["bench", "lenet5", "--input", "1x28"], "--input '1x28': expected CxHxW"),
])
def test_cli_bench_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's own errors, at parse time
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
