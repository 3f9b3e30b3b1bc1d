"""Logits of a split in eval mode, and the metrics every epoch and the final test report."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import TrainingError


def normalizer(spec: dict, device):
    """``x -> (x - mean) / std`` per channel, from an input spec (0..1 scale)."""
    mean = torch.tensor(spec["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], device=device).view(1, -1, 1, 1)
    return lambda x: (x - mean) / std


def split_output(out):
    """(logits, [aux logits]) from a model's output: a tensor, a tuple, or a namedtuple."""
    if isinstance(out, torch.Tensor):
        return out, []
    if hasattr(out, "logits"):
        return out.logits, [a for a in (getattr(out, "aux_logits", None) or []) if a is not None]
    return out[0], [a for a in out[1:] if a is not None]


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, norm, batch_size: int = 1024,
                   channels_last: bool = False, amp_dtype=None) -> torch.Tensor:
    """Logits (N, classes) of uint8 images (N, C, H, W) in eval mode, batched."""
    was = model.training
    model.eval()
    outs = []
    for i in range(0, len(images), batch_size):
        x = norm(images[i:i + batch_size].float().div_(255))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outs.append(split_output(model(x))[0].float())
    model.train(was)
    return torch.cat(outs)


@torch.no_grad()
def predict_logits_stream(model: nn.Module, split, norm, device: torch.device,
                          batch_size: int = 1024, workers: int = 2, channels_last: bool = False,
                          amp_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N', classes), labels (N',)) of a streaming split, decoded in batches by
    ``workers`` processes; N' < N when unreadable files were skipped (with a warning)."""
    idx = np.arange(len(split))
    outs, ys = [], []
    for xb, yb in split.batches([idx[i:i + batch_size] for i in range(0, len(idx), batch_size)],
                                workers, pin_memory=device.type == "cuda"):
        if len(yb):
            outs.append(predict_logits(model, xb.to(device, non_blocking=True), norm,
                                       batch_size, channels_last, amp_dtype))
            ys.append(yb.to(device, non_blocking=True))
    if not outs:
        raise TrainingError("none of the evaluation images could be read")
    return torch.cat(outs), torch.cat(ys)


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 5) -> float | None:
    """Fraction of rows whose label is among the k largest logits (None if k >= classes)."""
    if logits.shape[1] <= k:
        return None
    return (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()


def metrics(logits: torch.Tensor, y: torch.Tensor, prefix: str) -> dict:
    """``{prefix_loss, prefix_acc, prefix_top5}`` of logits (N, K) against labels (N,)."""
    logits, y = torch.as_tensor(logits).float(), torch.as_tensor(y)
    return {f"{prefix}_loss": F.cross_entropy(logits, y).item(),
            f"{prefix}_acc": (logits.argmax(1) == y).float().mean().item(),
            f"{prefix}_top5": topk_accuracy(logits, y, 5)}
