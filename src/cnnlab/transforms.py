"""Batched data augmentation on ``(N, C, H, W)`` float tensors, on the batch's own device.

Conventions, for every function here:
- **Input range.** Images are floats in ``[0, 1]`` (``uint8 / 255``), *before* normalisation:
  ``color_jitter`` clamps to ``[0, 1]`` and ``cutout`` fills with black (0). Crops, flips and
  ``pca_lighting`` are range-agnostic (lighting adds an offset and does not clamp, as in
  AlexNet). The training loop augments, then normalises.
- **Randomness.** Each takes ``generator`` (a ``torch.Generator`` or ``None`` for torch's
  global RNG). A generator only serves its own device, so random numbers are drawn on
  ``generator.device`` and moved to ``x.device``: a CPU generator seeded the same gives the
  same augmentation on CPU and GPU batches. The same seed gives identical outputs.
- **No per-image Python.** Per-image parameters are ``(N,)`` tensors; crops gather with index
  grids, resized crops use one ``F.grid_sample``.

``Augment`` composes steps from a spec such as ``"crop:4,flip,jitter:0.4"`` (``parse_augment``);
``preview`` writes a grid PNG of augmented training images.
"""

from __future__ import annotations

import difflib
import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.errors import UserError

# AlexNet-style PCA lighting on ImageNet, for RGB in [0, 1]; eigenvectors are the columns.
# Values from fb.resnet.torch (datasets/imagenet.lua), used by most reimplementations.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                   (-0.5808, -0.0045, -0.8140),
                   (-0.5836, -0.6948, 0.4203))
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert("L") and torchvision


# -- helpers --------------------------------------------------------------------------------

def _check(x: torch.Tensor, fn: str) -> tuple[int, int, int, int]:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"{fn}: expected a float tensor (N, C, H, W) with values in [0, 1], "
                        f"got {got}")
    return tuple(x.shape)


def _rand(shape, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) on the generator's device, returned on x's device in x's dtype."""
    dev = generator.device if generator is not None else x.device
    return torch.rand(shape, generator=generator, device=dev).to(x.device, x.dtype)


