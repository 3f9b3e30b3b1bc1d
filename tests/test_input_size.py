"""--input-size HxW and --resize bilinear|pad: the resize itself (against Pillow and NumPy
computed here), the same preprocessing in training, eval and predict, and bad values."""

import json

import numpy as np
import pytest
import torch
from conftest import write_png
from PIL import Image

import cnnlab
from cnnlab.checkpoint import load_checkpoint, resolve_checkpoint
from cnnlab.cli import main
from cnnlab.config import make_config
from cnnlab.data import load_data
from cnnlab.data.resize import apply_input_size, resize_images
from cnnlab.errors import UserError
from cnnlab.preprocess import load_image

RNG = np.random.default_rng(0)


def test_bilinear_is_pillows_bilinear_resize():
    gray = RNG.integers(0, 256, (3, 1, 12, 9), dtype=np.uint8)
    rgb = RNG.integers(0, 256, (2, 3, 7, 11), dtype=np.uint8)
    out = resize_images(gray, (20, 16))
    assert out.shape == (3, 1, 20, 16) and out.dtype == np.uint8
    for a, b in zip(gray, out):
        ref = np.asarray(Image.fromarray(a[0], "L").resize((16, 20), Image.BILINEAR))
        np.testing.assert_array_equal(b[0], ref)
    out = resize_images(rgb, (5, 5))
    for a, b in zip(rgb, out):
        ref = np.asarray(Image.fromarray(a.transpose(1, 2, 0), "RGB").resize((5, 5),
                                                                           Image.BILINEAR))
        np.testing.assert_array_equal(b, ref.transpose(2, 0, 1))
    assert resize_images(gray, (12, 9)) is gray  # already that size: untouched


def test_pad_centres_on_black_and_shrinks_only_to_fit():
    a = RNG.integers(1, 256, (1, 3, 10, 6), dtype=np.uint8)
    out = resize_images(a, (16, 17), "pad")[0]
    ref = np.zeros((3, 16, 17), np.uint8)  # never enlarged: placed at ((16-10)//2, (17-6)//2)
    ref[:, 3:13, 5:11] = a[0]
    np.testing.assert_array_equal(out, ref)
    # 20x10 into 10x10: scaled by 0.5 to 10x5, then centred at column (10 - 5) // 2 = 2
    tall = RNG.integers(1, 256, (1, 1, 20, 10), dtype=np.uint8)
    out = resize_images(tall, (10, 10), "pad")[0, 0]
    small = np.asarray(Image.fromarray(tall[0, 0]).resize((5, 10), Image.BILINEAR))
    ref = np.zeros((10, 10), np.uint8)
    ref[:, 2:7] = small
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("policy", ["bilinear", "pad"])
def test_predicts_preprocessing_equals_the_trainers(tmp_path, policy):
    """A PNG through cnnlab.preprocess.load_image (predict, serve, ONNX) == the array through
    the trainer's resize."""
    a = RNG.integers(0, 256, (1, 1, 9, 14), dtype=np.uint8)
    write_png(tmp_path / "x.png", a[0, 0])
    spec = {"channels": 1, "size": [12, 12], "mean": [0.5], "std": [0.25], "resize": policy}
    np.testing.assert_array_equal(load_image(tmp_path / "x.png", spec),
                                  resize_images(a, (12, 12), policy)[0])


def _tree(root, size=12, n=12):
    """Two classes of gray images: a bright square top-left vs bottom-right, plus noise."""
    for k, c in enumerate(("a", "b")):
        for i in range(n):
            x = RNG.integers(0, 60, (size, size), dtype=np.uint8)
            h = size // 2
            x[(0 if k == 0 else h):(h if k == 0 else size), (0 if k == 0 else h):
              (h if k == 0 else size)] = 220
            write_png(root / c / f"{i:02d}.png", x)
    return root


def test_streamed_batches_are_resized_like_the_arrays(tmp_path):
    root = _tree(tmp_path / "tree", n=6)
    mem = load_data(str(root), val_split=0.25, in_memory="yes")
    streamed = load_data(str(root), val_split=0.25, in_memory="no")
    mem, _ = apply_input_size(mem, None, "20x20", "pad")
    streamed, _ = apply_input_size(streamed, None, "20x20", "pad")
    assert streamed.train.shape == (1, 20, 20) and not hasattr(streamed.train, "images")
    idx = np.arange(len(streamed.train))
    (xb, yb), = streamed.train.batches([idx], workers=0)
    np.testing.assert_array_equal(xb.numpy(), mem.train.images)
    np.testing.assert_array_equal(yb.numpy(), mem.train.labels)


