"""k-NN on full MNIST (10,000 test x 60,000 train, k=3, L2), side by side with scikit-learn.

    python benchmarks/bench_knn.py --data ../shared/datasets/mnist.tar.gz --repeats 3

Measures in one process, alternating the contestants in each round: scikit-learn's
``KNeighborsClassifier(algorithm="brute")`` (fit + predict on float32 pixels), cnnlab's exact
mode and its fast mode (PCA to ``--pca`` dimensions, float32; several values give one row
each). Reports the median time of each, the ratio to
scikit-learn in the same run, accuracy, and whether the exact mode's predictions equal
scikit-learn's. Goals (issue 14): exact <= scikit-learn's time with identical predictions;
fast >= 4x faster than scikit-learn within 0.3 points of its accuracy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/datasets/mnist.tar.gz")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-test", type=int, default=None, help="first N test images only")
    ap.add_argument("--pca", default="64", help="fast mode's PCA dimensions, comma-separated "
                    "(default 64, the KNN default)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()

    import torch
    from sklearn.neighbors import KNeighborsClassifier

    from cnnlab.baselines.knn import KNN
    from cnnlab.data import load_data

    d = load_data(args.data, progress=False)
    xtr = d.train.images.reshape(len(d.train), -1)
    xte = d.test.images.reshape(len(d.test), -1)[:args.n_test]
    ytr, yte = d.train.labels, d.test.labels[:args.n_test]
    xtr32, xte32 = xtr.astype(np.float32), xte.astype(np.float32)

    def sk():
        return KNeighborsClassifier(args.k, algorithm="brute").fit(xtr32, ytr).predict(xte32)

    def exact():
        return KNN(args.k, mode="exact").fit(xtr, ytr).predict(xte)

    def fast(q):
        return lambda: KNN(args.k, mode="fast", pca=q).fit(xtr, ytr).predict(xte)

    runs = {"sklearn brute": sk, "cnnlab exact": exact}
    runs.update({f"cnnlab fast (PCA-{q})": fast(q) for q in map(int, args.pca.split(","))})
    times = {k: [] for k in runs}
    preds = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            preds[name] = fn()
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["sklearn brute"])
    gflop = 2 * len(xte) * len(xtr) * xtr.shape[1] / 1e9
    print(f"{len(xte):,} test x {len(xtr):,} train x {xtr.shape[1]} dims, k={args.k}, L2 "
          f"(distance GEMM {gflop:,.0f} GFLOP); {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__} threads {torch.get_num_threads()}; median of {args.repeats}")
    out = {}
    for name in runs:
        med = statistics.median(times[name])
        acc = float((preds[name] == yte).mean())
        same = bool((preds[name] == preds["sklearn brute"]).all())
        out[name] = {"median_s": med, "times": times[name], "accuracy": acc,
                     "speedup_vs_sklearn": ref / med, "same_predictions_as_sklearn": same}
        print(f"{name:<22} {med:7.2f} s  x{ref / med:5.2f} vs sklearn  acc {acc:.2%}  "
              f"identical to sklearn: {same}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
