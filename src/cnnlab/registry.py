"""A small model registry: `register_model`, `get_model(name, **kw)`, `list_models()`.

Each entry records the paper, its year and the default input size, so `cnnlab models`
and `cnnlab summary` can describe a model without building it. Models that the NumPy
engine can build too register a second builder under ``engine="numpy"``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class ModelInfo:
    name: str
    builder: Callable
    paper: str = ""
    year: int | None = None
    input_size: tuple[int, int, int] = (3, 224, 224)  # default (C, H, W)
    num_classes: int = 1000  # default number of classes
    engines: dict[str, Callable] = field(default_factory=dict)  # extra engines, e.g. {"numpy": fn}


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, *, paper: str = "", year: int | None = None,
                   input_size=(3, 224, 224), num_classes: int = 1000):
    """Decorator registering a torch model builder under `name` (raises on duplicates)."""

    def deco(fn):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelInfo(name, fn, paper, year, tuple(input_size), num_classes)
        return fn

    return deco


def register_engine(name: str, engine: str):
    """Decorator registering a builder of model `name` for another engine (e.g. ``"numpy"``)."""

    def deco(fn):
        model_info(name).engines[engine] = fn
        return fn

    return deco


# The modules whose import registers models or engines. The registry imports none of them by
# name at the top: the model files import the registry (as torchvision's do), and the first
# lookup loads this list, so ``cnnlab.registry`` never sits in an import circle with them.
MODEL_MODULES = ("cnnlab.models", "cnnlab.scratch.models")


def _ensure_loaded() -> None:
    import importlib

    for module in MODEL_MODULES:
        importlib.import_module(module)


def model_info(name: str) -> ModelInfo:
    """The registry entry of `name`; unknown names raise ValueError listing close matches."""
    _ensure_loaded()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Known models: {', '.join(sorted(_REGISTRY))}.")
    return _REGISTRY[name]


def get_model(name: str, engine: str = "torch", **kwargs):
    """Build model `name` with constructor arguments `kwargs` (e.g. ``num_classes=10``).

    ``engine="torch"`` (default) returns a ``torch.nn.Module``; ``engine="numpy"`` returns a
    :mod:`cnnlab.scratch` module with the same state-dict keys and shapes.
    """
    info = model_info(name)
    if engine == "torch":
        return info.builder(**kwargs)
    if engine not in info.engines:
        have = ["torch", *info.engines]
        raise ValueError(f"Model {name!r} has no {engine!r} engine; available: {', '.join(have)}.")
    return info.engines[engine](**kwargs)


# -- constructor arguments: checked against the builder's signature -------------------------

class ModelWarning(UserWarning):
    """A model argument that changes nothing (e.g. small_input on a model built for 32x32)."""


def _builder(name: str, engine: str):
    info = model_info(name)
    if engine == "torch":
        return info.builder
    if engine not in info.engines:
        raise ValueError(f"Model {name!r} has no {engine!r} engine; available: "
                         f"{', '.join(['torch', *info.engines])}.")
    return info.engines[engine]


def _hints(fn) -> dict:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - an annotation we cannot evaluate: no type check
        return {}


def model_params(name: str, engine: str = "torch") -> dict:
    """``{argument: (inspect.Parameter, annotation or None)}`` a model's builder accepts:
    its own arguments and, when it forwards ``**kwargs``, those of the class it returns."""
    import inspect

    fn = _builder(name, engine)
    params = {k: (p, _hints(fn).get(k)) for k, p in inspect.signature(fn).parameters.items()
              if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values()):
        cls = _hints(fn).get("return")
        init = getattr(cls, "__init__", None) if isinstance(cls, type) else None
        if init is not None:
            hints = _hints(init)
            for k, p in list(inspect.signature(init).parameters.items())[1:]:
                if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                    params.setdefault(k, (p, hints.get(k)))
    for k in getattr(fn, "fixed_args", ()):  # set by the builder itself (vgg16's cfg)
        params.pop(k, None)
    return params


def _type_ok(value, hint) -> bool:
    """Whether ``value`` (from JSON/YAML) fits ``hint`` (int, float, bool, str, tuple, list,
    ``X | None``); hints this check does not know accept anything."""
    import types
    import typing

    if hint is None:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    hint = typing.get_origin(hint) or hint
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (tuple, list):
        return isinstance(value, (list, tuple))
    return True


def check_model_kwargs(name: str, kwargs: dict, engine: str = "torch",
                       where: str = "--model-kwargs") -> dict:
    """``kwargs`` checked against model ``name``'s builder; returns the arguments to keep.

    An unknown key is an error naming close matches (a typo ``activaton`` would otherwise
    be dropped and the model built with its default); a value of the wrong type is an error
    naming the expected type. ``small_input`` has one story for every model: the models
    built for large inputs take it; those already built for small inputs (LeNet-5, the MLP,
    the CIFAR ResNets: 32x32 or less) accept it as a no-op, with a ModelWarning saying so.
    """
    import difflib
    import warnings

    from cnnlab.errors import UserError

    params = model_params(name, engine)
    out = dict(kwargs)
    if "small_input" in out and "small_input" not in params:
        if out.pop("small_input"):
            h = model_info(name).input_size[1]
            warnings.warn(f"{name} is built for {h}x{h} inputs already: small_input=True "
                          f"changes nothing (ignored)", ModelWarning, stacklevel=2)
    for k, v in out.items():
        if k not in params:
            close = difflib.get_close_matches(k, list(params), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{where}: {name} has no argument {k!r}{hint} (it takes "
                            f"{', '.join(params)})")
        if not _type_ok(v, params[k][1]):
            want = getattr(params[k][1], "__name__", None) or str(params[k][1])
            raise UserError(f"{where}: {name} argument {k}={v!r}: expected {want}, got "
                            f"{type(v).__name__}")
    return out


def list_models(engine: str | None = None) -> list[str]:
    """Sorted names of the registered models (only those buildable by `engine` if given)."""
    _ensure_loaded()
    names = [n for n, i in _REGISTRY.items()
             if engine in (None, "torch") or engine in i.engines]
    return sorted(names)
