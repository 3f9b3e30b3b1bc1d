"""Activation, dense, regularisation, normalisation and loss kernels (re-exported by
:mod:`cnnlab.scratch.functional`). Each ``*_forward`` returns ``(out, cache)``, each
``*_backward(dout, cache)`` the input gradient (and parameter gradients where there are
parameters); the plain name returns only ``out``.
"""

from __future__ import annotations

import numpy as np


def _plain(forward):
    def op(*args, **kwargs):
        return forward(*args, **kwargs)[0]
    op.__name__ = forward.__name__.removesuffix("_forward")
    op.__doc__ = f"Output only of :func:`{forward.__name__}`."
    return op


# ---- activations: any shape -> the same shape ----------------------------------------------
def relu_forward(x):
    """max(0, x), element-wise."""
    mask = x > 0
    return x * mask, mask


def relu_backward(dout, cache):
    return dout * cache


def leaky_relu_forward(x, negative_slope=0.01):
    """x for x > 0, ``negative_slope * x`` otherwise (the lectures' 0.01x)."""
    slope = np.where(x > 0, 1, negative_slope).astype(x.dtype)
    return x * slope, slope


def leaky_relu_backward(dout, cache):
    return dout * cache


def sigmoid_forward(x):
    """1 / (1 + e^-x), computed without overflow for large |x|."""
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    return out, out


def sigmoid_backward(dout, cache):
    return dout * cache * (1 - cache)


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    return dout * (1 - cache * cache)


relu, leaky_relu, sigmoid, tanh = map(_plain, (relu_forward, leaky_relu_forward,
                                               sigmoid_forward, tanh_forward))


# ---- dense ----------------------------------------------------------------------------------
def linear_forward(x, weight, bias=None):
    """``x (N, in) @ weight(out, in).T + bias (out,)`` -> ``(N, out)`` (torch's layout)."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"linear: x {x.shape} must be (N, in_features) with in_features = "
                         f"{weight.shape[1] if weight.ndim == 2 else '?'} for weight "
                         f"{weight.shape} (out_features, in_features).")
    out = x @ weight.T
    if bias is not None:
        out += bias
    return out, (x, weight, bias is not None)


def linear_backward(dout, cache):
    """``dout (N, out)`` -> ``dx (N, in)``, ``dweight (out, in)``, ``dbias (out,)``."""
    x, weight, has_bias = cache
    return dout @ weight, dout.T @ x, (dout.sum(0) if has_bias else None)


linear = _plain(linear_forward)


def dropout_forward(x, p=0.5, training=True, rng=None, mask=None):
    """Inverted dropout: in training zero each element with probability `p` and scale the
    survivors by 1 / (1 - p), so inference is the identity. `rng` (Generator or int seed)
    makes it reproducible; `mask` (boolean, ``x.shape``, True = keep) overrides it."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}.")
    if not training or p == 0:
        return x, None
    if mask is None:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        mask = gen.random(x.shape) >= p
    scale = (mask / (1 - p)).astype(x.dtype)
    return x * scale, scale


def dropout_backward(dout, cache):
    return dout if cache is None else dout * cache


# ---- softmax and loss: logits (N, K) --------------------------------------------------------
def softmax_forward(x, dim=-1):
    """exp(x) / sum exp(x) along `dim`, shifted by the max so exp never overflows."""
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    out = e / e.sum(axis=dim, keepdims=True)
    return out, (out, dim)


def softmax_backward(dout, cache):
    out, dim = cache
    return out * (dout - (dout * out).sum(axis=dim, keepdims=True))


def log_softmax_forward(x, dim=-1):
    """x - logsumexp(x) along `dim` (stable)."""
    shifted = x - x.max(axis=dim, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=dim, keepdims=True))
    return out, (out, dim)


def log_softmax_backward(dout, cache):
    out, dim = cache
    return dout - np.exp(out) * dout.sum(axis=dim, keepdims=True)


softmax, log_softmax = _plain(softmax_forward), _plain(log_softmax_forward)


def cross_entropy_forward(logits, targets):
    """Mean negative log-likelihood of integer `targets (N,)` under softmax(`logits (N, K)`),
    via log_softmax so it is stable for any logits -> a scalar."""
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: expected logits (N, K) and targets (N,), got "
                         f"{logits.shape} and {targets.shape}.")
    if targets.size and (targets.min() < 0 or targets.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: targets must lie in [0, {logits.shape[1]}), got "
                         f"range [{targets.min()}, {targets.max()}].")
    logp, _ = log_softmax_forward(logits)
    n = logits.shape[0]
    loss = -logp[np.arange(n), targets].mean()
    return np.asarray(loss, dtype=logits.dtype), (logp, targets)


def cross_entropy_backward(dout=1.0, cache=None):
    """d loss / d logits = (softmax - onehot) / N, times the scalar `dout`."""
    logp, targets = cache
    grad = np.exp(logp)
    grad[np.arange(len(targets)), targets] -= 1
    return grad * (np.asarray(dout, dtype=grad.dtype) / len(targets))


