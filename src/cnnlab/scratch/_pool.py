"""Pooling kernels (re-exported by :mod:`cnnlab.scratch.functional`), NCHW.

All windowed pools share one idea: a loop over the kh*kw kernel *offsets* (4 for 2x2), each
step touching a whole strided ``(N, C, H', W')`` slice, so nothing loops over pixels.
Backward routes the gradient the way the lectures draw it: max/min pooling "create a mask"
of the chosen element (the first one on ties, like torch), average pooling "distributes
the value" evenly over the window.
"""

from __future__ import annotations

import numpy as np


def pair(v, name: str = "value") -> tuple[int, int]:
    """An int or a pair -> ``(h, w)``."""
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise ValueError(f"`{name}` must be an int or a pair of ints, got {v!r}.")


def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                strict: bool = False, op: str = "conv2d", dim: str = "size") -> int:
    """``(size + 2*padding - kernel) / stride + 1``, floored like torch.

    Raises ValueError (naming `op`) for negative padding, a kernel larger than the padded
    input, or, with ``strict=True``, a quotient that is not an integer ("does not fit").
    """
    if padding < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {padding}.")
    if stride < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {stride}.")
    span = size + 2 * padding - kernel
    if span < 0:
        raise ValueError(f"{op}: kernel {dim} {kernel} is larger than the padded input {dim} "
                         f"{size} + 2*{padding} = {size + 2 * padding}.")
    if strict and span % stride:
        raise ValueError(f"{op}: output {dim} ({size} - {kernel} + 2*{padding}) / {stride} + 1 "
                         f"= {span / stride + 1:g} is not an integer: the filter does not fit.")
    return span // stride + 1


def _geometry(x, kernel_size, stride, strict, op):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected x (N, C, H, W), got shape {x.shape}.")
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = pair(kernel_size if stride is None else stride, "stride")
    where = f"{op} on x {x.shape}"
    ho = output_size(x.shape[2], kh, sh, 0, strict, where, "height")
    wo = output_size(x.shape[3], kw, sw, 0, strict, where, "width")
    return (kh, kw), (sh, sw), (ho, wo)


def _window_slices(k, s, o):
    """The strided slice picking kernel offset (i, j) of every window."""
    (kh, kw), (sh, sw), (ho, wo) = k, s, o
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, (slice(None), slice(None), slice(i, i + sh * ho, sh),
                               slice(j, j + sw * wo, sw))


def _windows(x, k, s, o):
    """``(N, C, kh*kw, H', W')``: element ``[:, :, i*kw + j]`` is offset (i, j) of each window."""
    win = np.empty(x.shape[:2] + (k[0] * k[1],) + o, dtype=x.dtype)
    for idx, sl in _window_slices(k, s, o):
        win[:, :, idx] = x[sl]
    return win


def _route(dout, index, shape, k, s, o):
    """Scatter ``dout (N, C, H', W')`` to the element ``index`` of each window (the mask)."""
    if s[0] >= k[0] and s[1] >= k[1]:  # windows do not overlap: write each slice once
        covered = s == k and shape[2] == s[0] * o[0] and shape[3] == s[1] * o[1]
        dx = np.empty(shape, dout.dtype) if covered else np.zeros(shape, dout.dtype)
        for idx, sl in _window_slices(k, s, o):
            np.multiply(dout, index == idx, out=dx[sl])
        return dx
    dx = np.zeros(shape, dtype=dout.dtype)
    for idx, sl in _window_slices(k, s, o):
        dx[sl] += np.where(index == idx, dout, 0)
    return dx


def max_pool2d_forward(x, kernel_size, stride=None, strict=False, _op="max_pool2d"):
    """Max over each ``kernel_size`` window: ``(N, C, H, W)`` -> ``(N, C, H', W')``,
    ``H' = floor((H - kh) / S) + 1``, stride defaulting to the kernel size.

    The cache holds, per window, the offset of its *first* maximum (torch's choice on ties),
    found without an argmax over a copied window tensor: with ne_k = (x_k != max), the first
    offset is ne_0 * (1 + ne_1 * (1 + ne_2 * ...)), a few uint8 operations on (N, C, H', W').
    """
    k, s, o = _geometry(x, kernel_size, stride, strict, _op)
    slices = [sl for _, sl in _window_slices(k, s, o)]
    out = x[slices[0]].copy()
    for sl in slices[1:]:
        np.maximum(out, x[sl], out=out)
    index = np.zeros(out.shape, dtype=np.uint8 if len(slices) < 256 else np.int64)
    for sl in reversed(slices[:-1]):  # Horner from the last offset back to the first
        index += 1
        index *= x[sl] != out
    return out, (index, x.shape, k, s, o)


