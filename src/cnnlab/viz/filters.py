"""Learned filters of a conv layer as a grid, and a linear classifier's class templates.

Filters (``conv_filters``): the weight (K, C, kh, kw) of a layer. A first layer on RGB input
is shown in colour (each filter min-max scaled to [0, 1] on its own, as AlexNet's Figure 3);
one input channel in gray; deeper layers as a grid of filters x input channels, each filter
scaled symmetrically around 0 (red +, blue -).

Templates (``class_templates``): the lectures' "a linear classifier learns one template per
class" (CS231n): row k of ``fc.weight`` (classes, C*H*W) reshaped to (C, H, W). For an MLP
(not linear in the pixels) the template is the mean input gradient of the class score over
images of the class, the linear model that the MLP is around them (Simonyan et al. 2014's
class saliency, averaged). Each template is compared with its class's mean training image by
Pearson correlation, raw and after subtracting the mean of all images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import UserError
from cnnlab.viz.common import get_layer, train_mode_kept


def conv_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def conv_filters(model: nn.Module, layer: str | None = None) -> tuple[np.ndarray, str]:
    """(weight (K, C, kh, kw) float32, layer name); ``layer`` a Conv2d or a module holding
    one (``conv1`` of GoogLeNet is conv + ReLU); default ``feature_layers["first_conv"]`` or
    the first Conv2d."""
    convs = conv_layers(model)
    if not convs:
        raise UserError(f"{type(model).__name__} has no convolution layer: no filters to show "
                        f"(for the linear model and the MLP use `cnnlab viz templates`)")
    name = layer or (getattr(model, "feature_layers", None) or {}).get("first_conv") or convs[0]
    m = get_layer(model, name, convs)
    if not isinstance(m, nn.Conv2d):
        inner = [n for n, c in m.named_modules() if isinstance(c, nn.Conv2d)]
        if len(inner) != 1:
            raise UserError(f"--layer {name}: not a convolution; conv layers: {', '.join(convs)}")
        name, m = f"{name}.{inner[0]}", m.get_submodule(inner[0])
    return m.weight.detach().float().cpu().numpy(), name


def filters_figure(w: np.ndarray, name: str, out, max_filters: int = 64,
                   max_inputs: int = 8) -> Path:
    """The grid of ``w`` (K, C, kh, kw) described in the module docstring."""
    from cnnlab.viz.common import new_figure, save_figure

    k, c, kh, kw = w.shape
    kk = min(k, max_filters)
    if c in (1, 3):
        cols = int(np.ceil(np.sqrt(kk)))
        rows = int(np.ceil(kk / cols))
        fig = new_figure(0.9 * cols + 0.4, 0.9 * rows + 0.9)
        axes = np.array(fig.subplots(rows, cols, squeeze=False)).ravel()
        for i, ax in enumerate(axes):
            ax.set_xticks([]), ax.set_yticks([])
            if i >= kk:
                ax.axis("off")
                continue
            f = w[i].transpose(1, 2, 0)
            f = (f - f.min()) / (np.ptp(f) or 1.0)
            ax.imshow(f if c == 3 else f[..., 0], cmap=None if c == 3 else "gray",
                      interpolation="nearest")
        scale = "colour: each filter min-max scaled to [0, 1]" if c == 3 else \
            "gray: each filter min-max scaled (black min, white max)"
    else:
        ci = min(c, max_inputs)
        kk = min(kk, 16)
        fig = new_figure(0.75 * ci + 1.2, 0.75 * kk + 1.0)
        axes = np.array(fig.subplots(kk, ci, squeeze=False))
        for i in range(kk):
            lim = np.abs(w[i]).max() or 1.0
            for j in range(ci):
                ax = axes[i, j]
                im = ax.imshow(w[i, j] / lim, cmap="RdBu_r", vmin=-1, vmax=1,
                               interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(f"{i}", fontsize=7, rotation=0, ha="right", va="center")
                if i == 0:
                    ax.set_title(f"in {j}", fontsize=7)
        fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02) \
            .set_label("weight / max |weight| of the filter", fontsize=7)
        scale = f"filters 0..{kk - 1} (rows) x input channels 0..{ci - 1}; red +, blue -"
    fig.suptitle(f"{name}: {k} filters of {c}x{kh}x{kw} (shown: {kk})\n{scale}", fontsize=9)
    return save_figure(fig, out)


# ----------------------------------------------------------------------------------------
def class_templates(model: nn.Module, x: torch.Tensor | None = None,
                    y: np.ndarray | None = None) -> np.ndarray:
    """(classes, C, H, W) templates: ``fc.weight`` rows for the linear classifier; for an
    MLP the mean input gradient of each class score over the images ``x`` (N, C, H, W,
    normalized) of that class (``y`` (N,) labels), which it needs."""
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear) and not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        if x is None:
            raise UserError("templates: the input shape is needed to reshape fc.weight")
        return fc.weight.detach().float().cpu().numpy().reshape(-1, *x.shape[1:])
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise UserError(f"templates: {type(model).__name__} is a CNN; templates are defined for "
                        f"the linear model and the MLP (use `cnnlab viz filters` for a CNN)")
    if x is None or y is None:
        raise UserError("templates: an MLP's templates need images of each class")
    k = model.classifier[-1].out_features
    out = np.zeros((k, *x.shape[1:]), np.float32)
    with train_mode_kept(model), torch.enable_grad():
        for c in range(k):
            xc = x[torch.as_tensor(y) == c][:256].clone().requires_grad_(True)
            if len(xc):
                (g,) = torch.autograd.grad(model(xc)[:, c].sum(), xc)
                out[c] = g.mean(0).cpu().numpy()
    return out


def class_means(images: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(per-class mean images (k, ...), mean of all images) in float64, one class at a time
    (CIFAR-10's 50,000 x 3072 values never become one float64 array)."""
    means = np.stack([images[labels == c].mean(0, dtype=np.float64) for c in range(k)])
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    return means, np.tensordot(counts / counts.sum(), means, axes=1)


