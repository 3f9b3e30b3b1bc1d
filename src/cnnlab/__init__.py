"""cnnlab: convolutional neural networks for image classification, from each sliding window
to trained classifiers.

The public Python API (what the CLI does, reachable from ``import cnnlab``)::

    import cnnlab
    summary = cnnlab.train(model="lenet5", data="digits", epochs=5, out="runs/demo")
    model, meta = cnnlab.load_model("runs/demo")          # the chosen (best) checkpoint
    result = cnnlab.evaluate("runs/demo")                 # test accuracy, confusion matrix
    preds = cnnlab.predict("runs/demo", ["seven.png"])    # top classes per image
    print(cnnlab.summary("resnet20"))                     # layers, shapes, parameters
    net = cnnlab.get_model("vgg16", num_classes=10)
    maps, classes, layer = cnnlab.gradcam("runs/demo", ["seven.png"], target="7")

Each function's ``help()`` lists its parameters; ``help(cnnlab.train)`` also lists every
training option. Results are plain Python and NumPy (arrays, never tensors), except the
models themselves (``load_model``, ``get_model``).

Names are imported on first use (module ``__getattr__``), so ``import cnnlab`` loads neither
torch nor NumPy-heavy modules.
"""

__version__ = "0.1.0"

_LAZY = {
    "train": ("cnnlab.training.api", "train"),
    "TrainConfig": ("cnnlab.config", "TrainConfig"),
    "load_model": ("cnnlab.inference", "load_model"),
    "evaluate": ("cnnlab.inference", "evaluate"),
    "predict": ("cnnlab.inference", "predict"),
    "summary": ("cnnlab.analysis", "summary"),
    "gradcam": ("cnnlab.viz.gradcam", "gradcam"),
    "viz": ("cnnlab.viz", None),  # cnnlab.viz.<kind>(...): each picture as a figure
    "get_model": ("cnnlab.registry", "get_model"),
    "list_models": ("cnnlab.registry", "list_models"),
    "register_model": ("cnnlab.registry", "register_model"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    import importlib

    module, attr = _LAZY[name]
    mod = importlib.import_module(module)
    value = mod if attr is None else getattr(mod, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
