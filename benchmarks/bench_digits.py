"""The main job: `cnnlab train` (LeNet-5 on the built-in digits) for three seeds, wall time
of the whole command and test accuracy, beside a 3-nearest-neighbour classifier on the same
fixed split measured in the same run. Goal: >= 98% in <= 30 s for every seed.

    python benchmarks/bench_digits.py [--seeds 0 1 2] [--engine torch|numpy]
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


def knn_reference():
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    from cnnlab.data import stratified_split
    from cnnlab.data.digits import SPLIT_SEED

    d = load_digits()
    tr, te = stratified_split(d.target, 0.2, seed=SPLIT_SEED)  # the split cnnlab trains on
    t0 = time.perf_counter()
    knn = KNeighborsClassifier(3).fit(d.data[tr], d.target[tr])
    acc = knn.score(d.data[te], d.target[te])
    return acc, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--engine", default="torch")
    args = ap.parse_args()
    walls, accs = [], []
    for s in args.seeds:
        out = Path(tempfile.mkdtemp()) / "run"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cnnlab", "train", "--seed", str(s), "--engine",
                        args.engine, "--out", str(out), "--progress", "none"], check=True,
                       capture_output=True)
        walls.append(time.perf_counter() - t0)
        accs.append(json.loads((out / "final.json").read_text())["test_accuracy"])
        print(f"seed {s}: test accuracy {accs[-1]:.2%}, wall {walls[-1]:.1f}s", flush=True)
    kacc, kt = knn_reference()
    print(f"cnnlab ({args.engine}): median wall {statistics.median(walls):.1f}s, accuracies "
          f"{', '.join(f'{a:.2%}' for a in accs)}; 3-NN: {kacc:.2%} in {kt * 1000:.0f} ms")


if __name__ == "__main__":
    main()
