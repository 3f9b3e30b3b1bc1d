"""Batched augmentation: shapes, determinism, exact identities and the spec parser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import DataSplits, ImageData
from cnnlab.errors import UserError
from cnnlab.transforms import (
    Augment, adjust_brightness, adjust_contrast, adjust_saturation, color_jitter, cutout,
    horizontal_flip, make_grid, parse_augment, pca_from_data, pca_lighting, preview,
    random_crop, random_resized_crop, standard_spec,
)


def _x(n=16, c=3, h=12, w=10, seed=0, lo=0.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (1 - lo) * torch.rand(n, c, h, w, generator=g)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


OPS = {
    "crop": lambda x, g: random_crop(x, (8, 7), padding=2, generator=g),
    "rrc": lambda x, g: random_resized_crop(x, 9, generator=g),
    "flip": lambda x, g: horizontal_flip(x, generator=g),
    "jitter": lambda x, g: color_jitter(x, 0.4, 0.4, 0.4, generator=g),
    "lighting": lambda x, g: pca_lighting(x, 0.1, generator=g),
    "cutout": lambda x, g: cutout(x, 4, generator=g),
    "augment": lambda x, g: parse_augment("crop:2,flip,jitter:0.3,cutout:3,rrc:0.5")(x, g),
}
SHAPES = {"crop": (8, 7), "rrc": (9, 9)}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_determinism(op, dtype):
    x = _x().to(dtype)
    a, b, c = OPS[op](x, _g(1)), OPS[op](x, _g(1)), OPS[op](x, _g(2))
    assert a.shape == (16, 3, *SHAPES.get(op, (12, 10))) and a.dtype == dtype
    assert a.device == x.device
    assert torch.equal(a, b)  # same seed, identical output
    assert not torch.equal(a, c)  # another seed, another augmentation
    assert torch.equal(x, _x().to(dtype))  # the input is not modified


@pytest.mark.parametrize("op", OPS)
def test_global_rng_when_no_generator(op):
    torch.manual_seed(3)
    a = OPS[op](_x(), None)
    torch.manual_seed(3)
    assert torch.equal(a, OPS[op](_x(), None))


def test_bad_input_type():
    with pytest.raises(TypeError, match=r"random_crop: expected a float tensor \(N, C, H, W\)"):
        random_crop(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), 4)
    with pytest.raises(ValueError, match=r"size \(9, 9\) larger than the padded image \(8, 8\)"):
        random_crop(torch.zeros(2, 1, 4, 4), 9, padding=2)


# -- crops -----------------------------------------------------------------------------------

def test_random_crop_identity():
    x = _x()
    assert torch.equal(random_crop(x, x.shape[-2:], padding=0, generator=_g()), x)
    assert torch.equal(random_crop(x, None, generator=_g()), x)


def test_random_crop_is_a_slice_of_the_padded_image():
    x, p, (h, w) = _x(n=32, lo=0.1), 3, (12, 10)
    out = random_crop(x, (h, w), padding=p, generator=_g())
    padded = torch.nn.functional.pad(x, (p, p, p, p))
    offsets = set()
    for k in range(len(x)):  # search every offset: exactly one must match (values are unique)
        hits = [(i, j) for i in range(2 * p + 1) for j in range(2 * p + 1)
                if torch.equal(out[k], padded[k, :, i:i + h, j:j + w])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 10  # offsets differ between images


def test_random_resized_crop_full_box_is_identity():
    x = _x(h=10, w=10)
    y = random_resized_crop(x, None, scale=(1.0, 1.0), ratio=(1.0, 1.0), generator=_g())
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)


def test_random_resized_crop_constant_image_stays_constant():
    x = torch.full((8, 3, 16, 16), 0.25)
    torch.testing.assert_close(random_resized_crop(x, 24, generator=_g()), torch.full(
        (8, 3, 24, 24), 0.25))


def test_random_resized_crop_impossible_ratio_falls_back_to_center():
    # ratio 10: no box fits a square image, so torchvision's central crop (W x W/10 rows).
    x = torch.arange(20.0).repeat_interleave(20).reshape(1, 1, 20, 20).repeat(4, 1, 1, 1) / 20
    y = random_resized_crop(x, (2, 20), scale=(0.9, 1.0), ratio=(10.0, 10.0), generator=_g())
    torch.testing.assert_close(y, x[:, :, 9:11, :], atol=1e-5, rtol=0)


# -- flips and cutout ------------------------------------------------------------------------

def test_flip_about_half_and_exact():
    x = _x(n=2000, h=4, w=5)
    y = horizontal_flip(x, p=0.5, generator=_g())
    flipped = torch.tensor([torch.equal(y[k], x[k].flip(-1)) for k in range(len(x))])
    kept = torch.tensor([torch.equal(y[k], x[k]) for k in range(len(x))])
    assert bool((flipped ^ kept).all())  # each image is either flipped exactly or untouched
    assert 900 < int(flipped.sum()) < 1100  # binomial(2000, 0.5): sd 22
    assert torch.equal(horizontal_flip(x, p=0.0, generator=_g()), x)
    assert torch.equal(horizontal_flip(x, p=1.0, generator=_g()), x.flip(-1))


@pytest.mark.parametrize("size", [1, 4, 5, 30])
def test_cutout_zeroes_one_clipped_square(size):
    x = _x(n=200, c=2, h=12, w=10, lo=0.1)  # strictly positive: zeros are the cutout
    y = cutout(x, size, generator=_g())
    zero = y == 0
    assert torch.equal(zero[:, 0], zero[:, 1])  # the same square in every channel
    assert torch.equal(y[~zero], x[~zero])  # everything else untouched
    clipped = 0
    for k in range(len(x)):
        rows = torch.nonzero(zero[k, 0].any(1))[:, 0]
        cols = torch.nonzero(zero[k, 0].any(0))[:, 0]
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        assert bool(zero[k, 0, r0:r1, c0:c1].all())  # a filled rectangle
        assert int(zero[k, 0].sum()) == (r1 - r0) * (c1 - c0)
        for lo, hi, n in ((r0, r1, 12), (c0, c1, 10)):  # size, or clipped at the border
            assert hi - lo == min(size, n) or (hi - lo < size and (lo == 0 or hi == n))
        clipped += (r1 - r0) * (c1 - c0) < size * size
    assert size == 1 or clipped > 0


# -- colour ----------------------------------------------------------------------------------

def test_jitter_factor_one_is_identity():
    x = _x()
    assert torch.equal(color_jitter(x, 0, 0, 0, generator=_g()), x)
    ones = torch.ones(len(x))
    for fn in (adjust_brightness, adjust_contrast, adjust_saturation):
        assert torch.equal(fn(x, ones), x)
        assert torch.equal(fn(x, 1.0), x)


def test_jitter_definitions():
    x = _x()
    torch.testing.assert_close(adjust_brightness(x, 0.5), x * 0.5)
    gray = adjust_saturation(x, 0.0)  # every channel equals the luma
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])
    flat = adjust_contrast(x, 0.0)
    assert torch.allclose(flat, flat.mean(dim=(1, 2, 3), keepdim=True).expand_as(flat))
    y = color_jitter(x, 0.9, 0.9, 0.9, generator=_g())
    assert y.min() >= 0 and y.max() <= 1


def test_jitter_saturation_noop_on_one_channel():
    x = _x(c=1)
    assert torch.equal(color_jitter(x, saturation=0.8, generator=_g()), x)


def test_pca_lighting_identity_and_offset():
    x = _x()
    assert torch.equal(pca_lighting(x, 0.0, generator=_g()), x)
    y = pca_lighting(x, 0.1, generator=_g())
    d = y - x  # one colour offset per image, the same at every pixel
    assert torch.allclose(d, d[:, :, :1, :1].expand_as(d), atol=1e-6)
    assert d.abs().max() > 0
    with pytest.raises(ValueError, match=r"do not fit 1-channel images"):
        pca_lighting(_x(c=1), 0.1, generator=_g())


def test_pca_from_data_recovers_covariance():
    rng = np.random.default_rng(0)
    direction = np.array([0.6, 0.0, 0.8])
    t = rng.normal(0, 40, (200, 8, 8))
    pix = 128 + t[..., None] * direction + rng.normal(0, 2, (200, 8, 8, 3))
    images = np.clip(pix, 0, 255).round().astype(np.uint8).transpose(0, 3, 1, 2)
    val, vec = pca_from_data(images)
    assert val.shape == (3,) and vec.shape == (3, 3) and val[0] > 50 * val[1] >= 0
    assert abs(float(vec[:, 0] @ torch.tensor(direction, dtype=torch.float32))) > 0.999
    cov = np.cov(images.transpose(0, 2, 3, 1).reshape(-1, 3) / 255.0, rowvar=False)
    np.testing.assert_allclose((vec * val) @ vec.T, cov, atol=1e-6)
    y = pca_lighting(_x(), 0.1, val, vec, generator=_g())  # plugs straight in
    assert y.shape == (16, 3, 12, 10)


# -- pipeline and parser ---------------------------------------------------------------------

def test_parse_and_roundtrip():
    a = parse_augment("crop:4, flip ,jitter:0.4")
    assert str(a) == "crop:4,flip:0.5,jitter:0.4"
    assert parse_augment(str(a)) == a
    assert parse_augment(["crop:4", "flip", "jitter:0.4"]) == a
    assert not parse_augment("none") and not parse_augment(None) and str(Augment()) == "none"
    assert str(parse_augment("imagenet")) == "rrc:0.08,flip:0.5,jitter:0.4,lighting:0.1"


def test_standard_preset_by_shape():
    assert standard_spec((8, 1, 28, 28)) == "crop:2"  # digits: no flip
    assert standard_spec((8, 3, 32, 32)) == "crop:4,flip"
    assert standard_spec((8, 3, 224, 224)) == "rrc,flip"
    std = parse_augment("standard")
    assert std.describe((1, 1, 32, 32)) == "crop:2"
    x = _x(c=1, h=32, w=32)
    assert torch.equal(std(x, _g(5)), random_crop(x, None, 2, _g(5)))


@pytest.mark.parametrize("spec, match", [
    ("crop:4,flp", r"--augment 'crop:4,flp': unknown augmentation 'flp' \(did you mean 'flip'\?\)"
                   r"; valid: crop\[:padding\], flip\[:p\].*presets: none, standard"),
    ("crop:-1", r"--augment 'crop:-1': invalid padding '-1' for crop \(expected an integer >= 0"),
    ("flip:1.5", r"invalid p '1.5' for flip \(expected a number in \[0, 1\]"),
    ("cutout:4:5", r"cutout takes at most 1 argument\(s\)"),
    ("none:3", r"preset 'none' takes no arguments"),
])
def test_parse_errors(spec, match):
    with pytest.raises(UserError, match=match):
        parse_augment(spec)


# -- preview ---------------------------------------------------------------------------------

def _splits(c, h, w, n=40):
    rng = np.random.default_rng(0)
    img = ImageData(rng.integers(0, 256, (n, c, h, w), dtype=np.uint8),
                    rng.integers(0, 10, n), [str(i) for i in range(10)])
    return DataSplits("t", img, img)


@pytest.mark.parametrize("c, mode", [(1, "L"), (3, "RGB")])
def test_preview_grid_size(tmp_path, c, mode):
    out = preview(_splits(c, 28, 20), "standard", n=20, out=tmp_path / "g.png", zoom=1)
    assert out == tmp_path / "g.png"
    with Image.open(out) as im:  # 8 columns x 3 rows of 28x20 cells, each row under its
        assert im.format == "PNG" and im.mode == mode  # originals' row; 2 px borders
        assert im.size == (8 * 22 + 2, 2 * 3 * 30 + 2 + 2 * 4)  # 4 px between the pairs
    out = preview(_splits(c, 28, 20), "none", n=5, out=tmp_path / "z.png")  # auto zoom 2
    with Image.open(out) as im:
        assert im.size == ((5 * 22 + 2) * 2, (2 * 30 + 2) * 2)
    out = preview(_splits(c, 28, 20), "none", n=5, out=tmp_path / "z.png", originals=False)
    with Image.open(out) as im:
        assert im.size == ((5 * 22 + 2) * 2, (1 * 30 + 2) * 2)


def test_preview_none_shows_the_images(tmp_path):
    s = _splits(3, 6, 6, n=3)
    preview(s, "none", n=3, out=tmp_path / "g.png", zoom=1, seed=0)
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    np.testing.assert_array_equal(grid[2:8, 2:8], s.train.images[0].transpose(1, 2, 0))
    assert (grid[:2] == 255).all()


def test_make_grid_layout():
    x = torch.zeros(3, 1, 2, 2)
    g = make_grid(x, ncols=2, pad=1)
    assert g.shape == (2 * 3 + 1, 2 * 3 + 1, 1)
    assert (g[1:3, 1:3] == 0).all() and (g[4:6, 4:6] == 255).all()  # empty 4th cell filled


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("op", OPS)
def test_cuda_matches_cpu_with_a_cpu_generator(op):
    """A CPU generator drives CUDA batches with the same random draws; CUDA generators work."""
    x = _x()
    a = OPS[op](x, _g(4))
    b = OPS[op](x.cuda(), _g(4))
    assert b.device.type == "cuda"
    torch.testing.assert_close(b.cpu(), a, atol=1e-5, rtol=0)
    cg = lambda: torch.Generator(device="cuda").manual_seed(4)  # noqa: E731
    assert torch.equal(OPS[op](x.cuda(), cg()), OPS[op](x.cuda(), cg()))
