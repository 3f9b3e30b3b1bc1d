"""Model zoo: golden parameter counts, torchvision key compatibility, forward/backward smoke
tests at the default (meta device) and small input (real numbers), the common model API."""

import json
from pathlib import Path

import pytest
import torch

from cnnlab.models.googlenet import GoogLeNet, Inception
from cnnlab.models.resnet import CifarResNet
from cnnlab.registry import get_model, list_models, model_info

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_state_dicts.json").read_text())

# Golden counts: the papers / torchvision / the issue.
PARAMS = {
    "lenet5": 61_706, "alexnet": 62_378_344, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962, "plain20": 269_722, "plain110": 1_727_962, "mlp": 3_716_106,
    "linear": 7_850,
}
# How each model is built for 32x32 (CIFAR-size) inputs: stated, never a silent resize.
SMALL = {"lenet5": dict(input_size=28), "mlp": {}, "linear": {}}
SMALL_SIZE = {"lenet5": 28, "mlp": 28, "linear": 28}


def meta(name, **kw):
    with torch.device("meta"):
        return get_model(name, **kw)


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def small_kwargs(name):
    if name in SMALL:
        return SMALL[name]
    info = model_info(name)
    return {} if info.input_size[1] <= 32 else {"small_input": True, "num_classes": 10}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_golden_parameter_counts(name):
    assert count(meta(name)) == PARAMS[name]


def test_alexnet_two_gpu_split_and_googlenet_without_aux():
    assert count(meta("alexnet", groups=2)) == 60_965_224
    assert count(meta("googlenet", aux_logits=False)) == 6_998_552
    g = meta("googlenet")
    assert sum(p.numel() for n, p in g.named_parameters() if not n.startswith("aux")) == 6_998_552


@pytest.mark.parametrize("name", [n for n in FIXTURE if n.startswith(("resnet", "vgg"))])
def test_torchvision_keys_and_shapes(name):
    tv = FIXTURE[name]
    model = meta(name)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == tv["state_dict"]
    assert count(model) == tv["num_params"]
    # A torchvision checkpoint (here: meta tensors of its shapes) loads with strict=True.
    sd = {k: torch.empty(s, device="meta") for k, s in tv["state_dict"]}
    model.load_state_dict(sd, strict=True, assign=True)


def test_alexnet_differs_from_torchvision_as_documented():
    tv = FIXTURE["alexnet"]
    # torchvision's is the "one weird trick" net: these settings give its shapes, in order.
    variant = meta("alexnet", widths=(64, 192, 384, 256, 256), conv1=(11, 4, 2), lrn=False,
                   input_size=224)
    assert [list(p.shape) for p in variant.parameters()] == [s for _, s in tv["state_dict"]]
    assert count(variant) == tv["num_params"] == 61_100_840
    assert {k for k, _ in tv["state_dict"] if k.startswith("classifier")} == {
        k for k in meta("alexnet").state_dict() if k.startswith("classifier")}


def test_googlenet_differs_from_torchvision_as_documented():
    tv = dict((k, s) for k, s in FIXTURE["googlenet"]["state_dict"])
    ours = {k: list(v.shape) for k, v in meta("googlenet", aux_logits=False).state_dict().items()}
    tv_weights = {k: s for k, s in tv.items() if ".bn." not in k and not k.endswith("bias")}
    our_weights = {k: s for k, s in ours.items() if not k.endswith("bias")}
    assert tv_weights.keys() == our_weights.keys()  # same names; torchvision adds .bn
    differ = sorted(k for k in tv_weights if tv_weights[k] != our_weights[k])
    assert differ and all(k.endswith("branch3.1.conv.weight") for k in differ)
    assert all(our_weights[k][-2:] == [5, 5] and tv_weights[k][-2:] == [3, 3] for k in differ)


@pytest.mark.parametrize("name", list_models())
def test_default_input_forward_backward_on_meta(name):
    info = model_info(name)
    model = meta(name).eval()  # meta: shapes and the autograd graph, no arithmetic
    x = torch.zeros(2, *info.input_size, device="meta", requires_grad=True)
    y = model(x)
    assert y.shape == (2, info.num_classes)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", list_models())
def test_small_input_forward_backward_on_meta(name):
    info = model_info(name)
    kw = small_kwargs(name)
    size = SMALL_SIZE.get(name, 32)
    model = meta(name, **kw).eval()
    x = torch.zeros(2, info.input_size[0], size, size, device="meta", requires_grad=True)
    y = model(x)
    assert y.shape == (2, kw.get("num_classes", info.num_classes))
    y.sum().backward()
    assert x.grad.shape == x.shape


# One real training step per family (and block type) at the small input: finite gradients.
# (GoogLeNet's step is in test_googlenet_auxiliary_losses_in_training_only.)
@pytest.mark.parametrize("name", ["lenet5", "mlp", "linear", "alexnet", "zfnet", "vgg11_bn",
                                  "resnet18", "resnet50", "resnet20", "plain20"])
