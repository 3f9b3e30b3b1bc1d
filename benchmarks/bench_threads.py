"""Threads on a busy machine: `cnnlab train` (LeNet-5 on the built-in digits, 10 epochs) with
1 and 2 torch threads and with the default (chosen by cnnlab.training.setup.choose_threads),
on an otherwise idle machine and beside one competing CPU-bound process.

    .venv/bin/python benchmarks/bench_threads.py [--repeats 3] [--epochs 10]

Prints the median wall time of each setting (seconds, whole process, as a user waits for it)
and its ratio to `--threads 1` idle, measured in the same invocation; also the test accuracy
of each thread count (same seed), to show what is and is not reproducible across them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUSY = "while True: pass"  # one CPU-bound competitor


def run_once(threads: str | None, epochs: int, out: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "cnnlab", "train", "--epochs", str(epochs), "--progress",
           "none", "--out", str(out)]
    if threads:
        cmd += ["--threads", threads]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t, json.loads((out / "final.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    args = ap.parse_args()
    settings = [("1", "--threads 1"), ("2", "--threads 2"), (None, "default")]
    times: dict = {}
    final: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for busy in (False, True):
            comp = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
            try:
                for r in range(args.repeats):
                    for threads, name in settings:
                        out = Path(tmp) / f"{name}-{busy}-{r}".replace(" ", "")
                        sec, fin = run_once(threads, args.epochs, out)
                        times.setdefault((name, busy), []).append(sec)
                        final[name] = fin
            finally:
                if comp is not None:
                    comp.kill()
    ref = statistics.median(times[("--threads 1", False)])
    print(f"{'setting':<14}{'idle s':>9}{'x ref':>7}{'1 busy core s':>15}{'x ref':>7}")
    for _, name in settings:
        idle, busy = (statistics.median(times[(name, b)]) for b in (False, True))
        print(f"{name:<14}{idle:9.2f}{idle / ref:7.2f}{busy:15.2f}{busy / ref:7.2f}")
    print("default threads chosen:", final["default"]["threads"])
    for _, name in settings:
        print(f"{name}: test accuracy {final[name]['test_accuracy']:.4%} "
              f"(checkpoint {final[name]['checkpoint']['name']} epoch "
              f"{final[name]['checkpoint']['epoch']})")


if __name__ == "__main__":
    main()
