"""See what a CNN sees: filters, activation maps, Grad-CAM and attributions, templates,
embeddings and retrieval, training curves, as pictures (``cnnlab viz KIND``) and as numbers.

Every kind is a function here, with the CLI's options as arguments; it returns the
matplotlib figure (shown inline in Jupyter; the numbers behind it in ``fig.numbers``) and
writes a PNG only when ``out=`` is given::

    import cnnlab.viz
    cnnlab.viz.kernel("china", kernel="sobel-x")              # a Figure
    fig = cnnlab.viz.gradcam("runs/demo", n=3, out="cam.png")  # and cam.png
    fig.numbers["target_classes"]

``kernel``, ``filters``, ``activations``, ``gradcam`` and ``embed`` are also the modules
below (``from cnnlab.viz.gradcam import grad_cam`` keeps working): calling the module draws
its picture.

One small module per kind of picture; each has a compute function (numbers, numpy/torch,
no matplotlib) and a ``*_figure`` function drawing it. Stable API for other
parts of cnnlab (``cnnlab serve`` shows these results rather than computing them again):

``cnnlab.viz.common``
    ``load_checkpoint_model(checkpoint, device="cpu") -> (model, meta)``: torch model in eval
    mode from a checkpoint / run directory (:func:`cnnlab.inference.load_model`).
    ``load_images(paths, spec) -> uint8 (N, C, H, W)``: image files converted to the model's
    channels and size (:func:`cnnlab.inference.load_image`).
    ``normalize(images_uint8, spec) -> float (N, C, H, W)``: ``(x/255 - mean)/std`` with the
    checkpoint's ``meta["input"]``, as training and ``cnnlab predict`` do.
    ``load_inputs(checkpoint, paths, device="cpu") -> (model, meta, raw_uint8, x)``.

``cnnlab.viz.activations``
    ``stages(model) -> list[(name, module)]``: the stages to show for any zoo model
    (sequential ``features``: every conv/pool/activation; GoogLeNet/ResNet: each top-level
    stage such as ``inception4a`` or ``layer2``; MLP/linear: hidden FC outputs).
    ``capture_activations(model, x, layers=None) -> dict[name, Tensor]``: outputs in forward
    order, (N, C, H, W) or (N, F), detached clones (in-place ReLUs are safe); eval mode during
    the pass, the model's mode restored and hooks removed afterwards
    (``ActivationRecorder`` is the context manager underneath).
    ``capture_with_probs(model, x, layers=None) -> (activations, probs (N, classes))``.

``cnnlab.viz.gradcam``
    ``grad_cam(model, x, target=None, layer=None, plus_plus=False) -> (cam, classes, layer)``:
    cam float32 numpy (N, H, W) at the input size, in [0, 1]; classes int (N,) (predicted
    when ``target`` is None); the layer is ``model.feature_layers["last_conv"]`` or the last
    spatial layer found by a forward pass; the MLP/linear raise UserError (no spatial layer).
    ``GradCAM(model, layer=None)``: the same as a context manager holding the hook.
    ``find_cam_layer(model, x=None) -> str``.
    ``class_targets(target, classes)``: ``--class`` as given (an index, a class name, or a
    comma list with one per image) -> None, an index or a list of indices.
    ``gradcam(model_or_run, images, target=None, layer=None, method="gradcam") -> CAM``:
    the public ``cnnlab.gradcam``; from a run directory and image files or uint8 arrays to
    NumPy maps ``(maps (N, H, W), classes (N,), layer)``.

``cnnlab.viz.pictures``
    One call per ``cnnlab viz KIND``, returning the numbers (a dict; ``.figure`` the figure).
    Counts left at their default (``n=None``: 2000 for embed, 6 for gradcam, ...) shrink to
    what the data holds and say so on stderr; an explicit count the data cannot fill raises
    UserError.

Errors a user can act on raise :class:`cnnlab.errors.UserError` with one line.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import types

# `cnnlab viz KIND`, in the order of its help; the function of a kind is KIND with "_" for "-"
KINDS = ("kernel", "filters", "activations", "top-patches", "gradcam", "templates", "embed",
         "retrieve", "curves", "confusion", "mistakes")
# kinds that are also a module of this package: the module itself is made callable
_MODULE_KINDS = ("kernel", "filters", "activations", "gradcam", "embed")


@functools.cache
def _function(kind: str):
    """``cnnlab.viz.<kind>``: :mod:`cnnlab.viz.pictures`'s call, returning its figure."""
    from cnnlab.viz import pictures

    name = kind.replace("-", "_")
    draw = getattr(pictures, name)

    @functools.wraps(draw)
    def picture(*args, out=None, **kwargs):
        return draw(*args, out=out, **kwargs).figure

    sig = inspect.signature(draw)
    params = [p.replace(default=None) if p.name == "out" else p for p in sig.parameters.values()]
    picture.__signature__ = sig.replace(parameters=params, return_annotation="Figure")
    picture.__module__, picture.__qualname__, picture.__name__ = __name__, name, name
    picture.__doc__ = (f"`cnnlab viz {kind}` in Python: return the picture as a matplotlib "
                       f"Figure (shown inline in Jupyter; its numbers, what --json prints, in "
                       f"``fig.numbers``); write it as PNG at ``out`` only when given.\n\n"
                       f"{inspect.cleandoc(draw.__doc__ or '')}")
    return picture


class _KindModule(types.ModuleType):
    """A module of this package that is also its kind's picture function."""

    def __call__(self, *args, **kwargs):
        return _function(self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self):
        return inspect.signature(_function(self.__name__.rpartition(".")[2]))


def callable_module(name: str) -> None:
    """Make the module ``name`` (``cnnlab.viz.gradcam``) callable as its kind's function;
    its last line calls this, so it holds however it was first imported."""
    sys.modules[name].__class__ = _KindModule


def __getattr__(name: str):
    kind = name.replace("_", "-")
    if kind in _MODULE_KINDS:  # importing binds the (callable) module here
        return importlib.import_module(f"{__name__}.{name}")
    if kind in KINDS:
        globals()[name] = _function(kind)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {k.replace("-", "_") for k in KINDS})


__all__ = [k.replace("-", "_") for k in KINDS]