def _randn(shape, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = generator.device if generator is not None else x.device
    return torch.randn(shape, generator=generator, device=dev).to(x.device, x.dtype)


def _randint(high: torch.Tensor | int, shape, x, generator) -> torch.Tensor:
    """Integers uniform in ``[0, high]`` (inclusive; ``high`` may be per image), int64."""
    u = torch.rand(shape, generator=generator,
                   device=generator.device if generator is not None else x.device,
                   dtype=torch.float64).to(x.device)
    return torch.minimum((u * (torch.as_tensor(high, device=x.device) + 1)).long(),
                         torch.as_tensor(high, device=x.device))


def _pair(size, default: tuple[int, int], fn: str) -> tuple[int, int]:
    if size is None:
        return default
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ValueError(f"{fn}: size must be positive, got size={size}")
    return int(h), int(w)


def _per_image(f, x: torch.Tensor) -> torch.Tensor:
    """A scalar or (N,) factor as an (N, 1, 1, 1) tensor on x's device."""
    return torch.as_tensor(f, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)


# -- geometric ------------------------------------------------------------------------------

def random_crop(x: torch.Tensor, size=None, padding: int = 0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``padding`` on each side, then crop ``size`` at a random offset per image.

    x: (N, C, H, W); size: int, (h, w) or None for (H, W). Returns (N, C, h, w). The crop is
    two ``gather``s with per-image row/column indices, no Python loop. Krizhevsky et al. 2012;
    padding 4 on CIFAR is He et al. 2016.
    """
    n, c, H, W = _check(x, "random_crop")
    h, w = _pair(size, (H, W), "random_crop")
    if padding < 0:
        raise ValueError(f"random_crop: padding must be >= 0, got padding={padding}")
    if padding:
        x = F.pad(x, (padding,) * 4)  # zeros
    hp, wp = H + 2 * padding, W + 2 * padding
    if h > hp or w > wp:
        raise ValueError(f"random_crop: size {(h, w)} larger than the padded image {(hp, wp)}")
    i = _randint(hp - h, (n,), x, generator)  # (N,) top rows
    j = _randint(wp - w, (n,), x, generator)  # (N,) left columns
    rows = i[:, None] + torch.arange(h, device=x.device)  # (N, h)
    cols = j[:, None] + torch.arange(w, device=x.device)  # (N, w)
    out = x.gather(2, rows[:, None, :, None].expand(n, c, h, wp))  # (N, C, h, Wp)
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))  # (N, C, h, w)


def _rrc_boxes(n, H, W, scale, ratio, x, generator, tries=10):
    """torchvision's RandomResizedCrop boxes, vectorised: (i, j, h, w) float tensors (N,)."""
    r = _rand((n, tries, 4), x, generator).double()
    area = H * W * (scale[0] + r[..., 0] * (scale[1] - scale[0]))
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(lo + r[..., 1] * (hi - lo))
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w >= 1) & (h >= 1) & (w <= W) & (h <= H)  # (N, tries)
    first = ok.double().argmax(1, keepdim=True)  # the first box that fits, as torchvision
    pick = lambda t: t.gather(1, first)[:, 0]  # noqa: E731
    h, w, ri, rj = pick(h), pick(w), pick(r[..., 2]), pick(r[..., 3])
    i, j = torch.floor(ri * (H - h + 1)), torch.floor(rj * (W - w + 1))
    # No box fits in `tries`: torchvision's fallback, the central crop at the clamped ratio.
    fw, fh = float(W), float(H)
    if W / H < ratio[0]:
        fh = float(round(W / ratio[0]))
    elif W / H > ratio[1]:
        fw = float(round(H * ratio[1]))
    none = ~ok.any(1)
    h, w = torch.where(none, fh, h), torch.where(none, fw, w)
    i, j = torch.where(none, (H - fh) // 2, i), torch.where(none, (W - fw) // 2, j)
    return i, j, h, w


def random_resized_crop(x: torch.Tensor, size=None, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Crop a random box per image (area fraction in ``scale``, aspect in ``ratio``, log-uniform)
    and resize it to ``size`` with bilinear interpolation.

    x: (N, C, H, W); size: int, (h, w) or None for (H, W). Returns (N, C, h, w). Boxes are
    sampled as torchvision's ``RandomResizedCrop`` (10 tries, then a central crop); the resize
    is one ``F.grid_sample`` over per-image affine grids (no antialiasing when shrinking).
    Szegedy et al. 2015 ("GoogLeNet"), the ImageNet standard.
    """
    n, c, H, W = _check(x, "random_resized_crop")
    oh, ow = _pair(size, (H, W), "random_resized_crop")
    if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
        raise ValueError(f"random_resized_crop: expected 0 < scale[0] <= scale[1] <= 1 and "
                         f"0 < ratio[0] <= ratio[1], got scale={scale}, ratio={ratio}")
    i, j, h, w = _rrc_boxes(n, H, W, scale, ratio, x, generator)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = w / W, (2 * j + w) / W - 1  # box in [-1, 1] coordinates
    theta[:, 1, 1], theta[:, 1, 2] = h / H, (2 * i + h) / H - 1
    grid = F.affine_grid(theta.to(x.dtype), [n, c, oh, ow], align_corners=False)
    # "border": when enlarging, samples half a pixel outside the box must not fade to black.
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def horizontal_flip(x: torch.Tensor, p: float = 0.5,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``. x: (N, C, H, W) -> same shape."""
    n = _check(x, "horizontal_flip")[0]
    if not 0 <= p <= 1:
        raise ValueError(f"horizontal_flip: p must be in [0, 1], got p={p}")
    flip = _rand((n,), x, generator) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator | None = None,
           value: float = 0.0) -> torch.Tensor:
    """Fill one ``size x size`` square per image with ``value`` (DeVries & Taylor 2017).

    The centre is uniform over the image, so squares near the border are clipped (as in the
    paper). x: (N, C, H, W) -> same shape. On [0, 1] images value 0 is black; after
    normalisation it is the dataset mean.
    """
    n, _, H, W = _check(x, "cutout")
    if size < 1:
        raise ValueError(f"cutout: size must be >= 1, got size={size}")
    top = _randint(H - 1, (n,), x, generator) - size // 2  # (N,) may be negative: clipped
    left = _randint(W - 1, (n,), x, generator) - size // 2
    r, c = torch.arange(H, device=x.device), torch.arange(W, device=x.device)
    rows = (r >= top[:, None]) & (r < top[:, None] + size)  # (N, H)
    cols = (c >= left[:, None]) & (c < left[:, None] + size)  # (N, W)
    return x.masked_fill(rows[:, None, :, None] & cols[:, None, None, :], value)


# -- photometric ----------------------------------------------------------------------------

def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma (N, 1, H, W) of RGB x (N, 3, H, W); a 1-channel x is returned as is."""
    if x.shape[1] == 1:
        return x
    return torch.einsum("nchw,c->nhw", x, torch.tensor(LUMA, dtype=x.dtype,
                                                       device=x.device))[:, None]


def _blend(x, other, factor) -> torch.Tensor:
    f = _per_image(factor, x)
    return (f * x + (1 - f) * other).clamp_(0, 1)  # factor 1 returns x exactly


def adjust_brightness(x: torch.Tensor, factor) -> torch.Tensor:
    """x * factor, clamped to [0, 1]; factor: float or (N,)."""
    return _blend(x, 0.0, factor)


def adjust_contrast(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with each image's mean gray level; factor 0 gives flat gray."""
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor) -> torch.Tensor:
    """Blend with the image's grayscale version; a no-op on 1-channel images."""
    return x if x.shape[1] == 1 else _blend(x, grayscale(x), factor)


def color_jitter(x: torch.Tensor, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors, each uniform in
    ``[max(0, 1 - v), 1 + v]`` (torchvision's ``ColorJitter``), applied in that fixed order.

    x: (N, C, H, W) in [0, 1] -> same shape, clamped to [0, 1]. A value of 0 skips that step.
    """
    n, c = _check(x, "color_jitter")[:2]
    for name, v, fn in (("brightness", brightness, adjust_brightness),
                        ("contrast", contrast, adjust_contrast),
                        ("saturation", saturation, adjust_saturation)):
        if v < 0:
            raise ValueError(f"color_jitter: {name} must be >= 0, got {name}={v}")
        if v > 0 and not (name == "saturation" and c == 1):
            lo = max(0.0, 1.0 - v)
            x = fn(x, lo + _rand((n,), x, generator) * (1.0 + v - lo))
    return x


def pca_lighting(x: torch.Tensor, alphastd: float = 0.1, eigval=None, eigvec=None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """AlexNet's PCA colour augmentation (Krizhevsky et al. 2012, section 4.1).

    Adds ``eigvec @ (alpha * eigval)`` to every pixel, ``alpha ~ N(0, alphastd^2)`` per image
    and component. ``eigval`` (C,) and ``eigvec`` (C, C, eigenvectors as columns) default to
    ImageNet's on RGB in [0, 1]; :func:`pca_from_data` computes them for another dataset.
    x: (N, C, H, W) -> same shape, not clamped.
    """
    n, c = _check(x, "pca_lighting")[:2]
    val = torch.as_tensor(IMAGENET_EIGVAL if eigval is None else eigval, dtype=x.dtype,
                          device=x.device)
    vec = torch.as_tensor(IMAGENET_EIGVEC if eigvec is None else eigvec, dtype=x.dtype,
                          device=x.device)
    if val.shape != (c,) or vec.shape != (c, c):
        raise ValueError(f"pca_lighting: eigval {tuple(val.shape)} and eigvec "
                         f"{tuple(vec.shape)} do not fit {c}-channel images (expected ({c},) "
                         f"and ({c}, {c}); the defaults are ImageNet's RGB ones)")
    if alphastd == 0:
        return x
    alpha = _randn((n, c), x, generator) * alphastd  # (N, C)
    offset = (vec[None] * (alpha * val)[:, None, :]).sum(-1)  # (N, C): sum_k vec[c,k] a_k l_k
    return x + offset[:, :, None, None]


def pca_from_data(images, max_pixels: int = 1_000_000, seed: int = 0):
    """Eigenvalues (C,) descending and eigenvectors (C, C) as columns of the covariance of
    pixel colours in [0, 1]: the inputs of :func:`pca_lighting` for a dataset.

    images: uint8 (N, C, H, W) array or tensor (an ``ImageData``'s ``images``); at most
    ``max_pixels`` pixels, drawn with ``seed``, enter the estimate. Returns float32 tensors.
    """
    a = images.cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if a.ndim != 4:
        raise ValueError(f"pca_from_data: expected images (N, C, H, W), got shape {a.shape}")
    pix = a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])  # (N*H*W, C)
    if len(pix) > max_pixels:
        pix = pix[np.random.default_rng(seed).choice(len(pix), max_pixels, replace=False)]
    scale = 255.0 if a.dtype == np.uint8 else 1.0
    cov = np.atleast_2d(np.cov(pix.astype(np.float64) / scale, rowvar=False))
    val, vec = np.linalg.eigh(cov)  # ascending
    order = np.argsort(val)[::-1]
    return (torch.tensor(val[order].clip(min=0), dtype=torch.float32),
            torch.tensor(vec[:, order], dtype=torch.float32))


# -- pipelines ------------------------------------------------------------------------------

def _jitter(x, g, b, c=None, s=None):
    return color_jitter(x, b, b if c is None else c, b if s is None else s, generator=g)


_POS = (lambda v: v >= 0, ">= 0")
# name -> (apply(x, generator, *args), ((arg, type, default, (check, expected)), ...), what)
_STEPS = {
    "crop": (lambda x, g, pad: random_crop(x, None, pad, g),
             (("padding", int, 4, _POS),), "random crop after zero padding (same size)"),
    "flip": (lambda x, g, p: horizontal_flip(x, p, g),
             (("p", float, 0.5, (lambda v: 0 <= v <= 1, "in [0, 1]")),), "horizontal flip"),
    "rrc": (lambda x, g, s: random_resized_crop(x, None, (s, 1.0), generator=g),
            (("min_scale", float, 0.08, (lambda v: 0 < v <= 1, "in (0, 1]")),),
            "random resized crop (same size)"),
    "jitter": (_jitter, (("brightness", float, 0.4, _POS), ("contrast", float, None, _POS),
                         ("saturation", float, None, _POS)),
               "colour jitter (contrast and saturation default to brightness)"),
    "lighting": (lambda x, g, a: pca_lighting(x, a, generator=g),
                 (("alphastd", float, 0.1, _POS),), "AlexNet PCA lighting (ImageNet RGB)"),
    "cutout": (lambda x, g, s=None: cutout(x, s or max(1, min(x.shape[-2:]) // 2), g),
               (("size", int, None, (lambda v: v >= 1, ">= 1")),),
               "cutout square (default half the image side)"),
}
PRESETS = {
    "none": "",
    "standard": None,  # by the batch's shape, see standard_spec
    "digits": "crop:2",  # no flip: a mirrored 2, 3, 5 or 7 is not that digit
    "cifar": "crop:4,flip",  # He et al. 2016
    "imagenet": "rrc,flip,jitter:0.4,lighting:0.1",  # fb.resnet.torch's recipe
}


def standard_spec(shape) -> str:
    """The ``standard`` preset for a batch shape (N, C, H, W): 1 channel (digits, MNIST):
    ``crop:2``, never a flip; small colour images (CIFAR): ``crop:H/8,flip`` (``crop:4`` at
    32x32); colour images of 100 px or more: ``rrc,flip``."""
    c, h = shape[1], shape[2]
    if c == 1:
        return "crop:2"
    return f"crop:{max(1, round(h / 8))},flip" if h < 100 else "rrc,flip"


@functools.lru_cache(maxsize=None)
def _standard_steps(channels: int, height: int) -> tuple:
    """The ``standard`` preset's steps for images of ``channels`` x ``height``: parsed once,
    not on every training step."""
    return tuple(parse_augment(standard_spec((1, channels, height, height))).steps)


def _usage() -> str:
    steps = ", ".join(name + "".join(f"[:{a[0]}" for a in args) + "]" * len(args)
                      for name, (_, args, _) in _STEPS.items())
    return f"valid: {steps}; presets: {', '.join(PRESETS)}"


class Augment:
    """A sequence of augmentation steps, applied in order: ``Augment(...)(x, generator)``.

    Build it with :func:`parse_augment`. ``str(aug)`` is the spec with every argument filled
    in (``"crop:4,flip:0.5"``); ``aug.describe(x.shape)`` also resolves ``standard``.
    """

    def __init__(self, steps=(), size=None):
        self.steps = [(name, tuple(args)) for name, args in steps]
        # (h, w) the model reads, when the training images are stored larger (photos kept at
        # 256/224 of it for random-resized crops): ``rrc`` resizes its box to it, and a
        # pipeline without one ends with the centre crop evaluation takes
        self.size = None if size is None else tuple(int(v) for v in size)

    def resolve(self, shape) -> list[tuple[str, tuple]]:
        out = []
        for name, args in self.steps:
            out += _standard_steps(shape[1], shape[2]) if name == "standard" else [(name, args)]
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """x: float (N, C, H, W) in [0, 1] -> augmented, on x's device: the same shape, or
        (N, C, *self.size) when ``size`` is set."""
        _check(x, "Augment")
        for name, args in self.resolve(x.shape):
            if name == "rrc" and self.size is not None:
                x = random_resized_crop(x, self.size, (args[0], 1.0), generator=generator)
            else:
                x = _STEPS[name][0](x, generator, *args)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            (H, W), (h, w) = x.shape[-2:], self.size
            if h > H or w > W:
                raise ValueError(f"Augment: images {H}x{W} are smaller than the output {h}x{w}")
            top, left = (H - h) // 2, (W - w) // 2
            x = x[..., top:top + h, left:left + w]
        return x

    @staticmethod
    def _fmt(steps) -> str:
        def one(name, args):
            if name == "jitter" and len(set(args)) == 1:
                args = args[:1]
            return ":".join([name, *(f"{a:g}" for a in args if a is not None)])

        return ",".join(one(n, args) for n, args in steps) or "none"

    def describe(self, shape) -> str:
        return self._fmt(self.resolve(shape))

    def __str__(self) -> str:
        return self._fmt(self.steps)

    def __repr__(self) -> str:
        return f"Augment({str(self)!r})"

    def __bool__(self) -> bool:
        return bool(self.steps)

    def __eq__(self, other) -> bool:
        return isinstance(other, Augment) and self.steps == other.steps


def _parse_args(name: str, raw: list[str], where: str) -> tuple:
    specs = _STEPS[name][1]
    usage = name + "".join(f"[:{a[0]}" for a in specs) + "]" * len(specs)
    if len(raw) > len(specs):
        raise UserError(f"{where}: {name} takes at most {len(specs)} argument(s) ({usage}), got "
                        f"{':'.join([name, *raw])!r}")
    out = []
    for (arg, typ, default, (ok, expected)), text in zip(specs, raw + [None] * len(specs)):
        if text is None or text == "":
            out.append(default)
            continue
        try:
            v = typ(text)
        except ValueError:
            v = None
        if v is None or not ok(v):
            raise UserError(f"{where}: invalid {arg} {text!r} for {name} (expected "
                            f"{'an integer' if typ is int else 'a number'} {expected}; "
                            f"usage {usage})")
        out.append(v)
    if name == "jitter":  # contrast and saturation default to brightness
        out = [out[0], *(out[0] if v is None else v for v in out[1:])]
    return tuple(out)


def parse_augment(spec, arg: str = "--augment") -> Augment:
    """``"crop:4,flip,jitter:0.4"``, a list of such names, a preset or an Augment -> Augment.

    Unknown names or bad arguments raise UserError naming ``arg`` and listing the valid names.
    """
    if isinstance(spec, Augment):
        return spec
    if spec is None:
        tokens = []
    elif isinstance(spec, str):
        tokens = spec.split(",")
    else:
        tokens = [str(t) for t in spec]
    where = f"{arg} {spec if isinstance(spec, str) else ','.join(tokens)!r}"
    steps = []
    for tok in (t.strip() for t in tokens):
        if not tok:
            continue
        name, *raw = (s.strip() for s in tok.split(":"))
        name = name.lower()
        if name in PRESETS:
            if raw:
                raise UserError(f"{where}: preset {name!r} takes no arguments")
            steps += [("standard", ())] if name == "standard" else parse_augment(
                PRESETS[name]).steps
        elif name in _STEPS:
            steps.append((name, _parse_args(name, raw, where)))
        else:
            close = difflib.get_close_matches(name, [*_STEPS, *PRESETS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"{where}: unknown augmentation {name!r}{hint}; {_usage()}")
    return Augment(steps)


# -- preview --------------------------------------------------------------------------------

def make_grid(x: torch.Tensor, ncols: int = 8, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tile x (N, C, H, W) in [0, 1] into a uint8 image (rows*(H+pad)+pad, ncols*(W+pad)+pad, C)
    with ``pad``-pixel borders of value ``fill``; unused cells are filled too."""
    n, c, h, w = x.shape
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    a = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    cells = np.full((nrows * ncols, c, h + pad, w + pad), fill, np.uint8)
    cells[:n, :, pad:, pad:] = a  # each cell carries its top and left border
    grid = cells.reshape(nrows, ncols, c, h + pad, w + pad).transpose(0, 3, 1, 4, 2)
    grid = grid.reshape(nrows * (h + pad), ncols * (w + pad), c)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=fill)


PAIR_GAP = 4  # extra white pixels between pairs of rows in a preview


def _paired_rows(x: torch.Tensor, y: torch.Tensor, ncols: int) -> torch.Tensor:
    """(N, C, H, W) originals ``x`` and augmented ``y`` -> the cells of a grid whose rows
    alternate: ``ncols`` originals, then the same ``ncols`` augmented (blank cells: white)."""
    rows = -(-len(y) // ncols)
    cells = torch.ones((2 * rows * ncols, *y.shape[1:]), dtype=y.dtype)
    for r in range(rows):
        part = slice(r * ncols, min((r + 1) * ncols, len(y)))
        k = part.stop - part.start
        cells[2 * r * ncols:2 * r * ncols + k] = x[part]
        cells[(2 * r + 1) * ncols:(2 * r + 1) * ncols + k] = y[part]
    return cells


def preview(data_splits, augment="standard", n: int = 32, seed: int = 0,
            out: Path | str = "grid.png", ncols: int = 8, zoom: int | None = None,
            originals: bool = True) -> Path:
    """Write a grid PNG of ``n`` augmented training images (drawn with ``seed``); return its path.

    ``originals`` (default): each row of augmented images has the same images as they are in
    the data set just above it, so every augmentation can be compared with its source; the
    grid then has twice the rows, and pairs of rows are ``PAIR_GAP`` (4) pixels further apart.

    data_splits: a DataSplits (its ``train`` split is used), an ImageData, or a streamed
    :class:`~cnnlab.data.stream.StreamingImageData` (only the ``n`` sampled files are decoded;
    the same seed picks the same images either way); augment: a spec for
    :func:`parse_augment`. Each cell is enlarged ``zoom`` times (nearest neighbour; default so
    that a cell is at least 64 px). Grid size in pixels: width ``(ncols*(W+2)+2)*zoom``,
    height ``(rows*(H+2)+2)*zoom`` with ``ncols = min(ncols, n)``.
    """
    from PIL import Image

    from cnnlab.utils import atomic_write

    data = getattr(data_splits, "train", data_splits)
    aug = parse_augment(augment)
    if n < 1 or len(data) == 0:
        raise UserError(f"augment-preview: nothing to show (n={n}, {len(data)} images)")
    c, h, w = data.shape
    if c not in (1, 3):
        raise UserError(f"augment-preview: can show 1- or 3-channel images, got {c} channels")
    idx = np.sort(np.random.default_rng(seed).choice(len(data), min(n, len(data)),
                                                     replace=False))
    if hasattr(data, "images"):
        picked = data.images[idx]
    else:  # streamed from disk: decode only the sampled files (unreadable ones skipped)
        picked, _ = data.read(idx)
        if not len(picked):
            raise UserError(f"augment-preview: none of the {len(idx)} sampled images could be read")
    x = torch.from_numpy(picked).float().div_(255)  # (n, C, H, W) in [0, 1]
    y = aug(x, torch.Generator().manual_seed(seed))
    ncols = max(1, min(ncols, len(y)))
    if originals:  # rows in pairs: the originals, then the same images augmented
        y = _paired_rows(x, y, ncols)
    grid = make_grid(y, ncols)
    if originals:  # a wider white gap between pairs of rows, so each pair reads as one
        pairs = -(-len(y) // (2 * ncols))
        grid = np.insert(grid, [2 * k * (h + 2) for k in range(1, pairs) for _ in range(PAIR_GAP)],
                         255, axis=0)
    zoom = zoom or max(1, 64 // max(h, w))
    img = Image.fromarray(grid[..., 0] if c == 1 else grid, "L" if c == 1 else "RGB")
    if zoom > 1:
        img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
    out = Path(out)
    with atomic_write(out) as f:
        img.save(f, format="PNG")
    return out