def max_pool2d_backward(dout, cache):
    """``dout (N, C, H', W')`` -> ``dx (N, C, H, W)``: each window's gradient goes to its
    (first) maximum only ("create mask, distribute value")."""
    index, shape, k, s, o = cache
    return _route(dout, index, shape, k, s, o)


def max_pool2d(x, kernel_size, stride=None, strict=False):
    """See :func:`max_pool2d_forward`."""
    return max_pool2d_forward(x, kernel_size, stride, strict)[0]


def min_pool2d_forward(x, kernel_size, stride=None, strict=False):
    """Min over each window (``-max_pool2d(-x)``, first minimum on ties):
    ``(N, C, H, W)`` -> ``(N, C, H', W')``."""
    out, cache = max_pool2d_forward(-x, kernel_size, stride, strict, _op="min_pool2d")
    return -out, cache


def min_pool2d_backward(dout, cache):
    """``dout (N, C, H', W')`` -> ``dx (N, C, H, W)``, routed to each window's minimum."""
    return max_pool2d_backward(dout, cache)


def min_pool2d(x, kernel_size, stride=None, strict=False):
    """See :func:`min_pool2d_forward`."""
    return min_pool2d_forward(x, kernel_size, stride, strict)[0]


def avg_pool2d_forward(x, kernel_size, stride=None, strict=False):
    """Mean of each window: ``(N, C, H, W)`` -> ``(N, C, H', W')`` (torch's AvgPool2d
    without padding)."""
    k, s, o = _geometry(x, kernel_size, stride, strict, "avg_pool2d")
    out = np.zeros(x.shape[:2] + o, dtype=x.dtype)
    for _, sl in _window_slices(k, s, o):
        out += x[sl]
    out /= k[0] * k[1]
    return out, (x.shape, k, s, o)


def avg_pool2d_backward(dout, cache):
    """``dout (N, C, H', W')`` -> ``dx (N, C, H, W)``: each window's gradient spread evenly."""
    shape, k, s, o = cache
    dx = np.zeros(shape, dtype=dout.dtype)
    share = dout / (k[0] * k[1])
    for _, sl in _window_slices(k, s, o):
        dx[sl] += share
    return dx


def avg_pool2d(x, kernel_size, stride=None, strict=False):
    """See :func:`avg_pool2d_forward`."""
    return avg_pool2d_forward(x, kernel_size, stride, strict)[0]


def global_avg_pool2d_forward(x):
    """Mean of each whole map (GoogLeNet's global average pooling):
    ``(N, C, H, W)`` -> ``(N, C, 1, 1)``, like ``AdaptiveAvgPool2d((1, 1))``."""
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool2d: expected x (N, C, H, W), got shape {x.shape}.")
    return x.mean(axis=(2, 3), keepdims=True), x.shape


def global_avg_pool2d_backward(dout, cache):
    """``dout (N, C, 1, 1)`` -> ``dx (N, C, H, W)``."""
    shape = cache
    return np.broadcast_to(dout / (shape[2] * shape[3]), shape).copy()


def global_avg_pool2d(x):
    """See :func:`global_avg_pool2d_forward`."""
    return global_avg_pool2d_forward(x)[0]


