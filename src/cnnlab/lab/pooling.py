"""pooling: max, average, min, stochastic, k-max pooling and a strided convolution instead of
pooling, in the same small net; test accuracy and the train-test gap, beside Zeiler & Fergus
(2013, "Stochastic pooling for regularization of deep convolutional neural networks",
Tables 1 and 3) who report test error on CIFAR-10 19.24% (average), 19.40% (max), 15.13%
(stochastic) and on MNIST 0.83% / 0.55% / 0.47% (their nets: 3 layers of 64 5x5 maps,
280 epochs; ours are far smaller and shorter, so only the ranking can compare).
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment

PAPER = {"cifar10": {"avg": 19.24, "max": 19.40, "stochastic": 15.13},
         "mnist": {"avg": 0.83, "max": 0.55, "stochastic": 0.47}}
VARIANTS = ("max", "avg", "min", "stochastic", "kmax", "strided-conv")


def _kmax_window(k: int = 2):
    """2x2 windows -> the mean of their k largest values (k-max pooling kept map-shaped)."""
    from torch import nn

    from cnnlab.nn import _windows

    class KMaxWindow(nn.Module):
        def forward(self, x):
            return _windows(x, 2, 2).topk(k, dim=2).values.mean(2)

    return KMaxWindow()


def pool_layer(kind: str, channels: int):
    from torch import nn

    from cnnlab.nn import MinPool2d, StochasticPool2d

    return {"max": lambda: nn.MaxPool2d(2), "avg": lambda: nn.AvgPool2d(2),
            "min": lambda: MinPool2d(2), "stochastic": lambda: StochasticPool2d(2),
            "kmax": _kmax_window,
            "strided-conv": lambda: nn.Sequential(  # All-CNN: a learned stride-2 conv + ReLU
                nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU())}[kind]()


def net(kind: str, in_channels: int, size: int, classes: int, width: int):
    """[conv3x3-ReLU-POOL] x 2 -> flatten -> fc; POOL is the variant (each halves H, W)."""
    from torch import nn

    w = width
    return nn.Sequential(
        nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), pool_layer(kind, w),
        nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(), pool_layer(kind, 2 * w),
        nn.Flatten(), nn.Linear(2 * w * (size // 4) ** 2, classes))


def run_one(ctx, spec, seeds, epochs, width, n_train):
    import torch

    xtr, ytr, xte, yte, classes = C.tensors(spec, n_train)
    prep = C.standardizer(xtr)
    # train accuracy on up to 10,000 training images drawn from all classes
    few = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(0))[:10_000]
    res = {}
    for kind in VARIANTS:
        res[kind] = {"test": [], "train": [], "diverged": 0}
        for seed in seeds:
            torch.manual_seed(seed)
            m = net(kind, xtr.shape[1], xtr.shape[2], len(classes), width)
            ctx.log(f"pooling: {kind} on {C.kind_of(spec)}, seed {seed}")
            h = C.fit(m, xtr, ytr, xte, yte, epochs=epochs, lr=0.05, seed=seed, prep=prep,
                      log=ctx.log)
            res[kind]["diverged"] += h["diverged"]
            res[kind]["test"].append(h["test_acc"][-1] if not h["diverged"] else 0.0)
            res[kind]["train"].append(C.accuracy(m, xtr[few], ytr[few], prep))
        res[kind]["params"] = C.count_params(m)
    return res, len(xtr)


def run(ctx):
    if ctx.data:
        plan = [(ctx.data, 2, 3, None)]
    elif ctx.quick:
        plan = [("digits", 1, 2, None)]
    else:  # 20,000-image subsets: 24 networks in about 75 minutes on one thread
        plan = [(C.dataset("mnist"), 2, 3, 20_000), (C.dataset("cifar10"), 2, 10, 20_000)]
    rep = new_report(ctx, ["net: conv3x3(w)-ReLU-POOL-conv3x3(2w)-ReLU-POOL-fc, w = "
                           f"{8 if ctx.quick else 32}; POOL 2x2 stride 2 of each kind (k-max: "
                           "mean of the 2 largest of each window; strided-conv: a learned 3x3 "
                           "stride-2 convolution + ReLU, as in All-CNN); min pooling comes "
                           "after the ReLU like the others",
                           "SGD (Nesterov) one-cycle, peak lr 0.05, batch 64, weight decay 5e-4, "
                           "no augmentation; train accuracy: a clean pass over up to 10,000 "
                           "training images; a diverged run (NaN/inf loss) counts as 100% error"])
    rep.results = {}
    for spec, n_seeds, epochs, n_train in plan:
        kind = C.kind_of(spec)
        seeds = [ctx.seed + i for i in range(n_seeds)]
        res, n = run_one(ctx, spec, seeds, epochs, 8 if ctx.quick else 32, n_train)
        rep.setup.append(f"{spec}: {n} training images, {epochs} epochs, {n_seeds} seed(s)")
        paper = PAPER.get(kind, {})
        rows = []
        for v in VARIANTS:
            r = res[v]
            gap = [a - b for a, b in zip(r["train"], r["test"])]
            err = C.pm([1 - a for a in r["test"]])
            if r["diverged"]:  # counted as 100% error in the mean; said so
                err += f" ({r['diverged']} of {n_seeds} diverged)"
            rows.append([v, r["params"], err,
                         C.pm(r["train"]), C.pm(gap),
                         f"{paper[v]:.2f}" if v in paper else "-"])
        rep.table(["pooling", "params", "test error %", "train acc %", "train-test gap (pts)",
                   "Zeiler & Fergus test error %"], rows,
                  caption=f"{kind}: mean ± std over {n_seeds} seed(s)")
        rep.results[kind] = res
    rep.notes.append("Zeiler & Fergus: stochastic < avg/max error on both datasets; max < avg "
                     "on MNIST, avg ~ max on CIFAR-10.")
    plot(rep, rep.results)
    _verdict(rep)
    return rep


def plot(rep, results: dict) -> None:
    """Test error of each variant per dataset (mean and spread over seeds), Zeiler & Fergus's
    figures beside them; ``results`` as in results.json."""
    import numpy as np

    plt = C.plt()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4), squeeze=False)
    for ax, (kind, res) in zip(axes[0], results.items()):
        x = np.arange(len(VARIANTS))
        err = [[100 * (1 - a) for a in res[v]["test"]] for v in VARIANTS]
        gap = [np.mean(res[v]["train"]) - np.mean(res[v]["test"]) for v in VARIANTS]
        ax.bar(x, [np.mean(e) for e in err], yerr=[np.std(e) for e in err], capsize=3,
               color="tab:blue", alpha=0.8, label="ours: test error")
        for i, g in enumerate(gap):
            ax.annotate(f"gap {100 * g:+.1f}", (i, np.mean(err[i])), ha="center",
                        va="bottom", fontsize=7, xytext=(0, 4), textcoords="offset points")
        paper = PAPER.get(kind, {})
        px = [i for i, v in enumerate(VARIANTS) if v in paper]
        if px:
            ax.plot(px, [paper[VARIANTS[i]] for i in px], "kD", label="Zeiler & Fergus")
        ax.set_xticks(x, VARIANTS, rotation=20)
        ax.set(ylabel="test error (%)", title=kind)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle("Test error per pooling variant (above each bar: the train-test gap, points)")
    fig.tight_layout()
    rep.plot(fig, "pooling.png")


def _verdict(rep):
    import numpy as np

    err = {k: {v: 1 - np.mean(r[v]["test"]) for v in VARIANTS} for k, r in rep.results.items()}
    best = {k: min(e, key=e.get) for k, e in err.items()}
    stoch_beats = all(e["stochastic"] <= min(e["max"], e["avg"]) for e in err.values())
    stoch_worst = all(e["stochastic"] > max(e["max"], e["avg"]) for e in err.values())
    lines = [f"{k}: best {best[k]} ({100 * err[k][best[k]]:.2f}% error), stochastic "
             f"{100 * e['stochastic']:.2f}% vs max {100 * e['max']:.2f}% / avg "
             f"{100 * e['avg']:.2f}%, min {100 * e['min']:.2f}%" for k, e in err.items()]
    if stoch_beats:
        rep.verdict("supported", "pooling choices differ and stochastic pooling has the lowest "
                    "error of the three the paper compares, as it reports; " + "; ".join(lines))
    elif stoch_worst:
        rep.verdict("not supported", "stochastic pooling has a higher error than both max and "
                    "average pooling on every dataset, against Zeiler & Fergus; "
                    + "; ".join(lines))
    else:
        rep.verdict("mixed", "the variants differ, but stochastic pooling does not beat max and "
                    "average here as in Zeiler & Fergus (short training of a small net: its "
                    "regularising effect needs long training to pay off); " + "; ".join(lines))


register_experiment(
    "pooling", run, claim="Pooling variants differ: max, average, min, stochastic (Zeiler & "
    "Fergus 2013: lowest test error), k-max, and a strided convolution instead of pooling.",
    expected_minutes_full=75, expected_seconds_quick=40, data="digits (quick); 20,000 "
    "MNIST and 20,000 CIFAR-10 images (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
