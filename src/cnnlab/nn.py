"""Torch layers the lectures teach that ``torch.nn`` lacks: min pooling, stochastic pooling
(Zeiler & Fergus 2013) and k-max pooling. Autograd-compatible, and defined exactly like
their NumPy twins in :mod:`cnnlab.scratch.functional` (same tie rules, same draws), so the
two engines agree number for number.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def min_pool2d(x: torch.Tensor, kernel_size, stride=None) -> torch.Tensor:
    """Min over each window, ``-max_pool2d(-x)``: the gradient goes to the first minimum."""
    return -F.max_pool2d(-x, kernel_size, stride)


def _windows(x, kernel_size, stride):
    """``(N, C, H, W)`` -> ``(N, C, kh*kw, H', W')`` (offset (i, j) at index i*kw + j)."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    n, c, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    cols = F.unfold(x, (kh, kw), stride=(sh, sw))  # N x C*kh*kw x H'*W'
    return cols.view(n, c, kh * kw, ho, wo)


def stochastic_pool2d(x: torch.Tensor, kernel_size, stride=None, training: bool = True,
                      draws: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic pooling of non-negative ``x (N, C, H, W)`` -> ``(N, C, H', W')``.

    Training: with a uniform draw u per window (``draws (N, C, H', W')`` or from
    `generator`), pick the first element whose cumulative sum exceeds u * (window sum), i.e.
    element i with probability a_i / sum a. Inference: sum a_i^2 / sum a_i. All-zero
    windows give 0. Same rule as :func:`cnnlab.scratch.functional.stochastic_pool2d`.
    """
    if (x < 0).any():
        raise ValueError(f"stochastic_pool2d: inputs must be non-negative (apply ReLU first); "
                         f"x {tuple(x.shape)} has minimum {x.min().item():g}.")
    win = _windows(x, kernel_size, stride)
    cum = win.cumsum(2)
    total = cum[:, :, -1]
    if training:
        if draws is None:
            draws = torch.rand(total.shape, generator=generator, dtype=x.dtype, device=x.device)
        index = (cum > (draws.to(x.dtype) * total).unsqueeze(2)).to(torch.uint8).argmax(2)
        picked = win.gather(2, index.unsqueeze(2)).squeeze(2)
        return torch.where(total > 0, picked, torch.zeros_like(picked))
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, (win * win).sum(2) / safe, torch.zeros_like(total))


def kmax_pool(x: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` largest values of each map of ``x (N, C, H, W)``, in their original
    (row-major) order -> ``(N, C, k)``."""
    flat = x.flatten(2)
    if not 1 <= k <= flat.shape[2]:
        raise ValueError(f"kmax_pool: k must be in [1, H*W = {flat.shape[2]}] for x "
                         f"{tuple(x.shape)}, got {k}.")
    index = flat.topk(k, dim=2).indices.sort(dim=2).values
    return flat.gather(2, index)


class MinPool2d(nn.Module):
    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, 0

    def forward(self, x):
        return min_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class StochasticPool2d(MinPool2d):
    """``forward(x, draws=None)``; `draws` injects the uniform numbers (for parity tests)."""

    def forward(self, x, draws=None):
        return stochastic_pool2d(x, self.kernel_size, self.stride, self.training, draws)


class KMaxPool(nn.Module):
    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        return kmax_pool(x, self.k)

    def extra_repr(self):
        return f"k={self.k}"
