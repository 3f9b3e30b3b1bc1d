"""k-NN on full MNIST (10,000 test x 60,000 train, k=3, L2), side by side with scikit-learn.

    python benchmarks/bench_knn.py --data ../shared/datasets/mnist.tar.gz --repeats 3

Measures in one process, alternating the contestants in each round: scikit-learn's
``KNeighborsClassifier(algorithm="brute")`` (fit + predict on float32 pixels), cnnlab's exact
mode and its fast mode (PCA to ``--pca`` dimensions, float32; several values give one row
each). Reports the median time of each, the ratio to
scikit-learn in the same run, accuracy, and whether the exact mode's predictions equal
scikit-learn's. Goals (issue 14): exact <= scikit-learn's time with identical predictions;
fast >= 4x faster than scikit-learn within 0.3 points of its accuracy.

``--sweep 1000x100,5000x500,...`` instead times scikit-learn against the exact mode on the
first NTRAIN training and NTEST test images of ``--data`` (or of random uint8 pixels with
``--data random --dims 3072``: CIFAR-10-sized), one row per size (issue 21: the exact mode
must not be slower than scikit-learn at any size).
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
    ap.add_argument("--sweep", help="NTRAINxNTEST sizes, comma-separated: exact vs sklearn only")
    ap.add_argument("--dims", type=int, default=3072, help="with --data random: pixels per image")
    args = ap.parse_args()
    if args.sweep:
        return sweep(args)

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


def _sweep_data(args, n_train: int, n_test: int):
    if args.data == "random":  # uint8 pixels, 10 classes: no structure, many near-ties
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (n_train, args.dims), dtype=np.uint8),
                rng.integers(0, 10, n_train),
                rng.integers(0, 256, (n_test, args.dims), dtype=np.uint8))
    from cnnlab.data import load_data

    d = load_data(args.data, progress=False)
    return (d.train.images[:n_train].reshape(n_train, -1), d.train.labels[:n_train],
            d.test.images[:n_test].reshape(min(n_test, len(d.test)), -1))


def sweep(args):
    import torch
    from sklearn.neighbors import KNeighborsClassifier

    from cnnlab.baselines.knn import KNN

    sizes = [tuple(map(int, s.split("x"))) for s in args.sweep.split(",")]
    print(f"k-NN exact vs sklearn brute, k={args.k}, L2, data {args.data}; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__} threads "
          f"{torch.get_num_threads()}; median of {args.repeats}, alternating in each round")
    print(f"{'train':>7} {'test':>6} {'dims':>5} {'sklearn s':>10} {'exact s':>9} {'speed':>7} "
          f"same")
    out = []
    for n_train, n_test in sizes:
        xtr, ytr, xte = _sweep_data(args, n_train, n_test)
        xtr32, xte32 = xtr.astype(np.float32), xte.astype(np.float32)
        runs = {"sklearn": lambda: KNeighborsClassifier(args.k, algorithm="brute").fit(
                    xtr32, ytr).predict(xte32),
                "exact": lambda: KNN(args.k, mode="exact").fit(xtr, ytr).predict(xte)}
        times, preds = {k: [] for k in runs}, {}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                preds[name] = fn()
                times[name].append(time.perf_counter() - t0)
        sk, ex = statistics.median(times["sklearn"]), statistics.median(times["exact"])
        same = bool((preds["sklearn"] == preds["exact"]).all())
        out.append({"train": n_train, "test": len(xte), "dims": xtr.shape[1], "sklearn_s": sk,
                    "exact_s": ex, "speedup_vs_sklearn": sk / ex, "same_predictions": same,
                    "times": times})
        print(f"{n_train:>7,} {len(xte):>6,} {xtr.shape[1]:>5} {sk:>10.3f} {ex:>9.3f} "
              f"{sk / ex:>6.2f}x {same}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
