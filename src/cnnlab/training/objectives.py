"""The training objective: a weighted sum of terms, built once from the config.

The loop calls ``objective(output, batch)`` and never asks which terms there are, so label
smoothing, GoogLeNet's auxiliary classifiers and knowledge distillation compose without a
branch in the loop (the "loss object" of Keras and Lightning)::

    total = sum(weight_i * term_i(output, batch))

Each term has a torch form (autograd gives the gradient, torch engine) and, where the NumPy
engine can use it, ``numpy(logits, batch) -> (loss, dloss/dlogits)`` in closed form:

- cross-entropy with label smoothing (Szegedy et al. 2016, section 7): the target is
  ``q = (1 - eps) onehot(y) + eps / K``; ``d/dz = (softmax(z) - q) / B``.
- distillation (Hinton, Vinyals & Dean 2015, section 2): ``T^2 KL(p_t^T || p_s^T)`` with
  ``p^T = softmax(z / T)``; ``d/dz_s = T (p_s^T - p_t^T) / B``. The T^2 keeps the soft
  term's gradients the same size as the hard term's when T changes (their section 2).
- GoogLeNet's auxiliary classifiers (Szegedy et al. 2015): the same cross-entropy on each
  auxiliary head's logits, weighted 0.3 (torch engine only: no NumPy twin has them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.training.evaluation import split_output


@dataclass
class Batch:
    """One training step's inputs: ``x01`` the augmented images (B, C, H, W) on the 0..1
    scale, before the student's normalisation (a teacher applies its own); ``y`` (B,)."""

    x01: torch.Tensor
    y: torch.Tensor
    cache: dict = field(default_factory=dict)  # e.g. the teacher's logits, computed once


class CrossEntropy:
    name = "ce"

    def __init__(self, label_smoothing: float = 0.0):
        self.eps = label_smoothing

    def __call__(self, out, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(split_output(out)[0], batch.y, label_smoothing=self.eps)

    def numpy(self, logits: np.ndarray, batch: Batch) -> tuple[float, np.ndarray]:
        z = logits.astype(np.float64)
        y = np.asarray(batch.y)
        b, k = z.shape
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        q = np.full((b, k), self.eps / k)
        q[np.arange(b), y] += 1 - self.eps
        return float(-(q * logp).sum() / b), (np.exp(logp) - q) / b


class AuxiliaryCE:
    """Cross-entropy of the auxiliary heads' logits: those a model returns after the main
    logits (a tuple or namedtuple), and those GoogLeNet keeps from its last training-mode
    forward (``aux_outputs``); zero for a model without auxiliary heads."""

    name = "aux"

    def __init__(self, model, label_smoothing: float = 0.0):
        self.model, self.eps = model, label_smoothing

    def __call__(self, out, batch: Batch) -> torch.Tensor:
        aux = split_output(out)[1] + list(getattr(self.model, "aux_outputs", []))
        loss = torch.zeros((), device=batch.y.device)
        for a in aux:
            loss = loss + F.cross_entropy(a, batch.y, label_smoothing=self.eps)
        return loss


class Distillation:
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``, batch mean; the teacher is
    a :class:`cnnlab.training.teacher.Teacher` (frozen, eval mode, its own input spec)."""

    name = "kd"

    def __init__(self, teacher, temperature: float):
        self.teacher, self.T = teacher, float(temperature)

    def teacher_logits(self, batch: Batch) -> torch.Tensor:
        if "teacher" not in batch.cache:
            batch.cache["teacher"] = self.teacher.logits(batch.x01)
        return batch.cache["teacher"]

    def __call__(self, out, batch: Batch) -> torch.Tensor:
        s = split_output(out)[0].float() / self.T
        t = self.teacher_logits(batch).to(s.device).float() / self.T
        kl = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True,
                      reduction="batchmean")
        return self.T ** 2 * kl

    def numpy(self, logits: np.ndarray, batch: Batch) -> tuple[float, np.ndarray]:
        t = self.teacher_logits(batch).double().cpu().numpy() / self.T
        s = logits.astype(np.float64) / self.T
        log_ps, log_pt = _log_softmax(s), _log_softmax(t)
        b = len(s)
        loss = self.T ** 2 * float((np.exp(log_pt) * (log_pt - log_ps)).sum() / b)
        return loss, self.T * (np.exp(log_ps) - np.exp(log_pt)) / b


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


class Objective:
    """``sum(weight * term(output, batch))``; ``parts`` keeps each term's unweighted value
    (the loop logs ``ce``, the hard-label loss, whatever else is added)."""

    def __init__(self, terms: list[tuple[float, object]]):
        self.terms = list(terms)  # a zero weight still computes its part, for the log

    def __call__(self, out, batch: Batch) -> tuple[torch.Tensor, dict]:
        parts = {t.name: t(out, batch) for _, t in self.terms}
        total = sum(w * parts[t.name] for w, t in self.terms)
        return total, {k: v.detach() for k, v in parts.items()}

    def numpy(self, logits: np.ndarray, batch: Batch) -> tuple[float, dict, np.ndarray]:
        """(total loss, {term: loss}, dtotal/dlogits float32) for the NumPy engine."""
        total, grad, parts = 0.0, np.zeros(logits.shape), {}
        for w, t in self.terms:
            loss, g = t.numpy(logits, batch)
            parts[t.name] = loss
            total += w * loss
            grad += w * g
        return total, parts, grad.astype(np.float32)

    def describe(self) -> str:
        return " + ".join(f"{w:g} x {t.name}" for w, t in self.terms)


def build_objective(cfg, model, teacher=None) -> Objective:
    """The run's objective from its config: CE (label smoothing) [+ aux] [+ distillation]."""
    hard = 1.0 - cfg.kd_alpha if teacher is not None else 1.0
    terms = [(hard, CrossEntropy(cfg.label_smoothing))]
    if hasattr(model, "aux_outputs") or getattr(model, "aux_logits", False):
        terms.append((cfg.aux_weight, AuxiliaryCE(model, cfg.label_smoothing)))
    if teacher is not None:
        terms.append((cfg.kd_alpha, Distillation(teacher, cfg.kd_temperature)))
    return Objective(terms)
