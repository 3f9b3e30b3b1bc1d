"""Transfer learning: weights learnt on a large dataset are a better start than random ones
when the new task has few labels (Yosinski et al. 2014; the lectures' fine-tuning recipe).

Two settings, each run through the real trainer (``cnnlab.train(..., init=..., freeze=...)``)
on image folders this module writes (a labelled subset is a folder like any other):

1. LeNet-5 pretrained on MNIST, then trained on the built-in 8x8 digits (upscaled to 32x32,
   another task: other writers, other resolution) with 1, 5, 10 and 50 labelled images per
   class: from scratch, fine-tuned (all layers, backbone at 0.1x the learning rate), and a
   linear probe (``freeze=backbone``: only the last layer trains).
2. CIFAR-10: pretrained on five classes (airplane, automobile, bird, cat, deer), transferred
   to the other five (dog, frog, horse, ship, truck) with 1% and 10% of their labels.

Every training run uses the same number of steps whatever the subset's size (short epochs
are repeated), ``val_split=0`` (the subsets are too small to hold images out: the last epoch
is the model), and the test set of the target task.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cnnlab.lab import new_report, register_experiment
from cnnlab.lab._common import plt

DATASETS = Path(__file__).resolve().parents[3].parent / "shared" / "datasets"
METHODS = {"scratch": {}, "fine-tuned": {"lr_backbone": 0.1},
           "linear probe": {"freeze": "backbone"}}


def write_folder(root: Path, splits: dict, classes: list[str]) -> Path:
    """``root/<split>/<class>/<i>.png`` from uint8 (N, C, H, W) arrays: a dataset the
    trainer reads like any other."""
    from PIL import Image

    for split, (x, y) in splits.items():
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i, (img, label) in enumerate(zip(x, y)):
            a = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
            Image.fromarray(a).save(root / split / classes[label] / f"{i:05d}.png")
    return root


def per_class(labels: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Indices of ``k`` random images of every class (sorted)."""
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:k]
                                   for c in np.unique(labels)]))


def fit(data: Path, out: Path, steps: int, n: int, seed: int, **kw) -> float:
    """Test accuracy of ``cnnlab.train`` on ``data`` for about ``steps`` steps."""
    from cnnlab.training import train

    bs = min(64, n)
    epochs = max(1, round(steps / math.ceil(n / bs)))
    s = train(data=str(data), out=str(out), epochs=epochs, batch_size=bs, seed=seed,
              val_split=0.0, progress="none", **kw)
    return s["test_accuracy"]


def compare(ctx, name: str, sources: dict, shots: list, seeds: list, steps: int, **kw) -> dict:
    """{shot: {method: [test accuracy per seed]}}; ``sources[shot][seed]`` is a folder."""
    res = {}
    for shot in shots:
        res[shot] = {m: [] for m in METHODS}
        for seed in seeds:
            folder, n = sources[shot][seed]
            for m, extra in METHODS.items():
                init = {} if m == "scratch" else {"init": str(kw["pretrained"])}
                args = {k: v for k, v in kw.items() if k != "pretrained"}
                acc = fit(folder, ctx.out / "runs" / f"{name}-{shot}-{m}-{seed}".replace(" ", "_"),
                          steps, n, seed, **args, **init, **extra)
                res[shot][m].append(acc)
            ctx.log(f"{name} {shot} seed {seed}: " + ", ".join(
                f"{m} {res[shot][m][-1]:.2%}" for m in METHODS))
    return res


def table_rows(res: dict) -> list[list]:
    return [[shot, *(f"{100 * np.mean(v):.1f} ± {100 * np.std(v):.1f}" for v in r.values())]
            for shot, r in res.items()]


def digits_setting(ctx, rep) -> dict | None:
    from cnnlab.data import load_data

    mnist = DATASETS / "mnist.tar.gz"
    if not mnist.exists():
        rep.notes.append(f"MNIST setting skipped: {mnist} not found")
        return None
    quick = ctx.quick
    shots = [1, 10] if quick else [1, 5, 10, 50]
    seeds = [ctx.seed, ctx.seed + 1] if quick else [ctx.seed + i for i in range(3)]
    from cnnlab.training import train

    pre = train(model="lenet5", data=str(mnist), epochs=1 if quick else 3, val_split=0.0,
                out=str(ctx.out / "runs" / "pretrain-mnist"), progress="none")
    ctx.log(f"pretrained LeNet-5 on MNIST: test accuracy {pre['test_accuracy']:.2%}")
    d = load_data("digits")
    sources = {}
    for shot in shots:
        sources[shot] = {}
        for seed in seeds:
            idx = per_class(d.train.labels, shot, seed)
            folder = write_folder(ctx.out / "data" / f"digits-{shot}-{seed}", {
                "train": (d.train.images[idx], d.train.labels[idx]),
                "test": (d.test.images, d.test.labels)}, d.classes)
            sources[shot][seed] = (folder, len(idx))
    res = compare(ctx, "digits", sources, shots, seeds, 60 if quick else 150, model="lenet5",
                  pretrained=ctx.out / "runs" / "pretrain-mnist")
    rep.table(["labels per class", *(f"{m} (% test acc)" for m in METHODS)], table_rows(res),
              caption=f"Digits (360 test images), LeNet-5; mean ± std over {len(seeds)} seeds; "
                      f"pretrained on MNIST: {pre['test_accuracy']:.2%}")
    return {"pretrain_test_accuracy": pre["test_accuracy"], "by_shot": res}


