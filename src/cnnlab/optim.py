"""SGD (momentum, Nesterov), Adam and AdamW for the torch trainer, written out.

The update rules are torch.optim's, term for term (tests check them against torch.optim as
the oracle), and so is the interface the trainer uses: ``param_groups`` (a list of dicts
with ``params``, ``lr``, ``weight_decay``, ...), ``step()``, ``zero_grad()``,
``state_dict()`` / ``load_state_dict()`` in torch's layout (parameters as integer indices).

Why not torch.optim itself: every torch.optim optimizer imports ``torch._dynamo`` on first
use (its methods are wrapped by ``torch._disable_dynamo``), which costs about 1.3 s on a
2-core CPU, more than an epoch of LeNet-5 on the digits. These are short and readable, and
their step runs as a few ``torch._foreach_*`` calls over all parameters (one kernel launch
each on GPU), like torch.optim's default on CUDA.

The rules, with g the gradient, p the parameter, lr the learning rate, wd the weight decay:

- SGD:   d = g + wd*p;  b = mu*b + d (b = d on the first step);
         p -= lr * (d + mu*b) with Nesterov, p -= lr * b without.
- Adam:  g = g + wd*p (L2 in the gradient);  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
         p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).
- AdamW: p *= 1 - lr*wd (decoupled decay, Loshchilov & Hutter 2019), then Adam without
         the L2 term.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Optimizer:
    """Parameter groups, per-parameter state, zero_grad and torch-layout state dicts."""

    def __init__(self, params: Iterable, defaults: dict):
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        seen: set[int] = set()
        for g in groups:
            params_g = list(g["params"])
            if any(id(p) in seen for p in params_g):
                raise ValueError("a parameter appears in more than one parameter group")
            seen.update(id(p) for p in params_g)
            self.param_groups.append({**self.defaults, **g, "params": params_g})
        self.state: dict[torch.Tensor, dict] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def _groups_with_grad(self):
        """(group, its parameters that have a gradient) for each group with any."""
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if params:
                yield g, params

    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [indices]}]}``
        (torch.optim's layout; tensors are the live state, as torch returns them)."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            ids = [index.setdefault(id(p), len(index)) for p in g["params"]]
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, sd: dict) -> None:
        groups = sd["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)):
            raise ValueError("optimizer state does not match this model's parameter groups")
        by_index = {}
        for saved, group in zip(groups, self.param_groups):
            by_index.update(zip(saved["params"], group["params"]))
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {}
        for i, s in sd["state"].items():
            p = by_index[int(i)]
            self.state[p] = {k: (v.to(device=p.device, dtype=p.dtype if k != "step" else v.dtype)
                                 if isinstance(v, torch.Tensor) else v) for k, v in s.items()}


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and Nesterov momentum (torch.optim.SGD's
    rule, without dampening)."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0 (got {lr}, "
                             f"{momentum}, {weight_decay})")
        if nesterov and momentum <= 0:
            raise ValueError("SGD: Nesterov momentum needs momentum > 0")
        super().__init__(params, {"lr": lr, "momentum": momentum,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    @torch.no_grad()
    def step(self) -> None:
        for g, params in self._groups_with_grad():
            grads = [p.grad for p in params]
            if g["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=g["weight_decay"])
            mu = g["momentum"]
            if mu:
                bufs, old_b, old_d = [], [], []
                for p, d in zip(params, grads):
                    s = self.state.setdefault(p, {})
                    if "momentum_buffer" in s:
                        old_b.append(s["momentum_buffer"])
                        old_d.append(d)
                    else:  # first step: the buffer starts as the gradient itself
                        s["momentum_buffer"] = d.detach().clone()
                    bufs.append(s["momentum_buffer"])
                if old_b:
                    torch._foreach_mul_(old_b, mu)
                    torch._foreach_add_(old_b, old_d)
                grads = torch._foreach_add(grads, bufs, alpha=mu) if g["nesterov"] else bufs
            torch._foreach_add_(params, grads, alpha=-g["lr"])


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015); ``decoupled=True`` is AdamW (weight decay applied to the
    parameters, not added to the gradient)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{type(self).__name__}: expected lr, eps, weight_decay >= 0 and "
                             f"betas in [0, 1) (got lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay})")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})
        self.decoupled = decoupled

    @torch.no_grad()
    def step(self) -> None:
        for g, params in self._groups_with_grad():
            b1, b2 = g["betas"]
            lr, wd = g["lr"], g["weight_decay"]
            for p in params:
                if "step" not in self.state.setdefault(p, {}):
                    self.state[p].update(step=torch.zeros((), dtype=torch.float32),
                                         exp_avg=torch.zeros_like(p),
                                         exp_avg_sq=torch.zeros_like(p))
            st = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            if wd and self.decoupled:
                torch._foreach_mul_(params, 1 - lr * wd)
            elif wd:
                grads = torch._foreach_add(grads, params, alpha=wd)
            m = [s["exp_avg"] for s in st]
            v = [s["exp_avg_sq"] for s in st]
            torch._foreach_lerp_(m, grads, 1 - b1)
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
            for s in st:
                s["step"] += 1
            # every parameter of a group has taken the same number of steps except right
            # after a parameter gains its first gradient: group them by step count
            by_t: dict[int, list[int]] = {}
            for i, s in enumerate(st):
                by_t.setdefault(int(s["step"].item()), []).append(i)
            for t, ix in by_t.items():
                c1, c2 = 1 - b1 ** t, 1 - b2 ** t
                denom = torch._foreach_sqrt([v[i] for i in ix])
                torch._foreach_div_(denom, math.sqrt(c2))
                torch._foreach_add_(denom, g["eps"])
                torch._foreach_addcdiv_([params[i] for i in ix], [m[i] for i in ix], denom,
                                        value=-lr / c1)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
