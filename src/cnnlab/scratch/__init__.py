"""cnnlab.scratch: a from-scratch, vectorized NumPy CNN engine whose numbers agree with torch.

- :mod:`cnnlab.scratch.functional`: pure kernels (``conv2d``, pooling, activations, losses,
  normalisation), each a ``*_forward -> (out, cache)`` / ``*_backward`` pair, NCHW.
- :mod:`cnnlab.scratch.nn`: torch-named layers on ``Module``/``Sequential`` (:mod:`.module`).
- :mod:`cnnlab.scratch.optim`: ``SGD`` and ``Adam`` with torch's arguments.
- :mod:`cnnlab.scratch.models`: NumPy twins of the torch models (same state-dict keys).
- :mod:`cnnlab.scratch.explain`: the lectures' worked examples, computed by the kernels.
"""

from cnnlab.scratch import functional  # noqa: F401

__all__ = ["functional"]
