"""degradation: a deeper plain net has higher *training* error than a shallower one (an
optimisation problem, not overfitting), while a residual net of the same depth does not
(He et al. 2016, Figure 1 and Figure 6, CIFAR-10 plain-20/56 vs ResNet-20/56).

The zoo's CIFAR ResNets and their plain twins (``plain20``, ``resnet56``, ...: any 6n+2
depth). The full version is the paper's pair of depths, 20 and 56, on CIFAR-10; the GPU
figures in ``benchmarks/RESULTS.md`` come from that setting. The quick version shows the
effect on this CPU within a minute: depths 8 and 32 on the digits reduced to 16x16, 4 epochs
at peak lr 0.1 (plain-32 ended at 7-24% training error over seeds 0-2 where plain-8,
ResNet-8 and ResNet-32 ended at 1% or less; at depth 20 and lr 0.05 the gap was within noise).
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment


def run(ctx):
    import torch
    import torch.nn.functional as F

    from cnnlab.models.resnet import CifarResNet

    spec = ctx.data or C.dataset("digits" if ctx.quick else "cifar10")
    xtr, ytr, xte, yte, classes = C.tensors(spec)
    if ctx.quick:  # 16x16: a quarter of the work per layer, the same depth
        xtr, xte = (F.avg_pool2d(x.float(), 2).round().byte() for x in (xtr, xte))
    depths = (8, 32) if ctx.quick else (20, 56)
    epochs = 4 if ctx.quick else 30
    lr = 0.1
    aug = "none" if ctx.quick else "crop:4,flip"
    seeds = [ctx.seed]
    prep = C.standardizer(xtr)
    res = {}
    for shortcut in (False, True):
        for depth in depths:
            name = f"{'resnet' if shortcut else 'plain'}{depth}"
            torch.manual_seed(ctx.seed)
            m = CifarResNet(depth, num_classes=len(classes), in_channels=xtr.shape[1],
                            shortcut=shortcut)
            ctx.log(f"degradation: {name}")
            h = C.fit(m, xtr, ytr, xte, yte, epochs=epochs, lr=lr, seed=seeds[0], prep=prep,
                      augment=aug, weight_decay=1e-4, log=ctx.log)
            res[name] = {"train_err": [1 - a for a in h["train_acc"]],
                         "test_err": [1 - a for a in h["test_acc"]],
                         "params": C.count_params(m), "seconds": h["seconds"]}
    rep = new_report(ctx, [f"data: {spec}, {len(xtr)} training / {len(xte)} test images"
                           + (", reduced to 16x16" if ctx.quick else ""),
                           f"plain and residual CIFAR nets (He et al. 2016, 6n+2 layers, widths "
                           f"16/32/64, batch norm), depths {depths[0]} and {depths[1]}",
                           f"{epochs} epochs, SGD (Nesterov) one-cycle peak lr {lr}, weight "
                           f"decay 1e-4, augmentation {aug}; seed {ctx.seed}",
                           "train error: running error over each epoch (with the augmentation, "
                           "if any), as in the paper's figures"])
    rows = [[n, r["params"], f"{100 * r['train_err'][-1]:.2f}", f"{100 * r['test_err'][-1]:.2f}",
             f"{r['seconds']:.0f}"] for n, r in res.items()]
    rep.table(["net", "params", "final train error %", "final test error %", "seconds"], rows)
    _plot(rep, res, depths)
    rep.results = res
    _verdict(rep, res, depths)
    return rep


def _plot(rep, res, depths):
    plt = C.plt()
    from matplotlib.ticker import MaxNLocator  # after C.plt(): the Agg backend first

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("plain", "resnet")):
        for d in depths:
            r = res[f"{kind}{d}"]
            ep = range(1, len(r["train_err"]) + 1)
            line, = ax.plot(ep, [100 * e for e in r["train_err"]], "-", label=f"{kind}-{d} train")
            ax.plot(ep, [100 * e for e in r["test_err"]], "--", color=line.get_color(),
                    label=f"{kind}-{d} test")
        ax.set(xlabel="epoch", title=f"{kind} nets", ylabel="error (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    rep.plot(fig, "degradation.png")


def _verdict(rep, res, depths):
    s, d = depths
    p_s, p_d = res[f"plain{s}"]["train_err"][-1], res[f"plain{d}"]["train_err"][-1]
    r_s, r_d = res[f"resnet{s}"]["train_err"][-1], res[f"resnet{d}"]["train_err"][-1]
    # one seed: differences under a point of training error are within run-to-run noise
    degrade = p_d > p_s + 0.01
    fixed = r_d <= r_s + 0.01
    why = (f"final training error: plain-{s} {100 * p_s:.2f}%, plain-{d} {100 * p_d:.2f}%, "
           f"resnet-{s} {100 * r_s:.2f}%, resnet-{d} {100 * r_d:.2f}%")
    if not degrade:
        why += "; the deeper plain net is not clearly worse (under 1 point) at this size"
    rep.verdict("supported" if degrade and fixed else "mixed" if fixed else "not supported", why)


register_experiment(
    "degradation", run, claim="A deeper plain net trains worse than a shallower one (higher "
    "training error), while a residual net of the same depth does not.",
    expected_minutes_full=900, expected_seconds_quick=60,
    data="digits at 16x16, depths 8/32 (quick); CIFAR-10, depths 20/56 (full)",
    datasets=("digits", "mnist", "fashion-mnist", "cifar10"))
