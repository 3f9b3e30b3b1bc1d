"""A run directory: config, metrics, checkpoints and the final summary, shared by both engines.

    runs/lenet5-digits-20261122-104500/
        config.yaml          the resolved TrainConfig
        metrics.csv          one row per epoch
        metrics.jsonl        the same rows as JSON lines
        final.json           test accuracy of the chosen checkpoint (which one: "checkpoint"),
                             validation accuracy of that epoch, epochs, seconds, model, data
        checkpoints/last.*   after every epoch (and every --save-every steps)
        checkpoints/best.*   the epoch with the lowest validation loss (none with
                             --val-split 0: then the last epoch is the model)
        checkpoints/state-eEEEE-sSSSSSSSS.safetensors
                             optimiser, scheduler and RNG state of last.* (epoch E, global
                             step S) for an exact --resume; replaced at every save

:class:`Run` looks at such a folder (its metrics as a table, its curves as a figure);
:class:`TrainResult` is the final summary that :func:`cnnlab.train` returns, with ``.run``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import yaml

from cnnlab.checkpoint import save_checkpoint
from cnnlab.errors import UserError
from cnnlab.utils import atomic_write

# val_* come from the validation split (model selection); test_* appear per epoch only with
# --val-split 0 (nothing selected); top-5 columns are empty for 5 classes or fewer
METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "val_top5",
                 "test_loss", "test_acc", "test_top5", "lr", "seconds"]


class RunDir:
    """Owns one run's folder; only rank 0 of a distributed run writes."""

    def __init__(self, path: Path | str, writer: bool = True, new: bool = False):
        self.path = Path(path)
        self.writer = writer
        if writer and new and (self.path / "config.yaml").exists():
            raise UserError(f"--out {self.path}: already holds a run (continue it with --resume "
                            f"{self.path}, or choose another --out)")
        if writer:
            try:
                (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
                probe = self.path / ".write-test"
                probe.write_text("")
                probe.unlink()
            except OSError as e:
                raise UserError(f"--out {self.path}: cannot write the run directory "
                                f"({e.strerror or e})") from e

    @staticmethod
    def default_path(model: str, data: str) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{model}-{data}-{stamp}"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def save_config(self, config: dict) -> None:
        if self.writer:
            with atomic_write(self.path / "config.yaml", "w") as f:
                yaml.safe_dump(config, f, sort_keys=False)

    def load_config(self) -> dict:
        from cnnlab.config import load_yaml  # checked like --config: types, ranges, no tags

        p = self.path / "config.yaml"
        if not p.is_file():
            raise UserError(f"--resume {self.path}: no config.yaml (not a cnnlab run "
                            f"directory?)")
        return load_yaml(p, what="--resume")

    def log_metrics(self, row: dict) -> None:
        """Append one epoch's row to metrics.csv and metrics.jsonl (flushed and fsynced)."""
        if not self.writer:
            return
        p = self.path / "metrics.csv"
        new = not p.exists()
        with open(p, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
            f.flush()
            os.fsync(f.fileno())
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_metrics(self, epochs_done: int) -> None:
        """On resume, drop rows past the checkpoint's epoch (written after it, then lost)."""
        if not self.writer:
            return
        for name in ("metrics.csv", "metrics.jsonl"):
            p = self.path / name
            if not p.exists():
                continue
            lines = p.read_text().splitlines(keepends=True)
            head = 1 if name.endswith(".csv") else 0
            keep = lines[:head] + [ln for ln in lines[head:]
                                   if _epoch_of(ln, name) <= epochs_done]
            with atomic_write(p, "w") as f:
                f.writelines(keep)

    def save(self, name: str, state_dict: dict, meta: dict, train_state: dict | None = None):
        if self.writer:
            return save_checkpoint(self.checkpoints / name, state_dict, meta, train_state)

    def finish(self, summary: dict) -> None:
        if self.writer:
            with atomic_write(self.path / "final.json", "w") as f:
                json.dump(summary, f, indent=2)


def _epoch_of(line: str, name: str) -> int:
    if name.endswith(".jsonl"):
        return int(json.loads(line)["epoch"])
    return int(line.split(",", 1)[0])


# --- in a notebook: a run to look at ---------------------------------------------------------
class Run:
    """A run directory to look at (in Jupyter, shown as its summary and metrics tables).

    ``final``: final.json (empty while training); ``metrics``: metrics.csv, one row (dict)
    per epoch, shown as a table (columns that are empty in every row left out);
    ``curves(out=None)``: loss and accuracy per epoch as a matplotlib figure (PNG at ``out``
    when given), as ``cnnlab viz curves`` draws them.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def final(self) -> dict:
        p = self.path / "final.json"
        return json.loads(p.read_text()) if p.is_file() else {}

    @property
    def metrics(self):
        """:class:`cnnlab.notebook.Table` of metrics.csv: numbers as int/float, blanks None."""
        from cnnlab.notebook import Table

        p = self.path / "metrics.csv"
        if not p.is_file():
            raise UserError(f"{self.path}: no metrics.csv (expected a run directory written "
                            f"by `cnnlab train`)")
        with open(p, newline="") as f:
            rows = [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(f)]
        columns = [c for c in METRIC_FIELDS if any(r.get(c) is not None for r in rows)]
        return Table(rows, columns, caption=f"{self.path}/metrics.csv")

    def curves(self, out: str | Path | None = None):
        """Loss and accuracy per epoch (a matplotlib Figure); written as PNG at ``out``."""
        from cnnlab.viz.learning import curves_figure, read_curves

        fig = curves_figure(read_curves([self.path]), None)
        if out is not None:
            out = Path(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(out, bbox_inches="tight", facecolor="white")
        return fig

    def _repr_html_(self) -> str:
        return TrainResult(self.final or {"run_dir": str(self.path)}, run=self)._repr_html_()


def _number(v: str | None):
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        return float(v)


class TrainResult(dict):
    """What :func:`cnnlab.train` returns: the run's final summary (a dict, as final.json);
    ``.run`` is the :class:`Run` (its ``metrics`` table, its ``curves()`` figure). Jupyter
    shows the summary and the metrics per epoch as tables."""

    def __init__(self, summary: dict, run: Run | None = None):
        super().__init__(summary)
        self._run = run

    @property
    def run(self) -> Run:
        if self._run is None:
            if not self.get("run_dir"):
                raise UserError("this summary names no run directory (run_dir)")
            self._run = Run(self["run_dir"])
        return self._run

    def _repr_html_(self) -> str:
        from cnnlab.notebook import key_value_table

        def show(v):
            if isinstance(v, dict):
                return ", ".join(f"{k} {x}" for k, x in v.items())
            return "" if v is None else v

        html = key_value_table({k: show(v) for k, v in self.items()},
                               caption=f"Run {self.get('run_dir', '')}")
        try:
            return html + "\n" + self.run.metrics._repr_html_()
        except UserError:  # no metrics.csv (yet, or the folder moved): the summary alone
            return html
