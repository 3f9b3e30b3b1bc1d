"""Unit detail for every stage of every zoo model: the NumPy engine's arithmetic equals
torch's activation (conv, pooling, ReLU, flatten, fully connected, dropout, batch norm,
LRN, residual add, inception concatenation), and the verdict says "differ" when they do."""

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import UserError
from cnnlab.serve.composite import capture_io, compute_unit, sequential_target, unit_from_io, \
    unit_needs
from cnnlab.serve.explorer import view_stages
from cnnlab.serve.units import TOLERANCE, agree, explain_unit
from cnnlab.training.setup import SUGGESTED_SIZES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# tried smallest first (the walk is about arithmetic, not size); not below 32, where deep
# maps are 1x1 and every window but its centre is padding
SIZES = SUGGESTED_SIZES


def _smallest_build(name: str) -> tuple[int, dict]:
    """The smallest square input of :data:`SIZES` (or the default, if smaller) that ``name``
    builds at, and the constructor arguments for it: built on the meta device, no memory and
    no time (as :func:`cnnlab.training.setup.build_model` finds an ``--input-size`` to
    suggest). A model without ``input_size`` pools adaptively and runs at any of them."""
    import inspect

    from cnnlab.registry import model_info

    info = model_info(name)
    channels, default = info.input_size[0], info.input_size[-1]
    kw = {"num_classes": 10, "in_channels": channels}
    if "input_size" not in inspect.signature(info.builder).parameters:
        return min(SIZES[0], default), kw
    for size in sorted({s for s in SIZES if s < default} | {default}):
        try:
            with torch.device("meta"):
                info.builder(**kw, input_size=size)
            return size, {**kw, "input_size": size}
        except ValueError:
            continue
    raise AssertionError(f"{name} builds at none of {SIZES} up to {default}")


def _units(shape) -> list:
    """A few units of an output: the centre of channel 1, a corner of the last channel."""
    if len(shape) == 1:
        return [(0, 0, min(1, shape[0] - 1)), (0, 0, shape[0] - 1)]
    c, h, w = shape
    return [(min(1, c - 1), h // 2, w // 2), (c - 1, h - 1, 0)]


def _models() -> list[str]:
    from cnnlab.registry import list_models

    return list(list_models())


@pytest.mark.slow
@pytest.mark.parametrize("name", _models())
def test_every_stage_of_every_zoo_model_equals_torch(name):
    """Every column of every zoo model at its smallest input: one forward pass captures what
    every unit needs (:func:`capture_io`), then the NumPy engine computes two units per
    column from it, as the explorer's route does from its own pass (:func:`unit_from_io`).
    Was one forward pass per unit at 64x64 or larger: 615 s on a busy 2-core machine."""
    from cnnlab.registry import get_model

    size, kw = _smallest_build(name)
    torch.manual_seed(0)
    model = get_model(name, **kw).eval()
    for m in model.modules():  # non-trivial statistics, so batch norm is not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(1, kw["in_channels"], size, size)
    stages = view_stages(model, x)
    io = capture_io(model, x, [n for layer in stages for n in unit_needs(model, layer)])
    kinds = set()
    for layer in stages:
        for c, y, xx in _units(io[sequential_target(model, layer)[0]][1].shape):
            d = unit_from_io(model, layer, io, c, y, xx)
            kinds.add(d["kind"])
            assert d["agree"], (name, layer, d["kind"], d["result"], d["torch_value"])
            assert d["result"] == pytest.approx(d["torch_value"], rel=1e-4, abs=1e-4)
    assert {"conv", "relu"} <= kinds or {"linear"} <= kinds, kinds
    if any(isinstance(m, nn.Linear) for m in model.modules()):
        assert "linear" in kinds, (name, stages)
    # the one-pass values are the route's own: one unit again through compute_unit
    last = stages[-1]
    c, y, xx = _units(io[sequential_target(model, last)[0]][1].shape)[-1]
    assert compute_unit(model, model, last, x, c, y, xx)["result"] == \
        unit_from_io(model, last, io, c, y, xx)["result"]


def test_stages_include_the_classifier_half_and_blocks():
    from cnnlab.registry import get_model

    lenet = get_model("lenet5", num_classes=10)
    st = view_stages(lenet.eval(), torch.zeros(1, 1, 32, 32))
    assert st[:6] == [f"features.{i}" for i in range(6)]
    assert st[6:] == ["flatten", "classifier.0", "classifier.1", "classifier.2",
                      "classifier.3", "classifier.4"]
    r18 = get_model("resnet18", num_classes=10).eval()
    st = view_stages(r18, torch.zeros(1, 3, 64, 64))
    assert st == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
                  "avgpool", "fc"]  # blocks collapsed; the head shown


def test_linear_after_flatten_groups_inputs_by_their_map_and_flags_the_output():
    from cnnlab.registry import get_model

    torch.manual_seed(0)
    model = get_model("lenet5", num_classes=10).eval()
    x = torch.randn(1, 1, 32, 32)
    d = compute_unit(model, model, "classifier.0", x, 0, 0, 7)
    assert d["kind"] == "linear" and d["source_shape"] == [16, 5, 5] and len(d["groups"]) == 16
    assert sum(g["sum"] for g in d["groups"]) == pytest.approx(d["sum"], rel=1e-6)
    assert d["sum"] + d["bias"] == pytest.approx(d["torch_value"], rel=1e-4, abs=1e-5)
    assert not d["is_output"]
    out = compute_unit(model, model, "classifier.4", x, 0, 0, 3)
    assert out["is_output"] and out["agree"]
    f = compute_unit(model, model, "flatten", x, 0, 0, 27)  # 27 = 1*25 + 0*5 + 2
    assert f["source"] == [1, 0, 2] and f["agree"]


@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(2, 3, 3, padding=1), (2, 6, 6)), (nn.MaxPool2d(2), (2, 6, 6)),
    (nn.AvgPool2d(2), (2, 6, 6)), (nn.ReLU(), (2, 6, 6)), (nn.BatchNorm2d(2), (2, 6, 6)),
    (nn.LocalResponseNorm(3, alpha=0.5, k=1.5), (4, 3, 3)), (nn.Linear(5, 3), (5,)),
    (nn.Flatten(0), (2, 3, 3)), (nn.AdaptiveAvgPool2d(2), (2, 5, 5))])
