"""How training went and where the model is wrong: learning curves of run directories
(:mod:`cnnlab.viz.learning`), the confusion matrix as a heatmap, and the most confident
mistakes.

    >>> curves = read_curves(["runs/a", "runs/b"])      # {run: {"epoch": [...], "test_acc": ...}}
    >>> r = predictions(checkpoint)                     # probabilities on the test split
    >>> confusion(r), most_confident_mistakes(r, 16)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import UserError
from cnnlab.viz.learning import SPLITS, curves_figure, read_curves  # noqa: F401 - moved


def predictions(checkpoint, data: str | None = None, device: str = "cpu") -> dict:
    """{"probs" (N, classes), "labels" (N,), "images" uint8 (N, C, H, W), "classes"} on the
    test split of ``data`` (default: the checkpoint's), as ``cnnlab eval`` computes them."""
    from cnnlab.training.evaluation import normalizer, predict_logits
    from cnnlab.viz.common import load_checkpoint_model, load_split

    model, meta = load_checkpoint_model(checkpoint, device)
    d = load_split(meta, data)
    logits = predict_logits(model, torch.from_numpy(d.images).to(device),
                            normalizer(meta["input"], torch.device(device)))
    return {"probs": logits.float().softmax(1).cpu().numpy(), "labels": d.labels,
            "images": d.images, "classes": list(meta["classes"])}


def confusion(pred: dict) -> np.ndarray:
    """(classes, classes) counts: rows true class, columns predicted."""
    from cnnlab.inference import confusion_matrix

    k = len(pred["classes"])
    return confusion_matrix(pred["labels"], pred["probs"].argmax(1), k)


def confusion_figure(cm: np.ndarray, classes: list[str], out, title: str = "") -> Path:
    """Row-normalised colours (the fraction of each true class), raw counts written in."""
    from cnnlab.viz.common import new_figure, save_figure

    k = len(classes)
    side = max(4.5, 0.5 * k + 2)
    fig = new_figure(side + 1, side)
    ax = fig.subplots()
    frac = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7 if k > 12 else 8,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=90 if max(map(len, classes)) > 3 else 0, fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).set_label("fraction of the true class")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(title or f"Confusion matrix: {cm.sum():,} test images, accuracy {acc:.2%}\n"
                 f"(numbers: counts)", fontsize=10)
    return save_figure(fig, out)


def most_confident_mistakes(pred: dict, n: int = 16) -> list[dict]:
    """The ``n`` wrong predictions with the highest predicted probability: [{"index", "true",
    "pred", "prob", "prob_true"}] (class indices), most confident first."""
    p, y = pred["probs"], pred["labels"]
    yhat = p.argmax(1)
    wrong = np.nonzero(yhat != y)[0]
    conf = p[wrong, yhat[wrong]]
    order = wrong[np.argsort(-conf, kind="stable")][:n]
    return [{"index": int(i), "true": int(y[i]), "pred": int(yhat[i]),
             "prob": float(p[i, yhat[i]]), "prob_true": float(p[i, y[i]])} for i in order]


def mistakes_figure(pred: dict, mistakes: list[dict], out, title: str = "") -> Path:
    from cnnlab.viz.common import new_figure, save_figure, to_display

    if not mistakes:
        raise UserError("mistakes: the model makes no mistakes on this test set")
    cls = pred["classes"]
    cols = min(8, len(mistakes))
    rows = int(np.ceil(len(mistakes) / cols))
    fig = new_figure(1.45 * cols, 1.75 * rows + 0.6)
    axes = np.array(fig.subplots(rows, cols, squeeze=False)).ravel()
    imgs = to_display(pred["images"][[m["index"] for m in mistakes]])
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
        ax.axis("off")
    for ax, m, im in zip(axes, mistakes, imgs):
        ax.axis("on")
        ax.imshow(im, interpolation="nearest")
        ax.set_title(f"true {cls[m['true']]}\npred {cls[m['pred']]} {m['prob']:.0%}",
                     fontsize=7, color="firebrick")
    n_wrong = int((pred["probs"].argmax(1) != pred["labels"]).sum())
    fig.suptitle(title or f"The {len(mistakes)} most confident mistakes ({n_wrong:,} wrong of "
                 f"{len(pred['labels']):,} test images)", fontsize=10)
    return save_figure(fig, out)
