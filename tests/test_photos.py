"""Phone photos: one decoder everywhere (EXIF, reduced-scale JPEG), read at the model's size,
the crop policy, bad files in a photo folder, and the CLI path end to end."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps

from cnnlab.cli import main
from cnnlab.data import load_data
from cnnlab.data import decode
from cnnlab.data.samples import draw_photo, make_photo_folder, save_photo
from cnnlab.preprocess import load_image
from test_hardening_data import png_declaring


def _upright_marker(w: int, h: int) -> Image.Image:
    """White top-left quarter on black: its orientation is unambiguous."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = 255
    return Image.fromarray(a)


def test_training_and_predict_read_a_sideways_photo_upright_and_identically(tmp_path):
    upright = _upright_marker(300, 400)  # a portrait
    for split in ("train", "test"):
        for cls in ("a", "b"):
            save_photo(upright, tmp_path / "d" / split / cls / "p.jpg", sideways=True,
                       quality=95)
    with Image.open(tmp_path / "d" / "train" / "a" / "p.jpg") as im:
        assert im.size == (400, 300)  # stored sideways, as a phone does
    d = load_data(str(tmp_path / "d"), size=(40, 30), progress="none")
    x = d.train.images[0]  # (3, 40, 30): upright, 40 high
    assert x.shape == (3, 40, 30)
    assert x[:, :20, :15].mean() > 200 and x[:, 20:, :].mean() < 40  # white top-left
    spec = {"channels": 3, "size": [40, 30], "mean": [0.5] * 3, "std": [0.25] * 3}
    np.testing.assert_array_equal(load_image(tmp_path / "d" / "test" / "a" / "p.jpg", spec), x)


def test_crop_policy_is_shorter_side_to_256_of_224_then_centre():
    im = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 500, 3), np.uint8))
    got = decode.fit_size(im, 224, 224, "crop")
    # by hand: 300 -> 256 (scale 256/300), 500 -> 427; centre 224x224
    ref = im.resize((427, 256), Image.BILINEAR).crop((101, 16, 325, 240))
    assert got.size == (224, 224)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))


def test_a_large_jpeg_is_decoded_at_reduced_scale_never_full_size(tmp_path, monkeypatch):
    path = save_photo(draw_photo("circles", 4032, 3024, np.random.default_rng(0)),
                      tmp_path / "big.jpg")
    loaded = []
    real = Image.Image.load

    def spy(self):
        loaded.append(self.size)
        return real(self)

    monkeypatch.setattr(Image.Image, "load", spy)
    a = decode.read_image(path, 3, (224, 224), "crop")
    assert a.shape == (3, 224, 224)
    # 1/8 scale keeps the shorter side >= 256 (224 * 256/224): 504x378, not 4032x3024
    assert max(loaded, key=lambda s: s[0] * s[1]) == (504, 378)
    monkeypatch.setattr(Image.Image, "load", real)
    with Image.open(path) as im:  # and the result is close to a full decode's
        full = np.asarray(decode.fit_size(im.convert("RGB"), 224, 224, "crop"), np.float64)
    assert np.abs(full - a.transpose(1, 2, 0)).mean() < 6


def test_photo_folder_is_read_at_the_models_native_size_and_cached_small(tmp_path, capsys):
    root = make_photo_folder(tmp_path / "photos", n_train=4, n_test=2,
                             sizes=((800, 600), (600, 800), (640, 360)))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = load_data(str(root), default_size=(32, 32), model="lenet5", progress="lines")
    assert d.train.shape == d.test.shape == (3, 32, 32) and d.read_size == (32, 32)
    said = [str(x.message) for x in w if "read at lenet5's native 32x32" in str(x.message)]
    assert len(said) == 1  # said once, not per split
    assert "images differ in size (640x360 to " in said[0]
    from cnnlab.utils import cache_dir

    cached = sorted((cache_dir() / "arrays").glob("*-32x32-bilinear.npz"))
    assert len(cached) == 2 and all(p.stat().st_size < 8 * 3 * 32 * 32 + 4096 for p in cached)
    with pytest.raises(Exception, match=r"images differ in size .*--input-size HxW"):
        load_data(str(root), progress="none")  # no model, no size: asked for, not guessed


