"""Activation maps: the output of every stage of a network for one image (what CNN Explainer
shows for its small net, here for any model of the zoo).

    >>> names = [n for n, _ in stages(model)]          # ["features.0", "features.1", ...]
    >>> acts = capture_activations(model, x)           # {name: (N, C, H, W) tensor}

Stages: a plain stack (``features`` of LeNet-5, AlexNet, ZFNet, VGG) shows every child of
``features`` (conv, pool, activation); branched and residual nets (GoogLeNet, ResNet) show each
top-level stage (stem conv, pools, ``inception3a``..``inception5b``, ``layer1``..``layer4``),
because the inside of a block has no single map to show; norms, dropout and the head are left
out. Models without spatial layers (MLP, linear) show their hidden fully connected outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cnnlab.viz.common import get_layer, train_mode_kept
from cnnlab.viz.stages import stages  # noqa: F401 - re-exported: stages() has always lived here


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return getattr(out, "logits", None)


class ActivationRecorder:
    """Context manager holding forward hooks on named layers; ``outputs`` maps each name to a
    detached *clone* of its first output of the last forward pass (a clone because an
    in-place ReLU after a conv would otherwise overwrite the recorded map). Hooks are removed
    on exit, even after an error.

        with ActivationRecorder(model, ["features.0", "features.3"]) as rec:
            logits = model(x)
        rec.outputs["features.3"]   # (N, 16, 10, 10)
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self.model = model
        self.names = list(names)
        valid = [n for n, _ in stages(model)]
        self.modules = {n: get_layer(model, n, valid) for n in self.names}
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, name):
        def hook(_module, _inputs, out):
            t = _first_tensor(out)
            if t is not None and name not in self.outputs:  # first call of a shared module
                self.outputs[name] = t.detach().clone()  # dict order = call order
        return hook

    def __enter__(self):
        self.outputs = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []
        return False

    def ordered(self) -> dict[str, torch.Tensor]:
        """The outputs in forward (call) order; layers that did not run are left out."""
        return dict(self.outputs)


def capture_activations(model: nn.Module, x: torch.Tensor, layers=None) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` (default: :func:`stages`) for the normalized batch ``x``
    (N, C, H, W float, as :func:`cnnlab.viz.common.normalize` gives).

    Returns a dict ``{name: tensor}`` in forward (call) order: (N, C', H', W') for spatial layers, (N, F) for
    fully connected ones, detached clones on ``x``'s device. The forward pass runs in eval mode
    without gradients; the model's train/eval flags are restored and the hooks removed
    afterwards. An unknown name raises UserError listing the valid stage names.
    """
    names = [n for n, _ in stages(model)] if layers is None else list(layers)
    with train_mode_kept(model), torch.no_grad(), ActivationRecorder(model, names) as rec:
        model(x)
    return rec.ordered()


def capture_with_probs(model: nn.Module, x: torch.Tensor, layers=None):
    """(activations as :func:`capture_activations`, class probabilities (N, classes)) from one
    forward pass."""
    from cnnlab.training.evaluation import split_output

    names = [n for n, _ in stages(model)] if layers is None else list(layers)
    with train_mode_kept(model), torch.no_grad(), ActivationRecorder(model, names) as rec:
        logits = split_output(model(x))[0]
    return rec.ordered(), logits.float().softmax(1)


def channel_grid(a: np.ndarray, max_channels: int) -> np.ndarray:
    """(C, H, W) -> the first ``max_channels`` maps; a 1-D (F,) vector -> (1, 1, F)."""
    a = np.asarray(a)
    if a.ndim == 1:
        return a[None, None, :]
    return a[:max_channels]


def activations_figure(image: np.ndarray, acts: dict[str, torch.Tensor], probs: np.ndarray,
                       classes: list[str], out, channels: int = 8, title: str = "",
                       kinds: dict[str, str] | None = None):
    """Input -> one row per stage (the first ``channels`` maps of image 0, one colour scale
    per row, stated at its left) -> class probabilities. ``image`` uint8 (C, H, W);
    ``kinds`` {name: layer type} adds the type to each row's label."""
    from cnnlab.viz.common import new_figure, save_figure, to_display

    rows = len(acts) + 2
    fig = new_figure(1.25 * channels + 2.6, 1.3 * rows + 0.4)
    gs = fig.add_gridspec(rows, channels, hspace=0.35, wspace=0.08)
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(to_display(image[None])[0], interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_ylabel("input\n" + "x".join(map(str, image.shape)), fontsize=7, rotation=0,
                  ha="right", va="center")
    for r, (name, t) in enumerate(acts.items(), start=1):
        a = t[0].float().cpu().numpy()
        lo, hi = float(a.min()), float(a.max())
        kind = (kinds or {}).get(name, "")
        label = f"{name}\n{kind}\n{'x'.join(map(str, a.shape))}\n[{lo:.2g}, {hi:.2g}]"
        if a.ndim == 1:  # a fully connected layer: one strip
            ax = fig.add_subplot(gs[r, :])
            ax.imshow(a[None], aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
            _row_label(ax, label)
            continue
        for c in range(min(channels, a.shape[0])):
            ax = fig.add_subplot(gs[r, c])
            ax.imshow(a[c], cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                _row_label(ax, label)
    ax = fig.add_subplot(gs[rows - 1, :])
    k = min(len(classes), 10)
    top = np.argsort(-probs)[:k]
    ax.barh(range(k)[::-1], probs[top], color="tab:blue")
    ax.set_yticks(range(k)[::-1], [classes[i] for i in top], fontsize=7)
    for y, i in zip(range(k)[::-1], top[:3]):
        ax.text(probs[i] + 0.01, y, f"{probs[i]:.1%}", va="center", fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability (top classes)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.suptitle(title or f"Activation maps, first {channels} channels per stage; colour: "
                 f"viridis, one scale per row [min, max]", fontsize=10)
    return save_figure(fig, out)


def _row_label(ax, text: str) -> None:
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_ylabel(text, fontsize=7, rotation=0, ha="right", va="center")


from cnnlab.viz import callable_module  # noqa: E402

callable_module(__name__)  # `cnnlab.viz.activations(...)` draws the picture (cnnlab.viz)
