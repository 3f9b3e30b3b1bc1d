"""One unit of one layer, computed again by the NumPy engine beside torch's value.

CNN Explainer's unit views (Wang et al., "CNN Explainer: Learning convolutional neural
networks with interactive visualization", IEEE TVCG 2021), for any layer of any model:

- **convolution** ``out[k, y, x] = bias[k] + sum_{c,i,j} w[k, c, i, j] xpad[c, S y + D i,
  S x + D j]``: the receptive window of each input channel, the kernel, the element-wise
  products, their sum, the bias and the result, the result computed by
  :func:`cnnlab.scratch.functional.conv2d` on the window;
- **pooling** (max, average, adaptive average): the window, which value was chosen (the first
  maximum, as torch chooses) or averaged, by the NumPy engine's pooling kernels;
- **ReLU**: ``max(0, v)`` by :func:`cnnlab.scratch.functional.relu`;
- the classifier half, the normalisations and the blocks (flatten, fully connected, dropout,
  batch norm, LRN, residual add, inception concatenation): :mod:`cnnlab.serve.blocks`.

The layer's input and output are captured in one forward pass of the torch model (hooks
released on exit); each function gets them as NumPy arrays of one image and returns a dict
that the app sends as JSON. ``torch_value`` is the torch activation of the same unit: the
two must agree to float32 rounding (``agree`` states it at a tolerance of 1e-4 relative).
"""

from __future__ import annotations

import math

import numpy as np
from torch import nn

from cnnlab.errors import UserError
from cnnlab.scratch import functional as F

SUPPORTED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Linear,
             nn.Flatten, nn.BatchNorm2d, nn.LocalResponseNorm, nn.Dropout, nn.Identity)
TOLERANCE = 1e-4  # relative: float32 rounding of sums in another order
MAX_CHANNELS_SHOWN = 64  # input channels whose window/kernel/products go to the page


def supports(module: nn.Module) -> bool:
    from cnnlab.serve.blocks import is_basic_conv, is_inception, is_residual

    return isinstance(module, SUPPORTED) or is_residual(module) or is_inception(module) or \
        is_basic_conv(module) or (isinstance(module, nn.Sequential) and len(module) > 0)


