"""cnnlab.analysis: the lectures' worked examples, receptive fields of branched nets (checked
against the gradient support of one output unit), MACs against torch's FlopCounterMode,
the NumPy engine, JSON schema, errors."""

import json

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnlab.analysis import (format_models_table, models_table, parse_input_size, summary)
from cnnlab.models.googlenet import Inception
from cnnlab.models.resnet import ShortcutA
from cnnlab.registry import get_model, list_models, model_info


@pytest.fixture(scope="module")
def alexnet_summary():
    return summary("alexnet", input_size=(3, 227, 227))


def test_alexnet_layer_table(alexnet_summary):
    s = alexnet_summary
    rows = [l for l in s.layers if l.type in ("Conv2d", "MaxPool2d", "Linear")]
    assert [l.output_shape for l in rows] == [
        (96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13), (384, 13, 13),
        (256, 13, 13), (256, 6, 6), (4096,), (4096,), (1000,)]
    assert s.layer("features.0").params == 34_944  # 11*11*3*96 + 96, not 11.6K
    assert s.layer("classifier.1").params == 37_752_832  # FC6: 9216*4096 + 4096
    assert s.layer("features.0").macs == 55 * 55 * 96 * 11 * 11 * 3
    assert s.total_params == s.trainable_params == 62_378_344
    assert s.layer("features.14").receptive_field == 195 and s.layer("features.14").jump == 32
    table = str(s)
    assert "96x55x55" in table and "34,944" in table and "37,752,832" in table
    assert "FLOPs = 2 x MACs" in table


def test_json_schema(alexnet_summary):
    d = json.loads(json.dumps(alexnet_summary.to_dict()))
    assert {"model", "input_shape", "layers", "total_params", "trainable_params",
            "total_macs"} <= d.keys()
    assert d["model"] == "alexnet" and d["input_shape"] == [3, 227, 227]
    first = d["layers"][0]
    assert {"name", "type", "output_shape", "params", "macs", "receptive_field", "jump"} <= first.keys()
    assert first["output_shape"] == [96, 55, 55] and first["receptive_field"] == 11
    assert d["layers"][-1]["jump"] is None  # FC units have no spatial neighbours


def test_naive_inception_and_3a():
    naive = summary(Inception(256, 128, 0, 192, 0, 96, 0, naive=True), (256, 28, 28))
    assert naive.output_shape == (672, 28, 28)
    assert naive.total_params == 1_089_952
    reduced = summary(Inception(192, 64, 96, 128, 16, 32, 32), (192, 28, 28))
    assert reduced.output_shape == (256, 28, 28)


def test_receptive_field_stack_7_9_11():
    net = nn.Sequential(nn.Conv2d(3, 4, 7), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3, stride=2))
    s = summary(net, (3, 64, 64))
    assert [l.receptive_field for l in s.layers] == [7, 9, 11]
    assert [l.jump for l in s.layers] == [1, 1, 2]


def test_lecture_conv_and_mlp_examples():
    s = summary(nn.Conv2d(3, 10, 5, stride=1, padding=2), (3, 32, 32))
    assert s.output_shape == (10, 32, 32) and s.total_params == 760
    assert summary("mlp").total_params == 3_716_106


class _Branchy(nn.Module):
    """Inception-like branches with different fields, a strided residual (option A), pooling."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.b1 = nn.Conv2d(4, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 5, padding=2))
        self.b3 = nn.Conv2d(4, 4, 3, padding=2, dilation=2)
        self.pool = nn.AvgPool2d(3, stride=2, padding=1)
        self.down = nn.Conv2d(12, 12, 3, stride=2, padding=1)
        self.short = ShortcutA(2, 0)
        self.last = nn.Conv2d(12, 1, 3, padding=1)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)
        x = self.down(x) + self.short(x)
        return self.last(self.pool(x))


def _empirical_rf(model, size):
    """Side of the input region the centre output unit depends on: with positive weights and
    no max/ReLU, every input in the field gets a non-zero gradient."""
    for p in model.parameters():
        nn.init.constant_(p, 0.1)
    x = torch.ones(1, 1, size, size, requires_grad=True)
    y = model(x)
    c = y.shape[-1] // 2
    y[0, 0, c, c].backward()
    nz = x.grad[0, 0].abs().sum(0).nonzero()
    return int(nz.max() - nz.min() + 1)


def test_receptive_field_exact_for_branches_and_residuals():
    model = _Branchy()
    rows = summary(model, (1, 96, 96)).layers
    assert rows[-1].name == "last"
    # 3 (stem) -> 9 (3x3, 5x5 branch) -> 11 (3x3/2) -> 15 (3x3/2 pool) -> 23 (3x3 at jump 4)
    assert rows[-1].receptive_field == _empirical_rf(model, 96) == 23
    assert rows[-1].jump == 4



class _DilatedF(nn.Module):
    """A 3x3 convolution with dilation 2 called as ``F.conv2d``: no ``kernel_size`` attribute,
    so only the op-level rule can see its window."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.full((1, 1, 3, 3), 0.1))

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, padding=2, dilation=2)


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(1, 1, 3, padding=2, dilation=2), _DilatedF],
                         ids=["module", "functional"])
def test_receptive_field_of_dilated_convolutions(make):
    # a 3x3 kernel at dilation 2 spans 5 pixels: fields 5, 9 (not 3, 5 as without dilation)
    net = nn.Sequential(make(), make())
    rows = summary(net, (1, 32, 32)).layers
    assert [l.receptive_field for l in rows] == [5, 9]
    assert [l.jump for l in rows] == [1, 1]
    assert _empirical_rf(net, 32) == 9


