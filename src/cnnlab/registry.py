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


def _ensure_loaded() -> None:
    # Importing the model package registers every family (one file per family).
    import cnnlab.models  # noqa: F401


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


def list_models(engine: str | None = None) -> list[str]:
    """Sorted names of the registered models (only those buildable by `engine` if given)."""
    _ensure_loaded()
    names = [n for n, i in _REGISTRY.items()
             if engine in (None, "torch") or engine in i.engines]
    return sorted(names)
