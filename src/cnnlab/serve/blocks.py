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


# ---- blocks: computed from their inner modules' captured outputs -----------------------------
def block_plan(module: nn.Module, name: str) -> list[str]:
    """The module names whose inputs/outputs a block's unit detail needs (the block first)."""
    if is_residual(module):
        last = "bn3" if hasattr(module, "bn3") else "bn2"
        extra = [n for n in ("shortcut", "downsample") if getattr(module, n, None) is not None]
        return [name, f"{name}.{last}"] + [f"{name}.{n}" for n in extra]
    if is_inception(module):
        return [name] + [f"{name}.branch{k}" for k in range(1, 5)]
    if is_basic_conv(module):
        return [name, f"{name}.conv"]
    return [name]


def is_residual(m) -> bool:
    return hasattr(m, "conv1") and hasattr(m, "relu") and (hasattr(m, "bn2")) and \
        (hasattr(m, "shortcut") or hasattr(m, "downsample"))


def is_inception(m) -> bool:
    return all(hasattr(m, f"branch{k}") for k in range(1, 5))


def is_basic_conv(m) -> bool:
    return isinstance(getattr(m, "conv", None), nn.Conv2d) and hasattr(m, "relu") and \
        len(list(m.children())) == 2


def residual_unit(module, name: str, io: dict, c: int, y: int, x: int) -> dict:
    """``out = ReLU(F(x) + shortcut(x))``: both terms at the unit, then the ReLU."""
    last = "bn3" if hasattr(module, "bn3") else "bn2"
    f = io[f"{name}.{last}"][1]
    sc = next((n for n in ("shortcut", "downsample") if getattr(module, n, None) is not None),
              None)
    if sc is not None:
        s, how = io[f"{name}.{sc}"][1], f"{sc} ({type(getattr(module, sc)).__name__})"
    elif hasattr(module, "shortcut"):  # a plain net's block: no shortcut at all
        s, how = None, "none (plain network: no shortcut)"
    else:
        s, how = io[name][0], "identity (x itself)"
    fv = float(f[c, y, x])
    sv = 0.0 if s is None else float(s[c, y, x])
    total = np.float32(fv) + np.float32(sv)
    return {"kind": "residual", "f_value": fv, "f_layer": f"{name}.{last}",
            "shortcut_value": None if s is None else sv, "shortcut": how,
            "sum": float(total), "result": float(F.relu(np.float32([total]))[0]) + 0.0}


def inception_unit(module, name: str, io: dict, c: int, y: int, x: int) -> dict:
    """Channel ``c`` of the concatenation is channel ``c - start`` of the branch it falls in."""
    branches, start = [], 0
    for k in range(1, 5):
        out = io[f"{name}.branch{k}"][1]
        branches.append({"branch": f"branch{k}", "channels": [start, start + out.shape[0] - 1],
                         "layers": " -> ".join(type(m).__name__ for m in
                                               getattr(module, f"branch{k}").modules()
                                               if not list(m.children()))})
        if start <= c < start + out.shape[0]:
            chosen, local, value = k - 1, c - start, float(out[c - start, y, x])
        start += out.shape[0]
    return {"kind": "inception", "branches": branches, "chosen": chosen, "branch_channel": local,
            "branch_value": value, "result": value}


def sequential_target(model: nn.Module, name: str) -> tuple[str, list[str]]:
    """A ``Sequential`` stage's unit is its last module's: (that module's name, the path)."""
    path = [name]
    m = model.get_submodule(name)
    while isinstance(m, nn.Sequential) and len(m):
        last = list(m._modules)[-1]
        name = f"{name}.{last}"
        path.append(name)
        m = m[-1]
    return name, path


def check_vector_unit(out: np.ndarray, c: int, y: int, x: int, name: str) -> int:
    if (c, y) != (0, 0) or not 0 <= x < out.size:
        raise UserError(f"unit ({c}, {y}, {x}): layer {name} gives a vector of {out.size} "
                        f"values; expected (0, 0, i) with i in 0..{out.size - 1}")
    return x


def unit_needs(proto: nn.Module, layer: str) -> list[str]:
    """The module names whose captured input/output the unit detail of ``layer`` needs."""
    target, _path = sequential_target(proto, layer)
    module = proto.get_submodule(target)
    sources = _linear_sources(proto, module)
    return list(dict.fromkeys(block_plan(module, target) + sources))