def _bad_files(folder):
    rng = np.random.default_rng(1)
    good = (rng.integers(0, 256, (60, 80, 3))).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    Image.fromarray(np.dstack([good, np.full((60, 80), 128, np.uint8)])).save(folder / "a.png")
    Image.fromarray((rng.integers(0, 65535, (50, 70))).astype(np.uint16)).save(folder / "b.tif")
    Image.fromarray(good).convert("CMYK").save(folder / "c.jpg")
    Image.fromarray(good).convert("P").save(folder / "d.gif")
    Image.fromarray(good[:1, :1]).save(folder / "e.png")
    Image.fromarray(good).save(folder / "f.jpg", format="PNG")  # a PNG named .jpg
    # 30000x30000 declared in a few bytes: over Pillow's bomb limit, skipped
    (folder / "g.png").write_bytes(png_declaring(30_000, 30_000))


def test_every_odd_file_is_read_or_skipped_in_one_warning(tmp_path):
    for split in ("train", "test"):
        _bad_files(tmp_path / "d" / split / "odd")
        make_photo_folder(tmp_path / "p", 2, 1, sizes=((120, 90),))
        for p in (tmp_path / "p" / split / "circles").iterdir():
            (tmp_path / "d" / split / "circles").mkdir(parents=True, exist_ok=True)
            p.rename(tmp_path / "d" / split / "circles" / p.name)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        d = load_data(str(tmp_path / "d"), default_size=(32, 32), progress="none")
    skipped = [str(x.message) for x in w if "skipped" in str(x.message)]
    assert len(skipped) == 2  # one line per split
    assert "skipped 2 unreadable image(s)" in skipped[0]
    assert "corrupt.jpg" in skipped[0] and "g.png (refused as a decompression bomb" in skipped[0]
    assert d.train.shape == (3, 32, 32)
    assert len(d.train) == 2 + 6  # 2 photos + alpha PNG, 16-bit TIFF, CMYK, GIF, 1x1, .jpg PNG


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    a = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "x.png")
    x = decode.read_native(tmp_path / "x.png")
    assert x.shape == (1, 64, 64) and x.min() == 0 and x.max() == 255
    assert 120 < x.mean() < 135  # a ramp, not 255 everywhere


def test_cli_trains_on_phone_photos_with_defaults_and_predicts_upright(tmp_path, capsys):
    root = make_photo_folder(tmp_path / "photos", n_train=8, n_test=4,
                             sizes=((1600, 1200), (1200, 1600), (1280, 720)))
    out = tmp_path / "run"
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert main(["train", "--data", str(root), "--epochs", "1", "--out", str(out),
                     "--batch-size", "8"]) == 0
    assert any("read at lenet5's native 32x32" in str(x.message) for x in w)
    import json

    meta = json.loads((out / "checkpoints" / "best.json").read_text())
    assert meta["input"]["size"] == [32, 32] and meta["input"]["resize"] == "bilinear"
    photo = next((root / "test" / "circles").glob("*.jpg"))
    assert main(["predict", str(out), str(photo)]) == 0
    printed = capsys.readouterr().out  # a 1-epoch model may guess either class
    assert photo.name in printed and ("circles" in printed or "stripes" in printed)
    # the same array as the trainer's own test image
    d = load_data(str(root), size=(32, 32), resize="bilinear", progress="none")
    spec = {**meta["input"]}
    assert np.array_equal(load_image(photo, spec), d.test.images[
        sorted(p.name for p in (root / "test" / "circles").glob("*.jpg")).index(photo.name)])


def test_exif_transpose_matches_pillows_for_every_orientation(tmp_path):
    base = _upright_marker(40, 30)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        base.save(tmp_path / f"o{o}.jpg", exif=exif, quality=95)
        with Image.open(tmp_path / f"o{o}.jpg") as im:
            want = np.asarray(ImageOps.exif_transpose(im).convert("RGB")).transpose(2, 0, 1)
        got = decode.read_native(tmp_path / f"o{o}.jpg")
        assert decode.probe(tmp_path / f"o{o}.jpg")[:2] == got.shape[1:]
        np.testing.assert_array_equal(got, want)


