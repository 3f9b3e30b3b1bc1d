"""small-filters: three stacked 3x3 convolutions see as far as one 7x7 (receptive field 7)
with fewer parameters (3 * 9 C^2 = 27 C^2 against 49 C^2) and three non-linearities instead
of one (Simonyan & Zisserman 2015, section 2.3).

The same net with its middle stage built either way; parameters and receptive fields come
from :func:`cnnlab.analysis.summary`; both are then trained.
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment


def build(kind: str, in_channels: int, classes: int, w: int):
    """stem conv3x3(w)-ReLU-pool, then ``stage`` (w -> w), then pool, GAP-free head:
    conv stage + maxpool + flatten + fc. ``stage``: "7x7" one conv7x7 pad 3 + ReLU, or
    "3x3x3" three conv3x3 pad 1 each followed by ReLU."""
    from torch import nn

    if kind == "7x7":
        stage = [nn.Conv2d(w, w, 7, padding=3), nn.ReLU()]
    else:
        stage = [m for _ in range(3) for m in (nn.Conv2d(w, w, 3, padding=1), nn.ReLU())]
    return nn.Sequential(nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         *stage, nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(16 * w, classes))


def stage_stats(kind: str, in_channels: int, size: int, w: int) -> dict:
    """Parameters of the stage and receptive field growth across it, from the summary."""
    from cnnlab.analysis import summary

    s = summary(build(kind, in_channels, 10, w), (in_channels, size, size))
    rows = s.layers
    first = next(i for i, r in enumerate(rows) if r.type == "MaxPool2d")  # stem pool
    second = next(i for i, r in enumerate(rows) if r.type == "MaxPool2d" and i > first)
    stage = rows[first + 1:second]
    return {"params": sum(r.params for r in stage), "total_params": s.total_params,
            "rf_before": rows[first].receptive_field, "rf_after": stage[-1].receptive_field,
            "jump": rows[first].jump, "macs": sum(r.macs for r in stage),
            "nonlinearities": sum(r.type == "ReLU" for r in stage)}


def run(ctx):
    import torch

    spec = ctx.data or C.dataset("digits" if ctx.quick else "cifar10")
    xtr, ytr, xte, yte, classes = C.tensors(spec, None if ctx.quick else 20_000)
    w = 8 if ctx.quick else 64
    epochs = 3 if ctx.quick else 10
    seeds = [ctx.seed + i for i in range(1 if ctx.quick else 2)]
    prep = C.standardizer(xtr)
    c, size = xtr.shape[1], xtr.shape[2]
    res = {}
    for kind in ("7x7", "3x3x3"):
        res[kind] = {"stats": stage_stats(kind, c, size, w), "test": [], "train": []}
        for seed in seeds:
            torch.manual_seed(seed)
            m = build(kind, c, len(classes), w)
            ctx.log(f"small-filters: {kind}, seed {seed}")
            h = C.fit(m, xtr, ytr, xte, yte, epochs=epochs, lr=0.05, seed=seed, prep=prep,
                      log=ctx.log)
            res[kind]["test"].append(h["test_acc"][-1])
            res[kind]["train"].append(h["train_acc"][-1])
    rep = new_report(ctx, [f"data: {spec}, {len(xtr)} training / {len(xte)} test images",
                           f"net: conv3x3({w})-ReLU-maxpool, STAGE ({w} -> {w} channels), "
                           "maxpool, 4x4 average pool, fc; STAGE = one 7x7 conv + ReLU or three "
                           "3x3 convs each + ReLU",
                           f"{epochs} epochs, SGD (Nesterov) one-cycle peak lr 0.05; "
                           f"{len(seeds)} seed(s)"])
    rows = []
    for kind, r in res.items():
        s = r["stats"]
        rows.append([kind, s["params"], s["macs"], f"{s['rf_before']} -> {s['rf_after']}",
                     s["nonlinearities"], s["total_params"], C.pm(r["train"]), C.pm(r["test"])])
    rep.table(["stage", "stage params", "stage MACs", "RF (input px)", "ReLUs", "net params",
               "train acc %", "test acc %"], rows)
    rep.results = res
    plot(rep, res)
    _verdict(rep, res)
    return rep


def _verdict(rep, res: dict) -> None:
    """Same field with fewer parameters and test accuracy within 0.2 points: supported; same
    field and fewer parameters only: mixed; else not supported."""
    a, b = res["7x7"], res["3x3x3"]
    same_rf = a["stats"]["rf_after"] == b["stats"]["rf_after"]
    fewer = b["stats"]["params"] < a["stats"]["params"]
    m7, m3 = (sum(r["test"]) / len(r["test"]) for r in (a, b))
    ok = same_rf and fewer
    rep.verdict("supported" if ok and m3 >= m7 - 0.002 else "mixed" if ok else "not supported",
                f"same receptive field ({a['stats']['rf_after']} input pixels) with "
                f"{b['stats']['params']:,} instead of {a['stats']['params']:,} parameters "
                f"({b['stats']['params'] / a['stats']['params']:.0%}); test accuracy "
                f"{100 * m3:.2f}% (3x3x3) vs {100 * m7:.2f}% (7x7)")


def plot(rep, results: dict) -> None:
    """Stage parameters and MACs, and train/test accuracy over seeds, for both stages;
    ``results`` as in results.json."""
    import numpy as np

    plt = C.plt()
    kinds = list(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    x = np.arange(len(kinds))
    for off, key, label in ((-0.2, "params", "parameters"), (0.2, "macs", "MACs / 100")):
        vals = [results[k]["stats"][key] / (100 if key == "macs" else 1) for k in kinds]
        ax1.bar(x + off, vals, 0.4, label=label)
    ax1.set_xticks(x, [f"{k}\nRF {results[k]['stats']['rf_after']} px, "
                       f"{results[k]['stats']['nonlinearities']} ReLU" for k in kinds])
    ax1.set(title="the middle stage", ylabel="count")
    ax1.legend()
    for off, key in ((-0.2, "train"), (0.2, "test")):
        acc = [[100 * a for a in results[k][key]] for k in kinds]
        ax2.bar(x + off, [np.mean(a) for a in acc], 0.4, yerr=[np.std(a) for a in acc],
                capsize=3, label=f"{key} accuracy")
    ax2.set_xticks(x, kinds)
    lo = min(100 * min(results[k]["test"] + results[k]["train"]) for k in kinds)
    ax2.set(title="trained", ylabel="accuracy (%)", ylim=(max(0, lo - 10), 100))
    ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, axis="y")
    rep.plot(fig, "small_filters.png")


register_experiment(
    "small-filters", run, claim="Three stacked 3x3 convolutions see as far as one 7x7 with "
    "fewer parameters and more non-linearity.", expected_minutes_full=45,
    expected_seconds_quick=30, data="digits (quick), 20,000 CIFAR-10 images (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
