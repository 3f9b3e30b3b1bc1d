"""The NumPy engine's module system: :class:`Parameter`, :class:`Module` (parameters,
buffers, children, ``state_dict``, ``train``/``eval``, ``named_modules``) and
:class:`Sequential`, mirroring ``torch.nn.Module`` so the same tools walk both engines.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

_STATE = {"rng": np.random.default_rng(0)}


def manual_seed(seed: int) -> None:
    """Seed the generator used for initialisation and (unseeded) dropout/stochastic pooling."""
    _STATE["rng"] = np.random.default_rng(seed)


def default_rng() -> np.random.Generator:
    """The generator :func:`manual_seed` seeds."""
    return _STATE["rng"]


class Parameter:
    """A trainable array: ``data`` and its accumulated ``grad`` (None until backward)."""

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data, self.grad = data, None

    @property
    def shape(self):
        return self.data.shape

    def accumulate(self, g: np.ndarray) -> None:
        self.grad = g if self.grad is None else self.grad + g

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class: parameter/buffer/child bookkeeping, state dicts, train/eval."""

    training = True

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for store in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(store, {})
            if name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value

    # ---- forward / backward -------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def __call__(self, *args, **kwargs):
        try:
            return self.forward(*args, **kwargs)
        except ValueError as e:  # name the layer once, at the innermost module
            if getattr(e, "layer_named", False):
                raise
            err = ValueError(f"{self._short_repr()}: {e}")
            err.layer_named = True
            raise err from e

    # ---- walking the tree ---------------------------------------------------------------
    def named_children(self):
        yield from self._modules.items()

    def children(self):
        yield from self._modules.values()

    def named_modules(self, prefix: str = ""):
        """``(dotted_name, module)`` for this module (name ``""``) and every descendant."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = ""):
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of the parameters and buffers, keyed and ordered like torch's."""
        out = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                out[pre + name] = p.data.copy()
            for name, b in mod._buffers.items():
                out[pre + name] = np.array(b, copy=True)
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> None:
        """Copy arrays (NumPy or torch tensors) in place, keeping this model's dtypes."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing keys {missing}, "
                             f"unexpected keys {unexpected}.")
        targets = {}
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name in list(mod._parameters) + list(mod._buffers):
                targets[pre + name] = (mod, name)
        for key, value in state_dict.items():
            if key not in targets:
                continue
            value = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
            mod, name = targets[key]
            if value.shape != own[key].shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {key} has shape "
                                 f"{value.shape}, expected {own[key].shape}.")
            if name in mod._parameters:
                mod._parameters[name].data = value.astype(own[key].dtype, copy=True)
            else:
                mod._buffers[name] = value.astype(own[key].dtype, copy=True)

    def train(self, mode: bool = True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, dtype):
        """Cast floating parameters and buffers to `dtype` (e.g. ``np.float64`` for gradcheck)."""
        for m in self.modules():
            for p in m._parameters.values():
                p.data, p.grad = p.data.astype(dtype), None
            for k, b in m._buffers.items():
                if np.issubdtype(b.dtype, np.floating):
                    m._buffers[k] = b.astype(dtype)
        return self

    def extra_repr(self) -> str:
        return ""

    def _short_repr(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def __repr__(self):
        if not self._modules:
            return self._short_repr()
        lines = [f"  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


class Sequential(Module):
    """Children named ``"0", "1", ...``; backward runs them in reverse."""

    def __init__(self, *modules: Module):
        super().__init__()
        for i, m in enumerate(modules):
            self._modules[str(i)] = m

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, dout):
        for m in reversed(self._modules.values()):
            dout = m.backward(dout)
        return dout
