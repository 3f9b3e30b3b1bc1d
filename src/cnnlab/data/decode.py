"""One way to read an image file, used by train, eval, predict, viz and serve alike.

Every command that turns a file into the uint8 array a model sees goes through
:func:`read_image` (or, for a folder of same-size images kept at their own size,
:func:`read_native`), so a photo is read the same way everywhere:

1. Pillow opens the file; the formats it accepts are :data:`FORMATS` (the file extensions a
   folder walk picks up are :data:`IMAGE_EXTS`, the same list);
2. a JPEG much larger than the size it is read for is decoded at a reduced scale
   (``Image.draft``: the JPEG decoder's own 1/2, 1/4 or 1/8 DCT scaling, never below the
   requested size), 15x faster than decoding 12 megapixels and shrinking them after
   (82.6 ms vs 5.6 ms per phone photo, measured in benchmarks/RESULTS.md, "Photo ingest");
3. the EXIF orientation is applied (a phone stores a portrait sideways and says so in
   EXIF: read without it, the picture is learned sideways);
4. converted to the model's channels (``L`` or ``RGB``; alpha dropped, CMYK and 16-bit
   converted by Pillow);
5. brought to the model's input size by the input spec's resize policy (:func:`fit_size`).

Nothing here holds an image larger than the decoder needs: the reduced-scale decode is at
most about twice the target on a side, and the result is the target size.

Pillow refuses an image declaring over ``2 * Image.MAX_IMAGE_PIXELS`` pixels (179 million;
a 100000x100000 PNG of a few KB would ask for 30 GB) as a decompression bomb; between 1x and
2x (a real 12000x12000 photo) it only warns, and such an image is honest: decoded without
passing the warning on. Errors are :class:`ImageReadError` (a :class:`UserError`) with one
line naming the file and what was wrong, never a Python class name.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.errors import UserError

# Extension -> Pillow format: one list for folder walks, uploads and error messages.
_FORMAT_OF = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".gif": "GIF",
              ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM", ".pgm": "PPM"}
IMAGE_EXTS = frozenset(_FORMAT_OF)
FORMATS = tuple(dict.fromkeys(_FORMAT_OF.values()))  # Pillow's names, for Image.open(formats=)
FORMATS_TEXT = "PNG, JPEG, BMP, GIF, TIFF, WebP or PPM/PGM"

# How an image reaches the model's input size (the input spec's "resize"):
# "bilinear": stretch to HxW; "pad": shrink to fit keeping the aspect ratio, centre on black
# (MNIST's 28 -> 32); "crop": ImageNet's convention, shorter side to 256/224 of the target,
# then the centre HxW (torchvision's Resize(256) + CenterCrop(224)).
RESIZE_POLICIES = ("bilinear", "pad", "crop")
CROP_RATIO = 256 / 224

# EXIF orientations 5-8 store the picture transposed: width and height swap when applied.
_TRANSPOSED = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112


_GRAY_MODES = ("1", "L", "I;16", "I;16B", "I;16L", "I", "F")
_READ_ERRORS = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
                ValueError, MemoryError)


class ImageReadError(UserError):
    """A file that could not be read as an image: ``"PATH: why (expected FORMATS)"``."""

    def __init__(self, path, reason: str, formats: bool = True):
        super().__init__(f"{path}: {reason}" + (f" (expected {FORMATS_TEXT})" if formats else ""))
        self.path, self.reason = str(path), reason


def why(e: BaseException) -> str:
    """A short reason for a failed read, in words rather than Python class names."""
    if isinstance(e, Image.DecompressionBombError):
        n = [int(v) for v in re.findall(r"\d+", str(e))] + [0, 0]
        return (f"refused as a decompression bomb: declares {n[0]:,} pixels, over Pillow's "
                f"limit of {n[1]:,}")
    if isinstance(e, UnidentifiedImageError):
        return "not a readable image"
    if isinstance(e, FileNotFoundError):
        return "no such file"
    text = str(e).splitlines()[0] if str(e) else ""
    return text or "unreadable image data"


def _orientation(im: Image.Image) -> int:
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block only loses the orientation
        return 1


def probe(path) -> tuple[int, int, str]:
    """(height, width, mode) of an image as it will be read (EXIF orientation applied),
    from its header only: nothing is decoded. Raises what ``Image.open`` raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            w, h = im.size
            if _orientation(im) in _TRANSPOSED:
                w, h = h, w
            return h, w, im.mode


