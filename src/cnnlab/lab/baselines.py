"""baselines: k-NN on pixels is weak and slow, a linear classifier learns blurred templates,
bag of visual words needs a good vocabulary, CNNs win: ``cnnlab compare`` on the built-in
digits, MNIST and CIFAR-10, with cs231n's 1-NN CIFAR-10 figures beside ours.
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment

QUICK = ("digits", "knn,knn-fast,linear,lenet5", 10)
FULL = [("digits", "knn,knn-fast,knn-l1,linear,bovw,coates,mlp,lenet5", 30),
        ("mnist", "knn,knn-fast,linear,bovw,coates,mlp,lenet5", 5),
        ("cifar10", "knn,knn-fast,linear,bovw,coates,mlp,lenet5", 10)]


def _nn1_cifar(spec, n_test: int):
    """1-NN on raw CIFAR-10 pixels, L2 and L1, on the first ``n_test`` test images (cs231n's
    setting: 38.6% L1, 35.4% L2 on all 10,000)."""
    from cnnlab.baselines.knn import KNN

    d = C.load(spec)
    out = {}
    for metric in ("l2", "l1"):
        p = KNN(1, metric).fit(d.train.images, d.train.labels).predict(d.test.images[:n_test])
        out[metric] = float((p == d.test.labels[:n_test]).mean())
    return out


def run(ctx):
    from cnnlab.baselines.compare import ANCHORS, compare

    if ctx.data:
        plan = [(ctx.data, "knn,knn-fast,linear,lenet5", None)]
    else:
        plan = [QUICK] if ctx.quick else [(C.dataset(k), m, e) for k, m, e in FULL]
    rep = new_report(ctx, ["`cnnlab compare` per dataset: k-NN k=3 (exact L2; fast = PCA-64 "
                           "float32), bag of words (400 words, hard histograms) and Coates et "
                           "al. features (1,600 centroids, triangle, stride 2) with a ridge "
                           "classifier, and linear / MLP / LeNet-5 trained by `cnnlab train`",
                           "size: parameters, or for k-NN the bytes of training data it stores; "
                           "times on this machine (shared, so only ratios within one table "
                           "compare)"])
    rep.results = {}
    for spec, methods, epochs in plan:
        rows = compare(spec, methods=methods, epochs=epochs, seed=ctx.seed, log=ctx.log)
        kind = C.kind_of(spec)
        rep.results[kind] = rows
        rep.table(["method", "test acc %", "size", "train s", "predict ms/image", "detail"],
                  [[r["method"], f"{100 * r['accuracy']:.2f}",
                    f"{r['size'] / 2**20:.1f} MiB stored" if r["size_unit"] == "bytes stored"
                    else f"{r['size']:,} params", f"{r['train_s']:.1f}", f"{r['predict_ms']:.3f}",
                    r["detail"]] for r in rows], caption=f"{kind}")
    if not ctx.quick and not ctx.data:
        nn1 = _nn1_cifar(C.dataset("cifar10"), 2000)
        rep.results["cifar10_1nn"] = nn1
        rep.table(["1-NN on raw CIFAR-10 pixels (2,000 test images)", "ours %", "cs231n %"],
                  [["L1", f"{100 * nn1['l1']:.1f}", "38.6"], ["L2", f"{100 * nn1['l2']:.1f}", "35.4"]])
    rep.notes += ANCHORS
    plot(rep, rep.results)
    _verdict(rep, rep.results)
    return rep


def _tables(results: dict) -> dict:
    """The per-dataset `compare` rows of ``results`` (without the 1-NN anchor figures)."""
    return {k: rows for k, rows in results.items() if k != "cifar10_1nn"}


def _verdict(rep, results: dict) -> None:
    """Per dataset: is k-NN both less accurate and slower per image than LeNet-5?"""
    verdicts = []
    for kind, rows in _tables(results).items():
        by = {r["method"]: r for r in rows}
        if "knn" in by and "lenet5" in by:
            knn, cnn = by["knn"], by["lenet5"]
            weaker = cnn["accuracy"] > knn["accuracy"]
            slower = knn["predict_ms"] > cnn["predict_ms"]
            tie = " (a tie)" if cnn["accuracy"] == knn["accuracy"] else ""
            verdicts.append((weaker and slower,
                             f"{kind}: k-NN {100 * knn['accuracy']:.1f}% at "
                             f"{knn['predict_ms']:.2f} ms/image vs LeNet-5 "
                             f"{100 * cnn['accuracy']:.1f}% at "
                             f"{cnn['predict_ms']:.3f} ms/image{tie}"))
    good = [v for v, _ in verdicts]
    if not verdicts:
        rep.verdict("mixed", "no dataset has both a k-NN and a LeNet-5 row: nothing to compare")
        return
    rep.verdict("supported" if all(good) else "mixed" if any(good) else "not supported",
                "; ".join(t for _, t in verdicts))

def plot(rep, results: dict) -> None:
    """Test accuracy against prediction time per image, one panel per dataset (``results``
    as in results.json): the accuracy/cost trade-off the table lists."""
    plt = C.plt()
    tables = _tables(results)
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, (kind, rows) in zip(axes[0], tables.items()):
        for r in rows:
            ms = max(r["predict_ms"], 1e-4)
            ax.scatter(ms, 100 * r["accuracy"], s=30,
                       marker="s" if r["method"].startswith("knn") else "o")
            ax.annotate(r["method"], (ms, 100 * r["accuracy"]), fontsize=8,
                        xytext=(4, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set(xlabel="prediction time (ms per image, log)", ylabel="test accuracy (%)",
               title=kind)
        ax.grid(alpha=0.3)
    rep.plot(fig, "baselines.png")


register_experiment(
    "baselines", run, claim="k-NN on pixels is weak and slow (it stores and scans the whole "
    "training set); linear, bag-of-words and MLP baselines trail a CNN.",
    expected_minutes_full=35, expected_seconds_quick=30,
    data="digits (quick); digits, MNIST, CIFAR-10 (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
