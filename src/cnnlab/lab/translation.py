"""translation: a fully connected net has not learned shifted or cropped patterns; a CNN
(more so one with global average pooling) still recognises them.

An MLP, LeNet-5 (the zoo's) and a small CNN with a global-average-pooling head are trained on
centred digits with no augmentation, then tested on the test images shifted by 0..8 pixels
(mean over the four directions) and on centre crops zoomed back to full size.
"""

from __future__ import annotations

from cnnlab.lab import _common as C
from cnnlab.lab import new_report, register_experiment

SHIFTS = list(range(0, 9))
QUICK_SHIFTS = [0, 2, 4, 6, 8]
CROPS = [1.0, 0.9, 0.8, 0.7]  # fraction of the side kept, then resized back


def gap_cnn(in_channels: int, classes: int, width: int = 32):
    """[conv3x3-BN-ReLU-maxpool] x 2, conv3x3-BN-ReLU, global average pool, fc: no layer
    sees absolute position until the average, which discards it."""
    from torch import nn

    def block(a, b, pool=True):
        return [nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                *([nn.MaxPool2d(2)] if pool else [])]

    w = width
    return nn.Sequential(*block(in_channels, w), *block(w, 2 * w),  # 2w x H/4 x W/4
                         *block(2 * w, 4 * w, pool=False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, classes))


def crop_zoom(x, keep: float):
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ch, cw = round(h * keep), round(w * keep)
    top, left = (h - ch) // 2, (w - cw) // 2
    c = x[..., top:top + ch, left:left + cw].float()
    return F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False).round().clamp(0, 255).byte()


def shifted_acc(model, x, y, s, prep) -> float:
    if s == 0:
        return C.accuracy(model, x, y, prep)
    return sum(C.accuracy(model, C.shift(x, dy, dx), y, prep)
               for dy, dx in ((s, 0), (-s, 0), (0, s), (0, -s))) / 4


def run(ctx):
    from cnnlab import get_model

    spec = ctx.data or C.dataset("digits" if ctx.quick else "mnist")
    n_train = None if ctx.quick else 20_000
    xtr, ytr, xte, yte, classes = C.tensors(spec, n_train, 200 if ctx.quick else None)
    shifts = QUICK_SHIFTS if ctx.quick else SHIFTS
    ch, size = xtr.shape[1], xtr.shape[2]
    seeds = [ctx.seed] if ctx.quick else [ctx.seed + i for i in range(3)]
    epochs = 3 if ctx.quick else 4
    hidden = (128,) if ctx.quick else (2048, 1024)
    builders = {
        f"MLP {size * size}-{'-'.join(map(str, hidden))}": lambda: get_model(
            "mlp", in_channels=ch, input_size=size, hidden=hidden, num_classes=len(classes)),
        "LeNet-5": lambda: get_model("lenet5", in_channels=ch, input_size=size,
                                     num_classes=len(classes)),
        "CNN + global avg pool": lambda: gap_cnn(ch, len(classes), 8 if ctx.quick else 32),
    }
    prep = C.standardizer(xtr)
    acc = {name: {"shift": [], "crop": []} for name in builders}
    for name, build in builders.items():
        for seed in seeds:
            import torch

            torch.manual_seed(seed)
            model = build()
            ctx.log(f"translation: {name}, seed {seed}")
            C.fit(model, xtr, ytr, xte, yte, epochs=epochs, lr=0.05, seed=seed, prep=prep,
                    log=ctx.log)
            acc[name]["shift"].append([shifted_acc(model, xte, yte, s, prep) for s in shifts])
            acc[name]["crop"].append([C.accuracy(model, crop_zoom(xte, k), yte, prep)
                                      for k in CROPS])
    rep = new_report(ctx, [f"data: {spec} ({len(xtr)} training, {len(xte)} test images, "
                           f"{ch}x{size}x{size}); no augmentation: trained on centred digits only",
                           f"{epochs} epochs, SGD (Nesterov) one-cycle peak lr 0.05, batch 64; "
                           f"{len(seeds)} seed(s)",
                           "shift s: test images moved s pixels left/right/up/down (mean of the "
                           "four), vacated pixels black; crop f: the central f x f region "
                           "resized back (zoom)"])
    pct = lambda runs, n: [f"{100 * _mean(runs, i):.1f}" for i in range(n)]  # noqa: E731
    rep.table(["model", "params", *[f"shift {s}" for s in shifts]],
              [[n, C.count_params(b()), *pct(acc[n]["shift"], len(shifts))]
               for n, b in builders.items()], caption="test accuracy (%) against shift (pixels)")
    rep.table(["model", *[f"crop {k:g}" for k in CROPS]],
              [[n, *pct(acc[n]["crop"], len(CROPS))] for n in builders],
              caption="test accuracy (%) on zoomed centre crops")
    _plot(rep, shifts, acc, size)
    rep.results = {"shifts": shifts, "crops": CROPS, "accuracy": acc}
    _verdict(rep, acc, shifts)
    return rep


def _mean(runs, i):
    return sum(r[i] for r in runs) / len(runs)


def _plot(rep, shifts, acc, size):
    plt = C.plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n, a in acc.items():
        ax.plot(shifts, [100 * _mean(a["shift"], i) for i in range(len(shifts))], "o-", label=n)
    ax.set(xlabel="shift (pixels)", ylabel="test accuracy (%)",
           title=f"Accuracy against shift ({size}x{size} images)")
    ax.grid(alpha=0.3)
    ax.legend()
    rep.plot(fig, "translation.png")


def _verdict(rep, acc, shifts):
    """MLP against LeNet-5 and the GAP CNN (``acc``'s order) at a 4-pixel shift and 0.8 crops."""
    mlp, lenet, gap = (_mean(a["shift"], shifts.index(4)) for a in acc.values())
    s0 = [_mean(a["shift"], 0) for a in acc.values()]
    c_mlp, c_lenet, c_gap = (_mean(a["crop"], CROPS.index(0.8)) for a in acc.values())
    shift_ok = mlp < lenet and mlp < gap
    crop_ok = c_mlp < c_lenet and c_mlp < c_gap
    why = (f"at a 4-pixel shift the MLP keeps {100 * mlp:.1f}% (from {100 * s0[0]:.1f}% "
           f"centred), LeNet-5 {100 * lenet:.1f}%, the GAP CNN {100 * gap:.1f}%; on 0.8 crops "
           f"{100 * c_mlp:.1f}%, {100 * c_lenet:.1f}%, {100 * c_gap:.1f}%")
    if shift_ok and not crop_ok:
        why += " (the CNNs' advantage on shifts does not carry over to zoomed crops: a change " \
               "of scale, which neither weight sharing nor pooling undoes)"
    rep.verdict("supported" if shift_ok and crop_ok else "mixed" if shift_ok or crop_ok
                else "not supported", why)


register_experiment(
    "translation", run, claim="A fully connected net has not learned shifted or cropped "
    "patterns; a CNN (weight sharing, pooling) still recognises them.",
    expected_minutes_full=25, expected_seconds_quick=40, data="digits (quick), MNIST (full)",
    datasets=("digits", "mnist", "fashion-mnist"))
