"""The NumPy Module API, optimisers and models: torch's names, keys and update rules."""

import numpy as np
import pytest
import torch

from cnnlab.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.registry import get_model, list_models
from cnnlab.scratch import nn, optim


@pytest.mark.parametrize("name,kw", [("lenet5", {}), ("lenet5", {"input_size": 28}),
                                     ("lenet5", {"activation": "tanh", "pool": "avg"}),
                                     ("mlp", {}), ("mlp", {"hidden": (64, 32)}),
                                     ("linear", {"in_channels": 3, "input_size": 32})])
def test_same_state_dict_as_torch_twin(name, kw):
    torch.manual_seed(0)
    tm = get_model(name, **kw)
    nm = get_model(name, engine="numpy", **kw)
    t_sd, n_sd = tm.state_dict(), nm.state_dict()
    assert list(n_sd) == list(t_sd)
    assert all(n_sd[k].shape == tuple(v.shape) for k, v in t_sd.items())
    # weights move both ways
    nm.load_state_dict(t_sd)
    tm2 = get_model(name, **kw)
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in nm.state_dict().items()})
    default_size = 32 if name == "lenet5" else 28
    c, h = (3, 32) if kw.get("in_channels") == 3 else (1, kw.get("input_size", default_size))
    x = np.random.default_rng(0).standard_normal((4, c, h, h)).astype(np.float32)
    tm2.eval()
    nm.eval()
    np.testing.assert_allclose(nm(x), tm2(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_numpy_engine_registered():
    assert {"lenet5", "mlp", "linear"} <= set(list_models(engine="numpy"))


def test_checkpoint_round_trip_between_engines(tmp_path):
    nm = get_model("lenet5", engine="numpy")
    meta = {"model": "lenet5", "model_kwargs": {}, "classes": list("0123456789"),
            "input": {"channels": 1, "size": [32, 32], "mean": [0.0], "std": [1.0]}}
    save_checkpoint(tmp_path / "w", nm.state_dict(), meta)
    weights, _ = load_checkpoint(tmp_path / "w.safetensors")
    tm = get_model("lenet5")
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    save_checkpoint(tmp_path / "t", tm.state_dict(), meta)
    nm2 = get_model("lenet5", engine="numpy")
    nm2.load_state_dict(load_checkpoint(tmp_path / "t.safetensors")[0])
    for k, v in nm.state_dict().items():
        np.testing.assert_array_equal(v, nm2.state_dict()[k])


def test_module_walk_and_attributes():
    m = get_model("lenet5", engine="numpy")
    names = [n for n, _ in m.named_modules()]
    assert names[:3] == ["", "features", "features.0"] and "classifier.4" in names
    assert [n for n, _ in m.named_children()] == ["features", "flatten", "classifier"]
    conv = m.features[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
            conv.padding) == (1, 6, (5, 5), (1, 1), (0, 0))
    fc = m.classifier[0]
    assert (fc.in_features, fc.out_features) == (400, 120)
    assert sum(p.data.size for p in m.parameters()) == 61706
    assert "Conv2d(1, 6" in repr(m)


def test_train_eval_zero_grad_and_bn_buffers():
    bn = nn.BatchNorm2d(3)
    assert list(bn.state_dict()) == list(torch.nn.BatchNorm2d(3).state_dict())
    seq = nn.Sequential(nn.Conv2d(1, 3, 3), bn, nn.Dropout(0.5))
    seq.eval()
    assert not any(m.training for m in seq.modules())
    x = np.ones((2, 1, 5, 5), np.float32)
    np.testing.assert_array_equal(seq(x), seq(x))  # eval: deterministic
    seq.train()
    seq.backward(np.ones_like(seq(x)))
    assert all(p.grad is not None for p in seq.parameters())
    assert int(bn.state_dict()["num_batches_tracked"]) == 1
    seq.zero_grad()
    assert all(p.grad is None for p in seq.parameters())


def test_load_state_dict_errors():
    m = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="missing keys"):
        m.load_state_dict({"weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"weight has shape \(3, 3\), expected \(2, 3\)"):
        m.load_state_dict({"weight": np.zeros((3, 3)), "bias": np.zeros(2)})


def test_layer_errors_name_the_layer_and_shapes():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*channel mismatch.*\(2, 1, 8, 8\)"):
        net(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 4.*larger than the padded input"):
        net(np.zeros((2, 3, 2, 8), np.float32))
    with pytest.raises(ValueError, match=r"MaxPool2d.*larger than the padded input"):
        nn.MaxPool2d(3)(np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="Conv2d: padding must be >= 0"):
        nn.Conv2d(1, 1, 3, padding=-1)
    with pytest.raises(ValueError, match=r"Linear\(in_features=5.*\(2, 4\)"):
        nn.Linear(5, 2)(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="StochasticPool2d.*non-negative"):
        nn.StochasticPool2d(2)(-np.ones((1, 1, 2, 2)))


def _torch_twin_params(seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal(4)]
    nps = [nn.Parameter(a.copy()) for a in arrays]
    tps = [torch.tensor(a, requires_grad=True) for a in arrays]
    return rng, nps, tps


@pytest.mark.parametrize("make", [
    (lambda p: optim.SGD(p, lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2)),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, dampening=0),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)),
    (lambda p: optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.3)),
    (lambda p: optim.Adam(p, lr=0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (lambda p: optim.Adam(p, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)),
])
def test_optimizers_match_torch(make):
    rng, nps, tps = _torch_twin_params()
    nopt, topt = make[0](nps), make[1](tps)
    for _ in range(5):
        grads = [rng.standard_normal(p.shape) for p in nps]
        for p, t, g in zip(nps, tps, grads):
            p.grad, t.grad = g, torch.tensor(g)
        nopt.step()
        topt.step()
    for p, t in zip(nps, tps):
        np.testing.assert_allclose(p.data, t.detach().numpy(), atol=1e-12)
    # the state round-trips
    sd = nopt.state_dict()
    other = make[0](nps)
    other.load_state_dict(sd)
    assert other.state_dict()["param_groups"] == sd["param_groups"]


def test_sgd_trains_a_small_model():
    nn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 6, 6)).astype(np.float32)
    y = (x[:, 0, :3].sum((1, 2)) > x[:, 0, 3:].sum((1, 2))).astype(int)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(36, 2))
    opt, crit = optim.SGD(net.parameters(), lr=0.1, momentum=0.9), nn.CrossEntropyLoss()
    first = float(crit(net(x), y))
    for _ in range(60):
        opt.zero_grad()
        crit(net(x), y)
        net.backward(crit.backward())
        opt.step()
    assert float(crit(net(x), y)) < 0.3 * first