def open_image(path, size=None, policy: str = "bilinear") -> Image.Image:
    """A decoded image, upright (EXIF orientation applied), for reading at ``size`` (h, w) by
    ``policy``: a JPEG much larger is decoded at the largest reduced scale that still covers
    it. ``path`` may be a path or a binary file object. An unreadable file is an
    :class:`ImageReadError` naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if size is not None and im.format == "JPEG" and \
                        min(im.size) >= 2 * (need := need_for(size, policy)):
                    im.draft(im.mode, (need, need))  # scale keeps both sides >= need
                im.load()
                return ImageOps.exif_transpose(im)
    except _READ_ERRORS as e:
        raise ImageReadError(path, why(e), not isinstance(e, Image.DecompressionBombError)) from e


def crop_side(side: int) -> int:
    """The shorter side the crop policy resizes to before taking the centre ``side``: about
    ``side * 256/224`` (256 for 224), rounded so the margin on each side is whole - then
    the centre of a stored "square" of that side is the crop policy's own centre, pixel for
    pixel."""
    return side + 2 * round(side * (CROP_RATIO - 1) / 2)


def need_for(size, policy: str) -> int:
    """Side length the decoder must keep for a target ``size`` (h, w) under ``policy``."""
    return crop_side(max(size)) if policy == "crop" else int(max(size))


def fit_size(im: Image.Image, h: int, w: int, policy: str) -> Image.Image:
    """``im`` at (w, h) by ``policy``: "bilinear" stretch; "pad": shrink to fit keeping the
    aspect ratio (never enlarge), centred on a black (zero) canvas; "crop": shorter side to
    ``256/224`` of the target (bilinear), then the centre (w, h); "square" (internal: how
    training photos are stored for random-resized crops): shorter side to the target's
    longer side, then the centre - the crop policy's first step, so "crop" at 224 of a
    "square" 256x256 image is the centre 224 of it, exactly "crop" of the original.

    The one resize of cnnlab: predict, serve and export apply it to image files, the trainer
    and ``eval`` to whole splits (:mod:`cnnlab.data.resize`, ``--input-size``)."""
    if im.size == (w, h):
        return im
    if policy == "bilinear":
        return im.resize((w, h), Image.BILINEAR)
    if policy in ("crop", "square"):
        s = (crop_side(max(h, w)) if policy == "crop" else max(h, w)) / min(im.width, im.height)
        nw, nh = max(w, round(im.width * s)), max(h, round(im.height * s))
        if (nw, nh) != im.size:
            im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - w) // 2, (nh - h) // 2
        return im.crop((left, top, left + w, top + h))
    scale = min(1.0, w / im.width, h / im.height)
    if scale < 1:
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                       Image.BILINEAR)
    canvas = Image.new(im.mode, (w, h), 0)
    canvas.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
    return canvas


def mode_for(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    """``im`` in ``L`` (1 channel) or ``RGB`` (3): alpha dropped, 16-bit grayscale
    scaled to 8 bits rather than clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I") and channels == 1:
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a / hi * 255 + 0.5, 0, 255).astype(np.uint8))
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        return to_mode(to_mode(im, 1), 3)
    return im.convert(mode_for(channels))


def to_chw(im: Image.Image) -> np.ndarray:
    """PIL image in L or RGB -> uint8 (C, H, W)."""
    a = np.asarray(im)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _read(path, channels: int | None, size, policy: str, shrink_only: bool) -> np.ndarray:
    """The one decode: open once, reduced-scale JPEG decode when much larger than ``size``,
    EXIF orientation, channels (None: 1 for grayscale files, else 3), then ``size`` (h, w)
    by ``policy`` - or, with ``shrink_only``, the image's own size when its area is no
    larger than the target's (a folder of 28x28 digits is read as stored)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if channels is None:
                    channels = 1 if im.mode in _GRAY_MODES else 3
                h, w = (None, None) if size is None else (int(v) for v in size)
                fit = size is not None and not (shrink_only and im.width * im.height <= h * w)
                if fit and im.format == "JPEG" and min(im.size) >= 2 * (need := need_for(
                        (h, w), policy)):
                    im.draft(im.mode, (need, need))  # scale keeps both sides >= need
                im.load()
                im = to_mode(ImageOps.exif_transpose(im), channels)
        return to_chw(fit_size(im, h, w, policy) if fit else im)
    except UserError:
        raise
    except _READ_ERRORS as e:
        raise ImageReadError(path, why(e), not isinstance(e, Image.DecompressionBombError)) from e


def read_image(path, channels: int, size, policy: str = "bilinear") -> np.ndarray:
    """An image file -> uint8 ``(C, H, W)`` at ``size`` (h, w): opened, JPEG decoded at a
    reduced scale when much larger, EXIF orientation applied, converted to ``channels``,
    resized by ``policy``. An unreadable file is an :class:`ImageReadError` naming it."""
    return _read(path, channels, size, policy, shrink_only=False)


def read_bounded(path, target=None, policy: str = "bilinear",
                 channels: int | None = None) -> np.ndarray:
    """An image file -> uint8 ``(C, H, W)``, never larger than ``target`` (h, w): an image
    larger (by area) is read at ``target`` by ``policy``, a smaller one at its own size
    (``target`` None: always its own size). ``channels`` None: 1 for grayscale files, 3 for
    the rest."""
    return _read(path, channels, target, policy, shrink_only=True)


def read_native(path, channels: int | None = None) -> np.ndarray:
    """An image file at its own size -> uint8 ``(C, H, W)``, EXIF orientation applied."""
    return _read(path, channels, None, "bilinear", shrink_only=True)


def is_image_file(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS and p.is_file()
