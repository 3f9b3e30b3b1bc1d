"""augmentation: flips, crops and colour jitter fight overfitting on a small training set.

The same net trained on a 10% subset with and without augmentation (``cnnlab.transforms``,
the trainer's batched augmentation); train and test accuracy per epoch: the overfitting
curves.
"""

from __future__ import annotations

from statistics import fmean

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment
from cnnlab.lab.gap_vs_fc import build


def run(ctx):
    import torch

    spec = ctx.data or C.dataset("digits" if ctx.quick else "cifar10")
    d = C.load(spec)
    n = len(d.train) // 10 if not ctx.quick else len(d.train) // 3
    xtr, ytr, xte, yte, classes = C.tensors(spec, n, None, seed=ctx.seed)
    color = xtr.shape[1] == 3
    # digits: shifts only (a mirrored 2 is not a 2); colour images: crop, flip and jitter
    aug = "crop:4,flip,jitter:0.2" if color else "crop:3"
    epochs = 8 if ctx.quick else 40
    w = 8 if ctx.quick else 32
    seeds = [ctx.seed + i for i in range(1 if ctx.quick else 2)]
    prep = C.standardizer(xtr)
    res = {}
    for name, spec_aug in (("none", "none"), (aug, aug)):
        res[name] = {"runs": []}
        for seed in seeds:
            torch.manual_seed(seed)
            m = build("gap", xtr.shape[1], xtr.shape[2], len(classes), w)
            ctx.log(f"augmentation: {name}, seed {seed}")
            h = C.fit(m, xtr, ytr, xte, yte, epochs=epochs, lr=0.05, seed=seed, prep=prep,
                      augment=spec_aug, eval_train=True, log=ctx.log)
            res[name]["runs"].append(h)
    rep = new_report(ctx, [f"data: {len(xtr)} training images of {spec} "
                           f"({len(xtr) / len(d.train):.0%}, stratified), all {len(xte)} test images",
                           f"net: [conv3x3-BN-ReLU x2, maxpool] x 3 (widths {w}/{2 * w}/{4 * w}), "
                           "global average pool, fc",
                           f"{epochs} epochs, SGD (Nesterov) one-cycle peak lr 0.05, weight decay "
                           f"5e-4; {len(seeds)} seed(s); augmentation {aug!r} vs none",
                           "train accuracy: a clean (unaugmented) pass over the training subset"])
    rows = []
    for name, r in res.items():
        tr = [h["train_eval_acc"][-1] for h in r["runs"]]
        te = [h["test_acc"][-1] for h in r["runs"]]
        rows.append([name, C.pm(tr), C.pm(te), C.pm([a - b for a, b in zip(tr, te)]),
                     C.pm([max(h["test_acc"]) for h in r["runs"]])])
        r.update(train=tr, test=te)
    rep.table(["augmentation", "train acc %", "test acc %", "gap (pts)", "best-epoch test %"], rows)
    _plot(rep, res, len(xtr))
    rep.results = {k: {"train": v["train"], "test": v["test"],
                       "curves": [{"train": h["train_eval_acc"], "test": h["test_acc"]}
                                  for h in v["runs"]]} for k, v in res.items()}
    _verdict(rep, res["none"], res[aug])
    return rep


def _plot(rep, res, n):
    plt = C.plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, r), col in zip(res.items(), ("tab:red", "tab:blue")):
        h = r["runs"][0]
        ep = range(1, len(h["test_acc"]) + 1)
        ax.plot(ep, [100 * a for a in h["train_eval_acc"]], "-", color=col, label=f"{name}: train")
        ax.plot(ep, [100 * a for a in h["test_acc"]], "--", color=col, label=f"{name}: test")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"Overfitting on {n} images")
    ax.grid(alpha=0.3)
    ax.legend()
    rep.plot(fig, "augmentation.png")


def _verdict(rep, base, augd):
    g0, g1 = (fmean(r["train"]) - fmean(r["test"]) for r in (base, augd))
    better = fmean(augd["test"]) > fmean(base["test"])
    rep.verdict("supported" if better and g1 < g0 else "mixed" if better or g1 < g0
                else "not supported",
                f"with augmentation test accuracy {100 * fmean(augd['test']):.1f}% vs "
                f"{100 * fmean(base['test']):.1f}% without; train-test gap {100 * g1:.1f} vs "
                f"{100 * g0:.1f} points")


register_experiment(
    "augmentation", run, claim="Data augmentation (flips, crops, colour jitter) fights "
    "overfitting.", expected_minutes_full=100, expected_seconds_quick=50,
    data="a third of digits (quick), 10% of CIFAR-10 (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
