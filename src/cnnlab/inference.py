"""Load a trained model from a checkpoint; evaluate it; predict on image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from cnnlab.checkpoint import load_checkpoint, resolve_checkpoint
from cnnlab.data import load_data
from cnnlab.errors import UserError
from cnnlab.registry import get_model


def load_model(checkpoint: str | Path, engine: str = "torch", device: str = "cpu"):
    """(model in eval mode, metadata) from a checkpoint written by either engine."""
    weights, meta = load_checkpoint(checkpoint)
    try:
        model = get_model(meta["model"], engine=engine, **meta.get("model_kwargs", {}))
    except (KeyError, TypeError) as e:
        raise UserError(f"{checkpoint}: checkpoint names a model cnnlab cannot build ({e})") from e
    if engine == "torch":
        sd = {k: torch.from_numpy(v) for k, v in weights.items()}
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise UserError(f"{checkpoint}: weights do not fit model {meta['model']!r} "
                            f"({str(e).splitlines()[0]})") from e
        model.to(device).eval()
    else:
        model.load_state_dict(weights)
        model.eval()
    return model, meta


def _norm(spec: dict, device):
    from cnnlab.train import normalizer

    return normalizer(spec, device)


@dataclass
class EvalResult:
    accuracy: float
    top5: float | None
    loss: float
    per_class: list[tuple[str, float, int]]  # (class, accuracy, count)
    confusion: np.ndarray  # (classes, classes): rows true, columns predicted
    classes: list[str]

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "top5": self.top5, "loss": self.loss,
                "per_class": [{"class": c, "accuracy": a, "count": n} for c, a, n in self.per_class],
                "confusion": self.confusion.tolist(), "classes": self.classes}

    def format(self) -> str:
        lines = [f"test accuracy {self.accuracy:.2%}" + (f"  top-5 {self.top5:.2%}" if self.top5
                 is not None else "") + f"  loss {self.loss:.4f}  ({int(self.confusion.sum())} images)",
                 "", "per-class accuracy:"]
        w = max(len(c) for c in self.classes)
        for c, a, k in self.per_class:
            lines.append(f"  {c:>{w}}  {a:7.2%}  ({k})")
        lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
        cw = max(w, len(str(int(self.confusion.max()))), 3)
        short = [c[:cw] for c in self.classes]
        lines.append(" " * (w + 2) + " ".join(f"{c:>{cw}}" for c in short))
        for c, row in zip(self.classes, self.confusion):
            lines.append(f"{c:>{w}}  " + " ".join(f"{v:>{cw}d}" for v in row))
        return "\n".join(lines)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def evaluate(checkpoint: str | Path, data: str | None = None, device: str = "cpu",
             val_split: float | None = None, in_memory: str = "auto",
             workers: int = 2) -> EvalResult:
    """Accuracy, top-5, per-class accuracy and confusion matrix on ``data``'s test split
    (default: the data the checkpoint was trained on).

    ``in_memory`` as for training (:func:`cnnlab.data.load_data`): an image folder too big
    for memory ("no", or "auto" over the budget) is streamed from disk in batches decoded
    by ``workers`` processes; the results are the same as in memory, batch for batch.
    """
    if workers < 0:
        raise UserError(f"--workers {workers}: expected 0 or more worker processes")
    model, meta = load_model(checkpoint, device=device)
    spec = meta["input"]
    cfg = meta.get("config", {})
    source = data or cfg.get("data", "digits")
    if val_split is None:
        val_split = cfg.get("val_split")
    splits = load_data(source, val_split=val_split, seed=cfg.get("seed", 0), progress=False,
                       in_memory=in_memory)
    test = splits.test
    if list(test.classes) != list(meta["classes"]):
        raise UserError(f"--data {source}: classes {test.classes} differ from the checkpoint's "
                        f"{meta['classes']}")
    if tuple(test.shape) != (spec["channels"], *spec["size"]):
        raise UserError(f"--data {source}: images are {'x'.join(map(str, test.shape))}, the "
                        f"model expects {spec['channels']}x{spec['size'][0]}x{spec['size'][1]}")
    from cnnlab.train import _streaming, predict_logits, predict_logits_stream, topk_accuracy

    norm = _norm(spec, device)
    if _streaming(test):  # decoded batch by batch; unreadable files skipped with a warning
        logits, y = predict_logits_stream(model, test, norm, torch.device(device), workers=workers)
    else:
        y = torch.from_numpy(test.labels).to(device)
        logits = predict_logits(model, torch.from_numpy(test.images).to(device), norm)
    k = len(meta["classes"])
    pred = logits.argmax(1)
    top5 = topk_accuracy(logits, y, 5)
    cm = confusion_matrix(y.cpu().numpy(), pred.cpu().numpy(), k)
    per = [(c, cm[i, i] / max(cm[i].sum(), 1), int(cm[i].sum())) for i, c in enumerate(meta["classes"])]
    return EvalResult((pred == y).float().mean().item(), top5, F.cross_entropy(logits, y).item(),
                      per, cm, list(meta["classes"]))


def load_image(path: str | Path, spec: dict) -> np.ndarray:
    """Any PNG/JPEG/BMP, grayscale or colour -> uint8 (C, H, W) as the model expects.

    Converted to the model's channels (L or RGB) and resized to its input size (bilinear),
    as stored in the checkpoint's input spec.
    """
    p = Path(path)
    try:
        with Image.open(p) as im:
            im.load()
            im = im.convert("L" if spec["channels"] == 1 else "RGB")
            h, w = spec["size"]
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            a = np.asarray(im)
    except FileNotFoundError as e:
        raise UserError(f"{p}: no such image file") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{p}: not a readable image (expected PNG, JPEG or BMP; {e})") from e
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def predict(checkpoint: str | Path, images: list[str | Path], topk: int = 3,
            device: str = "cpu") -> list[dict]:
    """Top-k classes with probabilities for each image file."""
    model, meta = load_model(checkpoint, device=device)
    spec = meta["input"]
    batch = np.stack([load_image(p, spec) for p in images])
    from cnnlab.train import predict_logits

    probs = predict_logits(model, torch.from_numpy(batch).to(device), _norm(spec, device)).softmax(1)
    k = min(topk, probs.shape[1])
    top = probs.topk(k, 1)
    out = []
    for p, vals, idx in zip(images, top.values.tolist(), top.indices.tolist()):
        out.append({"image": str(p), "top": [{"class": meta["classes"][i], "probability": v}
                                             for v, i in zip(vals, idx)]})
    return out


__all__ = ["load_model", "evaluate", "predict", "load_image", "EvalResult", "resolve_checkpoint"]
