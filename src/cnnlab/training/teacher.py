"""A frozen teacher for knowledge distillation, fed through its own input spec.

The student's augmented batch (0..1 scale) is brought to what the teacher was trained on:
its channels (a grey batch is replicated to RGB; an RGB batch is averaged to grey), its
size (bilinear resize), its mean/std. So a ResNet trained on 32x32 CIFAR-10 can teach a
LeNet-5 that sees the same images, and a checkpoint of either engine can teach (both hold
torch's keys; the teacher always runs in torch, in eval mode, without gradients).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.errors import UserError
from cnnlab.training.evaluation import normalizer, split_output


class Teacher:
    def __init__(self, model: torch.nn.Module, meta: dict, path: Path, device):
        self.model = model.to(device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.meta, self.path = meta, path
        self.spec = meta["input"]
        self.norm = normalizer(self.spec, device)

    @torch.no_grad()
    def logits(self, x01: torch.Tensor) -> torch.Tensor:
        """Teacher logits (B, K) of the student's augmented batch x01 (B, C, H, W), 0..1."""
        self.model.eval()  # whatever the caller did, the teacher never trains (BN, dropout)
        x = x01.float()
        c = self.spec["channels"]
        if x.shape[1] != c:
            x = x.mean(1, keepdim=True) if c == 1 else x.expand(-1, c, -1, -1)
        if list(x.shape[2:]) != list(self.spec["size"]):
            x = F.interpolate(x, size=tuple(self.spec["size"]), mode="bilinear",
                              align_corners=False, antialias=True)
        return split_output(self.model(self.norm(x)))[0].float()

    def record(self) -> dict:
        """What the student's checkpoint says about its teacher."""
        return {"path": str(self.path), "sha256": _sha256(self.path), "model": self.meta["model"],
                "engine": self.meta.get("engine", "torch"), "epoch": self.meta.get("epoch"),
                "input": self.spec}


def load_teacher(source: str, classes: list[str], device) -> Teacher:
    """The teacher of ``--teacher SOURCE`` (a checkpoint or run directory); its classes must
    be the student's, by name and order. Raises UserError before anything is written."""
    from cnnlab.checkpoint import load_checkpoint, resolve_checkpoint
    from cnnlab.registry import get_model

    try:
        path = resolve_checkpoint(source)
        weights, meta = load_checkpoint(path)
    except UserError as e:
        raise UserError(f"--teacher {source}: {e}") from e
    if list(meta.get("classes", [])) != list(classes):
        raise UserError(f"--teacher {source}: its {_short(meta.get('classes'))} are not "
                        f"the student's {_short(classes)} (same names, same order expected)")
    try:
        model = get_model(meta["model"], **meta.get("model_kwargs", {}))
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        _ = meta["input"]["channels"], meta["input"]["size"], meta["input"]["mean"]
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"--teacher {source}: cannot build its model "
                        f"({str(e).splitlines()[0]})") from e
    return Teacher(model, meta, path.resolve(), device)


def _short(classes) -> str:
    classes = list(classes or [])
    more = ", ..." if len(classes) > 4 else ""
    return f"{len(classes)} classes [{', '.join(map(str, classes[:4]))}{more}]"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