def test_a_perturbed_value_makes_agree_false(module, shape):
    """The verdict is tested both ways: equal values agree, and a value 10x the tolerance
    away does not (a planted bug raising the tolerance to 1e4 passed every other test)."""
    torch.manual_seed(0)
    module.eval()
    xin = torch.randn(1, *shape) + 0.5
    with torch.no_grad():
        out = module(xin[0] if isinstance(module, nn.Flatten) else xin)
    out = out.numpy() if isinstance(module, nn.Flatten) else out[0].numpy()
    unit = (0, 0, 1) if out.ndim == 1 else (1, 0, 1)
    d = explain_unit(module, "m", xin[0].numpy(), out, *unit)
    assert d["agree"]
    bad = out.copy()
    idx = unit[2] if out.ndim == 1 else unit
    bad[idx] += 10 * TOLERANCE * max(1.0, abs(float(out[idx])))
    assert not explain_unit(module, "m", xin[0].numpy(), bad, *unit)["agree"]
    assert not agree(1.0, 1.0 + 10 * TOLERANCE) and agree(1.0, 1.0 + TOLERANCE / 10)


def test_a_unit_outside_a_vector_is_a_user_error():
    with pytest.raises(UserError, match="vector of 3 values"):
        explain_unit(nn.Linear(2, 3), "fc", np.zeros(2, np.float32), np.zeros(3, np.float32),
                     0, 0, 3)


@pytest.mark.parametrize("name, size", [("lenet5", 28), ("alexnet", 67), ("resnet18", 64),
                                        ("googlenet", 64), ("resnet20", 32)])
