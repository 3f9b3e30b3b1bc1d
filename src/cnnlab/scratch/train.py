"""The NumPy engine's trainer, behind ``cnnlab train --engine numpy``.

The engine (forward, backward and update in :mod:`cnnlab.scratch`) is
:class:`cnnlab.training.engine_numpy.NumpyEngine`; the loop around it is the torch engine's
(:mod:`cnnlab.training.loop`). This module is kept for ``train_numpy``.
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import TrainConfig


def train_numpy(cfg: TrainConfig, resume: str | Path | None = None) -> dict:
    """Train ``cfg.model`` with the NumPy engine; returns the summary (also ``final.json``)."""
    from cnnlab.training.loop import train

    if resume is not None:
        return train(resume=resume, epochs=cfg.epochs)
    cfg.engine = "numpy"
    return train(cfg)
