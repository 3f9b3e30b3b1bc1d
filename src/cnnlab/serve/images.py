"""Uploaded bytes -> the uint8 (C, H, W) image the model sees, refusing anything unsafe.

An upload is checked before it is decoded: a known image format (PNG, JPEG, BMP, GIF, WebP),
and a pixel count within Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``,
about 89 megapixels; Pillow itself only *warns* up to twice that, a server must refuse).
Then the conversion is :func:`cnnlab.preprocess.load_image`'s own (EXIF orientation, channels, the
checkpoint's input size and resize policy), so the explorer shows exactly what ``cnnlab predict`` sees.
Every failure is a :class:`~cnnlab.errors.UserError` with one line naming the upload, which
the app turns into a 400.
"""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import UserError

FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")


def check_image(data: bytes, name: str = "upload") -> tuple[str, tuple[int, int]]:
    """(format, (width, height)) of an image's header; UserError for an empty, unknown or
    oversized (decompression bomb) image. Reads the header only: nothing is decoded."""
    if not data:
        raise UserError(f"{name}: the file is empty (0 bytes); expected a PNG, JPEG, BMP, GIF "
                        f"or WebP image")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as im:
            fmt, size = im.format, im.size
    except Image.DecompressionBombError as e:
        raise UserError(f"{name}: refused as a possible decompression bomb ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{name}: not an image (expected PNG, JPEG, BMP, GIF or WebP; "
                        f"{type(e).__name__})") from e
    w, h = size
    if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:
        raise UserError(f"{name}: refused as a possible decompression bomb: {w}x{h} = "
                        f"{w * h:,} pixels, more than the limit of {Image.MAX_IMAGE_PIXELS:,}")
    return fmt, size


def decode_upload(data: bytes, spec: dict, name: str = "upload",
                  notes: dict | None = None) -> np.ndarray:
    """Uploaded image bytes -> uint8 ``(C, H, W)`` in the checkpoint's channels and size.

    ``spec`` is the checkpoint's input spec (``meta["input"]``). The bytes go through
    :func:`cnnlab.preprocess.load_image`, the code ``cnnlab predict`` runs (from a private
    temporary file, since it reads paths), so truncated and corrupt files fail there with
    its message, here naming ``name`` instead of the temporary path. ``notes`` receives its
    plain mismatches (a colour photo for a gray model, inverted polarity, ...).
    """
    from cnnlab.preprocess import check_spec, load_image

    fmt, _ = check_image(data, name)
    fd, path = tempfile.mkstemp(suffix="." + fmt.lower(), prefix="cnnlab-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return load_image(path, check_spec(spec), notes)
        except UserError as e:
            raise UserError(str(e).replace(path, name)) from None
        except Image.DecompressionBombError as e:  # an animated frame or a lying header
            raise UserError(f"{name}: refused as a possible decompression bomb ({e})") from e
    finally:
        os.unlink(path)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 ``(C, H, W)`` (C = 1 or 3) -> PNG bytes, lossless: decoding them with
    :func:`decode_upload` gives the same array back."""
    a = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()
