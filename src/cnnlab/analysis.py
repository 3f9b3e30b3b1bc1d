"""Model summary: per-layer output shape, parameters, MACs, receptive field, jump and
activation memory, for torch and NumPy-engine models alike.

    >>> from cnnlab.analysis import summary
    >>> print(summary("alexnet", input_size=(3, 227, 227)))       # or summary(model, (3, 32, 32))

Conventions
-----------
* Shapes are per image, C x H x W (torch's layout; the batch dimension is left out). Models
  named by string are built on the meta device, so even VGG-19 costs no arithmetic.
* **MACs**: one MAC is one multiply and one add; FLOPs = 2 x MACs. Counted are convolutions
  (output elements x C_in/groups x kh x kw) and linear layers (output elements x
  in_features); bias additions are not counted (as in ``torch.utils.flop_counter``). Batch
  norm, pooling, activations, LRN, dropout, additions and concatenations count **0**: they do
  no multiply-accumulate and are a few operations per element, small next to the conv work.
* **Parameters** are ``nn.Parameter`` s (trainable when ``requires_grad``); batch-norm running
  statistics are buffers and not counted (as torchvision counts). A module called twice shows
  its parameters on its first row only. Parameters of modules that did not run (GoogLeNet's
  auxiliary heads at inference) are reported as ``unused_params``.
* **Receptive field (RF)** of a layer: the side of the input region one of its output units
  sees; **jump**: the distance in input pixels between neighbouring output units (the product
  of the strides so far). Through a window (conv/pool) of size k, stride s, dilation d:
  ``RF_out = RF_in + (k - 1) d J_in``, ``J_out = J_in s``. Exact for branched and residual nets:
  every tensor produced during the forward pass carries its (RF, jump) pairs, an op's output
  takes the largest field over all of its inputs (the maximum over all paths into a layer; if
  paths arrive with different jumps, each is kept). Flattening or global pooling of an H x W
  map is a window of size H x W, so an FC unit's field covers the whole map's field; its
  jump is undefined (``None``). Fields are not clipped to the image: they may exceed it.
  Torch ops are followed with a ``TorchFunctionMode``; ops that keep the spatial size are
  treated as pointwise, modules with ``kernel_size``/``stride`` attributes (any custom pool)
  as windows, and an op that changes the size in another way gives an unknown field.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from cnnlab.errors import UserError
from cnnlab.registry import list_models, model_info

MAC_CONVENTION = ("1 MAC = 1 multiply + 1 add; FLOPs = 2 x MACs. MACs count conv and linear "
                  "layers (bias adds not counted); batch norm, pooling, activations, LRN and "
                  "additions count 0.")


# ---------------------------------------------------------------------------------------------
# Receptive fields: a field is a set of (rf_h, rf_w, jump_h, jump_w) candidates, one per
# family of paths; () means unknown.
@dataclass(frozen=True)
class _Field:
    cands: tuple = ((1, 1, 1, 1),)
    spatial: bool = True  # False once flattened / globally pooled: the jump is undefined

    @property
    def known(self) -> bool:
        return bool(self.cands)

    def rf(self):
        if not self.known:
            return None
        h, w = max(c[0] for c in self.cands), max(c[1] for c in self.cands)
        return h if h == w else (h, w)

    def jump(self):
        if not self.known or not self.spatial:
            return None
        best = max(self.cands, key=lambda c: (c[0] * c[1], c[2] * c[3]))
        return best[2] if best[2] == best[3] else (best[2], best[3])


_UNKNOWN = _Field(())


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[-1]))


def _window(f: _Field, k, s, d=1) -> _Field:
    (kh, kw), (sh, sw), (dh, dw) = _pair(k), _pair(s), _pair(d)
    return _Field(tuple((rh + (kh - 1) * dh * jh, rw + (kw - 1) * dw * jw, jh * sh, jw * sw)
                        for rh, rw, jh, jw in f.cands), f.spatial)


def _merge(fields: list[_Field]) -> _Field:
    if any(not f.known for f in fields):
        return _UNKNOWN
    cands = {c for f in fields for c in f.cands}
    keep = [c for c in cands  # drop a candidate another beats on every count (field and jump)
            if not any(o != c and all(x >= y for x, y in zip(o, c)) for o in cands)]
    return _Field(tuple(sorted(keep)), all(f.spatial for f in fields))


def _global(f: _Field, hw) -> _Field:
    """Flatten / global pool of an H x W map: a window covering the whole map."""
    return _Field(_window(f, hw, hw).cands, spatial=False) if f.spatial else f


def _propagate(ins: list, out_shape) -> _Field | None:
    """Generic rule from (field, shape) inputs to an output of ``out_shape`` (with batch dim)."""
    tracked = [(f, tuple(s)) for f, s in ins if f is not None]
    if not tracked:
        return None
    if len(out_shape) == 4:
        if all(len(s) == 4 and s[-2:] == tuple(out_shape[-2:]) for _, s in tracked):
            return _merge([f for f, _ in tracked])  # pointwise, concat, residual add, BN, ...
        return _UNKNOWN
    return _merge([_global(f, s[-2:]) if len(s) == 4 else f for f, s in tracked])


def _module_window(module, in_shape, out_shape):
    """(k, s, d) of a sliding-window module (conv/pool, by attribute names), else None."""
    if hasattr(module, "kernel_size") and hasattr(module, "stride"):
        s = module.stride if module.stride not in (None, (), []) else module.kernel_size
        return module.kernel_size, s, getattr(module, "dilation", 1)
    if hasattr(module, "output_size") and len(in_shape) == 4 and len(out_shape) == 4:
        return _adaptive_window(in_shape[-2:], out_shape[-2:])
    return None


def _adaptive_window(n_hw, m_hw):
    """Adaptive pooling from n to m: the largest window; stride n // m (exact when m divides n)."""
    ks = [max(math.ceil((i + 1) * n / m) - (i * n) // m for i in range(m)) for n, m in zip(n_hw, m_hw)]
    return tuple(ks), tuple(max(n // m, 1) for n, m in zip(n_hw, m_hw)), 1


# ---------------------------------------------------------------------------------------------
@dataclass
class LayerSummary:
    name: str
    type: str
    output_shape: tuple  # per image, C x H x W
    params: int
    trainable_params: int
    macs: int
    receptive_field: int | tuple | None
    jump: int | tuple | None
    activation_bytes: int  # of the output, per image
    depth: int = 1


@dataclass
class Summary:
    """What :func:`summary` returns: ``str(s)`` / ``format_table()`` print it, ``to_dict()`` is
    the ``--json`` schema."""

    model: str
    input_shape: tuple
    output_shape: tuple
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int
    total_macs: int
    unused_params: int = 0
    activation_bytes: int = 0  # the layers' distinct output tensors, per image
    param_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        layers = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(l).items()
                   if k != "depth"} for l in self.layers]
        return {"model": self.model, "input_shape": list(self.input_shape),
                "output_shape": list(self.output_shape), "layers": layers,
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "non_trainable_params": self.total_params - self.trainable_params,
                "unused_params": self.unused_params, "total_macs": self.total_macs,
                "total_flops": 2 * self.total_macs, "activation_bytes": self.activation_bytes,
                "param_bytes": self.param_bytes, "mac_convention": MAC_CONVENTION}

    def layer(self, name: str) -> LayerSummary:
        """The first row called ``name``."""
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer {name!r} in the summary of {self.model}")

    def format_table(self) -> str:
        return _format_summary(self)

    def __str__(self) -> str:
        return self.format_table()

    def _repr_html_(self) -> str:
        """The table of ``str(self)`` as HTML (Jupyter shows it), the same cells and notes."""
        from cnnlab.notebook import html_table

        head = ("Layer", "Type", "Output (CxHxW)", "Params", "MACs", "RF", "Jump", "Memory")
        rows = [(l.name, l.type, _dims(l.output_shape), f"{l.params:,}" + (
                 f" ({l.params - l.trainable_params:,} frozen)"
                 if l.params != l.trainable_params else ""),
                 _si(l.macs) if l.macs else "0", _dims(l.receptive_field), _dims(l.jump),
                 _mib(l.activation_bytes)) for l in self.layers]
        lines = self.format_table().split("\n")
        rule = max(i for i, t in enumerate(lines) if t and set(t) == {"-"})
        return html_table(head, rows, lines[0], lines[rule + 1:])


# ---------------------------------------------------------------------------------------------
@dataclass
class _Call:
    name: str
    module: object
    depth: int
    in_shape: tuple
    macs: int = 0
    out: object = None


class _Tracer:
    """Records module calls (pre/post) and the receptive field of every tensor produced."""

    def __init__(self):
        self.stack: list[_Call] = []
        self.calls: list[_Call] = []
        self.fields: dict[int, tuple[object, _Field]] = {}  # id -> (tensor kept alive, field)
        self.total_macs = 0

    def field_of(self, t):
        entry = self.fields.get(id(t))
        return entry[1] if entry is not None and entry[0] is t else None

    def set_field(self, t, f: _Field | None) -> None:
        if f is not None:
            self.fields[id(t)] = (t, f)

    def add_macs(self, n: int) -> None:
        self.total_macs += n
        for c in self.stack:
            c.macs += n

    def enter(self, name: str, module, x) -> None:
        shape = tuple(x.shape) if hasattr(x, "shape") else ()
        call = _Call(name, module, name.count(".") + 1 if name else 0, shape)
        self.stack.append(call)
        self.calls.append(call)

    def exit(self, module, x, out) -> None:
        call = self.stack.pop()
        out = _first_array(out)
        call.out = out
        if out is None or x is None:
            return
        win = _module_window(module, tuple(x.shape), tuple(out.shape))
        f_in = self.field_of(x)
        if win is not None and f_in is not None and f_in.spatial and len(out.shape) == 4:
            self.set_field(out, _window(f_in, *win))
        elif self.field_of(out) is None:  # NumPy layers (torch ops were followed already)
            self.set_field(out, _propagate([(f_in, x.shape)], out.shape))


def _first_array(out):
    if isinstance(out, (tuple, list)):
        return next((o for o in out if hasattr(o, "shape")), None)
    return out if hasattr(out, "shape") else None


def _arg(args, kwargs, i: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


class _FieldMode(TorchFunctionMode):
    """Follows every torch op: counts conv/linear MACs and propagates receptive fields."""

    def __init__(self, tracer: _Tracer):
        super().__init__()
        self.t = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        res = _first_array(out)
        if not isinstance(res, torch.Tensor) or name in ("size", "dim", "numel"):
            return out
        t = self.t
        if name == "conv2d":
            w = _arg(args, kwargs, 1, "weight")
            t.add_macs(res.numel() // res.shape[0] * math.prod(w.shape[1:]))
        elif name == "linear":
            w = _arg(args, kwargs, 1, "weight")
            t.add_macs(res.numel() // max(res.shape[0], 1) * w.shape[1])
        x = _arg(args, kwargs, 0, "input")
        f = _op_field(t, name, x, args, kwargs, res)
        if f is None:
            leaves = torch.utils._pytree.tree_leaves((args, kwargs))
            ins = [(t.field_of(a), a.shape) for a in leaves if isinstance(a, torch.Tensor)]
            f = _propagate(ins, res.shape)
        t.set_field(res, f)
        return out


def _op_field(t: _Tracer, name: str, x, args, kwargs, res) -> _Field | None:
    """The field of a spatial op's output (conv, pool, slicing, pad), or None for the generic rule."""
    f = t.field_of(x) if isinstance(x, torch.Tensor) else None
    if f is None or not f.spatial or x.dim() != 4 or res.dim() != 4:
        return None
    if name == "conv2d":
        w = _arg(args, kwargs, 1, "weight")
        return _window(f, w.shape[-2:], _arg(args, kwargs, 3, "stride", 1),
                       _arg(args, kwargs, 5, "dilation", 1))
    if name in ("max_pool2d", "avg_pool2d", "lp_pool2d", "max_pool2d_with_indices"):
        k = _arg(args, kwargs, 1, "kernel_size")
        s = _arg(args, kwargs, 2, "stride") or k
        d = _arg(args, kwargs, 4, "dilation", 1) if name.startswith("max") else 1
        return _window(f, k, s, d)
    if name.startswith("adaptive_") and name.endswith("pool2d"):
        return _window(f, *_adaptive_window(x.shape[-2:], res.shape[-2:]))
    if name in ("pad", "constant_pad_nd"):
        return f
    if name == "__getitem__":
        idx = args[1] if len(args) > 1 else None
        idx = idx if isinstance(idx, tuple) else (idx,)
        if Ellipsis in idx:
            i = idx.index(Ellipsis)
            idx = idx[:i] + (slice(None),) * (4 - len(idx) + 1) + idx[i + 1:]
        if len(idx) >= 4 and all(isinstance(i, slice) for i in idx[2:4]):
            return _window(f, 1, (idx[2].step or 1, idx[3].step or 1))
    return None


# ---------------------------------------------------------------------------------------------
def summary(model_or_name, input_size=None, num_classes: int | None = None, *,
            depth: int | None = None, engine: str = "torch", **model_kwargs) -> Summary:
    """Summarise a model on one image of ``input_size`` (C, H, W).

    Args:
        model_or_name: a ``torch.nn.Module``, a NumPy-engine module, or a registered name
            (built with ``in_channels=C``, ``num_classes``, ``input_size=H`` where the builder
            takes it, and ``model_kwargs``; torch models are built on the meta device).
        input_size: (C, H, W); defaults to the registered size for a name.
        num_classes: passed to the builder when a name is given.
        depth: show modules down to this depth (``layer1.0`` is depth 2) as one row each;
            ``None`` (default) shows every leaf layer.
        engine: ``"torch"`` or ``"numpy"`` when a name is given.

    Raises ``UserError`` (a ``ValueError``) on an unknown name, a bad size, or a forward pass
    that fails; the message names the layer, e.g. where the spatial size reaches zero.
    The model is run in eval mode (and put back in its mode afterwards).
    """
    if isinstance(model_or_name, str):
        name = model_or_name
        model, input_size = _build(name, input_size, num_classes, engine, model_kwargs)
    else:
        model, name = model_or_name, type(model_or_name).__name__
        if input_size is None:
            raise UserError("Invalid value for argument `input_size`: a (C, H, W) tuple is "
                            "needed to summarise a model instance, received None.")
    input_size = _check_size(input_size)
    is_torch = isinstance(model, torch.nn.Module)
    tracer = _Tracer()
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        out = (_run_torch if is_torch else _run_numpy)(model, tracer, input_size)
    except Exception as e:  # re-raised with the failing layer named
        raise _forward_error(name, input_size, tracer, e) from e
    finally:
        model.train(was_training)
    return _collect(name, model, input_size, tracer, out, depth, is_torch)


def _build(name, input_size, num_classes, engine, kwargs):
    info = model_info(name)
    if input_size is None and kwargs.get("small_input"):  # the variant is built for 32x32
        input_size = (info.input_size[0], 32, 32)
    size = _check_size(input_size if input_size is not None else info.input_size)
    builder = info.builder if engine == "torch" else info.engines.get(engine)
    if builder is None:
        raise UserError(f"Model {name!r} has no {engine!r} engine; available: "
                        f"{', '.join(['torch', *info.engines])}.")
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kw = {"in_channels": size[0]}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if size[1:] != tuple(info.input_size[1:]) and ("input_size" in params or (
            takes_any and engine != "torch")):
        kw["input_size"] = size[1] if size[1] == size[2] else size[1:]
    kw = {k: v for k, v in kw.items() if k in params or takes_any}
    kw.update(kwargs)
    if engine != "torch":
        return builder(**kw), size
    with torch.device("meta"):
        return builder(**kw), size


def _check_size(size) -> tuple[int, int, int]:
    size = tuple(size)
    if len(size) != 3 or any(not isinstance(v, (int, np.integer)) or v <= 0 for v in size):
        raise UserError(f"Invalid value for argument `input_size`: expected (C, H, W) with "
                        f"positive ints, received {size!r}.")
    return tuple(int(v) for v in size)


def _run_torch(model, tracer: _Tracer, size):
    p = next(model.parameters(), None)
    x = torch.zeros(1, *size, device=p.device if p is not None else "cpu",
                    dtype=p.dtype if p is not None and p.is_floating_point() else torch.float32)
    tracer.set_field(x, _Field())
    handles = []
    for mname, m in model.named_modules():
        handles.append(m.register_forward_pre_hook(
            lambda mod, inp, n=mname: tracer.enter(n, mod, inp[0] if inp else None)))
        handles.append(m.register_forward_hook(
            lambda mod, inp, out: tracer.exit(mod, inp[0] if inp else None, out)))
    try:
        with torch.no_grad(), _FieldMode(tracer):
            return model(x)
    finally:
        for h in handles:
            h.remove()


def _run_numpy(model, tracer: _Tracer, size):
    """NumPy modules: each module's ``forward`` is wrapped (restored afterwards)."""
    x = np.zeros((1, *size), dtype=np.float32)
    tracer.set_field(x, _Field())
    wrapped = []

    def wrap(mname, m):
        fwd = m.forward

        def forward(inp, *a, **k):
            tracer.enter(mname, m, inp)
            out = fwd(inp, *a, **k)
            if not _has_children(m) and hasattr(out, "shape"):
                tracer.add_macs(_numpy_macs(m, out))  # before exit: the layer's own row counts
            tracer.exit(m, inp, out)
            return out
        object.__setattr__(m, "forward", forward)
        wrapped.append(m)

    try:
        for mname, m in model.named_modules():
            wrap(mname, m)
        return model(x)
    finally:
        for m in wrapped:
            object.__delattr__(m, "forward")


def _numpy_macs(m, out) -> int:
    per_image = out.size // max(out.shape[0], 1)
    if hasattr(m, "in_channels") and hasattr(m, "kernel_size"):
        kh, kw = _pair(m.kernel_size)
        return per_image * m.in_channels // getattr(m, "groups", 1) * kh * kw
    if hasattr(m, "in_features"):
        return per_image * m.in_features
    return 0


def _has_children(m) -> bool:
    return next(iter(m.named_children()), None) is not None


def _numel(p) -> int:
    return p.numel() if isinstance(p, torch.Tensor) else int(np.size(getattr(p, "data", p)))


def _forward_error(name, size, tracer: _Tracer, e: Exception) -> UserError:
    where = next((c for c in reversed(tracer.stack) if c.depth > 0), None)
    shape = "x".join(map(str, size))
    if where is None:
        return UserError(f"Forward pass of {name} on a {shape} input failed: {e}")
    layer = f"{where.name} ({type(where.module).__name__}; its input is " \
            f"{'x'.join(map(str, where.in_shape[1:]))})"
    msg = str(e).lower()
    if "too small" in msg or "can't be greater" in msg or "reaches zero" in msg or (
            "kernel" in msg and "size" in msg):
        return UserError(f"Input {shape} is too small for {name}: the spatial size reaches "
                         f"zero at layer {layer}. Use a larger input or a small-input variant "
                         f"(small_input=True; `cnnlab summary --small-input`).")
    return UserError(f"Forward pass of {name} on a {shape} input failed at layer {layer}: {e}")


def _collect(name, model, size, tracer: _Tracer, out, depth, is_torch) -> Summary:
    seen_modules, used, rows = set(), set(), []
    max_depth = math.inf if depth is None else depth
    for c in tracer.calls:
        leaf = not _has_children(c.module)
        first = id(c.module) not in seen_modules
        seen_modules.add(id(c.module))
        own = list(c.module.parameters() if leaf else _own_params(c.module, is_torch))
        used.update(id(p) for p in own)
        show = (c.depth == max_depth or (leaf and c.depth <= max_depth)) and (
            c.depth > 0 or leaf)
        if not show or c.out is None:
            continue
        ps = list(c.module.parameters()) if first else []
        f = tracer.field_of(c.out)
        rows.append(LayerSummary(
            name=c.name or type(c.module).__name__, type=type(c.module).__name__,
            output_shape=tuple(int(v) for v in c.out.shape[1:]),
            params=sum(_numel(p) for p in ps),
            trainable_params=sum(_numel(p) for p in ps if getattr(p, "requires_grad", True)),
            macs=c.macs, receptive_field=f.rf() if f else None, jump=f.jump() if f else None,
            activation_bytes=_nbytes(c.out), depth=c.depth))
    params = {id(p): p for p in model.parameters()}.values()
    total = sum(_numel(p) for p in params)
    out = _first_array(out)
    return Summary(
        model=name, input_shape=size, output_shape=tuple(out.shape[1:]) if out is not None else (),
        layers=rows, total_params=total,
        trainable_params=sum(_numel(p) for p in params if getattr(p, "requires_grad", True)),
        total_macs=tracer.total_macs,
        unused_params=sum(_numel(p) for p in params if id(p) not in used),
        activation_bytes=sum(_nbytes(o) for o in {  # in-place layers allocate nothing
            id(c.out): c.out for c in tracer.calls
            if c.out is not None and not _has_children(c.module)}.values()),
        param_bytes=sum(_numel(p) * _itemsize(p) for p in params))


def _own_params(m, is_torch):
    if is_torch:
        return m.parameters(recurse=False)
    return getattr(m, "_parameters", {}).values()


def _itemsize(p) -> int:
    return p.element_size() if isinstance(p, torch.Tensor) else np.asarray(p.data).itemsize


def _nbytes(a) -> int:
    if isinstance(a, torch.Tensor):
        return a.numel() // max(a.shape[0], 1) * a.element_size()
    return int(a.nbytes // max(a.shape[0], 1))


# ---------------------------------------------------------------------------------------------
def _si(n: float) -> str:
    for unit, v in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= v:
            return f"{n / v:.2f}{unit}"
    return str(int(n))


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _dims(v) -> str:
    if v is None:
        return "-"
    return "x".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v)


def _format_summary(s: Summary) -> str:
    head = ("Layer", "Type", "Output (CxHxW)", "Params", "MACs", "RF", "Jump", "Memory")
    rows = []
    for l in s.layers:
        params = f"{l.params:,}"
        if l.params != l.trainable_params:
            params += f" ({l.params - l.trainable_params:,} frozen)"
        rows.append((l.name, l.type, _dims(l.output_shape), params,
                     _si(l.macs) if l.macs else "0", _dims(l.receptive_field), _dims(l.jump),
                     _mib(l.activation_bytes)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        left = [r[i].ljust(widths[i]) for i in range(3)]
        return "  ".join(left + [r[i].rjust(widths[i]) for i in range(3, len(r))]).rstrip()

    rule = "-" * len(line(head))
    out = [f"{s.model}: input {_dims(s.input_shape)} (C x H x W), one image", rule, line(head),
           rule, *map(line, rows), rule,
           f"Output: {_dims(s.output_shape)}",
           f"Total params: {s.total_params:,} (trainable {s.trainable_params:,}, "
           f"non-trainable {s.total_params - s.trainable_params:,})"]
    if s.unused_params:
        out.append(f"Params not used in this (eval) forward pass: {s.unused_params:,} "
                   f"(e.g. training-only auxiliary heads)")
    out += [f"Total MACs: {s.total_macs:,} ({_si(s.total_macs)}; FLOPs = 2 x MACs = "
            f"{_si(2 * s.total_macs)})",
            f"Memory: activations {_mib(s.activation_bytes)} per image (layer outputs; in-place "
            f"layers add none), "
            f"parameters {_mib(s.param_bytes)}",
            "RF: receptive field (input pixels one unit sees, max over all paths); Jump: input "
            "pixels between neighbouring units.",
            f"MACs: {MAC_CONVENTION}"]
    return "\n".join(out + s.notes)


# ---------------------------------------------------------------------------------------------
def parse_input_size(s: str) -> tuple[int, int, int]:
    """``"3x227x227"`` -> (3, 227, 227). Raises ``UserError`` naming ``--input`` otherwise."""
    parts = str(s).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) <= 0:
        raise UserError(f"Invalid value for `--input`: expected CxHxW with positive integers, "
                        f"like 3x227x227, received {s!r}.")
    return size


def models_table() -> list[dict]:
    """One row per registered model: name, params (inference: without training-only heads),
    default input (C, H, W), default classes, paper and year. Models are built on the meta
    device, so this is fast."""
    rows = []
    for name in list_models():
        info = model_info(name)
        with torch.device("meta"), _no_init():
            model = info.builder()
        params = sum(p.numel() for n, p in model.named_parameters()
                     if not n.startswith(("aux1.", "aux2.")))
        rows.append({"name": name, "params": params, "input_size": tuple(info.input_size),
                     "num_classes": info.num_classes, "paper": info.paper, "year": info.year,
                     "engines": ["torch", *info.engines]})
    return rows


class _no_init:
    """``torch.nn.init``'s initialisers as no-ops while counting parameters: the values do not
    matter, and on the meta device the first ``normal_`` alone costs ~2 s (torch warms up its
    Python decompositions), most of `cnnlab models`' time."""

    def __enter__(self):
        self.saved = {n: f for n, f in vars(torch.nn.init).items()
                      if n.endswith("_") and not n.startswith("_") and callable(f)}
        for n in self.saved:
            setattr(torch.nn.init, n, lambda tensor, *a, **k: tensor)

    def __exit__(self, *exc):
        for n, f in self.saved.items():
            setattr(torch.nn.init, n, f)


def format_models_table(rows: list[dict]) -> str:
    """The ``cnnlab models`` table."""
    head = ("Model", "Params", "Input", "Classes", "Year", "Paper")
    body = [(r["name"], f"{r['params']:,}", _dims(r["input_size"]), str(r["num_classes"]),
             str(r["year"] or "-"), r["paper"]) for r in rows]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    right = {1, 3}

    def line(r):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(head), "-" * len(line(head)), *map(line, body),
                      "Params at the default input and classes, inference only (GoogLeNet "
                      "without its auxiliary heads)."])
