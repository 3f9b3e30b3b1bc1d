"""cnnlab: convolutional neural networks for image classification, from each sliding window
to trained classifiers."""

__version__ = "0.1.0"

from cnnlab.registry import get_model, list_models, register_model  # noqa: E402

__all__ = ["__version__", "get_model", "list_models", "register_model"]
