"""Parity with torch as the oracle: same inputs and weights, float64, forward and every
gradient equal to 1e-10; LeNet-5 in both engines from one state dict agrees to 1e-5 in
float32."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import cnnlab.nn as cnn
from cnnlab.models.lenet import LeNet5 as TorchLeNet5
from cnnlab.scratch import functional as F
from cnnlab.scratch import nn
from cnnlab.scratch.models import LeNet5 as NumpyLeNet5

RNG = np.random.default_rng(1)
TOL = 1e-10


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def close(a, b, tol=TOL):
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else b
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


def run_layer(np_layer, torch_layer, x, *extra):
    """Forward both (float64), backward the same random dout; compare out, dx, param grads."""
    np_layer.to(np.float64)
    torch_layer.double()
    np_layer.load_state_dict({k: v.numpy() for k, v in torch_layer.state_dict().items()})
    xt = t(x)
    out_t = torch_layer(xt, *extra)
    out_n = np_layer(x, *[e.numpy() for e in extra])
    close(out_n, out_t)
    d = RNG.standard_normal(out_n.shape)
    out_t.backward(torch.from_numpy(d))
    close(np_layer.backward(d), xt.grad)
    grads = dict(torch_layer.named_parameters())
    for name, p in np_layer.named_parameters():
        close(p.grad, grads[name].grad)
    for name, b in torch_layer.named_buffers():  # running statistics
        close(np_layer.state_dict()[name], b)


LAYERS = {
    "conv": (lambda: nn.Conv2d(3, 4, 3), lambda: torch.nn.Conv2d(3, 4, 3), (2, 3, 7, 7)),
    "conv-stride-pad": (lambda: nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 2)),
                        lambda: torch.nn.Conv2d(3, 5, (3, 2), stride=(2, 1), padding=(1, 2)),
                        (2, 3, 8, 7)),
    "conv-5x5-pad2": (lambda: nn.Conv2d(1, 6, 5, padding=2),
                      lambda: torch.nn.Conv2d(1, 6, 5, padding=2), (3, 1, 12, 12)),
    "conv-cn-layout": (lambda: nn.Conv2d(6, 5, 4, padding=(1, 2)),  # C*kh*kw >= 64
                       lambda: torch.nn.Conv2d(6, 5, 4, padding=(1, 2)), (3, 6, 9, 8)),
    "conv-nobias": (lambda: nn.Conv2d(2, 3, 3, bias=False),
                    lambda: torch.nn.Conv2d(2, 3, 3, bias=False), (2, 2, 5, 5)),
    "maxpool": (lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 3, 7, 7)),
    "maxpool-overlap": (lambda: nn.MaxPool2d(3, 2), lambda: torch.nn.MaxPool2d(3, 2),
                        (2, 3, 9, 9)),
    "avgpool": (lambda: nn.AvgPool2d(3, 2), lambda: torch.nn.AvgPool2d(3, 2), (2, 3, 9, 8)),
    "minpool": (lambda: nn.MinPool2d(2), lambda: cnn.MinPool2d(2), (2, 3, 6, 6)),
    "gap": (lambda: nn.AdaptiveAvgPool2d((1, 1)), lambda: torch.nn.AdaptiveAvgPool2d((1, 1)),
            (2, 3, 5, 4)),
    "kmax": (lambda: nn.KMaxPool(5), lambda: cnn.KMaxPool(5), (2, 3, 4, 4)),
    "relu": (nn.ReLU, torch.nn.ReLU, (3, 4, 5)),
    "leaky": (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2), (3, 4, 5)),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, (3, 4, 5)),
    "tanh": (nn.Tanh, torch.nn.Tanh, (3, 4, 5)),
    "flatten": (nn.Flatten, torch.nn.Flatten, (2, 3, 4, 5)),
    "linear": (lambda: nn.Linear(7, 4), lambda: torch.nn.Linear(7, 4), (5, 7)),
    "lrn": (lambda: nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0),
            lambda: torch.nn.LocalResponseNorm(5, alpha=1e-2, beta=0.75, k=2.0), (2, 7, 3, 3)),
    "batchnorm": (lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (4, 3, 5, 5)),
}


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("training", [True, False])
def test_layer_parity(name, training):
    make_np, make_t, shape = LAYERS[name]
    np_layer, t_layer = make_np(), make_t()
    np_layer.train(training)
    t_layer.train(training)
    if name == "batchnorm":  # non-trivial affine and running statistics
        with torch.no_grad():
            for b in (t_layer.weight, t_layer.bias, t_layer.running_mean):
                b.copy_(torch.randn(3))
            t_layer.running_var.copy_(torch.rand(3) + 0.5)
    run_layer(np_layer, t_layer, RNG.standard_normal(shape))


@pytest.mark.parametrize("training", [True, False])
def test_stochastic_pool_parity(training):
    """Same draws -> the same picked elements; inference is exactly sum a^2 / sum a."""
    x = np.abs(RNG.standard_normal((2, 3, 6, 6)))
    x[0, 0, :2, :2] = 0  # an all-zero window
    draws = torch.rand(2, 3, 3, 3, dtype=torch.float64)
    np_layer, t_layer = nn.StochasticPool2d(2), cnn.StochasticPool2d(2)
    np_layer.train(training)
    t_layer.train(training)
    run_layer(np_layer, t_layer, x, draws)
    if not training:
        win = x.reshape(2, 3, 3, 2, 3, 2).transpose(0, 1, 2, 4, 3, 5).reshape(2, 3, 3, 3, 4)
        s = win.sum(-1)
        ref = np.where(s > 0, (win ** 2).sum(-1) / np.where(s > 0, s, 1), 0)
        close(np_layer(x), ref, 1e-14)


def test_dropout_parity_given_mask():
    x = RNG.standard_normal((4, 6))
    mask = RNG.random((4, 6)) >= 0.5
    out = F.dropout(x, 0.5, mask=mask)
    close(out, TF.dropout(torch.tensor(x), 0.0) * torch.tensor(mask) / 0.5)


def test_softmax_and_losses_parity():
    z = RNG.standard_normal((5, 7)) * 10
    y = RNG.integers(0, 7, 5)
    zt = t(z)
    loss = TF.cross_entropy(zt, torch.from_numpy(y))
    loss_n, cache = F.cross_entropy_forward(z, y)
    close(loss_n, loss)
    loss.backward()
    close(F.cross_entropy_backward(1.0, cache), zt.grad)
    close(F.softmax(z), torch.softmax(torch.tensor(z), -1))
    close(F.log_softmax(z), torch.log_softmax(torch.tensor(z), -1))
    big = np.array([[1000.0, 0.0, -1000.0]])  # stable: no overflow, no nan
    assert np.isfinite(F.cross_entropy(big, np.array([2])))


@pytest.mark.parametrize("input_size", [28, 32])
def test_lenet5_both_engines_float32(input_size):
    torch.manual_seed(0)
    tm = TorchLeNet5(input_size=input_size)
    nm = NumpyLeNet5(input_size=input_size)
    nm.load_state_dict(tm.state_dict())
    x = RNG.standard_normal((16, 1, input_size, input_size)).astype(np.float32)
    y = RNG.integers(0, 10, 16)
    logits_t = tm(torch.from_numpy(x))
    TF.cross_entropy(logits_t, torch.from_numpy(y)).backward()
    logits_n = nm(x)
    assert logits_n.dtype == np.float32
    crit = nn.CrossEntropyLoss()
    crit(logits_n, y)
    nm.backward(crit.backward())
    close(logits_n, logits_t, 1e-5)
    grads = dict(tm.named_parameters())
    for name, p in nm.named_parameters():
        close(p.grad, grads[name].grad, 1e-5)