cross_entropy = _plain(cross_entropy_forward)


# ---- normalisation: x (N, C, H, W) ----------------------------------------------------------
def _channel_window_sum(a, before, after):
    """sum_{c' = c - before}^{c + after} a[:, c'] (zeros outside), via one cumulative sum."""
    n, c = a.shape[:2]
    padded = np.zeros((n, c + before + after + 1) + a.shape[2:], dtype=a.dtype)
    np.cumsum(a, axis=1, out=padded[:, before + 1:before + 1 + c])
    padded[:, before + 1 + c:] = padded[:, before + c:before + c + 1]
    span = before + after + 1
    return padded[:, span:span + c] - padded[:, :c]


def local_response_norm_forward(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels, **torch's convention**:

        b_c = a_c / (k + alpha / size * sum_{c' in W(c)} a_{c'}^2) ^ beta,

    W(c) = channels ``c - size//2 .. c + (size-1)//2`` (zero beyond the edges). AlexNet
    (Krizhevsky 2012, section 3.3) writes ``k + alpha * sum`` with n = 5, k = 2,
    alpha = 1e-4, beta = 0.75: torch divides alpha by `size`, so AlexNet's layer is
    ``size=5, alpha=5e-4, beta=0.75, k=2`` here (see :func:`alexnet_lrn_args`).
    Shapes: ``(N, C, H, W)`` -> ``(N, C, H, W)``.
    """
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: expected x (N, C, ...), got shape {x.shape}.")
    scale = k + alpha / size * _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    out = x * scale ** -beta
    return out, (x, scale, size, alpha, beta)


def local_response_norm_backward(dout, cache):
    """``dout (N, C, H, W)`` -> ``dx``: the direct term plus every window that contains c."""
    x, scale, size, alpha, beta = cache
    direct = dout * scale ** -beta
    g = dout * x * scale ** (-beta - 1)
    # channel j is in W(c) for c in j - (size-1)//2 .. j + size//2: the mirrored window.
    return direct - 2 * alpha * beta / size * x * _channel_window_sum(g, (size - 1) // 2,
                                                                      size // 2)


def alexnet_lrn_args(n=5, k=2.0, alpha=1e-4, beta=0.75) -> dict:
    """AlexNet's (n, k, alpha, beta) as torch/cnnlab ``LocalResponseNorm`` arguments."""
    return {"size": n, "alpha": alpha * n, "beta": beta, "k": k}


local_response_norm = _plain(local_response_norm_forward)


def batch_norm_forward(x, running_mean, running_var, weight=None, bias=None, training=False,
                       momentum=0.1, eps=1e-5):
    """Batch normalisation (Ioffe & Szegedy 2015) per channel of ``x (N, C, H, W)``
    (or ``(N, C)``), as ``torch.nn.functional.batch_norm``.

    Training normalises by the batch mean and biased variance over (N, H, W) and updates
    ``running_mean (C,)`` / ``running_var (C,)`` **in place** with
    ``r = (1 - momentum) * r + momentum * batch_stat`` (the unbiased variance, like torch);
    evaluation normalises by the running statistics. ``weight, bias (C,)``: the affine map.
    """
    if x.ndim not in (2, 4) or x.shape[1] != running_mean.shape[0]:
        raise ValueError(f"batch_norm: x {x.shape} must be (N, C, H, W) or (N, C) with C = "
                         f"{running_mean.shape[0]} (running_mean {running_mean.shape}).")
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    bshape = (1, -1) + (1,) * (x.ndim - 2)
    if training:
        count = x.size // x.shape[1]
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        running_mean *= 1 - momentum
        running_mean += momentum * mean
        running_var *= 1 - momentum
        running_var += momentum * var * count / max(count - 1, 1)
    else:
        mean, var = running_mean, running_var
    inv_std = 1 / np.sqrt(var + eps)
    xhat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
    out = xhat if weight is None else xhat * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out.astype(x.dtype), (xhat, inv_std, weight, bias is not None, training, axes, bshape)


def batch_norm_backward(dout, cache):
    """``dout`` (x's shape) -> ``dx``, ``dweight (C,)`` (None without weight), ``dbias (C,)``."""
    xhat, inv_std, weight, has_bias, training, axes, bshape = cache
    dweight = (dout * xhat).sum(axis=axes) if weight is not None else None
    dbias = dout.sum(axis=axes) if has_bias else None
    dxhat = dout if weight is None else dout * weight.reshape(bshape)
    if training:  # the batch statistics depend on x too
        dxhat = (dxhat - dxhat.mean(axis=axes, keepdims=True)
                 - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    return dxhat * inv_std.reshape(bshape), dweight, dbias


batch_norm = _plain(batch_norm_forward)
dropout = _plain(dropout_forward)