def template_correlations(templates: np.ndarray, means: np.ndarray, mu: np.ndarray) -> dict:
    """Pearson correlation of each template (K, C, H, W) with its class's mean image
    ``means[k]``, raw and centred (minus ``mu``, the mean of all images), and the fraction
    of classes whose template correlates best with its own class mean (centred)."""
    k = len(templates)
    t = templates.reshape(k, -1).astype(np.float64)
    m = means.reshape(k, -1)

    def corr(a, b):
        a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
        a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
        b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
        return a @ b.T  # K x K

    raw, cen = corr(t, m), corr(t, m - mu.reshape(1, -1))
    return {"raw": np.diag(raw).tolist(), "centred": np.diag(cen).tolist(),
            "own_class_best": float((cen.argmax(1) == np.arange(k)).mean()),
            "matrix_centred": cen.tolist()}


def templates_figure(templates: np.ndarray, classes: list[str], corr: dict | None, out,
                     title: str) -> Path:
    """One image per class: colour templates min-max scaled per class (as CS231n shows them),
    gray ones diverging around 0."""
    from cnnlab.viz.common import new_figure, save_figure

    k, c = templates.shape[:2]
    cols = min(k, 10)
    rows = int(np.ceil(k / cols))
    fig = new_figure(1.4 * cols, 1.7 * rows + 0.7)
    axes = np.array(fig.subplots(rows, cols, squeeze=False)).ravel()
    for i, ax in enumerate(axes):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= k:
            ax.axis("off")
            continue
        t = templates[i]
        if c == 3:
            ax.imshow((t - t.min()).transpose(1, 2, 0) / (np.ptp(t) or 1.0))
        else:
            lim = np.abs(t).max() or 1.0
            ax.imshow(t[0], cmap="RdBu_r", vmin=-lim, vmax=lim)
        r = f"\nr={corr['centred'][i]:.2f}" if corr else ""
        ax.set_title(f"{classes[i]}{r}", fontsize=8)
    scale = "each template min-max scaled to [0, 1] in colour" if c == 3 else \
        "red +, blue -, scaled per class"
    note = "; r: correlation with the class's mean image minus the mean of all" if corr else ""
    fig.suptitle(f"{title}\n{scale}{note}", fontsize=9)
    return save_figure(fig, out)


from cnnlab.viz import callable_module  # noqa: E402

callable_module(__name__)  # `cnnlab.viz.filters(...)` draws the picture (cnnlab.viz)