def stochastic_pool2d_forward(x, kernel_size, stride=None, training=True, rng=None,
                              draws=None, strict=False):
    """Stochastic pooling (Zeiler & Fergus, ICLR 2013): ``(N, C, H, W)`` -> ``(N, C, H', W')``.

    Each window R holds non-negative activations a_i (e.g. after ReLU) with probabilities
    p_i = a_i / sum_k a_k. In training it outputs one a_i drawn with probability p_i: with a
    uniform draw u in [0, 1) per window it picks the first i whose cumulative sum
    a_1 + ... + a_i exceeds u * sum_k a_k. At inference it outputs sum_i p_i a_i =
    sum a_i^2 / sum a_i. An all-zero window gives 0 (and passes no gradient).

    Args:
        rng: a ``np.random.Generator`` or an int seed for the draws (training only).
        draws: ``(N, C, H', W')`` uniform numbers in [0, 1) to use instead of `rng` (lets
            a test make torch's :class:`cnnlab.nn.StochasticPool2d` pick the same elements).
    """
    k, s, o = _geometry(x, kernel_size, stride, strict, "stochastic_pool2d")
    if x.size and x.min() < 0:
        raise ValueError(f"stochastic_pool2d: inputs must be non-negative (apply ReLU first); "
                         f"x {x.shape} has minimum {x.min():g}.")
    win = _windows(x, k, s, o)  # N x C x kh*kw x H' x W'
    cum = np.cumsum(win, axis=2)
    total = cum[:, :, -1]  # sum of each window (the same summation order as the picks)
    if training:
        if draws is None:
            gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
            draws = gen.random(total.shape)
        if draws.shape != total.shape:
            raise ValueError(f"stochastic_pool2d: draws {draws.shape} must have the output "
                             f"shape {total.shape} for x {x.shape}.")
        index = np.argmax(cum > (draws * total)[:, :, None], axis=2)
        out = np.take_along_axis(win, index[:, :, None], axis=2)[:, :, 0]
        index = np.where(total > 0, index, -1)  # all-zero window: no element picked
        return out, (True, index, x.shape, k, s, o)
    safe = np.where(total > 0, total, 1)
    sq = (win * win).sum(axis=2)
    out = np.where(total > 0, sq / safe, 0).astype(x.dtype)
    return out, (False, (win, safe, sq, total > 0), x.shape, k, s, o)


def stochastic_pool2d_backward(dout, cache):
    """``dout (N, C, H', W')`` -> ``dx (N, C, H, W)``: to the picked element in training;
    at inference through s = Q / S (Q = sum a^2, S = sum a): ds/da_j = (2 a_j S - Q) / S^2."""
    training, state, shape, k, s, o = cache
    if training:
        return _route(dout, state, shape, k, s, o)
    win, total, sq, nonzero = state
    g = np.where(nonzero, dout / (total * total), 0)[:, :, None]
    dwin = (2 * win * total[:, :, None] - sq[:, :, None]) * g  # N x C x kh*kw x H' x W'
    dx = np.zeros(shape, dtype=dout.dtype)
    for idx, sl in _window_slices(k, s, o):
        dx[sl] += dwin[:, :, idx]
    return dx


def stochastic_pool2d(x, kernel_size, stride=None, training=True, rng=None, draws=None,
                      strict=False):
    """See :func:`stochastic_pool2d_forward`."""
    return stochastic_pool2d_forward(x, kernel_size, stride, training, rng, draws, strict)[0]


def kmax_pool_forward(x, k: int):
    """k-max pooling: the `k` largest activations of each channel over the whole map, kept
    in their original (row-major) order: ``(N, C, H, W)`` -> ``(N, C, k)``."""
    if x.ndim != 4:
        raise ValueError(f"kmax_pool: expected x (N, C, H, W), got shape {x.shape}.")
    n, c, h, w = x.shape
    if not 1 <= k <= h * w:
        raise ValueError(f"kmax_pool: k must be in [1, H*W = {h * w}] for x {x.shape}, got {k}.")
    flat = x.reshape(n, c, h * w)
    index = np.sort(np.argpartition(flat, h * w - k, axis=2)[:, :, h * w - k:], axis=2)
    return np.take_along_axis(flat, index, axis=2), (index, x.shape)


def kmax_pool_backward(dout, cache):
    """``dout (N, C, k)`` -> ``dx (N, C, H, W)``, zero except at the kept positions."""
    index, shape = cache
    dx = np.zeros((shape[0], shape[1], shape[2] * shape[3]), dtype=dout.dtype)
    np.put_along_axis(dx, index, dout, axis=2)
    return dx.reshape(shape)


def kmax_pool(x, k: int):
    """See :func:`kmax_pool_forward`."""
    return kmax_pool_forward(x, k)[0]
