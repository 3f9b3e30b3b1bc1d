"""Grad-CAM (Selvaraju et al., "Grad-CAM: Visual explanations from deep networks via
gradient-based localization", ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018).

For a layer with maps A (N, K, h, w) and the class score y_c (the logit, before softmax):

    Grad-CAM:   w_k = mean_ij dy_c/dA_kij;            cam = ReLU(sum_k w_k A_k)
    Grad-CAM++: w_k = sum_ij a_kij ReLU(dy_c/dA_kij),  a_kij = g^2 / (2 g^2 + sum_ab A_kab g^3)

(g = dy_c/dA_kij; the closed form of the paper's Eq. 19 for an exponential score). Each map
is upsampled (bilinear) to the input size and scaled to [0, 1] per image.

    >>> cam, classes, layer = grad_cam(model, x)            # auto layer, predicted classes
    >>> with GradCAM(model, "layer3") as gc:                 # hooks held for many batches
    ...     cam, classes = gc(x, target=3)

The layer is ``model.feature_layers["last_conv"]`` when the model names one (every CNN of the
zoo: LeNet-5 ``features.3``, VGG's last conv, GoogLeNet ``inception5b``, ResNet ``layer4`` /
``layer3``), else the last module with a spatial (N, C, H, W) output of a forward pass. The MLP
and the linear classifier have none: a UserError says so.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import UserError
from cnnlab.viz.activations import _first_tensor, stages
from cnnlab.viz.common import check_class, get_layer, train_mode_kept


def _no_spatial(model: nn.Module) -> UserError:
    return UserError(f"Grad-CAM needs a layer with a spatial (C, H, W) output, and "
                     f"{type(model).__name__} has none (it flattens the image first); use "
                     f"saliency, integrated gradients or occlusion instead")


def find_cam_layer(model: nn.Module, x: torch.Tensor | None = None) -> str:
    """The layer Grad-CAM uses by default: ``feature_layers["last_conv"]``, else (given an
    example batch ``x``) the last module whose output is (N, C, H, W) with H*W > 1."""
    name = (getattr(model, "feature_layers", None) or {}).get("last_conv")
    if name:
        return name
    if x is None:
        raise _no_spatial(model)
    found: list[str] = []
    handles = [m.register_forward_hook(
        lambda _m, _i, o, n=n: found.append(n) if (t := _first_tensor(o)) is not None
        and t.dim() == 4 and t.shape[-1] * t.shape[-2] > 1 else None)
        for n, m in model.named_modules() if n]
    try:
        with train_mode_kept(model), torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    if not found:
        raise _no_spatial(model)
    return found[-1]


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    n, k = logits.shape
    if target is None:
        return logits.argmax(1)
    t = [target] * n if np.ndim(target) == 0 else list(np.asarray(target).ravel())
    if len(t) != n:
        raise UserError(f"--class: {len(t)} classes given for {n} images")
    return torch.tensor([check_class(int(v), k) for v in t], device=logits.device)


def upsample_normalize(cam: torch.Tensor, size) -> np.ndarray:
    """(N, h, w) nonnegative maps -> (N, H, W) float32 numpy, bilinear to ``size`` and
    min-max scaled to [0, 1] per image (all zeros where the map is constant)."""
    up = F.interpolate(cam[:, None].float(), size=tuple(size), mode="bilinear",
                       align_corners=False)[:, 0]
    lo = up.amin((1, 2), keepdim=True)
    rng = up.amax((1, 2), keepdim=True) - lo
    return torch.where(rng > 0, (up - lo) / rng.clamp_min(1e-12), torch.zeros_like(up)) \
        .detach().cpu().numpy().astype(np.float32)


class GradCAM:
    """Context manager holding one forward hook on ``layer`` (auto when None; see
    :func:`find_cam_layer`); calling it gives (cam (N, H, W) in [0, 1], classes (N,)).

    The hook replaces the layer's output by a clone for the rest of the network, so an
    in-place ReLU after it cannot overwrite the maps Grad-CAM weighs. Every call runs in eval
    mode and restores the model's train/eval flags; ``__exit__`` removes the hook.
    """

    def __init__(self, model: nn.Module, layer: str | None = None,
                 example: torch.Tensor | None = None, plus_plus: bool = False):
        self.model, self.plus_plus = model, plus_plus
        self.layer = layer or find_cam_layer(model, example)
        self.module = get_layer(model, self.layer)
        self._handle = None
        self._maps: torch.Tensor | None = None

    def _hook(self, _m, _i, out):
        t = _first_tensor(out)
        if self._maps is None and t is not None:
            self._maps = t
            return t.clone() if isinstance(out, torch.Tensor) else out
        return None

    def __enter__(self):
        self._handle = self.module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._maps = None
        return False

    def maps_and_grads(self, x: torch.Tensor, target=None):
        """(A (N, K, h, w), dy_c/dA, classes (N,), logits (N, classes)), all detached."""
        from cnnlab.training.evaluation import split_output

        if self._handle is None:
            raise RuntimeError("GradCAM must be used inside a `with` block")
        self._maps = None
        with train_mode_kept(self.model), torch.enable_grad():
            logits = split_output(self.model(x))[0]
            a = self._maps
            if a is None or a.dim() != 4:
                shape = None if a is None else tuple(a.shape)
                self._maps = None
                raise UserError(f"--layer {self.layer}: Grad-CAM needs a layer with a spatial "
                                f"(N, C, H, W) output, this one gives {shape}")
            cls = _targets(target, logits)
            score = logits.gather(1, cls[:, None]).sum()  # images are independent in eval mode
            (g,) = torch.autograd.grad(score, a)
        self._maps = None
        return a.detach(), g.detach(), cls, logits.detach()

    def __call__(self, x: torch.Tensor, target=None):
        a, g, cls, _ = self.maps_and_grads(x, target)
        if self.plus_plus:
            g2, g3 = g.pow(2), g.pow(3)
            denom = 2 * g2 + a.sum((2, 3), keepdim=True) * g3
            alpha = torch.where(g != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)),
                                torch.zeros_like(g))
            w = (alpha * F.relu(g)).sum((2, 3))  # N x K
        else:
            w = g.mean((2, 3))  # N x K: global-average-pooled gradients
        cam = F.relu((w[:, :, None, None] * a).sum(1))  # N x h x w
        return upsample_normalize(cam, x.shape[-2:]), cls.cpu().numpy()


def grad_cam(model: nn.Module, x: torch.Tensor, target=None, layer: str | None = None,
             plus_plus: bool = False):
    """Grad-CAM of ``model`` for the normalized batch ``x`` (N, C, H, W).

    Args:
        target: None (each image's predicted class), an int (one class for all) or a
            sequence of N ints.
        layer: a module name (``model.get_submodule`` path); None picks it (module docstring).
        plus_plus: Grad-CAM++ weights instead of mean gradients.
    Returns:
        ``(cam, target_classes, layer_name)``: cam float32 numpy (N, H, W) in [0, 1] at the
        input size, target_classes int numpy (N,), the layer's name.
    Raises UserError for an unknown layer (listing valid names), a class out of range, or a
    model with no spatial layer (the MLP). The model's train/eval mode is restored and the
    hook removed after the call.
    """
    with GradCAM(model, layer, example=x, plus_plus=plus_plus) as gc:
        cam, cls = gc(x, target)
    return cam, cls, gc.layer


def valid_layers(model: nn.Module) -> list[str]:
    """Stage names to suggest for ``--layer``."""
    return [n for n, _ in stages(model)]


def class_targets(target, classes: list[str]):
    """``--class`` / ``target`` in any form -> None, one index, or a list of indices.

    ``target``: None (each image's predicted class); an int; a class name (``"cat"``); a
    comma list of names or indices, one per image (``"cat,dog"``, ``"3,5"``); or a sequence
    of those. An unknown name raises UserError listing the classes (close matches first)."""
    if target is None:
        return None
    if isinstance(target, str):
        parts = [p.strip() for p in target.split(",")]
        if "" in parts:
            raise UserError(f"--class {target!r}: expected class names or indices separated "
                            f"by commas, like cat,dog or 3,5")
        target = parts if len(parts) > 1 else parts[0]
    if isinstance(target, (list, tuple, np.ndarray)):
        return [class_targets(t, classes) for t in target]
    if isinstance(target, (int, np.integer)):
        return check_class(int(target), len(classes))
    name = str(target)
    if name in classes:
        return classes.index(name)
    if name.lstrip("-").isdigit():
        return check_class(int(name), len(classes))
    import difflib

    lower = {c.lower(): c for c in classes}
    if name.lower() in lower:
        return classes.index(lower[name.lower()])
    close = difflib.get_close_matches(name, classes, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise UserError(f"--class {name}: no such class; {hint}expected a class name ({shown}) "
                    f"or an index 0..{len(classes) - 1}")


class CAM(NamedTuple):
    """What :func:`gradcam` returns (unpacks as ``maps, classes, layer``)."""

    maps: np.ndarray  # float32 (N, H, W) in [0, 1], at the input size
    classes: np.ndarray  # int64 (N,): the class each map explains
    layer: str  # the layer whose maps and gradients were used


def gradcam(model_or_run, images, target=None, layer: str | None = None,
            method: str = "gradcam", device: str = "cpu") -> CAM:
    """Grad-CAM maps of a trained model for some images, as NumPy arrays.

    ``cnnlab.gradcam`` in the public API; ``cnnlab viz gradcam`` draws the same maps.

    Args:
        model_or_run: a run directory, a checkpoint (``.safetensors`` or its ``.json``), or a
            ``torch.nn.Module`` (then ``images`` must already be normalized floats).
        images: image files (a path or a list of paths: PNG/JPEG/BMP, any size, converted as
            ``cnnlab predict`` does), or uint8 NumPy images (N, C, H, W) at the model's input
            size (normalized with the checkpoint's mean/std); for a module, float (N, C, H, W).
        target: None (each image's predicted class), a class index or name for all images,
            or one per image (a list, or a comma string ``"cat,dog"``).
        layer: the layer to explain (default: the last conv stage, see the module docstring).
        method: ``"gradcam"`` or ``"gradcam++"``.
        device: ``"cpu"`` or ``"cuda"``.

    Returns:
        :class:`CAM` ``(maps, classes, layer)``: maps float32 (N, H, W) in [0, 1], classes
        int (N,).

    Raises UserError (a ValueError) for an unknown class, layer or method, or a model with no
    spatial layer (the MLP, the linear classifier).

        >>> maps, classes, layer = cnnlab.gradcam("runs/demo", ["seven.png"], target="7")
    """
    from cnnlab.viz import common

    if method not in ("gradcam", "gradcam++"):
        raise UserError(f"method {method!r}: expected 'gradcam' or 'gradcam++'")
    if isinstance(model_or_run, nn.Module):
        model, classes = model_or_run, None
        x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images,
                            dtype=torch.float32).to(device)
    else:
        model, meta = common.load_checkpoint_model(model_or_run, device)
        classes = meta["classes"]
        if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
            images = [images]
        if isinstance(images, np.ndarray):
            raw = images if images.ndim == 4 else images[:, None]
            if raw.dtype != np.uint8:
                raise UserError(f"images: expected uint8 images (N, C, H, W), got {raw.dtype}")
        else:
            raw = common.load_images(list(images), meta["input"])
        x = common.normalize(raw, meta["input"]).to(device)
    if classes is not None:
        target = class_targets(target, classes)
    cam, cls, used = grad_cam(model, x, target, layer, plus_plus=method == "gradcam++")
    return CAM(np.asarray(cam), np.asarray(cls), used)


from cnnlab.viz import callable_module  # noqa: E402

callable_module(__name__)  # `cnnlab.viz.gradcam(...)` draws the picture (cnnlab.viz)
