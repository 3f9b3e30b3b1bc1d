"""Learning curves of run directories: ``metrics.csv`` read as columns, drawn as loss and
accuracy per epoch. Torch-free (NumPy and matplotlib), so a run directory
(:class:`cnnlab.run.Run`) can draw its own curves.

    >>> curves = read_curves(["runs/a", "runs/b"])      # {run: {"epoch": [...], "test_acc": ...}}
    >>> curves_figure(curves, "curves.png")
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError
from cnnlab.viz.figure import new_figure, save_figure

SPLITS = ("train", "val", "test")


def read_curves(run_dirs) -> dict[str, dict[str, list[float]]]:
    """``metrics.csv`` of each run directory as columns of floats (epoch, train_loss,
    train_acc, test_loss, test_acc, ...; val_* where the run had them)."""
    if not run_dirs:
        raise UserError("runs: expected at least one run directory")
    out = {}
    for d in run_dirs:
        p = Path(d) / "metrics.csv"
        if not p.is_file():
            raise UserError(f"{d}: no metrics.csv (expected a run directory written by "
                            f"`cnnlab train`)")
        with open(p, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise UserError(f"{p}: no epochs recorded yet")
        cols = {k: [float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]
                for k in rows[0]}
        name = Path(d).resolve().name
        out[name if name not in out else str(d)] = cols
    return out


def curves_figure(curves: dict, out, title: str = "") -> Path:
    """Loss (left) and accuracy (right) per epoch; one colour per run, line style per split
    (train dashed, val dotted, test solid)."""
    fig = new_figure(11, 4.2)
    ax_l, ax_a = fig.subplots(1, 2)
    style = {"train": "--", "val": ":", "test": "-"}
    for i, (run, c) in enumerate(curves.items()):
        color = f"C{i % 10}"
        for split in SPLITS:
            for ax, metric in ((ax_l, "loss"), (ax_a, "acc")):
                key = f"{split}_{metric}"
                if key in c and not np.all(np.isnan(c[key])):
                    y = np.array(c[key]) * (100 if metric == "acc" else 1)
                    ax.plot(c["epoch"], y, style[split], color=color, marker=".",
                            label=f"{run} {split}" if len(curves) > 1 else split)
    ax_l.set_ylabel("cross-entropy loss")
    ax_a.set_ylabel("accuracy (%)")
    for ax in (ax_l, ax_a):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title or "Learning curves: " + ", ".join(curves), fontsize=10)
    return save_figure(fig, out)
