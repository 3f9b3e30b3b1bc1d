"""Deploying a trained classifier: export (ONNX, ``torch.export``), a torch-free ONNX
predictor, and an inference benchmark.

- :mod:`cnnlab.deploy.export`: ``export_checkpoint``/``export_model`` (needs torch).
- :mod:`cnnlab.deploy.onnx_predict`: ``predict_onnx``/``OnnxClassifier`` (onnxruntime,
  NumPy and Pillow only: importing it never imports torch).
- :mod:`cnnlab.deploy.bench`: ``bench`` (p50/p99 latency and throughput per runtime/batch).

This package's ``__init__`` imports nothing heavy; names resolve on first use.
"""

from __future__ import annotations

import importlib

_NAMES = {"export_checkpoint": "export", "export_model": "export", "load_pt2": "export",
          "predict_onnx": "onnx_predict", "OnnxClassifier": "onnx_predict", "bench": "bench"}


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(f"cnnlab.deploy.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'cnnlab.deploy' has no attribute {name!r}")


__all__ = sorted(_NAMES)
