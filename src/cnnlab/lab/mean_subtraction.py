"""mean-subtraction: centring the input (VGG subtracts the training set's mean RGB) makes
optimisation faster and more stable and allows larger learning rates.

LeNet-5 (the zoo's: no batch norm, so nothing inside the net undoes the input's scale) is
trained for a fixed budget on four input encodings across a learning-rate sweep: raw 0..255,
0..1, mean-subtracted 0..1, and standardised (mean-subtracted, divided by the std). For each:
the largest stable learning rate (finite loss and test accuracy above 50%) and the accuracy.
"""

from __future__ import annotations

import math

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment

STABLE_ACC = 0.5  # "stable": finite loss and test accuracy above this (chance is 10%)


def encodings(xtr):
    x = xtr.float().div(255)
    mean = x.mean((0, 2, 3), keepdim=True)
    std = x.std((0, 2, 3), keepdim=True)
    return {"raw 0..255": lambda v: v * 255, "0..1": lambda v: v,
            "mean-subtracted": lambda v: v - mean, "standardised": lambda v: (v - mean) / std}


def run(ctx):
    import torch

    from cnnlab import get_model

    spec = ctx.data or C.dataset("digits" if ctx.quick else "mnist")
    xtr, ytr, xte, yte, classes = C.tensors(spec, None if ctx.quick else 10_000,
                                            None if ctx.quick else 5000)
    lrs = [0.001, 0.01, 0.1, 0.5] if ctx.quick else [0.0003, 0.001, 0.003, 0.01, 0.03, 0.1,
                                                      0.3, 1.0]
    epochs = 2 if ctx.quick else 3
    seeds = [ctx.seed + i for i in range(1 if ctx.quick else 2)]
    res = {}
    for name, prep in encodings(xtr).items():
        res[name] = {}
        for lr in lrs:
            accs, div = [], 0
            for seed in seeds:
                torch.manual_seed(seed)
                m = get_model("lenet5", in_channels=xtr.shape[1], input_size=xtr.shape[2],
                              num_classes=len(classes))
                ctx.log(f"mean-subtraction: {name}, lr {lr}, seed {seed}")
                h = C.fit(m, xtr, ytr, xte, yte, epochs=epochs, lr=lr, seed=seed, prep=prep,
                          weight_decay=0.0, log=ctx.log)
                div += h["diverged"]
                accs.append(0.0 if h["diverged"] else h["test_acc"][-1])
            res[name][lr] = {"acc": accs, "diverged": div}
    rep = new_report(ctx, [f"data: {spec}, {len(xtr)} training / {len(xte)} test images",
                           f"LeNet-5 (no batch norm), {epochs} epochs, SGD (Nesterov, momentum "
                           f"0.9) one-cycle to the peak lr, batch 64, no weight decay; "
                           f"{len(seeds)} seed(s) per cell",
                           f"stable: finite loss and test accuracy > {STABLE_ACC:.0%}; "
                           "a diverged run (NaN/inf loss) counts as 0%"])

    def cell(r):
        return "diverged" if r["diverged"] == len(r["acc"]) else C.pm(r["acc"], digits=1)

    rows = [[n, *[cell(r[lr]) for lr in lrs], _largest(r, lrs) or "none",
             f"{100 * max(_acc(r[lr]) for lr in lrs):.1f}"]
            for n, r in res.items()]
    rep.table(["input", *[f"lr {lr:g}" for lr in lrs], "largest stable lr", "best acc %"], rows,
              caption=f"test accuracy (%) after {epochs} epochs")
    _plot(rep, res, lrs)
    rep.results = {n: {str(lr): v for lr, v in r.items()} for n, r in res.items()}
    _verdict(rep, res, lrs)
    return rep


def _largest(r, lrs):
    """The largest learning rate whose runs all stayed finite and above the stable bar."""
    ok = [lr for lr in lrs if not r[lr]["diverged"] and min(r[lr]["acc"]) > STABLE_ACC]
    return max(ok) if ok else None


def _acc(cell):
    """Mean test accuracy over a cell's seeds."""
    return sum(cell["acc"]) / len(cell["acc"])


def _plot(rep, res, lrs):
    plt = C.plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, r in res.items():
        ax.semilogx(lrs, [100 * _acc(r[lr]) for lr in lrs], "o-", label=n)
    ax.set(xlabel="peak learning rate", ylabel="test accuracy (%)",
           title="Input encoding against learning rate")
    ax.grid(alpha=0.3)
    ax.legend()
    rep.plot(fig, "mean_subtraction.png")


def _verdict(rep, res, lrs):
    big = {n: _largest(r, lrs) or 0 for n, r in res.items()}
    best = {n: max(_acc(r[lr]) for lr in lrs) for n, r in res.items()}
    centred = max(big["mean-subtracted"], big["standardised"])
    larger = centred > big["0..1"] and centred > big["raw 0..255"]
    as_good = (max(best["mean-subtracted"], best["standardised"])
               >= max(best["0..1"], best["raw 0..255"]))
    why = (f"largest stable lr: raw {big['raw 0..255'] or 'none'}, 0..1 {big['0..1'] or 'none'}, "
           f"mean-subtracted {big['mean-subtracted'] or 'none'}, standardised "
           f"{big['standardised'] or 'none'}; best accuracy "
           + ", ".join(f"{n} {100 * b:.1f}%" for n, b in best.items()))
    if not math.isfinite(sum(best.values())):
        why += " (some runs diverged)"
    rep.verdict("supported" if larger and as_good else "mixed" if larger or as_good
                else "not supported", why)


register_experiment(
    "mean-subtraction", run, claim="Mean subtraction (VGG's mean RGB) gives faster, more stable "
    "optimisation and allows larger learning rates.", expected_minutes_full=10,
    expected_seconds_quick=45, data="digits (quick), 10,000 MNIST images (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
