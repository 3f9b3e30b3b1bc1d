"""A folder of generated phone photos, for trying the photo path without a camera.

``make_photo_folder(root)`` writes ``root/{train,test}/{circles,stripes}/*.jpg``: JPEGs at
phone sizes (4032x3024 landscape, 3024x4032 portrait, 1920x1080, 800x600 by default), two
thirds of the portraits stored sideways with EXIF orientation 6, exactly as a phone stores them.
The two classes differ in what is drawn (discs vs stripes, random colours and places), so a
small CNN learns them, and a model that reads the sideways ones without their EXIF
orientation sees them rotated. Used by the tests, ``benchmarks/bench_photos.py`` and the
"Your own photos" guide.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circles", "stripes")
PHONE_SIZES = ((4032, 3024), (3024, 4032), (1920, 1080), (800, 600))  # width x height
EXIF_ORIENTATION = 0x0112


def draw_photo(cls: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """One upright RGB picture of class ``cls`` (``circles`` or ``stripes``)."""
    low = rng.integers(0, 120, 3)
    # a smooth background (drawn small, enlarged: photos are mostly smooth)
    grad = np.linspace(0, 1, 16)[:, None, None] * rng.integers(40, 135, 3)
    bg = (low + grad + rng.integers(0, 20, (16, 16, 3))).clip(0, 255).astype(np.uint8)
    im = Image.fromarray(bg).resize((width, height), Image.BILINEAR)
    d = ImageDraw.Draw(im)
    s = min(width, height)
    for _ in range(int(rng.integers(3, 7))):
        colour = tuple(int(v) for v in rng.integers(130, 256, 3))
        if cls == "circles":
            r = int(s * rng.uniform(0.08, 0.2))
            x, y = int(rng.integers(r, width - r)), int(rng.integers(r, height - r))
            d.ellipse((x - r, y - r, x + r, y + r), fill=colour)
        else:
            w = int(s * rng.uniform(0.03, 0.07))
            x = int(rng.integers(0, width - w))
            d.rectangle((x, 0, x + w, height), fill=colour)
    return im


def save_photo(im: Image.Image, path: Path, sideways: bool = False, quality: int = 85) -> Path:
    """Save ``im`` as a JPEG; ``sideways``: store it rotated with EXIF orientation 6, as a
    phone held upright does (``ImageOps.exif_transpose`` gives ``im`` back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if sideways:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = 6  # "rotate 90 CW to display"
        im.transpose(Image.Transpose.ROTATE_90).save(path, quality=quality, exif=exif)
    else:
        im.save(path, quality=quality)
    return path


def make_photo_folder(root, n_train: int = 40, n_test: int = 10, sizes=PHONE_SIZES,
                      seed: int = 0, distinct: int | None = None) -> Path:
    """Write ``root/{train,test}/{circles,stripes}/NNNN.jpg`` (``n_train`` / ``n_test`` per
    class), cycling through ``sizes`` (width, height); two portraits in three are stored
    sideways with EXIF orientation 6. ``distinct``: draw only this many pictures per class
    and size and write copies for the rest (encoding 12-megapixel JPEGs is the slow part of
    making thousands; decoding a copy costs the same as decoding an original)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    made: dict = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in CLASSES:
            for i in range(n):
                w, h = sizes[i % len(sizes)]
                sideways = h > w and (i // len(sizes)) % 3 != 0  # two thirds of portraits
                path = root / split / cls / f"{i:04d}.jpg"
                key = (cls, w, h, sideways, i // len(sizes) % distinct if distinct else
                       (split, i))
                if key in made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(made[key].read_bytes())
                    continue
                made[key] = save_photo(draw_photo(cls, w, h, rng), path, sideways)
    return root
