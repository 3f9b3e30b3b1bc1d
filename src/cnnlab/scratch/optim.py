"""Optimisers of the NumPy engine with ``torch.optim``'s argument names and update rules.

They update :class:`cnnlab.scratch.nn.Parameter` s in place from their ``.grad``; parameters
without a gradient are skipped, as in torch. ``param_groups[0]["lr"]`` can be changed
between steps (a learning-rate schedule), and ``state_dict()`` / ``load_state_dict()``
round-trip the momentum buffers for resuming.
"""

from __future__ import annotations

import numpy as np


class Optimizer:
    def __init__(self, params, defaults: dict):
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list.")
        if defaults.get("lr", 0) < 0:
            raise ValueError(f"{type(self).__name__}: invalid learning rate lr={defaults['lr']}.")
        if not isinstance(params[0], dict):  # a plain list, or torch-style groups of dicts
            params = [{"params": params}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in params]
        self.state: dict[int, dict] = {}  # index of the parameter -> its buffers

    def _params(self):
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, group, p
                i += 1

    def zero_grad(self) -> None:
        for _, _, p in self._params():
            p.grad = None

    def state_dict(self) -> dict:
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"state": {i: {k: (v.copy() if isinstance(v, np.ndarray) else v)
                              for k, v in s.items()} for i, s in self.state.items()},
                "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {int(i): {k: (np.array(v) if k != "step" else v) for k, v in s.items()}
                      for i, s in state_dict["state"].items()}


class SGD(Optimizer):
    """SGD with momentum (torch's formulation: ``buf = momentum * buf + (1 - dampening) * g``,
    ``p -= lr * buf``; Nesterov uses ``g + momentum * buf``), L2 ``weight_decay``."""

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0.")
        super().__init__(params, {"lr": lr, "momentum": momentum, "dampening": dampening,
                                  "weight_decay": weight_decay, "nesterov": nesterov})

    def step(self) -> None:
        for i, g, p in self._params():
            if p.grad is None:
                continue
            d = p.grad + g["weight_decay"] * p.data if g["weight_decay"] else p.grad
            if g["momentum"]:
                st = self.state.setdefault(i, {})
                buf = st.get("momentum_buffer")
                if buf is None:
                    buf = st["momentum_buffer"] = np.array(d, copy=True)
                else:
                    buf *= g["momentum"]
                    buf += (1 - g["dampening"]) * d
                d = d + g["momentum"] * buf if g["nesterov"] else buf
            p.data -= (g["lr"] * d).astype(p.data.dtype, copy=False)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) exactly as ``torch.optim.Adam`` (bias-corrected moments,
    ``eps`` added after the square root, L2 ``weight_decay`` added to the gradient)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})

    def step(self) -> None:
        for i, g, p in self._params():
            if p.grad is None:
                continue
            b1, b2 = g["betas"]
            grad = p.grad + g["weight_decay"] * p.data if g["weight_decay"] else p.grad
            st = self.state.setdefault(i, {"step": 0, "exp_avg": np.zeros_like(p.data),
                                           "exp_avg_sq": np.zeros_like(p.data)})
            st["step"] += 1
            m, v = st["exp_avg"], st["exp_avg_sq"]
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * grad * grad
            bc1, bc2 = 1 - b1 ** st["step"], 1 - b2 ** st["step"]
            denom = np.sqrt(v) / np.sqrt(bc2) + g["eps"]
            p.data -= (g["lr"] / bc1 * m / denom).astype(p.data.dtype, copy=False)