def test_receptive_field_of_dilated_max_pool():
    net = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1, dilation=2), nn.Conv2d(1, 1, 3))
    assert [l.receptive_field for l in summary(net, (1, 32, 32)).layers] == [5, 7]


def test_receptive_field_and_jump_of_non_square_windows():
    # 3x5 kernel, stride (1, 2): field (3, 5), jump (1, 2); then 3x3: (3 + 2, 5 + 2 * 2)
    net = nn.Sequential(nn.Conv2d(1, 1, (3, 5), stride=(1, 2)), nn.Conv2d(1, 1, 3))
    rows = summary(net, (1, 32, 32)).layers
    assert [(l.receptive_field, l.jump) for l in rows] == [((3, 5), (1, 2)), ((5, 9), (1, 2))]
    for p in net.parameters():
        nn.init.constant_(p, 0.1)
    x = torch.ones(1, 1, 32, 32, requires_grad=True)
    y = net(x)
    y[0, 0, y.shape[2] // 2, y.shape[3] // 2].backward()
    nz = x.grad[0, 0].nonzero()
    assert tuple((nz.max(0).values - nz.min(0).values + 1).tolist()) == (5, 9)


def test_flatten_covers_the_whole_map_and_has_no_jump():
    # a 3x3 conv leaves 30x30 maps at jump 1: flattening sees 3 + 29 = 32 pixels
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Flatten(), nn.Linear(900, 2))
    rows = summary(net, (1, 32, 32)).layers
    assert [(l.receptive_field, l.jump) for l in rows] == [(3, 1), (32, None), (32, None)]


@pytest.mark.parametrize("out, rf, jump", [(3, [4, 10], 3), (6, [3, 5], 1)])
def test_receptive_field_of_adaptive_pooling_that_does_not_divide(out, rf, jump):
    # 10 -> 3: windows [0, 4), [3, 7), [6, 10): 4 wide, 3 apart; 10 -> 6: up to 3 wide, 1 apart
    net = nn.Sequential(nn.AdaptiveAvgPool2d(out), nn.Conv2d(1, 1, 3, padding=1))
    rows = summary(net, (1, 10, 10)).layers
    assert [l.receptive_field for l in rows] == rf and rows[0].jump == jump

@pytest.mark.parametrize("name, layer, rf", [("resnet18", "layer4.1.relu", 435),
                                             ("resnet50", "layer4.2.relu", 427),
                                             ("googlenet", "inception3a", 59)])
def test_published_receptive_fields(name, layer, rf):
    rows = [l for l in summary(name, depth=None if name != "googlenet" else 1).layers
            if l.name == layer]
    assert rows[-1].receptive_field == rf


def test_depth_groups_blocks_and_unused_params():
    s = summary("googlenet", depth=1)
    assert "inception3a" in [l.name for l in s.layers]
    aux = sum(p.numel() for n, p in get_model("googlenet").named_parameters() if n.startswith("aux"))
    assert s.unused_params == aux and s.total_params - aux == 6_998_552
    r = summary("resnet20", depth=2)
    assert r.layer("layer2.0").output_shape == (32, 16, 16)
    assert sum(l.params for l in r.layers) == r.total_params == 269_722


@pytest.mark.parametrize("name", list_models())
def test_macs_match_flop_counter(name):
    size = model_info(name).input_size
    with torch.device("meta"):
        model = get_model(name).eval()
    with FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, *size, device="meta"))
    assert 2 * summary(model, size).total_macs == fc.get_total_flops()


def test_numpy_engine_summary_matches_torch():
    for name in ("lenet5", "mlp", "linear"):
        if "numpy" not in model_info(name).engines:
            pytest.skip("numpy engine not registered")
        a, b = summary(name, engine="numpy"), summary(name)
        assert a.to_dict()["layers"] == b.to_dict()["layers"]
        assert (a.total_params, a.total_macs) == (b.total_params, b.total_macs)


def test_summary_leaves_the_model_as_it_was():
    model = get_model("lenet5").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary(model, (1, 32, 32))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_too_small_input_names_the_layer():
    with pytest.raises(ValueError, match=r"too small.*features\.0 \(Conv2d"):
        summary(get_model("lenet5"), (1, 4, 4))
    with pytest.raises(ValueError, match=r"too small.*features\.7"):
        summary("alexnet", (3, 32, 32))
    assert summary("alexnet", (3, 32, 32), small_input=True).output_shape == (1000,)


def test_bad_names_and_sizes():
    with pytest.raises(ValueError, match="Did you mean: .*alexnet"):
        summary("alexnt")
    with pytest.raises(ValueError, match="`input_size`"):
        summary(nn.Conv2d(3, 3, 3), (3, 0, 5))
    assert parse_input_size("3x227x227") == (3, 227, 227)
    for bad in ("3x227", "axbxc", "3x-1x4", ""):
        with pytest.raises(ValueError, match="`--input`"):
            parse_input_size(bad)


def test_models_table():
    rows = models_table()
    assert [r["name"] for r in rows] == list_models()
    by = {r["name"]: r for r in rows}
    assert by["alexnet"]["params"] == 62_378_344 and by["alexnet"]["year"] == 2012
    assert by["googlenet"]["params"] == 6_998_552
    assert by["resnet20"]["input_size"] == (3, 32, 32)
    text = format_models_table(rows)
    assert "vgg16" in text and "138,357,544" in text and "Paper" in text