def cifar_setting(ctx, rep) -> dict | None:
    from cnnlab.data import load_data

    tar = DATASETS / "cifar10.tar.gz"
    if not tar.exists():
        rep.notes.append(f"CIFAR-10 setting skipped: {tar} not found")
        return None
    quick = ctx.quick
    d = load_data(str(tar), progress=False)
    src_cls, dst_cls = d.classes[:5], d.classes[5:]
    tr, te = d.train.labels, d.test.labels
    src_idx, src_test = np.flatnonzero(tr < 5), np.flatnonzero(te < 5)
    dst_test = np.flatnonzero(te >= 5)
    src_test = src_test[per_class(te[src_test], 200, 0)]  # the source's test: monitoring only
    if quick:
        src_idx = src_idx[per_class(tr[src_idx], 600, 0)]
        dst_test = dst_test[per_class(te[dst_test], 200, 0)]
    pre_dir = write_folder(ctx.out / "data" / "cifar-source", {
        "train": (d.train.images[src_idx], tr[src_idx]),
        "test": (d.test.images[src_test], te[src_test])}, src_cls)
    from cnnlab.training import train

    pre = train(model="lenet5", data=str(pre_dir), epochs=2 if quick else 15, val_split=0.0,
                out=str(ctx.out / "runs" / "pretrain-cifar5"), progress="none")
    ctx.log(f"pretrained LeNet-5 on CIFAR-10 classes 0-4: {pre['test_accuracy']:.2%}")
    fractions = [0.01, 0.1]
    seeds = [ctx.seed] if quick else [ctx.seed + i for i in range(3)]
    sources = {}
    for frac in fractions:
        key = f"{frac:.0%}"
        sources[key] = {}
        for seed in seeds:
            idx = np.flatnonzero(tr >= 5)
            idx = idx[per_class(tr[idx], int(5000 * frac), seed)]
            folder = write_folder(ctx.out / "data" / f"cifar-{key}-{seed}".replace("%", "pc"), {
                "train": (d.train.images[idx], tr[idx] - 5),
                "test": (d.test.images[dst_test], te[dst_test] - 5)}, dst_cls)
            sources[key][seed] = (folder, len(idx))
    res = compare(ctx, "cifar", sources, list(sources), seeds, 100 if quick else 400,
                  model="lenet5", pretrained=ctx.out / "runs" / "pretrain-cifar5")
    rep.table(["labels of classes 5-9", *(f"{m} (% test acc)" for m in METHODS)],
              table_rows(res), caption=f"CIFAR-10 classes 5-9 ({len(dst_test)} test images), "
              f"LeNet-5 pretrained on classes 0-4 ({pre['test_accuracy']:.2%}); "
              f"{len(seeds)} seed(s)")
    return {"pretrain_test_accuracy": pre["test_accuracy"], "by_fraction": res}


def plot(rep, digits: dict) -> None:
    fig, ax = plt().subplots(figsize=(5.5, 3.6))
    shots = list(digits["by_shot"])
    for m in METHODS:
        acc = np.array([digits["by_shot"][s][m] for s in shots]) * 100
        ax.errorbar(shots, acc.mean(1), yerr=acc.std(1), marker="o", capsize=3, label=m)
    ax.set(xscale="log", xlabel="labelled images per class", ylabel="test accuracy (%)",
           title="Digits after MNIST pretraining (LeNet-5)")
    ax.legend()
    rep.plot(fig, "transfer-digits.png")


def run(ctx):
    rep = new_report(ctx, setup=[
        "LeNet-5 pretrained on MNIST -> the built-in digits with 1/5/10/50 labels per class",
        "LeNet-5 pretrained on CIFAR-10 classes 0-4 -> classes 5-9 with 1% / 10% of labels",
        "methods: from scratch; fine-tuned (backbone lr x0.1); linear probe (--freeze backbone)",
        "cnnlab.train with the same number of steps per run, val_split=0 (last epoch)"])
    digits = digits_setting(ctx, rep)
    cifar = cifar_setting(ctx, rep)
    rep.results.update(digits=digits, cifar=cifar)
    if digits is None:
        rep.verdict("mixed", "the MNIST setting could not run (no dataset)")
        return rep
    plot(rep, digits)
    _verdict(rep, digits)
    return rep


def _verdict(rep, digits: dict) -> None:
    """Fine-tuned beats scratch (mean over seeds) at every shot <= 10 labels per class:
    supported; at some: mixed; at none: not supported."""
    few = [s for s in digits["by_shot"] if s <= 10]
    gains = [np.mean(digits["by_shot"][s]["fine-tuned"]) - np.mean(digits["by_shot"][s]["scratch"])
             for s in few]
    ok = bool(gains) and all(g > 0 for g in gains)
    some = any(g > 0 for g in gains)
    rep.verdict("supported" if ok else "mixed" if some else "not supported",
                f"with {', '.join(map(str, few))} labels per class the fine-tuned LeNet-5 beats "
                f"training from scratch by {', '.join(f'{100 * g:+.1f}' for g in gains)} points "
                f"(mean over seeds)" if ok else
                f"fine-tuning minus scratch at {few} labels per class: "
                f"{', '.join(f'{100 * g:+.1f}' for g in gains)} points: "
                f"{'not better everywhere' if some else 'better nowhere'}")


register_experiment(
    "transfer", run,
    claim="Fine-tuning weights pretrained on a large dataset beats training from scratch when "
          "the new task has few labels; a linear probe on fixed features is a strong baseline",
    expected_minutes_full=60, expected_seconds_quick=90, data="MNIST, digits, CIFAR-10")