def test_small_input_training_step(name):
    torch.manual_seed(0)
    info = model_info(name)
    kw = small_kwargs(name)
    size = SMALL_SIZE.get(name, 32)
    model = get_model(name, **kw).train()
    x = torch.randn(2, info.input_size[0], size, size)
    y = model(x)
    assert y.shape == (2, kw.get("num_classes", info.num_classes))
    target = torch.tensor([0, 1])
    loss = torch.nn.functional.cross_entropy(y, target)
    if hasattr(model, "auxiliary_loss"):  # GoogLeNet: + 0.3 x the auxiliary heads' losses
        loss = loss + model.auxiliary_loss(target)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.forward_head(model.forward_features(x)).shape == y.shape


@pytest.mark.parametrize("name", list_models())
def test_common_api_and_feature_layers(name):
    model = meta(name)
    assert callable(model.forward_features) and callable(model.forward_head)
    modules = dict(model.named_modules())
    assert isinstance(model.feature_layers, dict)
    for layer in model.feature_layers.values():
        assert layer in modules, f"{name}: feature layer {layer!r} does not exist"


@pytest.mark.parametrize("name", ["alexnet", "lenet5", "resnet20"])
def test_features_then_head_equals_forward(name):
    torch.manual_seed(0)
    info = model_info(name)
    model = get_model(name).eval()
    x = torch.randn(1, *info.input_size)
    torch.testing.assert_close(model.forward_head(model.forward_features(x)), model(x))


def test_googlenet_auxiliary_losses_in_training_only():
    torch.manual_seed(0)
    model = GoogLeNet(num_classes=10, small_input=True)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])
    model.train()
    model(x)
    assert [a.shape for a in model.aux_outputs] == [(2, 10), (2, 10)]
    aux = model.auxiliary_loss(y)
    assert aux.requires_grad and aux.item() > 0
    expected = 0.3 * sum(torch.nn.functional.cross_entropy(a, y) for a in model.aux_outputs)
    torch.testing.assert_close(aux, expected)
    aux.backward()  # reaches the heads and, through inception 4a, the stem
    assert model.aux1.fc2.weight.grad is not None and model.conv1.conv.weight.grad is not None
    model.eval()
    model(x)
    assert model.aux_outputs == [] and model.auxiliary_loss(y) is None
    no_aux = GoogLeNet(num_classes=10, small_input=True, aux_logits=False).train()
    no_aux(x)
    assert no_aux.auxiliary_loss(y) is None


def test_inception_naive_and_reduced_shapes():
    naive = Inception(256, 128, 0, 192, 0, 96, 0, naive=True)
    assert naive(torch.zeros(1, 256, 28, 28)).shape == (1, 672, 28, 28)
    assert count(naive) == 1_089_952
    assert Inception(192, 64, 96, 128, 16, 32, 32)(torch.zeros(1, 192, 28, 28)).shape == (1, 256, 28, 28)


def test_cifar_resnet_option_a_shortcut_and_plain():
    res, plain = get_model("resnet20"), get_model("plain20")
    assert count(res) == count(plain)  # option A adds no parameters
    block = res.layer2[0]
    assert type(block.shortcut).__name__ == "ShortcutA" and plain.layer2[0].shortcut is None
    x = torch.randn(1, 16, 32, 32)
    out = block.shortcut(x)
    assert out.shape == (1, 32, 16, 16)
    torch.testing.assert_close(out[:, 8:24], x[:, :, ::2, ::2])
    assert out[:, :8].abs().sum() == 0 and out[:, 24:].abs().sum() == 0


def test_lenet_pads_28x28_and_mlp_hidden_sizes():
    assert get_model("lenet5", input_size=28)(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    mlp = get_model("mlp", hidden=(100,), in_channels=3, input_size=32)
    assert count(mlp) == 3072 * 100 + 100 + 100 * 10 + 10


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="Did you mean: .*resnet18"):
        get_model("resnet19")
    with pytest.raises(ValueError, match="vgg16"):
        get_model("vgg61")


@pytest.mark.parametrize("build, match", [
    (lambda: get_model("alexnet", groups=3), "`groups`"),
    (lambda: CifarResNet(depth=21), "`depth`"),
    (lambda: get_model("mlp", hidden=()), "`hidden`"),
    (lambda: get_model("vgg11", input_size=0), "`input_size`"),
])
def test_bad_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()


@pytest.mark.parametrize("name, size, layer", [("alexnet", 32, "features.7"),
                                                ("vgg11", 16, "features.20")])
def test_too_small_input_names_the_layer(name, size, layer):
    with pytest.raises(ValueError, match=rf"too small.*{layer} \("):
        meta(name, input_size=size)
