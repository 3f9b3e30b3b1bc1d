"""`cnnlab eval` and `cnnlab augment-preview` on a streamed image folder: the same results as
in memory, decoding only what they need."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.data import load_data
from cnnlab.data.stream import StreamingImageData
from cnnlab.errors import UserError
from cnnlab.inference import evaluate
from cnnlab.transforms import preview

from conftest import make_image_folder, write_png


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x (20 train, 5 test) gray 12x12 PNGs (see conftest.make_image_folder)."""
    return make_image_folder(tmp_path_factory.mktemp("data") / "imgs", 20, 5, seed=1)


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """A small MLP trained for one epoch on ``folder`` (as in test_stream.py)."""
    out = tmp_path_factory.mktemp("runs") / "mlp"
    assert main(["train", "--data", str(folder), "--model", "mlp", "--model-kwargs",
                 '{"hidden": [32]}', "--epochs", "1", "--batch-size", "16", "--threads", "1",
                 "--progress", "none", "--in-memory", "yes", "--out", str(out)]) == 0
    return out


def test_eval_streamed_equals_in_memory(run):
    mem = evaluate(run, in_memory="yes")
    streamed = evaluate(run, in_memory="no", workers=0)
    assert streamed.accuracy == mem.accuracy and streamed.top5 == mem.top5
    assert abs(streamed.loss - mem.loss) < 1e-6
    np.testing.assert_array_equal(streamed.confusion, mem.confusion)
    assert streamed.confusion.sum() == 15 and streamed.per_class == mem.per_class


def test_cli_eval_in_memory_and_workers_flags(run, capsys):
    assert main(["eval", str(run), "--json", "--in-memory", "no", "--workers", "1"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert main(["eval", str(run), "--json", "--in-memory", "yes"]) == 0
    assert streamed == json.loads(capsys.readouterr().out)
    for flags, match in ((["--in-memory", "maybe"], "--in-memory maybe: expected auto, yes or no"),
                         (["--workers", "-1"], "--workers -1: expected 0 or more")):
        assert main(["eval", str(run), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert match in err and "\n" not in err


def test_eval_checks_classes_and_follows_the_input_spec_on_a_streamed_split(run, tmp_path):
    two = make_image_folder(tmp_path / "two", 2, 2)
    for split in ("train", "test"):  # classes a, b only
        for p in (two / split / "c").iterdir():
            p.unlink()
        (two / split / "c").rmdir()
    with pytest.raises(UserError, match=r"classes \['a', 'b'\] differ"):
        evaluate(run, data=str(two), in_memory="no", workers=0)
    big = tmp_path / "big"
    for split in ("train", "test"):
        for c in "abc":
            write_png(big / split / c / "0.png", np.zeros((16, 16), np.uint8))
    # another size is brought to the model's by its input spec, as predict does (was refused)
    streamed = evaluate(run, data=str(big), in_memory="no", workers=0)
    held = evaluate(run, data=str(big), in_memory="yes", workers=0)
    assert sum(n for _, _, n in streamed.per_class) == 3
    assert streamed.accuracy == held.accuracy and streamed.loss == pytest.approx(held.loss)
    rgb = tmp_path / "rgb"
    for split in ("train", "test"):
        for c in "abc":
            write_png(rgb / split / c / "0.png", np.zeros((12, 12, 3), np.uint8))
    with pytest.raises(UserError, match="images are 3x12x12, the model expects 1x12x12"):
        evaluate(run, data=str(rgb), in_memory="no", workers=0)


@pytest.mark.parametrize("augment", ["none", "standard"])
def test_preview_streamed_picks_and_shows_the_same_images(folder, tmp_path, augment):
    streamed = load_data(str(folder), in_memory="no")
    assert isinstance(streamed.train, StreamingImageData)
    a = preview(load_data(str(folder), in_memory="yes"), augment, n=7, seed=4,
                out=tmp_path / "a.png")
    b = preview(streamed, augment, n=7, seed=4, out=tmp_path / "b.png")
    with Image.open(a) as ia, Image.open(b) as ib:
        assert ia.size == ib.size
        np.testing.assert_array_equal(np.asarray(ia), np.asarray(ib))


def test_cli_augment_preview_streams_a_folder_over_the_budget(folder, tmp_path, monkeypatch,
                                                              capsys):
    import cnnlab.data.stream as stream

    monkeypatch.setenv("CNNLAB_MEMORY_BUDGET_GB", "1e-6")  # ~1 KB: the folder streams
    decoded = []
    real = stream.decode_batch

    def counting(files, labels, idx, shape, policy="bilinear"):
        decoded.append(len(idx))
        return real(files, labels, idx, shape, policy)

    monkeypatch.setattr(stream, "decode_batch", counting)
    out = tmp_path / "grid.png"
    assert main(["augment-preview", "--data", str(folder), "--n", "5", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert decoded == [5]  # only the sampled images, not the 60 of the training split
    with Image.open(out) as im:
        assert im.format == "PNG"
