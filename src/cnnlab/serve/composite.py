"""Unit detail of whole blocks and stages, computed from their inner modules' captured
inputs and outputs: a residual block's ``out = ReLU(F(x) + x)``, GoogLeNet's inception
concatenation, ``BasicConv2d``, a ``Sequential`` of blocks; and the hooks that capture them
(one forward pass can serve every unit of every layer).

The floor under it: :mod:`cnnlab.serve.units` (a leaf module's unit) and
:mod:`cnnlab.serve.blocks` (the classifier half, the normalisations, what a block is).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from cnnlab.errors import UserError
from cnnlab.scratch import functional as F
from cnnlab.serve.blocks import is_basic_conv, is_inception, is_residual
from cnnlab.serve.units import agree, explain_unit


class LayerIO:
    """Forward hooks that keep one module's input and output (clones, first image) of the
    next forward pass; removed on exit. The input is cloned *before* the module runs, so an
    in-place ReLU cannot overwrite it."""

    def __init__(self, module):
        self.module, self.input, self.output, self._h = module, None, None, []

    def _pre(self, _m, args):
        if self.input is None:
            self.input = args[0][0].detach().float().cpu().numpy().copy()

    def _post(self, _m, _args, out):
        if self.output is None:
            self.output = out[0].detach().float().cpu().numpy().copy()

    def __enter__(self):
        self._h = [self.module.register_forward_pre_hook(self._pre),
                   self.module.register_forward_hook(self._post)]
        return self

    def __exit__(self, *exc):
        for h in self._h:
            h.remove()
        return False


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