def test_crop_with_random_resized_crops_stores_training_photos_larger(tmp_path, capsys):
    """--resize crop with rrc: training photos kept at ~256/224 of the size (centre square),
    rrc crops resized to the model's size, evaluation (val, test) the exact centre crop."""
    root = make_photo_folder(tmp_path / "photos", n_train=6, n_test=2,
                             sizes=((640, 480), (480, 640)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--model", "resnet20", "--input-size", "64x64",
                 "--resize", "crop", "--augment", "rrc,flip", "--epochs", "1", "--batch-size",
                 "4", "--val-split", "0.25", "--out", str(out)]) == 0
    import json

    meta = json.loads((out / "checkpoints" / "best.json").read_text())
    assert meta["input"]["size"] == [64, 64] and meta["input"]["resize"] == "crop"
    from cnnlab.training.setup import load_training_data
    from cnnlab.config import TrainConfig

    cfg = TrainConfig(data=str(root), model="resnet20", input_size="64x64", resize="crop",
                      augment="rrc,flip", val_split=0.25, batch_size=4)
    data, val = load_training_data(cfg, "none")
    assert data.train.shape == (3, 74, 74) and data.test.shape == val.shape == (3, 64, 64)
    # the stored centre square's centre is exactly the crop policy of the file
    spec = {"channels": 3, "size": [64, 64], "mean": [0.5] * 3, "std": [0.25] * 3,
            "resize": "crop"}
    names = sorted(p.name for p in (root / "test" / "circles").iterdir())
    np.testing.assert_array_equal(
        data.test.images[0], load_image(root / "test" / "circles" / names[0], spec))
    import torch

    from cnnlab.transforms import parse_augment

    aug = parse_augment("rrc,flip")
    aug.size = (64, 64)
    x = torch.from_numpy(data.train.images[:4]).float() / 255
    assert aug(x, torch.Generator().manual_seed(0)).shape == (4, 3, 64, 64)
    aug = parse_augment("flip")
    aug.size = (64, 64)  # no rrc: the centre, as evaluation
    np.testing.assert_array_equal(aug(x, torch.Generator().manual_seed(0))[:, :, 0, :].shape,
                                  (4, 3, 64))


def test_loose_images_beside_one_folder_are_said_not_silently_dropped(tmp_path, capsys):
    make_photo_folder(tmp_path / "d", 2, 1, sizes=((64, 48),))
    flat = tmp_path / "flat"
    (tmp_path / "d" / "train" / "circles").rename(flat / "sub" if False else tmp_path / "sub")
    flat.mkdir()
    for p in (tmp_path / "d" / "train" / "stripes").iterdir():
        p.rename(flat / p.name)  # loose images ...
    (tmp_path / "sub").rename(flat / "circles")  # ... beside one subfolder
    assert main(["train", "--data", str(flat), "--epochs", "1", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "found 2 loose image(s) in" in err and "beside circles/" in err
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_a_tiny_training_set_is_clamped_with_a_note(tmp_path, capsys):
    root = make_photo_folder(tmp_path / "d", 3, 1, sizes=((64, 48),))
    assert main(["train", "--data", str(root), "--epochs", "1", "--val-split", "0",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "--batch-size 64: the training set has 6 images; using 6" in err
    # same-size 64x48 photos: LeNet-5 takes only 32 (or 28): read at its size, and said
    assert "--model lenet5 takes 32x32 images, the data are 64x48: every image resized" in err


def test_viz_takes_model_name_pretrained_like_predict(tmp_path, monkeypatch):
    """`cnnlab viz filters|gradcam --model NAME --pretrained`: the ImageNet network (here
    resnet18 with weights served from the test's own cache file, as test_pretrained does)."""
    import torch

    import cnnlab.pretrained as pre
    from cnnlab.registry import get_model

    ws = pre.weight_set("resnet18")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    path = pre.cached_path(ws)
    path.parent.mkdir(parents=True)
    torch.save(get_model("resnet18", num_classes=1000).state_dict(), path)
    monkeypatch.setattr(pre, "_check_hash", lambda *a, **k: None)  # a locally made file
    photo = save_photo(draw_photo("circles", 640, 480, np.random.default_rng(0)),
                       tmp_path / "p.jpg")
    assert main(["viz", "filters", "--model", "resnet18", "--pretrained", "--out",
                 str(tmp_path / "f.png")]) == 0
    assert main(["viz", "gradcam", "--model", "resnet18", "--pretrained", str(photo),
                 "--out", str(tmp_path / "g.png"), "--json"]) == 0
    assert (tmp_path / "f.png").stat().st_size > 1000 and (tmp_path / "g.png").exists()
    assert main(["viz", "gradcam", "--model", "resnet18", "--pretrained", "--out",
                 str(tmp_path / "h.png")]) == 2  # no images of its own: asked for