def agree(a: float, b: float) -> bool:
    """NumPy's and torch's values of one unit equal to float32 rounding (an infinite or NaN
    value agrees only with the same value: a relative tolerance of inf would pass anything)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return bool(a == b)
    return bool(abs(a - b) <= TOLERANCE * max(1.0, abs(a), abs(b)))


def _check_unit(out: np.ndarray, c: int, y: int, x: int, name: str) -> None:
    C, H, W = out.shape
    if not (0 <= c < C and 0 <= y < H and 0 <= x < W):
        raise UserError(f"unit ({c}, {y}, {x}): outside layer {name}'s output "
                        f"{C}x{H}x{W} (channel, row, column start at 0)")


def explain_unit(module: nn.Module, name: str, xin: np.ndarray, out: np.ndarray,
                 c: int, y: int, x: int, source_shape=None) -> dict:
    """Unit ``(c, y, x)`` of ``module`` given its input ``xin (C, H, W)`` (or a vector) and
    torch's output ``out (K, H', W')``, or ``(F,)`` whose unit i is ``(0, 0, i)``, for one
    image. ``source_shape``: for a Linear layer, the maps its input was flattened from."""
    from cnnlab.serve import blocks

    d = {"layer": name, "type": type(module).__name__, "unit": [c, y, x],
         "input_shape": list(xin.shape), "output_shape": list(out.shape)}
    if out.ndim == 1:
        i = blocks.check_vector_unit(out, c, y, x, name)
        d["torch_value"] = float(out[i])
        d.update(_vector_unit(module, name, xin, i, source_shape))
    else:
        if out.ndim != 3 or xin.ndim != 3:
            raise UserError(f"layer {name}: unit detail needs 2-D maps or a vector, its output "
                            f"is {'x'.join(map(str, out.shape))}")
        _check_unit(out, c, y, x, name)
        d["torch_value"] = float(out[c, y, x])
        d.update(_map_unit(module, name, xin, out, c, y, x))
    d["agree"] = agree(d["result"], d["torch_value"])
    return d


def _relu_unit(v: float) -> dict:
    return {"kind": "relu", "input_value": v, "result": float(F.relu(np.float32([v]))[0]) + 0.0}


def _vector_unit(module, name: str, xin: np.ndarray, i: int, source_shape) -> dict:
    """Unit i of a layer whose output is a vector (the classifier half)."""
    from cnnlab.serve import blocks

    if isinstance(module, nn.Linear):
        return blocks.linear_unit(module, xin, i, source_shape)
    if isinstance(module, nn.Flatten):
        return blocks.flatten_unit(xin, i)
    if isinstance(module, nn.ReLU):
        return _relu_unit(float(xin.reshape(-1)[i]))
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return blocks.identity_unit(module, xin, 0, 0, i)
    raise UserError(f"layer {name}: no unit detail for a {type(module).__name__} giving a "
                    f"vector (covered: Linear, Flatten, ReLU, Dropout, Identity)")


def _map_unit(module, name: str, xin: np.ndarray, out: np.ndarray, c: int, y: int,
              x: int) -> dict:
    """Unit (c, y, x) of a layer whose output is feature maps."""
    from cnnlab.serve import blocks

    if isinstance(module, nn.BatchNorm2d):
        return blocks.batchnorm_unit(module, xin, c, y, x)
    if isinstance(module, nn.LocalResponseNorm):
        return blocks.lrn_unit(module, xin, c, y, x)
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return blocks.identity_unit(module, xin, c, y, x)
    if isinstance(module, nn.Conv2d):
        return conv_unit(module, xin, c, y, x)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return pool_unit(module, xin, c, y, x)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return adaptive_avg_unit(module, xin, out.shape[1:], c, y, x)
    if isinstance(module, nn.ReLU):
        return {**_relu_unit(float(xin[c, y, x])), "window": [c, y, x]}
    raise UserError(f"layer {name}: no unit detail for a {type(module).__name__} "
                    f"(covered: {', '.join(t.__name__ for t in SUPPORTED)}, residual and "
                    f"inception blocks)")


def _window_box(y, x, k, s, p, dil=(1, 1)):
    """Rows/columns of the window in the *unpadded* input: (top, left, bottom, right),
    inclusive, possibly outside the map where it covers padding."""
    top, left = y * s[0] - p[0], x * s[1] - p[1]
    return [top, left, top + dil[0] * (k[0] - 1), left + dil[1] * (k[1] - 1)]


def _take_window(xin, chs, box, dil, fill):
    """xin[chs] over ``box`` with step ``dil``; positions outside the map are ``fill``."""
    top, left, bottom, right = box
    C, H, W = xin.shape
    rows = np.arange(top, bottom + 1, dil[0])
    cols = np.arange(left, right + 1, dil[1])
    win = np.full((len(chs), len(rows), len(cols)), fill, dtype=np.float32)
    ri = (rows >= 0) & (rows < H)
    ci = (cols >= 0) & (cols < W)
    win[np.ix_(np.arange(len(chs)), ri, ci)] = xin[np.ix_(chs, rows[ri], cols[ci])]
    return win


def conv_unit(m: nn.Conv2d, xin: np.ndarray, k: int, y: int, x: int) -> dict:
    if m.padding_mode != "zeros":
        raise UserError(f"Conv2d with padding_mode={m.padding_mode!r}: unit detail covers "
                        f"zero padding only")
    if m.padding == "valid":
        pad = (0, 0)
    elif m.padding == "same":  # odd kernels: symmetric padding d (k - 1) / 2
        pad = tuple(d * (kk - 1) // 2 for d, kk in zip(m.dilation, m.kernel_size))
    else:
        pad = tuple(m.padding)
    K = m.out_channels
    per_group = m.in_channels // m.groups
    g = k // (K // m.groups)  # AlexNet's groups=2: unit k sees only its group's channels
    chs = np.arange(g * per_group, (g + 1) * per_group)
    box = _window_box(y, x, m.kernel_size, m.stride, pad, m.dilation)
    win = _take_window(xin, chs, box, m.dilation, 0.0)  # (Cg, kh, kw), zeros in the padding
    w = m.weight.detach()[k].cpu().numpy().astype(np.float32)  # (Cg, kh, kw)
    b = None if m.bias is None else m.bias.detach()[k:k + 1].cpu().numpy().astype(np.float32)
    products = win * w
    # The NumPy engine on the window alone: one 1x1 output, the dilation already taken
    # care of by sampling the window with the dilation step.
    result = float(F.conv2d(win[None], w[None], b)[0, 0, 0, 0])
    n = min(len(chs), MAX_CHANNELS_SHOWN)
    return {"kind": "conv", "channels": chs[:n].tolist(), "channels_total": int(len(chs)),
            "window_box": box, "stride": list(m.stride), "padding": list(pad),
            "dilation": list(m.dilation), "groups": m.groups,
            "window": win[:n].tolist(), "kernel": w[:n].tolist(),
            "products": products[:n].tolist(),
            "channel_sums": products.sum(axis=(1, 2)).tolist()[:n],
            "sum": float(products.sum(dtype=np.float64)),
            "bias": None if b is None else float(b[0]), "result": result}


def pool_unit(m, xin: np.ndarray, c: int, y: int, x: int) -> dict:
    k = F.pair(m.kernel_size)
    s = F.pair(m.stride if m.stride is not None else m.kernel_size)
    p = F.pair(m.padding)
    dil = F.pair(getattr(m, "dilation", 1))
    is_max = isinstance(m, nn.MaxPool2d)
    box = _window_box(y, x, k, s, p, dil)
    # torch pads max pooling with -inf (padding never wins) and average pooling with zeros.
    win = _take_window(xin, [c], box, dil, -np.inf if is_max else 0.0)  # (1, kh, kw)
    d = {"channels": [c], "channels_total": 1, "window_box": box, "stride": list(s),
         "padding": list(p), "window": np.where(np.isfinite(win), win, None)[0].tolist()}
    if is_max:
        val, cache = F.max_pool2d_forward(win[None], win.shape[1:])
        idx = int(cache[0][0, 0, 0, 0])  # the first maximum, torch's choice on ties
        d.update(kind="maxpool", chosen=[idx // win.shape[2], idx % win.shape[2]],
                 result=float(val[0, 0, 0, 0]))
        return d
    H, W = xin.shape[1:]
    inside = _take_window(np.ones((1, H, W), np.float32), [0], box, dil, 0.0)
    padded = _take_window(np.ones((1, H + 2 * p[0], W + 2 * p[1]), np.float32), [0],
                          [box[0] + p[0], box[1] + p[1], box[2] + p[0], box[3] + p[1]], dil, 0.0)
    divisor = m.divisor_override or (padded.sum() if m.count_include_pad else inside.sum())
    full = win.shape[1] * win.shape[2]
    mean = float(F.avg_pool2d(win[None], win.shape[1:])[0, 0, 0, 0]) * full / divisor
    d.update(kind="avgpool", count=float(divisor), total=float(win.sum(dtype=np.float64)),
             result=mean)
    return d


def adaptive_avg_unit(m, xin: np.ndarray, out_hw, c: int, y: int, x: int) -> dict:
    """torch's adaptive windows: rows floor(y H / H') .. ceil((y + 1) H / H') - 1."""
    H, W = xin.shape[1:]
    Ho, Wo = out_hw
    top, bottom = (y * H) // Ho, -((-(y + 1) * H) // Ho) - 1
    left, right = (x * W) // Wo, -((-(x + 1) * W) // Wo) - 1
    win = xin[c:c + 1, top:bottom + 1, left:right + 1]
    mean = float(F.global_avg_pool2d(win[None])[0, 0].reshape(-1)[0])
    return {"kind": "avgpool", "channels": [c], "channels_total": 1,
            "window_box": [top, left, bottom, right], "stride": None, "padding": [0, 0],
            "window": win[0].tolist(), "count": float(win[0].size),
            "total": float(win.sum(dtype=np.float64)), "result": mean}
