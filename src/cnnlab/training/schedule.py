"""Optimiser parameter groups and the learning-rate schedule, the same for both engines.

Groups: weight decay on weights only (biases and norm weights excluded unless
``decay_norm_and_bias``), and, with ``lr_backbone``, the non-head layers at a fraction of
the learning rate (``lr_scale``): pretrained features need smaller steps than a new head
(Yosinski et al. 2014; the "discriminative learning rates" of Howard & Ruder 2018).
Frozen parameters stay in their groups (without gradients the optimisers skip them), so the
optimiser state has the same layout before and after ``--unfreeze-at``, and on resume.
"""

from __future__ import annotations

import math

from cnnlab.config import TrainConfig
from cnnlab.errors import UserError


def param_groups(cfg: TrainConfig, named_params, head: set[str]) -> list[dict]:
    """Groups of ``(name, param)`` pairs (either engine) for the optimiser.

    ``head``: names of the classifier head's parameters (they get the full learning rate).
    Each group carries ``lr_scale`` (1, or ``cfg.lr_backbone`` for non-head parameters).
    """
    groups: dict[tuple, list] = {}
    for name, p in named_params:
        ndim = p.ndim if hasattr(p, "ndim") else p.data.ndim
        decay = cfg.decay_norm_and_bias or ndim > 1
        scale = 1.0 if (name in head or cfg.lr_backbone == 1.0) else cfg.lr_backbone
        groups.setdefault((decay, scale), []).append(p)
    return [{"params": ps, "weight_decay": cfg.weight_decay if decay else 0.0, "lr_scale": scale}
            for (decay, scale), ps in sorted(groups.items(), key=lambda kv: (-kv[0][0], -kv[0][1]))]


def build_optimizer(cfg: TrainConfig, groups: list[dict], lib):
    """``lib``: :mod:`cnnlab.optim` (torch tensors) or :mod:`cnnlab.scratch.optim` (NumPy)."""
    if cfg.optimizer == "sgd":
        return lib.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                       nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return lib.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw" and hasattr(lib, "AdamW"):
        return lib.AdamW(groups, lr=cfg.lr)
    have = "sgd, adam or adamw" if hasattr(lib, "AdamW") else "sgd or adam (numpy engine)"
    raise UserError(f"--optimizer {cfg.optimizer}: expected {have}")


def set_lr(opt, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)


def lr_factor(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total`` steps."""
    t = step / max(total, 1)
    if cfg.schedule == "onecycle":
        # Linear warm-up over the first 25% of training, then linear decay to zero: the
        # triangular one-cycle policy (Smith 2018), robust at high peak rates.
        return t / 0.25 if t < 0.25 else max(0.0, (1 - t) / 0.75)
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
    if cfg.schedule == "step":
        try:
            marks = [float(m) for m in cfg.milestones.split(",") if m.strip()]
        except ValueError as e:
            raise UserError(f"--milestones {cfg.milestones}: expected fractions like 0.5,0.75") from e
        return 0.1 ** sum(t >= m for m in marks)
    raise UserError(f"--schedule {cfg.schedule}: expected constant, step, cosine or onecycle")