def test_train_eval_predict_apply_the_same_preprocessing(tmp_path, capsys):
    root = _tree(tmp_path / "tree")
    run = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--model-kwargs", '{"hidden": [16]}', "--data",
                 str(root), "--test-split", "0.25", "--val-split", "0", "--input-size", "20x20",
                 "--resize", "pad", "--epochs", "2", "--batch-size", "6", "--progress", "none",
                 "--threads", "1", "--out", str(run)]) == 0
    weights, meta = load_checkpoint(resolve_checkpoint(str(run)))
    assert meta["input"]["size"] == [20, 20] and meta["input"]["resize"] == "pad"
    assert meta["model_kwargs"]["input_size"] == 20
    final = json.loads((run / "final.json").read_text())
    # the trainer's own test images (resized once, as uint8) and the files they came from
    from cnnlab.training.setup import load_training_data

    cfg = make_config(meta["config"])
    data, _ = load_training_data(cfg, progress=False)
    raw = load_data(str(root), val_split=0.25, seed=cfg.seed).test
    assert data.test.shape == (1, 20, 20) and raw.shape == (1, 12, 12)
    model, _ = cnnlab.load_model(str(run))
    spec = meta["input"]
    x = (torch.from_numpy(data.test.images).float() / 255 - spec["mean"][0]) / spec["std"][0]
    with torch.no_grad():
        probs = torch.softmax(model(x), 1).numpy()
    assert (probs.argmax(1) == data.test.labels).mean() == pytest.approx(final["test_accuracy"])
    pick = [int(np.flatnonzero(raw.labels == k)[j]) for k in (0, 1) for j in (0, 1)]
    for i in pick:  # the original 12x12 files, padded by predict
        write_png(tmp_path / f"t{i}.png", raw.images[i, 0])
    got = cnnlab.predict(str(run), [str(tmp_path / f"t{i}.png") for i in pick], topk=2)
    for i, r in zip(pick, got):
        p = {t["class"]: t["probability"] for t in r["top"]}
        np.testing.assert_allclose([p["a"], p["b"]], probs[i], rtol=1e-5, atol=1e-6)
    assert cnnlab.evaluate(str(run)).accuracy == pytest.approx(final["test_accuracy"])
    # data of another size (24x24, no test/): eval brings it to 20x20 by the same policy
    other = _tree(tmp_path / "other", size=24, n=4)
    r = cnnlab.evaluate(str(run), data=str(other), test_split=0.5)
    assert sum(n for _, _, n in r.per_class) == 4
    capsys.readouterr()
    for flag in ("--test-split", "--val-split"):  # the old name still works, hidden
        assert main(["eval", str(run), "--data", str(other), flag, "0.5", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(r.accuracy)


@pytest.mark.parametrize("value", ["0x5", "64x", "axb", "64x64x3", "5000x5000", "-3"])
def test_bad_input_size_exits_2_naming_the_flag(value, capsys):
    with pytest.raises(SystemExit) as e:  # refused by argparse, at parse time
        main(["train", "--input-size", value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--input-size" in err and value in err and "HxW" in err


def test_bad_config_values_are_named():
    with pytest.raises(UserError, match=r"config: input_size 12by12: expected HxW"):
        make_config({"input_size": "12by12"})
    with pytest.raises(UserError, match=r"config: resize: found 'zoom', expected one of"):
        make_config({"resize": "zoom"})
    assert make_config({"input_size": "32"}).input_size == "32"


def test_too_small_input_suggests_an_input_size(tmp_path, capsys):
    root = _tree(tmp_path / "tree", n=4)
    assert main(["train", "--model", "vgg11", "--data", str(root), "--test-split", "0.5",
                 "--val-split", "0", "--epochs", "1", "--batch-size", "2", "--progress",
                 "none", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "1x12x12 images are too small" in err and "--input-size 32x32" in err
    assert not (tmp_path / "run").exists()
