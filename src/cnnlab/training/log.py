"""What a run says while it trains: progress bars or lines, TensorBoard, messages, and the
Ctrl-C flag (rank 0 speaks; every process stops)."""

from __future__ import annotations

import signal
import sys
import time


_said = {"interrupted": False}


def say(main: bool, msg: str) -> None:
    if main:
        print(msg, file=sys.stderr, flush=True)
        if msg.startswith("interrupted"):
            _said["interrupted"] = True


def interruption_reported() -> bool:
    """Whether this process already told the user a run was interrupted (and where to resume
    it), so the command line does not say "interrupted" a second time. Asking resets it."""
    said, _said["interrupted"] = _said["interrupted"], False
    return said


class Progress:
    """One epoch's bar (``--progress bar``, the default on a terminal) or one line per
    epoch (``lines``, the default otherwise); ``none`` is silent.

    Bars are progress and go to stderr; the per-epoch lines are the run's record and go to
    stdout with the final result, so ``cnnlab train > log.txt`` keeps every epoch (with bars
    on the terminal, each epoch's line still goes to a stdout that is not a terminal)."""

    def __init__(self, mode: str, main: bool, epochs: int, tag: str = ""):
        if mode == "auto":  # a bar on a terminal and in Jupyter (tqdm.auto: its widget)
            from cnnlab.notebook import in_notebook

            mode = "bar" if sys.stderr.isatty() or in_notebook() else "lines"
        self.mode = mode
        self.show = main and self.mode != "none"
        self.epochs, self.tag, self.bar = epochs, tag, None

    def start_epoch(self, epoch: int, steps: int, start_step: int) -> None:
        self.t0 = time.perf_counter()
        if self.show and self.mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(total=steps, initial=start_step, leave=True, unit="step",
                            desc=f"epoch {epoch + 1}/{self.epochs}", dynamic_ncols=True)

    def step(self, s: int, steps: int, st: dict, images_seen: int) -> None:
        if self.bar is None:
            return
        if s % 10 == 9 or s == steps - 1:
            ips = images_seen / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix(loss=f"{st['loss_sum'] / max(st['seen'], 1):.4f}",
                                 acc=f"{st['correct'] / max(st['seen'], 1):.2%}",
                                 img_s=f"{ips:,.0f}", refresh=False)
        self.bar.update(1)

    def end_epoch(self, row: dict, n_train: int) -> None:
        ips = n_train / max(time.perf_counter() - self.t0, 1e-9)
        sel = "val" if row.get("val_acc") is not None else "test"
        text = (f"train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%}  {sel} loss "
                f"{row[sel + '_loss']:.4f} acc {row[sel + '_acc']:.2%}  {ips:,.0f} img/s")
        line = f"epoch {row['epoch']}/{self.epochs}  {text}  {row['seconds']:.1f}s{self.tag}"
        if self.bar is not None:
            self.bar.set_postfix_str(text.replace("  ", " "))
            self.close()
            if not sys.stdout.isatty():  # bars on the terminal, the record in the file
                print(line, file=sys.stdout, flush=True)
        elif self.show:  # the run's record: stdout, so `cnnlab train > log.txt` keeps it
            print(line, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def tensorboard(run, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("--tensorboard: the tensorboard package is not installed; metrics go to "
              "metrics.csv and metrics.jsonl only (pip install tensorboard)", file=sys.stderr)
        return None
    return SummaryWriter(str(run.path / "tensorboard"))


def log_row(run, tb, row: dict) -> None:
    run.log_metrics(row)
    if tb is not None:
        for k, v in row.items():
            if k != "epoch" and v is not None:
                tb.add_scalar(k, v, row["epoch"])
        tb.flush()


class StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step: the step in progress
    finishes, a checkpoint is written, then the run exits. A second Ctrl-C aborts at once."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self._old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
