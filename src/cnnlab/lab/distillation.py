"""Knowledge distillation: a small network trained on a large one's softened outputs
predicts better than the same network trained on the labels alone.

Hinton, Vinyals & Dean (2015), "Distilling the knowledge in a neural network", section 3
(MNIST): a large net (two hidden layers of 1,200 ReLU units, dropout, inputs jittered by up
to 2 pixels) made 67 test errors; a small net (two hidden layers of 800, no regularisation)
146; the same small net trained to match the large one's soft targets at T = 20, 74.

Here, through the real trainer (``cnnlab.train(..., teacher=..., kd_temperature=20)``):
teacher ``mlp`` 1200-1200 with the 2-pixel jitter (``augment="crop:2"``; cnnlab's MLP has
no dropout, so the teacher is regularised by the jitter and weight decay only), student
``mlp`` 800-800 without augmentation or weight decay, and the distilled student (the same,
plus the teacher's soft targets). ``val_split=0`` and a fixed number of epochs: nothing is
selected on the test set. The goal: the distilled student closes at least 70% of the gap
between the scratch student and the teacher (mean over seeds).

The ``--quick`` version runs the same three on the built-in digits (1,797 images, 8x8
upscaled to 32x32) with one seed. A convolutional case (ResNet-20 teacher, LeNet-5 student
on CIFAR-10) runs in the full version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.lab import new_report, register_experiment
from cnnlab.lab._common import plt

DATASETS = Path(__file__).resolve().parents[3].parent / "shared" / "datasets"
PAPER = {"teacher": 67, "student": 146, "distilled": 74}  # MNIST test errors (of 10,000)


def _train(out: Path, **kw) -> dict:
    from cnnlab.training import train

    return train(out=str(out), val_split=0.0, progress="none", **kw)


def mlp_trio(ctx, data: str, seed: int, epochs: int, T: float, alpha: float) -> dict:
    """Test accuracies of teacher, scratch student and distilled student for one seed."""
    root = ctx.out / "runs" / f"seed{seed}"
    common = dict(data=data, seed=seed, epochs=epochs, batch_size=128, lr=0.1, model="mlp")
    t = _train(root / "teacher", **common, model_kwargs={"hidden": [1200, 1200]},
               augment="crop:2")
    student = dict(**common, model_kwargs={"hidden": [800, 800]}, augment="none",
                   weight_decay=0.0)
    s = _train(root / "student", **student)
    d = _train(root / "distilled", **student, teacher=str(root / "teacher"),
               kd_temperature=T, kd_alpha=alpha)
    res = {k: r["test_accuracy"] for k, r in (("teacher", t), ("student", s), ("distilled", d))}
    ctx.log(f"seed {seed}: " + ", ".join(f"{k} {v:.2%}" for k, v in res.items()))
    return res


def conv_pair(ctx, epochs: int, T: float, alpha: float) -> dict | None:
    """ResNet-20 teacher, LeNet-5 student (scratch and distilled) on CIFAR-10."""
    tar = DATASETS / "cifar10.tar.gz"
    if not tar.exists():
        return None
    root = ctx.out / "runs" / "cifar"
    common = dict(data=str(tar), seed=ctx.seed, epochs=epochs, batch_size=128)
    t = _train(root / "teacher", **common, model="resnet20", lr=0.2)
    s = _train(root / "student", **common, model="lenet5", model_kwargs={"in_channels": 3})
    d = _train(root / "distilled", **common, model="lenet5", model_kwargs={"in_channels": 3},
               teacher=str(root / "teacher"), kd_temperature=T, kd_alpha=alpha)
    return {k: r["test_accuracy"] for k, r in (("teacher", t), ("student", s), ("distilled", d))}


def gap_closed(res: dict) -> float:
    """Fraction of the scratch-student-to-teacher gap the distilled student closes."""
    gap = res["teacher"] - res["student"]
    return (res["distilled"] - res["student"]) / gap if gap > 0 else float("nan")


def run(ctx):
    quick = ctx.quick
    mnist = DATASETS / "mnist.tar.gz"
    data = "digits" if quick or not mnist.exists() else str(mnist)
    n_test = 360 if data == "digits" else 10_000
    seeds = [ctx.seed] if quick else [ctx.seed + i for i in range(3)]
    epochs, T, alpha = (15 if quick else 12), 20.0, 0.9
    rep = new_report(ctx, setup=[
        f"data: {'built-in digits' if data == 'digits' else 'MNIST'} ({n_test:,} test images)",
        "teacher: MLP 1200-1200, inputs jittered by up to 2 px (crop:2), weight decay 5e-4",
        "student: MLP 800-800, no augmentation, no weight decay",
        f"distilled: the student + teacher soft targets, T = {T:g}, alpha = {alpha:g} "
        f"(Hinton's loss: alpha T^2 KL + (1 - alpha) CE)",
        f"{epochs} epochs each, batch 128, SGD lr 0.1 one-cycle; {len(seeds)} seed(s)"])
    per_seed = [mlp_trio(ctx, data, s, epochs, T, alpha) for s in seeds]
    mean = {k: float(np.mean([r[k] for r in per_seed])) for k in PAPER}
    std = {k: float(np.std([r[k] for r in per_seed])) for k in PAPER}
    rows = [[k, f"{round((1 - mean[k]) * n_test)}", f"{100 * (1 - mean[k]):.2f} ± {100 * std[k]:.2f}",
             PAPER[k] if data != "digits" else "-"] for k in PAPER]
    rep.table(["network", "test errors (mean)", "test error % (± std)", "Hinton et al. errors"],
              rows, caption=f"Distillation on {'MNIST' if data != 'digits' else 'digits'}")
    closed = gap_closed(mean)
    rep.results.update(per_seed=per_seed, mean=mean, std=std, gap_closed=closed, data=data)
    conv = None if quick else conv_pair(ctx, 15, 4.0, 0.9)
    if conv is not None:
        rep.table(["network", "test accuracy %"], [[k, f"{100 * v:.2f}"] for k, v in conv.items()],
                  caption="CIFAR-10: ResNet-20 teacher, LeNet-5 student (T = 4, alpha = 0.9)")
        rep.results["cifar"] = conv
    else:
        rep.notes.append("convolutional case (ResNet-20 -> LeNet-5 on CIFAR-10): full version only")
    _plot(rep, mean, std, n_test)
    ok = closed >= 0.7
    rep.verdict("supported" if ok else ("mixed" if closed > 0 else "not supported"),
                f"the distilled student closes {closed:.0%} of the gap between the student "
                f"trained alone ({100 * (1 - mean['student']):.2f}% error) and the teacher "
                f"({100 * (1 - mean['teacher']):.2f}%): {'at least' if ok else 'less than'} "
                f"the 70% goal")
    return rep


def _plot(rep, mean: dict, std: dict, n_test: int) -> None:
    fig, ax = plt().subplots(figsize=(4.8, 3.2))
    names = list(mean)
    ax.bar(names, [100 * (1 - mean[k]) for k in names], yerr=[100 * std[k] for k in names],
           capsize=4, color=["#555", "#c66", "#69c"])
    ax.set(ylabel="test error (%)", title=f"Distillation ({n_test:,} test images)")
    rep.plot(fig, "distillation.png")


register_experiment(
    "distillation", run,
    claim="A small network trained to match a large network's softened outputs (knowledge "
          "distillation, T = 20) predicts better than the same network trained on the labels "
          "alone (Hinton et al. 2015: 146 -> 74 MNIST errors; the teacher made 67)",
    expected_minutes_full=60, expected_seconds_quick=60, data="MNIST (digits with --quick)")