def test_receptive_field_boxes_match_analysis(name, size):
    """A centre unit's box in the input has the side cnnlab.analysis gives as that layer's
    receptive field, wherever the box lies inside the image (not clipped)."""
    from cnnlab.analysis import summary
    from cnnlab.registry import get_model
    from cnnlab.serve.explorer import column_shapes
    from cnnlab.serve.fields import unit_fields

    ch = 1 if name == "lenet5" else 3
    kw = {"input_size": size} if name in ("lenet5", "alexnet") else {}
    model = get_model(name, num_classes=10, **kw).eval()
    ex = torch.zeros(1, ch, size, size)
    cols = view_stages(model, ex)
    outs, ins = column_shapes(model, cols, ex)
    rows = summary(model, (ch, size, size)).to_dict()["layers"]
    rf = {r["name"]: r["receptive_field"] for r in rows}
    checked = 0
    for c in cols:
        if len(outs[c]) != 3 or not isinstance(rf.get(c), int):
            continue
        H, W = outs[c][1:]
        f = unit_fields(model, cols, outs, ins, (ch, size, size), c, H // 2, W // 2)
        b = f["boxes"]["input"]
        if b[0] > 0 and b[1] > 0 and b[2] < size - 1 and b[3] < size - 1:
            assert b[2] - b[0] + 1 == rf[c] == b[3] - b[1] + 1, (c, b, rf[c])
            checked += 1
        assert f["feeds"] is None or f["feeds"]["column"] == cols[cols.index(c) + 1]
    assert checked >= 2
    if name == "lenet5":  # features.3 (conv 5x5) unit (5, 5) reads features.2 rows 5..9
        f = unit_fields(model, cols, outs, ins, (1, 28, 28), "features.3", 5, 5)
        assert f["boxes"]["features.2"] == [5, 5, 9, 9]
        assert f["feeds"] == {"column": "features.4", "box": [2, 2, 2, 2]}


def _unit(module, xin, c, y, x):
    with torch.no_grad():
        out = module(torch.from_numpy(xin)[None])[0].numpy()
    return explain_unit(module, "m", xin, out, c, y, x)


def test_pool_units_report_their_window_choice_and_divisor():
    # issue 21: with unpadded 2x2 pools only, mutants of the padding, the divisor, the
    # chosen position and the fields the page draws survived
    xin = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    xin[1, 0, 0] = 99.0  # the corner wins its padded window
    d = _unit(nn.MaxPool2d(3, stride=2, padding=1), xin, 1, 0, 0)
    assert d["kind"] == "maxpool" and d["agree"] and d["result"] == 99.0
    assert d["window_box"] == [-1, -1, 1, 1] and d["stride"] == [2, 2] and d["padding"] == [1, 1]
    assert d["chosen"] == [1, 1] and d["channels"] == [1] and d["channels_total"] == 1
    assert d["window"][0] == [None, None, None] and d["window"][1] == [None, 99.0, 26.0]
    d = _unit(nn.MaxPool2d(2, stride=1, dilation=2), xin, 0, 1, 2)  # rows 1, 3; cols 2, 4
    assert d["agree"] and d["window"] == [[7.0, 9.0], [17.0, 19.0]] and d["chosen"] == [1, 1]
    neg = -xin  # every value below zero: the padding must not win
    d = _unit(nn.MaxPool2d(3, stride=2, padding=1), neg, 0, 0, 0)
    assert d["agree"] and d["result"] == 0.0 and d["chosen"] == [1, 1]
    for include, count in ((True, 9.0), (False, 4.0)):
        d = _unit(nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=include), xin, 0, 0, 2)
        assert d["kind"] == "avgpool" and d["agree"], include
        assert d["count"] == count and d["total"] == 3 + 4 + 8 + 9  # columns 3..5 of 5
        assert d["window"] == [[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [8.0, 9.0, 0.0]]
    d = _unit(nn.AvgPool2d((2, 3), stride=(1, 2)), xin, 0, 3, 1)
    assert d["agree"] and d["count"] == 6.0 and d["window_box"] == [3, 2, 4, 4]


def test_adaptive_average_unit_takes_torchs_uneven_windows():
    xin = np.arange(2 * 7 * 7, dtype=np.float32).reshape(2, 7, 7)
    d = _unit(nn.AdaptiveAvgPool2d(3), xin, 0, 1, 1)  # rows and columns 2..4 of 7
    assert d["kind"] == "avgpool" and d["agree"] and d["window_box"] == [2, 2, 4, 4]
    assert d["count"] == 9.0 and d["total"] == float(xin[0, 2:5, 2:5].sum())
    assert d["channels"] == [0] and d["channels_total"] == 1 and d["padding"] == [0, 0]
    assert d["stride"] is None and d["window"] == xin[0, 2:5, 2:5].tolist()


def test_conv_unit_shows_its_groups_padding_and_products():
    # issue 21: "same"/"valid" padding, groups, the products and the fields the page draws
    # survived mutation with a single padded 3x3 convolution
    torch.manual_seed(0)
    xin = torch.randn(4, 6, 6).numpy()
    m = nn.Conv2d(4, 6, 3, padding="same", dilation=2, groups=2)
    d = _unit(m, xin, 4, 0, 5)  # unit 4: the second group, input channels 2 and 3
    assert d["kind"] == "conv" and d["agree"] and d["padding"] == [2, 2]
    assert d["channels"] == [2, 3] and d["channels_total"] == 2 and d["groups"] == 2
    assert d["window_box"] == [-2, 3, 2, 7] and d["dilation"] == [2, 2] and d["stride"] == [1, 1]
    win, ker = np.array(d["window"]), np.array(d["kernel"])
    assert win[0, 1:, 0].tolist() == xin[2, [0, 2], 3].tolist() and win[:, 0].max() == 0.0
    np.testing.assert_allclose(d["products"], win * ker, rtol=1e-6)
    np.testing.assert_allclose(d["channel_sums"], (win * ker).sum(axis=(1, 2)), rtol=1e-5)
    assert d["sum"] == pytest.approx(float((win * ker).sum()), rel=1e-5)
    assert d["bias"] == pytest.approx(m.bias[4].item())
    assert d["result"] == pytest.approx(d["sum"] + d["bias"], rel=1e-5, abs=1e-6)
    v = _unit(nn.Conv2d(4, 2, (3, 2), padding="valid", stride=(1, 2), bias=False), xin, 1, 1, 2)
    assert v["agree"] and v["padding"] == [0, 0] and v["window_box"] == [1, 4, 3, 5]
    assert v["bias"] is None and v["channels"] == [0, 1, 2, 3]
    with pytest.raises(UserError, match="padding_mode='reflect'"):
        _unit(nn.Conv2d(4, 2, 3, padding=1, padding_mode="reflect"), xin, 0, 0, 0)


@pytest.mark.parametrize("ceil", [False, True])
def test_average_pool_divisor_at_the_far_edge_with_uneven_padding(ceil):
    # a window at the bottom-right corner, padding (1, 0), counting the padding: the padded
    # map's size decides the divisor (ceil_mode lets the last window overhang it)
    xin = np.arange(5 * 6, dtype=np.float32).reshape(1, 5, 6) + 1.0
    m = nn.AvgPool2d(3, stride=2, padding=(1, 0), ceil_mode=ceil, count_include_pad=True)
    with torch.no_grad():
        out = m(torch.from_numpy(xin)[None])[0].numpy()
    h, w = out.shape[1:]
    for y, x in ((h - 1, w - 1), (0, w - 1), (h - 1, 0)):
        d = explain_unit(m, "m", xin, out, 0, y, x)
        assert d["agree"], (y, x, d["count"], d["result"], d["torch_value"])
        assert d["result"] == pytest.approx(d["torch_value"], rel=1e-5)  # inf "agrees"


def test_conv_unit_sends_at_most_64_input_channels_to_the_page():
    xin = np.ones((70, 2, 2), np.float32)
    d = _unit(nn.Conv2d(70, 1, 1), xin, 0, 1, 1)
    assert d["agree"] and d["channels_total"] == 70 and d["channels"] == list(range(64))
    assert len(d["window"]) == len(d["kernel"]) == len(d["channel_sums"]) == 64


def test_unit_bounds_and_the_agreement_threshold_at_their_edges():
    xin = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5.0
    for c, y, x in ((0, 0, 0), (1, 2, 3)):  # the first and the last unit are inside
        d = explain_unit(nn.ReLU(), "m", xin, np.maximum(xin, 0), c, y, x)
        assert d["agree"] and d["window"] == [c, y, x] and d["input_value"] == xin[c, y, x]
    for c, y, x in ((2, 0, 0), (0, 3, 0), (0, 0, 4), (-1, 0, 0)):
        with pytest.raises(UserError, match="outside layer m's output 2x3x4"):
            explain_unit(nn.ReLU(), "m", xin, xin, c, y, x)
    d = explain_unit(nn.Dropout().eval(), "m", xin, xin, 1, 2, 3)
    assert d["result"] == 18.0 and d["agree"]
    assert agree(0.0, TOLERANCE) and agree(0.0, TOLERANCE / 2) and not agree(0.0, 1.5 * TOLERANCE)
    a, b = 1e4, 1e4 - 0.99995  # within 1e-4 of the larger value, not of the smaller
    assert agree(a, b) and agree(b, a)


def test_agree_is_false_for_an_infinite_or_nan_value_against_a_finite_one():
    """abs(inf - 5) <= 1e-4 * inf held: a NumPy engine computing inf 'agreed' with torch."""
    assert not agree(float("inf"), 5.0) and not agree(5.0, float("-inf"))
    assert not agree(float("nan"), 5.0) and not agree(float("nan"), float("nan"))
    assert agree(float("inf"), float("inf")) and agree(1.0, 1.0 + 5e-5)
