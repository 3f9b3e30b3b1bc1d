"""A hand-made filter on your own photo, computed by the NumPy engine's ``conv2d``
(:func:`cnnlab.scratch.functional.conv2d`): the lectures' "different filters are different
views" (``red`` = the 1x1x3 filter [[(1, 0, 0)]] keeps the red channel; a Laplacian-like 3x3
kernel finds edges).

    >>> r = apply_kernel("china", "sobel-x")          # scikit-learn's sample photo
    >>> r.output.shape, r.formula                     # (427, 638), "W' = (640 - 3 + 2*0)/1 + 1 = 638"
    >>> apply_kernel(parse_matrix("1 1 1 0 0; ..."), "1 0 1; 0 1 0; 1 0 1").output

Values stay on the image's own scale (0..255 for photos), so the ``red`` preset returns the
red channel exactly. A 2-D kernel on a colour photo acts on its luminance (ITU-R 601:
0.299 R + 0.587 G + 0.114 B, PIL's ``convert("L")``); the ``red`` preset is a 1x1x3 filter
over the three channels, as in the lecture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

PRESETS = {
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "edge": [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]],  # Laplacian-like: 0 on flat regions
    "sobel-x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],  # responds to vertical edges
    "sobel-y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],  # responds to horizontal edges
    "blur": [[1 / 16, 2 / 16, 1 / 16], [2 / 16, 4 / 16, 2 / 16], [1 / 16, 2 / 16, 1 / 16]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}
RGB_PRESETS = {"red": [1.0, 0.0, 0.0], "green": [0.0, 1.0, 0.0], "blue": [0.0, 0.0, 1.0]}
SAMPLE_PHOTOS = ("china", "flower")  # scikit-learn's load_sample_images
LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class KernelResult:
    """``image`` (C, H, W) float64 input as convolved, ``weight`` (1, C, kh, kw), ``output``
    (H', W'), ``formula`` the output size worked out, ``kernel_name``, ``stride``, ``padding``."""

    image: np.ndarray
    weight: np.ndarray
    output: np.ndarray
    formula: str
    kernel_name: str
    stride: int
    padding: int
    source: str = ""

    def to_dict(self) -> dict:
        o = self.output
        return {"image": self.source, "kernel": self.kernel_name,
                "weight": self.weight[0].tolist(), "stride": self.stride,
                "padding": self.padding, "input_shape": list(self.image.shape),
                "output_shape": list(o.shape), "formula": self.formula,
                "output_min": float(o.min()), "output_max": float(o.max()),
                "output_mean": float(o.mean()),
                **({"output": o.tolist()} if o.size <= 400 else {})}


MAX_SIDE = 1024  # a larger image file is shown (and convolved) at this longest side


def read_photo(image) -> tuple[np.ndarray, str]:
    """``"china"``/``"flower"`` (scikit-learn's sample photos), a file path, or an array
    (H, W) / (H, W, 3) -> (float64 array (H, W) or (H, W, 3) on its own scale, a label)."""
    if isinstance(image, np.ndarray):
        return image.astype(np.float64), "array"
    name = str(image)
    if name in SAMPLE_PHOTOS:
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg").astype(np.float64), f"{name}.jpg (scikit-learn)"
    from PIL import Image

    from cnnlab.data.decode import ImageReadError, open_image, to_chw, to_mode

    if not Path(name).exists():
        raise UserError(f"{name}: no such image file (or use china / flower, scikit-learn's "
                        f"sample photos)")
    try:  # the decoder every command shares: EXIF orientation, reduced-scale JPEG decoding
        im = open_image(Path(name), (MAX_SIDE, MAX_SIDE))
    except ImageReadError as e:
        raise UserError(str(e)) from e
    if max(im.size) > MAX_SIDE:  # a 12 MP photo: the kernel's effect shows at 1024 px too
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.BILINEAR)
    a = to_chw(to_mode(im, 1 if im.mode in ("1", "L", "I", "I;16", "F") else 3))
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    return a.astype(np.float64), Path(name).name


def kernel_weight(kernel, channels: int) -> tuple[np.ndarray, str]:
    """(weight (1, C, kh, kw) float64, name) for a preset name, a matrix string like
    ``"1 0 1; 0 1 0; 1 0 1"`` or an array (kh, kw)."""
    if isinstance(kernel, str) and kernel in RGB_PRESETS:
        if channels != 3:
            raise UserError(f"--kernel {kernel}: the 1x1x3 {kernel} filter needs a colour "
                            f"image, this one has {channels} channel(s)")
        return np.array(RGB_PRESETS[kernel], dtype=np.float64).reshape(1, 3, 1, 1), kernel
    if isinstance(kernel, str) and kernel in PRESETS:
        k, name = np.array(PRESETS[kernel], dtype=np.float64), kernel
    elif isinstance(kernel, str):
        from cnnlab.scratch.explain import parse_matrix

        try:
            k = parse_matrix(kernel, "--kernel")
        except ValueError as e:
            raise UserError(f"{e} Presets: {', '.join([*RGB_PRESETS, *PRESETS])}") from None
        name = "custom"
    else:
        k, name = np.asarray(kernel, dtype=np.float64), "custom"
        if k.ndim != 2:
            raise UserError(f"--kernel: expected a 2-D matrix, got shape {k.shape}")
    return k[None, None], name


def apply_kernel(image="china", kernel="edge", stride: int = 1, padding: int = 0) -> KernelResult:
    """Convolve ``image`` (see :func:`read_photo`) with ``kernel`` (see :func:`kernel_weight`)
    using the NumPy engine: out = conv2d(x (1, C, H, W), weight (1, C, kh, kw)), no bias.
    Raises UserError when the kernel does not fit (stride < 1, padding < 0, too large)."""
    from cnnlab.scratch.functional import conv2d, output_size

    a, label = read_photo(image)
    if stride < 1 or padding < 0:
        raise UserError(f"--stride {stride} --padding {padding}: expected stride >= 1 and "
                        f"padding >= 0")
    weight, name = kernel_weight(kernel, a.shape[2] if a.ndim == 3 else 1)
    if a.ndim == 3 and weight.shape[1] == 1:
        a = a @ LUMA if a.shape[2] == 3 else a[..., 0]  # 2-D kernel: the luminance
    x = a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None]
    kh, kw = weight.shape[2:]
    h, w = x.shape[2:]
    try:
        ho, wo = (output_size(n, f, stride, padding) for n, f in ((h, kh), (w, kw)))
    except ValueError as e:
        raise UserError(f"--kernel {kh}x{kw} does not fit the {h}x{w} image with padding "
                        f"{padding}: {e}") from None
    if ho < 1 or wo < 1:
        raise UserError(f"--kernel {kh}x{kw} is larger than the padded {h}x{w} image")
    out = conv2d(np.ascontiguousarray(x), weight, None, stride, padding)[0, 0]
    formula = (f"H' = ({h} - {kh} + 2*{padding})/{stride} + 1 = {ho},  "
               f"W' = ({w} - {kw} + 2*{padding})/{stride} + 1 = {wo}")
    return KernelResult(x[0], weight, np.array(out), formula, name, stride, padding, label)


def kernel_figure(r: KernelResult, out: str | Path) -> Path:
    """Input | kernel (numbers) | activation map, side by side, with the size formula."""
    from cnnlab.viz.common import new_figure, save_figure

    fig = new_figure(13, 4.6)
    ax_in, ax_k, ax_out = fig.subplots(1, 3, gridspec_kw={"width_ratios": [4, 1.6, 4]})
    img = r.image
    if img.shape[0] == 3:
        ax_in.imshow(np.clip(img.transpose(1, 2, 0) / 255 if img.max() > 1 else
                             img.transpose(1, 2, 0), 0, 1))
    else:
        ax_in.imshow(img[0], cmap="gray")
    ax_in.set_title(f"input {r.source}\n{img.shape[0]}x{img.shape[1]}x{img.shape[2]} (C x H x W)"
                    + ("; luminance" if img.shape[0] == 1 and r.source != "array" else ""),
                    fontsize=10)
    _draw_kernel(ax_k, r.weight[0], r.kernel_name)
    o = r.output
    signed = o.min() < 0 < o.max() and -o.min() > 0.05 * o.max()
    # Edge maps are mostly near 0 with a few huge values: scale to the 99.5th percentile of
    # |value| (stated on the colour bar) so that the edges are visible.
    lim = float(np.percentile(np.abs(o), 99.5)) if o.size > 400 else float(np.abs(o).max())
    lim = lim or float(np.abs(o).max()) or 1.0
    im = ax_out.imshow(o, cmap="RdBu_r" if signed else "gray",
                       vmin=-lim if signed else o.min(), vmax=lim if signed else o.max())
    cb = fig.colorbar(im, ax=ax_out, fraction=0.046, pad=0.03)
    clip = f", clipped at +-{lim:.3g}" if signed and lim < np.abs(o).max() else ""
    cb.set_label(("activation: red +, blue -, white 0" + clip) if signed else
                 "activation (linear scale)", fontsize=9)
    ax_out.set_title(f"activation map {o.shape[0]}x{o.shape[1]} (stride {r.stride}, padding "
                     f"{r.padding})\n" + r.formula.replace(",  ", "\n"), fontsize=9)
    for ax in (ax_in, ax_out):
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"kernel '{r.kernel_name}' applied with cnnlab.scratch.functional.conv2d",
                 fontsize=12)
    return save_figure(fig, out, dpi=80)  # two photos: keeps the PNG near 200 KB


def _draw_kernel(ax, w: np.ndarray, name: str) -> None:
    """The kernel's numbers on a diverging background; a 1x1x3 filter as its three weights."""
    k = w[:, 0, 0][None] if w.shape[1:] == (1, 1) else w[0]
    lim = np.abs(k).max() or 1.0
    ax.imshow(k, cmap="RdBu_r", vmin=-lim, vmax=lim)
    if k.size <= 49:
        for (i, j), v in np.ndenumerate(k):
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=10 if k.size <= 9 else 7,
                    color="white" if abs(v) > 0.6 * lim else "black")
    ax.set_xticks([]), ax.set_yticks([])
    shape = f"1x1x{w.shape[0]} (R, G, B)" if w.shape[1:] == (1, 1) and w.shape[0] == 3 \
        else f"{k.shape[0]}x{k.shape[1]}"
    ax.set_title(f"kernel {name}\n{shape}", fontsize=10)


from cnnlab.viz import callable_module  # noqa: E402

callable_module(__name__)  # `cnnlab.viz.kernel(...)` draws the picture (cnnlab.viz)
