"""gap-vs-fc: global average pooling (GoogLeNet, Network in Network) replaces the flatten +
fully connected head that holds most of VGG's parameters, with less overfitting.

One backbone ([conv3x3-BN-ReLU] x 2 + maxpool, three times) with two heads: flatten -> FC(256)
-> ReLU -> dropout 0.5 -> FC(classes) (VGG's head, scaled down), and global average pooling
-> FC(classes). Parameters, train and test accuracy, and the gap between them.
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment


def backbone(in_channels: int, w: int):
    from torch import nn

    layers, a = [], in_channels
    for b in (w, 2 * w, 4 * w):  # H -> H/2 -> H/4 -> H/8
        layers += [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                   nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(), nn.MaxPool2d(2)]
        a = b
    return layers


def build(head: str, in_channels: int, size: int, classes: int, w: int):
    from torch import nn

    c, s = 4 * w, size // 8
    if head == "fc":
        tail = [nn.Flatten(), nn.Linear(c * s * s, 256), nn.ReLU(), nn.Dropout(0.5),
                nn.Linear(256, classes)]
    else:
        tail = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, classes)]
    return nn.Sequential(*backbone(in_channels, w), *tail)


def run(ctx):
    import torch

    spec = ctx.data or C.dataset("digits" if ctx.quick else "cifar10")
    n_train = None if ctx.quick else 10_000
    xtr, ytr, xte, yte, classes = C.tensors(spec, n_train)
    w = 8 if ctx.quick else 32
    epochs = 4 if ctx.quick else 15
    seeds = [ctx.seed + i for i in range(1 if ctx.quick else 2)]
    prep = C.standardizer(xtr)
    res, curves = {}, {}
    for head in ("fc", "gap"):
        res[head] = {"test": [], "train": [], "params": 0, "head_params": 0}
        for seed in seeds:
            torch.manual_seed(seed)
            m = build(head, xtr.shape[1], xtr.shape[2], len(classes), w)
            ctx.log(f"gap-vs-fc: {head} head, seed {seed}")
            h = C.fit(m, xtr, ytr, xte, yte, epochs=epochs, lr=0.05, seed=seed, prep=prep,
                      eval_train=True, log=ctx.log)
            res[head]["test"].append(h["test_acc"][-1])
            res[head]["train"].append(h["train_eval_acc"][-1])
            curves.setdefault(head, h)
        res[head]["params"] = C.count_params(m)
        res[head]["head_params"] = res[head]["params"] - sum(
            C.count_params(layer) for layer in backbone(xtr.shape[1], w))
    rep = new_report(ctx, [f"data: {spec}, {len(xtr)} training images (a subset in the full "
                           f"version, where overfitting shows), {len(xte)} test images",
                           f"backbone [conv3x3-BN-ReLU x2, maxpool] x 3, widths {w}/{2 * w}/{4 * w}",
                           f"{epochs} epochs, SGD (Nesterov) one-cycle peak lr 0.05, weight decay "
                           f"5e-4, no augmentation; {len(seeds)} seed(s); train accuracy is a "
                           "clean pass over the training set"])
    rows = []
    for head, r in res.items():
        gap = [a - b for a, b in zip(r["train"], r["test"])]
        rows.append(["flatten + FC(256) + FC" if head == "fc" else "global avg pool + FC",
                     r["params"], r["head_params"], C.pm(r["train"]), C.pm(r["test"]), C.pm(gap)])
    rep.table(["head", "params", "head params", "train acc %", "test acc %", "gap (pts)"], rows)
    plt = C.plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for head, h in curves.items():
        ep = range(1, len(h["test_acc"]) + 1)
        ax.plot(ep, [100 * a for a in h["train_eval_acc"]], "-", label=f"{head}: train")
        ax.plot(ep, [100 * a for a in h["test_acc"]], "--", label=f"{head}: test")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Flatten + FC vs global average pooling")
    ax.grid(alpha=0.3)
    ax.legend()
    rep.plot(fig, "gap_vs_fc.png")
    rep.results = res
    _verdict(rep, res)
    return rep


def _verdict(rep, res: dict) -> None:
    """Fewer parameters and a smaller train-test gap for the GAP head: supported; fewer
    parameters only: mixed; not even fewer parameters: not supported."""
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    g_fc = mean(res["fc"]["train"]) - mean(res["fc"]["test"])
    g_gap = mean(res["gap"]["train"]) - mean(res["gap"]["test"])
    fewer = res["gap"]["params"] < res["fc"]["params"]
    less_over = g_gap < g_fc
    verdict = "supported" if fewer and less_over else "mixed" if fewer else "not supported"
    rep.verdict(verdict, f"the GAP head has {res['gap']['head_params']:,} parameters against "
                f"{res['fc']['head_params']:,} for flatten + FC; train-test gap "
                f"{100 * g_gap:.1f} vs {100 * g_fc:.1f} points; test accuracy "
                f"{100 * mean(res['gap']['test']):.1f}% vs {100 * mean(res['fc']['test']):.1f}%")


register_experiment(
    "gap-vs-fc", run, claim="Global average pooling replaces the fully connected head that "
    "holds most parameters, with less overfitting.", expected_minutes_full=45,
    expected_seconds_quick=40, data="digits (quick), 10,000 CIFAR-10 images (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
