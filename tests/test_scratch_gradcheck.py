"""Gradient check of every NumPy kernel and layer: analytic backward vs centered differences
in float64, max relative error < 1e-6."""

import numpy as np
import pytest

from cnnlab.scratch import functional as F
from cnnlab.scratch import nn

RNG = np.random.default_rng(0)


def rel_error(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-12)


def numeric_grad(f, arrays, i, h=1e-6):
    """d f(arrays) / d arrays[i] by centered differences; f returns a scalar."""
    x = arrays[i]
    g = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        old = x[idx]
        x[idx] = old + h
        fp = f(arrays)
        x[idx] = old - h
        fm = f(arrays)
        x[idx] = old
        g[idx] = (fp - fm) / (2 * h)
    return g


def check(forward, backward, arrays, n_grads=None):
    """forward(*arrays) -> (out, cache); backward(dout, cache) -> grad or tuple of grads."""
    out, _ = forward(*arrays)
    r = RNG.standard_normal(np.shape(out))
    loss = lambda arrs: float((np.asarray(forward(*arrs)[0]) * r).sum())  # noqa: E731
    _, cache = forward(*arrays)
    grads = backward(r, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for i, g in enumerate(grads[:n_grads or len(arrays)]):
        if g is None:
            continue
        err = rel_error(g, numeric_grad(loss, arrays, i))
        assert err < 1e-6, f"gradient {i}: relative error {err:.2e}"


def x4(*shape, positive=False):
    a = RNG.standard_normal(shape)
    return np.abs(a) + 0.1 if positive else a


@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, (3, 3)), (2, 1, (3, 3)),
                                                   ((1, 2), (2, 1), (3, 2)), (1, 2, (5, 5))])
def test_conv2d(stride, padding, kernel):
    check(lambda x, w, b: F.conv2d_forward(x, w, b, stride, padding), F.conv2d_backward,
          [x4(2, 3, 7, 6), x4(4, 3, *kernel), x4(4)])


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d", "min_pool2d"])
@pytest.mark.parametrize("k,s", [(2, None), (3, 2), (3, 1), ((2, 3), (1, 2))])
def test_pools(name, k, s):
    check(lambda x: getattr(F, f"{name}_forward")(x, k, s), getattr(F, f"{name}_backward"),
          [x4(2, 3, 7, 7)])


def test_global_avg_pool():
    check(F.global_avg_pool2d_forward, F.global_avg_pool2d_backward, [x4(2, 3, 4, 5)])


@pytest.mark.parametrize("training", [True, False])
def test_stochastic_pool(training):
    x = x4(2, 3, 6, 6, positive=True)
    draws = RNG.random((2, 3, 3, 3))
    check(lambda a: F.stochastic_pool2d_forward(a, 2, training=training, draws=draws),
          F.stochastic_pool2d_backward, [x])


def test_kmax_pool():
    check(lambda x: F.kmax_pool_forward(x, 4), F.kmax_pool_backward, [x4(2, 3, 4, 4)])


@pytest.mark.parametrize("name,kw", [("relu", {}), ("leaky_relu", {"negative_slope": 0.1}),
                                     ("sigmoid", {}), ("tanh", {}), ("softmax", {}),
                                     ("log_softmax", {})])
def test_activations(name, kw):
    check(lambda x: getattr(F, f"{name}_forward")(x, **kw), getattr(F, f"{name}_backward"),
          [x4(4, 7)])


def test_linear():
    check(F.linear_forward, F.linear_backward, [x4(5, 7), x4(3, 7), x4(3)])


def test_dropout():
    mask = RNG.random((4, 6)) > 0.3
    check(lambda x: F.dropout_forward(x, 0.3, mask=mask), F.dropout_backward, [x4(4, 6)])


def test_cross_entropy():
    t = RNG.integers(0, 5, 6)
    check(lambda z: F.cross_entropy_forward(z, t), F.cross_entropy_backward, [x4(6, 5) * 3])


@pytest.mark.parametrize("size", [2, 3, 5])
def test_local_response_norm(size):
    check(lambda x: F.local_response_norm_forward(x, size, alpha=0.5, beta=0.75, k=2.0),
          F.local_response_norm_backward, [x4(2, 6, 3, 3)])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (6, 3)])
def test_batch_norm(training, shape):
    c = shape[1]
    rm, rv = RNG.standard_normal(c), RNG.random(c) + 0.5

    def fwd(x, w, b):  # fresh copies: training updates the running statistics in place
        return F.batch_norm_forward(x, rm.copy(), rv.copy(), w, b, training=training)

    check(fwd, F.batch_norm_backward, [x4(*shape), x4(c), x4(c)])


def test_modules_end_to_end():
    """A small network of nn layers: input gradient through every layer by differences."""
    nn.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
                        nn.LocalResponseNorm(3), nn.Conv2d(4, 3, 2), nn.Tanh(),
                        nn.Flatten(), nn.Linear(12, 5), nn.Sigmoid()).to(np.float64)
    x = x4(2, 2, 6, 6)
    check(lambda a: (net(a), None), lambda d, _: net.backward(d), [x])
