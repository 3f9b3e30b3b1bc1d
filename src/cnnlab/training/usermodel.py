"""A user's own ``torch.nn.Module`` as a trainer model: named ``module:Class``, rebuilt from it.

``cnnlab.train(model=net)`` records ``net``'s class as ``"package.module:Class"`` (the run's
``model``, in its config and every checkpoint) and its constructor arguments as
``model_kwargs``: what ``net.get_config()`` returns when the class defines it (Keras's
protocol: a dict of JSON scalars, ``Class(**net.get_config())`` builds the same network),
else none (``Class()``). :func:`cnnlab.load_model`, ``cnnlab eval``, a resume without
``model=``, ``summary``, ``viz`` and ``serve`` rebuild it as ``Class(**model_kwargs)``, so
they need the class importable from where they run.

A class that cannot be rebuilt that way (defined inside a function, in ``__main__``, or built
differently by ``Class(**model_kwargs)``) still trains and its checkpoints are written; one
line says so, and ``cnnlab.load_model(run, model=Class(...))`` loads its weights into a
network the caller builds.

Safety: rebuilding imports the module a checkpoint names (running its code, as ``import``
does) and calls the class only when it is a ``torch.nn.Module`` subclass, with the recorded
JSON arguments; nothing is unpickled. Runs of user modules are to be opened from trusted
sources; a zoo model's run names no code.
"""

from __future__ import annotations

import importlib

import torch

from cnnlab.errors import UserError


def is_path(name: str) -> bool:
    """Whether a run's ``model`` names a class (``module:Class``) rather than a zoo model."""
    return isinstance(name, str) and ":" in name


def class_path(net: torch.nn.Module) -> str:
    cls = type(net)
    return f"{cls.__module__}:{cls.__qualname__}"


def short_name(name: str) -> str:
    """``pkg.mod:Outer.<locals>.Net`` -> ``Net`` (for run-directory names)."""
    return name.rpartition(":")[2].rpartition(".")[2] if is_path(name) else name


def module_config(net: torch.nn.Module) -> dict:
    """``net.get_config()`` (checked: a dict of JSON scalars or short lists), or {}."""
    from cnnlab.config import _check_kwargs

    get = getattr(net, "get_config", None)
    if get is None:
        return {}
    cfg = get()
    if not isinstance(cfg, dict):
        raise UserError(f"model: {type(net).__name__}.get_config() returned "
                        f"{type(cfg).__name__}, expected a dict of constructor arguments")
    _check_kwargs(cfg, f"model: {type(net).__name__}.get_config()")
    return dict(cfg)


def import_class(name: str, where: str = "model"):
    """The class ``module:Class`` names; UserError saying why it cannot be imported."""
    module, _, qual = name.partition(":")
    cls = qual.rpartition(".")[2]
    call = (f"cnnlab.train(model={cls}(...), ...)" if where.startswith("--") else
            f"cnnlab.load_model(run, model={cls}(...))")  # training (--model) or loading
    if "<locals>" in qual:
        raise UserError(f"{where} {name}: the class was defined inside a function, so it "
                        f"cannot be imported; pass an instance: {call}")
    try:
        obj = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{where} {name}: cannot import it ({type(e).__name__}: {e}); run from "
                        f"where {module!r} is importable, or pass an instance: {call}") from e
    if not (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        raise UserError(f"{where} {name}: names {type(obj).__name__} {obj!r}, expected a "
                        f"torch.nn.Module subclass")
    return obj


def build(name: str, kwargs: dict, where: str = "model") -> torch.nn.Module:
    """``Class(**kwargs)`` for ``name`` = ``module:Class``; UserError when it cannot be built."""
    cls = import_class(name, where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise UserError(f"{where} {name}: {cls.__name__}(**{kwargs}) failed ({e}); define "
                        f"get_config() returning its constructor arguments") from e


def rebuild_problem(net: torch.nn.Module, name: str, kwargs: dict) -> str | None:
    """Why ``Class(**kwargs)`` would not rebuild ``net`` (None: it would): not importable,
    ``__main__`` (only that script imports it), or different parameter names or shapes
    (built on the meta device: no memory, no time)."""
    if name.startswith("__main__:"):
        return "it is defined in __main__ (only the same script or notebook can import it)"
    try:
        with torch.device("meta"):
            twin = build(name, kwargs)
    except UserError as e:
        return str(e).split(": ", 1)[-1].split("; ")[0]
    want = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in twin.state_dict().items()}
    if want != have:
        return (f"{type(net).__name__}(**{kwargs}) builds a network with other parameters "
                f"(define get_config() returning its constructor arguments)")
    return None


def check_instance(net, name: str) -> None:
    """A ``model=`` instance given again (resume, ``load_model``) must be of the run's class."""
    if not isinstance(net, torch.nn.Module):
        raise UserError(f"model: found {type(net).__name__}, expected a torch.nn.Module of "
                        f"the run's class {name}")
    if class_path(net) != name:
        raise UserError(f"model: found {class_path(net)}, expected an instance of the run's "
                        f"class {name}")
