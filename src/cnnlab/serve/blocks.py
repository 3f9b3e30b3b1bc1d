"""Unit detail for the rest of a network: the classifier half (flatten, fully connected,
dropout), the normalisations (batch norm, LRN) and the blocks a stage can be (a residual
block's ``out = F(x) + x``, GoogLeNet's inception concatenation, ``BasicConv2d``, a
``Sequential`` of blocks), each computed again by the NumPy engine
(:mod:`cnnlab.scratch.functional`) beside torch's value, like :mod:`cnnlab.serve.units`.

Every function gets the captured inputs/outputs of one image as NumPy arrays and returns the
dict the app sends; ``result`` is the NumPy engine's value, compared with ``torch_value`` by
the caller. A vector layer's unit ``i`` is addressed as ``(0, 0, i)``, as the overview
draws a vector: one row of ``F`` cells.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from cnnlab.errors import UserError
from cnnlab.scratch import functional as F

MAX_INPUTS_SHOWN = 4096  # a Linear unit's inputs sent whole up to this; beyond, the largest


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def linear_unit(m: nn.Linear, xin: np.ndarray, i: int, source_shape=None) -> dict:
    """``out[i] = bias[i] + sum_j w[i, j] x[j]``. ``source_shape`` (C, H, W): the maps the
    input was flattened from, so the inputs are grouped by the map they came from."""
    x = xin.reshape(-1).astype(np.float32)
    w = _np(m.weight)[i]
    b = None if m.bias is None else _np(m.bias)[i:i + 1]
    products = x * w
    result = float(F.linear(x[None], w[None], b)[0, 0])
    n = len(x)
    shown = np.arange(n) if n <= MAX_INPUTS_SHOWN else \
        np.sort(np.argsort(-np.abs(products), kind="stable")[:MAX_INPUTS_SHOWN])
    d = {"kind": "linear", "in_features": n, "shown": shown.tolist(),
         "inputs": x[shown].tolist(), "weights": w[shown].tolist(),
         "products": products[shown].tolist(), "sum": float(products.sum(dtype=np.float64)),
         "bias": None if b is None else float(b[0]), "result": result}
    if source_shape is not None and int(np.prod(source_shape)) == n:
        C, H, W = source_shape
        groups = products.reshape(C, H * W).sum(axis=1, dtype=np.float64)
        d["source_shape"] = list(source_shape)
        d["groups"] = [{"map": c, "from": c * H * W, "to": (c + 1) * H * W - 1,
                        "sum": float(groups[c])} for c in range(C)]
    return d


def flatten_unit(xin: np.ndarray, i: int) -> dict:
    """Element ``i`` of the flattened vector is ``x[c, y, x]`` with (c, y, x) = i's row-major
    position in the input's (C, H, W)."""
    c, y, x = (int(v) for v in np.unravel_index(i, xin.shape))
    return {"kind": "flatten", "source": [c, y, x], "source_shape": list(xin.shape),
            "formula": f"i = c*H*W + y*W + x = {c}*{xin.shape[1] * xin.shape[2]} + "
                       f"{y}*{xin.shape[2]} + {x} = {i}",
            "input_value": float(xin[c, y, x]),
            "result": float(xin.reshape(-1)[i])}


def batchnorm_unit(m: nn.BatchNorm2d, xin: np.ndarray, c: int, y: int, x: int) -> dict:
    """``(x - running_mean) / sqrt(running_var + eps) * weight + bias`` (inference)."""
    mean, var = _np(m.running_mean), _np(m.running_var)
    w = None if m.weight is None else _np(m.weight)
    b = None if m.bias is None else _np(m.bias)
    v = xin[c, y, x]
    one = np.full((1, len(mean), 1, 1), 0, np.float32)
    one[0, c, 0, 0] = v
    out, _ = F.batch_norm_forward(one, mean, var, w, b, training=False, eps=m.eps)
    return {"kind": "batchnorm", "input_value": float(v), "mean": float(mean[c]),
            "var": float(var[c]), "eps": m.eps, "weight": None if w is None else float(w[c]),
            "bias": None if b is None else float(b[c]), "result": float(out[0, c, 0, 0])}


def lrn_unit(m: nn.LocalResponseNorm, xin: np.ndarray, c: int, y: int, x: int) -> dict:
    """``b_c = a_c / (k + alpha/n * sum_{c' in W(c)} a_c'^2) ^ beta`` (torch's convention)."""
    lo, hi = max(0, c - m.size // 2), min(xin.shape[0] - 1, c + (m.size - 1) // 2)
    col = xin[:, y, x].astype(np.float32)
    out = F.local_response_norm(col[None, :, None, None], m.size, m.alpha, m.beta, m.k)
    window = col[lo:hi + 1]
    return {"kind": "lrn", "channels": list(range(lo, hi + 1)), "window": window.tolist(),
            "input_value": float(col[c]), "size": m.size, "alpha": m.alpha, "beta": m.beta,
            "k": m.k, "sum_squares": float((window.astype(np.float64) ** 2).sum()),
            "result": float(out[0, c, 0, 0])}


def identity_unit(module: nn.Module, xin: np.ndarray, c: int, y: int, x: int) -> dict:
    """Dropout at inference (and Identity) pass their input through unchanged."""
    v = float(xin.reshape(1, 1, -1)[0, 0, x] if xin.ndim == 1 else xin[c, y, x])
    kind = "dropout" if isinstance(module, nn.Dropout) else "identity"
    d = {"kind": kind, "input_value": v, "result": v}
    if kind == "dropout":
        d["p"] = module.p
        d["note"] = (f"dropout (p = {module.p}) is the identity at inference: units are zeroed "
                     f"at random (and the rest scaled by 1/(1-p)) only while training")
    return d


def is_residual(m) -> bool:
    return hasattr(m, "conv1") and hasattr(m, "relu") and (hasattr(m, "bn2")) and \
        (hasattr(m, "shortcut") or hasattr(m, "downsample"))


def is_inception(m) -> bool:
    return all(hasattr(m, f"branch{k}") for k in range(1, 5))


def is_basic_conv(m) -> bool:
    return isinstance(getattr(m, "conv", None), nn.Conv2d) and hasattr(m, "relu") and \
        len(list(m.children())) == 2


def check_vector_unit(out: np.ndarray, c: int, y: int, x: int, name: str) -> int:
    if (c, y) != (0, 0) or not 0 <= x < out.size:
        raise UserError(f"unit ({c}, {y}, {x}): layer {name} gives a vector of {out.size} "
                        f"values; expected (0, 0, i) with i in 0..{out.size - 1}")
    return x
