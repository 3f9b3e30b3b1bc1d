"""The loop's position and what goes into a checkpoint; resuming (also a finished run).

A run directory's ``checkpoints/`` holds ``last`` (every epoch and every ``--save-every``
steps), ``best`` (the epoch with the lowest validation loss) and one
``state-eEEEE-sSSSSSSS.safetensors``: the optimiser/scheduler/RNG state of ``last`` at epoch
E, global step S, needed to resume exactly (see :mod:`cnnlab.checkpoint`).
"""

from __future__ import annotations

import json
import random

import numpy as np
import torch

from cnnlab.errors import UserError
from cnnlab.run import RunDir


def new_loop_state() -> dict:
    """The training loop's position, saved in every checkpoint (both engines): the epoch and
    step reached, the epoch's running loss/accuracy sums (so a resumed epoch reports what an
    uninterrupted one would), best-epoch tracking (lowest validation loss), whether early
    stopping ended the run, and the time spent so far."""
    return {"epoch": 0, "step_in_epoch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0,
            "best_acc": -1.0, "best_loss": None, "best_epoch": 0, "elapsed": 0.0,
            "since_best": 0,
            "stopped_early": False}


def rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1],
          "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def load_resume(run: RunDir):
    """(weights, meta, training state) of a run directory's last checkpoint."""
    from cnnlab.checkpoint import load_checkpoint

    last = run.checkpoints / "last.safetensors"
    if not last.exists():
        raise UserError(f"--resume {run.path}: no checkpoints/last.safetensors to resume from")
    return load_checkpoint(last, with_train_state=True)


def finished_summary(run: RunDir, loop: dict, epochs: int) -> dict | None:
    """The run's ``final.json`` if it has nothing left to do at ``epochs`` epochs (it reached
    them, or early stopping ended it), else None. Nothing on disk is touched."""
    done = loop["step_in_epoch"] == 0 and (loop["epoch"] >= epochs or loop.get("stopped_early"))
    final = run.path / "final.json"
    if not done or not final.exists():
        return None
    try:
        summary = json.loads(final.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--resume {run.path}: final.json is unreadable ({e})") from e
    return {**summary, "already_finished": True}


def resume_config(base: dict, overrides: dict) -> dict:
    """A resumed run's config: its own, with ``epochs`` extended if asked. Configs written
    before validation splits existed called the test fraction ``val_split`` and held out no
    validation images: read them that way, so the data splits stay the same."""
    base = dict(base)
    if "test_split" not in base:
        base["test_split"], base["val_split"] = base.get("val_split"), 0.0
    if overrides.get("epochs") is not None:
        base["epochs"] = overrides["epochs"]
    return base
