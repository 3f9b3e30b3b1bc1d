"""Uploaded bytes -> the uint8 (C, H, W) image the model sees, refusing anything unsafe, with a
bounded memory budget.

An upload is checked from its header before anything is decoded: a known image format (the
one list cnnlab reads, :data:`cnnlab.data.decode.FORMATS`), and at most ``max_pixels``
pixels. The explorer's limit (:data:`MAX_PIXELS`, 16 megapixels, ``--max-pixels``) is far
below Pillow's decompression-bomb limit (~89 MP): an 88-megapixel PNG can be a 252 KiB file,
and eight of them decoded at once cost the server 5.4 GB, while no model here looks at more
than 227x227 pixels. 16 MP still takes any phone photo (12 MP) or 4K frame (8.3 MP) whole.
Decodes then run at most ``decodes`` at a time (:class:`Decoder`), so memory is bounded by
``decodes x`` one image, however many requests arrive together; JPEGs are decoded at reduced
scale for the model's size by :func:`cnnlab.preprocess.load_image` (``Image.draft``).

The conversion is :func:`cnnlab.preprocess.load_image`'s own (EXIF orientation, channels, the
checkpoint's input size and resize policy), so the explorer shows exactly what ``cnnlab
predict`` sees. Every failure is a :class:`~cnnlab.errors.UserError` with one line naming the
upload and the accepted formats, never a Python class name; the app turns it into a 400.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.errors import UserError

MAX_PIXELS = 16_000_000  # see the module docstring: why 16 MP
DECODES = 1  # one decode at a time: see Decoder


def formats() -> tuple[str, ...]:
    """Pillow format names of the images cnnlab reads (:data:`cnnlab.data.decode.FORMATS`)."""
    from cnnlab.data.decode import FORMATS

    return tuple(FORMATS)


def formats_text() -> str:
    """The accepted formats, as every message of cnnlab words them."""
    from cnnlab.data.decode import FORMATS_TEXT

    return FORMATS_TEXT


def not_an_image(name: str, why: str = "") -> UserError:
    """The one wording for a file that cannot be read as an image (the decoder's own:
    ``"NAME: why (expected FORMATS)"``)."""
    from cnnlab.data.decode import ImageReadError

    return ImageReadError(name, why or "not a readable image")


def check_image(data: bytes, name: str = "upload",
                max_pixels: int = MAX_PIXELS) -> tuple[str, tuple[int, int]]:
    """(format, (width, height)) of an image's header; UserError for an empty, unknown or
    too large image. Reads the header only: nothing is decoded."""
    if not data:
        raise not_an_image(name, "the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats()) as im:
                fmt, size = im.format, im.size
    except Image.DecompressionBombError:
        raise UserError(f"{name}: refused: more pixels than Pillow's decompression-bomb limit "
                        f"({Image.MAX_IMAGE_PIXELS:,}); this explorer takes at most "
                        f"{max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        from cnnlab.data.decode import why

        raise not_an_image(name, why(e)) from None
    w, h = size
    if w * h > max_pixels:
        raise UserError(f"{name}: refused: {w}x{h} = {w * h:,} pixels, more than this "
                        f"explorer's limit of {max_pixels:,} (--max-pixels; a guard against "
                        f"decompression bombs); shrink the image first")
    return fmt, size


class Decoder:
    """Uploads -> model inputs, at most ``decodes`` at a time and ``max_pixels`` each.

    The decodes run on ``decodes`` threads of their own, not on the request threads: glibc
    keeps the memory a thread freed in that thread's arena, so decoding on any of the
    server's 40 request threads left up to 40 arenas each holding a decoded photo (8
    concurrent 16 MP uploads: +420 MB RSS, most of it still held afterwards). On a few
    fixed threads the next decode reuses what the last one freed."""

    def __init__(self, max_pixels: int = MAX_PIXELS, decodes: int = DECODES):
        if max_pixels < 1:
            raise UserError(f"--max-pixels {max_pixels}: expected a positive pixel count")
        if decodes < 1:
            raise UserError(f"decodes={decodes}: expected at least 1 concurrent decode")
        self.max_pixels, self.decodes = int(max_pixels), int(decodes)
        self._pool = ThreadPoolExecutor(decodes, thread_name_prefix="cnnlab-decode")

    def __call__(self, data: bytes, spec: dict, name: str = "upload",
                 notes: dict | None = None) -> np.ndarray:
        fmt, _ = check_image(data, name, self.max_pixels)
        return self._pool.submit(_decode, data, fmt, spec, name, notes).result()


def decode_upload(data: bytes, spec: dict, name: str = "upload", notes: dict | None = None,
                  max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Uploaded image bytes -> uint8 ``(C, H, W)`` in the checkpoint's channels and size
    (no concurrency bound: the app uses a :class:`Decoder`)."""
    fmt, _ = check_image(data, name, max_pixels)
    return _decode(data, fmt, spec, name, notes)


def _decode(data: bytes, fmt: str, spec: dict, name: str, notes: dict | None) -> np.ndarray:
    """The bytes go through :func:`cnnlab.preprocess.load_image`, the code ``cnnlab predict``
    runs (from a private temporary file, since it reads paths), so truncated and corrupt
    files fail there, reported here naming ``name``. ``notes`` receives its plain
    mismatches (a colour photo for a gray model, inverted polarity, ...)."""
    from cnnlab.data.decode import ImageReadError
    from cnnlab.preprocess import check_spec, load_image

    fd, path = tempfile.mkstemp(suffix="." + fmt.lower(), prefix="cnnlab-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            return load_image(path, check_spec(spec), notes)
        except ImageReadError as e:  # the decoder's reason, naming the upload, not the file
            raise not_an_image(name, e.reason) from None
        except Image.DecompressionBombError:  # an animated frame or a lying header
            raise UserError(f"{name}: refused: a frame larger than its header says (a guard "
                            f"against decompression bombs)") from None
    finally:
        os.unlink(path)


def encode_png(image: np.ndarray) -> bytes:
    """uint8 ``(C, H, W)`` (C = 1 or 3) -> PNG bytes, lossless: decoding them with
    :func:`decode_upload` gives the same array back."""
    a = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG")
    return buf.getvalue()