def _linear_sources(proto: nn.Module, module: nn.Module) -> list[str]:
    """For a Linear unit: the modules whose maps its input may have been flattened from."""
    if not isinstance(module, nn.Linear):
        return []
    return [n for n, m in proto.named_modules()
            if isinstance(m, (nn.Flatten, nn.AdaptiveAvgPool2d))]


def capture_io(model: nn.Module, xt, names) -> dict:
    """One forward pass of ``model`` on ``xt`` (1, C, H, W): {name: (input, output)} of each
    module in ``names`` for the image, as NumPy arrays (first call of a module reused)."""
    import torch

    from cnnlab.serve.explorer import LayerIO

    hooks = {n: LayerIO(model.get_submodule(n)) for n in dict.fromkeys(names)}
    for h in hooks.values():
        h.__enter__()
    try:
        with torch.no_grad():
            model(xt)
    finally:
        for h in hooks.values():
            h.__exit__(None, None, None)
    return {n: (h.input, h.output) for n, h in hooks.items()}


def compute_unit(proto: nn.Module, model: nn.Module, layer: str, xt, c: int, y: int,
                 x: int) -> dict:
    """Unit (c, y, x) of ``layer`` for the normalized batch ``xt`` (1, C, H, W): one forward
    pass of ``model`` (a borrowed copy) with hooks on what the unit needs, then the NumPy
    engine on the captured values. ``proto``: the loaded model (weights read, never run)."""
    return unit_from_io(proto, layer, capture_io(model, xt, unit_needs(proto, layer)), c, y, x)


def unit_from_io(proto: nn.Module, layer: str, io: dict, c: int, y: int, x: int) -> dict:
    """Unit (c, y, x) of ``layer`` from ``io`` (:func:`capture_io` of at least
    :func:`unit_needs`; one pass can serve every unit of every layer)."""
    from cnnlab.serve.units import agree, explain_unit

    target, path = sequential_target(proto, layer)
    module = proto.get_submodule(target)
    plan = block_plan(module, target)
    sources = _linear_sources(proto, module)
    xin, out = io[target]
    if len(plan) == 1:  # a leaf module
        source = None
        if isinstance(module, nn.Linear):
            source = next((io[n][0].shape if isinstance(proto.get_submodule(n), nn.Flatten)
                           else io[n][1].shape for n in sources
                           if io[n][0] is not None and io[n][1] is not None
                           and io[n][1].size == module.in_features
                           and (io[n][0].ndim == 3 or io[n][1].ndim == 3)), None)
            source = None if source is None or len(source) != 3 else tuple(source)
        d = explain_unit(module, target, xin, out, c, y, x, source)
        if isinstance(module, nn.Linear):
            last = [n for n, m in proto.named_modules() if isinstance(m, nn.Linear)
                    and not n.startswith(("aux1", "aux2"))][-1]
            d["is_output"] = target == last
    else:
        if out.ndim != 3 or not (0 <= c < out.shape[0] and 0 <= y < out.shape[1]
                                 and 0 <= x < out.shape[2]):
            raise UserError(f"unit ({c}, {y}, {x}): outside layer {layer}'s output "
                            f"{'x'.join(map(str, out.shape))} (channel, row, column start at 0)")
        if is_residual(module):
            d = residual_unit(module, target, io, c, y, x)
        elif is_inception(module):
            d = inception_unit(module, target, io, c, y, x)
        else:  # BasicConv2d: the convolution's unit, then its ReLU
            from cnnlab.serve.units import conv_unit

            d = conv_unit(module.conv, io[f"{target}.conv"][0], c, y, x)
            d["then_relu"] = True
            d["conv_result"] = d["result"]
            d["result"] = float(F.relu(np.float32([d["result"]]))[0]) + 0.0
            xin = io[f"{target}.conv"][0]
        d.update({"layer": target, "type": type(module).__name__, "unit": [c, y, x],
                  "torch_value": float(out[c, y, x]), "input_shape": list(xin.shape),
                  "output_shape": list(out.shape)})
        d["agree"] = agree(d["result"], d["torch_value"])
    d["stage"], d["via"] = layer, path[1:]
    d["_input"] = xin
    return d
