"""Where the model looks: Grad-CAM and the attribution methods beside it, as (N, H, W) maps
in [0, 1], and the overlay figure of ``cnnlab viz gradcam``.

Methods (``METHODS``):

- ``gradcam``, ``gradcam++``: :mod:`cnnlab.viz.gradcam` (Selvaraju et al. 2017; Chattopadhay
  et al. 2018).
- ``guided-gradcam``: guided backpropagation x Grad-CAM (Selvaraju et al. 2017, Sec. 3.2),
  Captum's ``GuidedGradCam``.
- ``saliency``: |d y_c / d x| (Simonyan et al. 2014), Captum's ``Saliency``.
- ``integrated-gradients``: (x - x0) x the mean gradient on the path from the baseline x0
  (Sundararajan et al. 2017), Captum's ``IntegratedGradients``, 32 steps; x0 = 0 in the
  normalized space, i.e. the training set's mean colour.
- ``occlusion``: the drop of y_c when a square patch is set to the baseline (Zeiler & Fergus
  2014), Captum's ``Occlusion``, window H/7 (at least 4), stride half the window.

Pixel-level maps are summed |attribution| over channels, scaled to [0, 1] by their 99th
percentile (clipped); occlusion keeps only positive drops.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import UserError
from cnnlab.viz.common import get_layer, train_mode_kept
from cnnlab.viz.gradcam import _targets, find_cam_layer, grad_cam

METHODS = ("gradcam", "gradcam++", "guided-gradcam", "saliency", "integrated-gradients",
           "occlusion")
NEEDS_SPATIAL = ("gradcam", "gradcam++", "guided-gradcam")


@contextmanager
def relu_not_inplace(model: nn.Module):
    """Captum's guided backprop hooks ReLU modules; an in-place ReLU breaks backward hooks,
    so they run out of place for the call (same values) and are put back afterwards."""
    changed = [m for m in model.modules() if isinstance(m, nn.ReLU) and m.inplace]
    for m in changed:
        m.inplace = False
    try:
        yield model
    finally:
        for m in changed:
            m.inplace = True


def _pixel_map(attr: torch.Tensor, positive_only: bool = False) -> np.ndarray:
    """(N, C, H, W) attributions -> (N, H, W) in [0, 1]: channel sum of |a| (or of a,
    clamped at 0), divided by its 99th percentile per image and clipped."""
    a = attr.detach().float()
    m = a.sum(1).clamp_min(0) if positive_only else a.abs().sum(1)
    q = torch.quantile(m.flatten(1), 0.99, dim=1).clamp_min(1e-12)[:, None, None]
    return (m / q).clamp(0, 1).cpu().numpy().astype(np.float32)


def _forward(model):
    from cnnlab.training.evaluation import split_output

    return lambda x: split_output(model(x))[0]


def attribute(model: nn.Module, x: torch.Tensor, method: str = "gradcam", target=None,
              layer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(maps (N, H, W) float32 in [0, 1], target classes (N,)) for ``method`` (``METHODS``).

    ``target`` as for :func:`cnnlab.viz.gradcam.grad_cam`; ``layer`` for the Grad-CAM
    family. Eval mode during the call; the model's mode and ReLUs are restored afterwards.
    """
    if method not in METHODS:
        raise UserError(f"--methods: unknown method {method!r}; expected {', '.join(METHODS)}")
    if method in ("gradcam", "gradcam++"):
        cam, cls, _ = grad_cam(model, x, target, layer, plus_plus=method == "gradcam++")
        return cam, cls
    import warnings

    import captum.attr as ca

    x = x.detach().clone().requires_grad_(True)
    with train_mode_kept(model), relu_not_inplace(model), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(require gradients|backward hooks).*")
        fwd = _forward(model)
        with torch.no_grad():
            cls = _targets(target, fwd(x))
        t = cls.tolist()
        if method == "guided-gradcam":
            name = layer or find_cam_layer(model, x)
            # Captum hooks the model's ReLU modules, so it needs the module itself (every zoo
            # model returns a plain logits tensor in eval mode)
            attr = ca.GuidedGradCam(model, get_layer(model, name)).attribute(x, target=t)
            return _pixel_map(attr), cls.cpu().numpy()
        if method == "saliency":
            attr = ca.Saliency(fwd).attribute(x, target=t, abs=True)
        elif method == "integrated-gradients":
            attr = ca.IntegratedGradients(fwd).attribute(x, torch.zeros_like(x), target=t,
                                                         n_steps=32, internal_batch_size=256)
        else:
            c, h, _ = x.shape[1:]
            win = max(4, h // 7)
            attr = ca.Occlusion(fwd).attribute(x, sliding_window_shapes=(c, win, win),
                                               strides=(c, max(1, win // 2), max(1, win // 2)),
                                               baselines=0.0, target=t,
                                               perturbations_per_eval=64)
            return _pixel_map(attr, positive_only=True), cls.cpu().numpy()
    return _pixel_map(attr), cls.cpu().numpy()


def gradcam_figure(images: np.ndarray, maps: dict[str, np.ndarray], classes: list[str],
                   targets: np.ndarray, probs: np.ndarray, labels: np.ndarray | None,
                   layer: str, out: str | Path) -> Path:
    """Rows: images; columns: the image, then each method's map over it (jet, alpha 0.5;
    colour scale 0 blue .. 1 red, stated in the colour bar).

    ``images`` uint8 (N, C, H, W); ``maps`` {method: (N, H, W)}; ``probs`` (N, classes)."""
    from cnnlab.viz.common import new_figure, save_figure, to_display

    disp = to_display(images)
    n, cols = len(disp), 1 + len(maps)
    fig = new_figure(1.9 * cols + 0.8, 2.0 * n + 0.6)
    axes = np.array(fig.subplots(n, cols, squeeze=False))
    im = None
    for i in range(n):
        c = int(targets[i])
        head = f"class {classes[c]} ({probs[i, c]:.0%})"
        if labels is not None:
            head = f"true {classes[labels[i]]}\n" + head
        axes[i, 0].imshow(disp[i], interpolation="nearest")
        axes[i, 0].set_ylabel(head, fontsize=8)
        for j, (name, m) in enumerate(maps.items(), start=1):
            axes[i, j].imshow(disp[i].mean(2), cmap="gray", interpolation="nearest")
            im = axes[i, j].imshow(m[i], cmap="jet", alpha=0.5, vmin=0, vmax=1,
                                   interpolation="bilinear")
            if i == 0:
                axes[i, j].set_title(name + (f"\n({layer})" if name in NEEDS_SPATIAL else ""),
                                     fontsize=9)
        if i == 0:
            axes[i, 0].set_title("input", fontsize=9)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    if im is not None:
        cb = fig.colorbar(im, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
        cb.set_label("attribution, scaled per image (0 .. 1)", fontsize=8)
    fig.suptitle("Where the model looks, for the class named on the left", fontsize=11)
    return save_figure(fig, out, dpi=64)  # noisy overlays compress badly: keep PNGs small


def deletion_curve(model: nn.Module, x: torch.Tensor, maps: np.ndarray, target,
                   steps: int = 20, baseline=0.0) -> np.ndarray:
    """The deletion metric (Petsiuk et al., RISE, BMVC 2018): the probability of each
    image's class as pixels are set to ``baseline`` (a float, or per-channel values (C,) in
    normalized space; RISE deletes to black, i.e. ``-mean / std``) in decreasing order of
    ``maps`` (N, H, W). Returns (N, steps + 1) probabilities; the area under the curve is
    smaller for a more faithful map."""
    from cnnlab.training.evaluation import split_output

    n, _, h, w = x.shape
    order = torch.from_numpy(np.argsort(-maps.reshape(n, -1), axis=1, kind="stable"))
    cls = torch.as_tensor(np.asarray(target)).long().view(-1).expand(n)
    base = torch.as_tensor(np.asarray(baseline, dtype=np.float32)).to(x).view(1, -1, 1, 1)
    curves = []
    with train_mode_kept(model), torch.no_grad():
        for s in range(steps + 1):
            k = int(round(s / steps * h * w))
            keep = torch.ones(n, h * w)
            keep.scatter_(1, order[:, :k], 0.0)
            k4 = keep.view(n, 1, h, w).to(x)
            xm = x * k4 + base * (1 - k4)
            p = split_output(model(xm))[0].float().softmax(1)
            curves.append(p.gather(1, cls.to(p.device)[:, None])[:, 0].cpu())
    return torch.stack(curves, 1).numpy()
