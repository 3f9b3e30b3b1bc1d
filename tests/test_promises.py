"""Promises kept (issue 21): defaults that fit the data, messages that say what happened,
options that are either used or refused, and the Python API's documentation."""

from __future__ import annotations

import socket

import pytest

from cnnlab.errors import UserError


def _refused_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 2. a failed download leaves nothing ----------------------------------------------------
def test_failed_download_leaves_no_empty_dataset_folder(monkeypatch, tmp_path):
    import dataclasses

    from cnnlab.data import canonical
    from cnnlab.utils import cache_dir

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    url = f"http://127.0.0.1:{_refused_port()}/"
    monkeypatch.setitem(canonical.DATASETS, "mnist",
                        dataclasses.replace(canonical.DATASETS["mnist"], url=url))
    with pytest.raises(UserError, match="could not download"):
        canonical.load_canonical("mnist", progress="none")
    assert not (cache_dir() / "datasets" / "mnist").exists()
    assert not (cache_dir() / "datasets").exists()


# -- 5. the small-input variant gets a small input -------------------------------------------
@pytest.mark.parametrize("name", ["alexnet", "zfnet"])
def test_summary_small_input_defaults_to_32x32(name, capsys):
    from cnnlab.cli import main

    assert main(["summary", name, "--small-input", "--json"]) == 0
    import json

    s = json.loads(capsys.readouterr().out)
    assert s["input_shape"] == [3, 32, 32]


# -- 6. `cnnlab models` builds no weights --------------------------------------------------
def test_models_table_runs_no_initialiser(monkeypatch):
    import torch

    from cnnlab.analysis import models_table

    def boom(*a, **k):
        raise AssertionError("an initialiser ran while counting parameters")

    for n in ("normal_", "kaiming_normal_", "kaiming_uniform_", "uniform_", "constant_",
              "zeros_", "xavier_uniform_", "trunc_normal_"):
        monkeypatch.setattr(torch.nn.init, n, boom)
    rows = {r["name"]: r["params"] for r in models_table()}
    assert rows["alexnet"] == 62_378_344 and rows["lenet5"] == 61_706
    assert torch.nn.init.normal_ is boom  # restored afterwards


def test_slow_note_speaks_only_when_slow(capsys, monkeypatch):
    import sys
    import time

    from cnnlab.cli.common import slow_note

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)

    with slow_note("x", "quick"):
        pass
    with slow_note("x", "working...", after=0.05):
        time.sleep(0.3)
    assert capsys.readouterr().err == "cnnlab x: working...\n"


# -- 7. explain: every option is used or refused --------------------------------------------
def test_explain_pooling_stride_one_is_used():
    from cnnlab.scratch.explain import explain

    text = explain("pooling", stride=1)
    assert "a 2x2 window, stride 1" in text and "(2,2):" in text  # 3x3 overlapping windows
    assert "window (2,2)" in explain("stochastic-pooling", stride=1)


def test_explain_params_and_output_size_use_stride_and_padding():
    from cnnlab.scratch.explain import explain

    p = explain("params", stride=2, padding=1)
    assert "10 filters 5x5, stride 2, pad 1 on 32x32x3: output 15x15x10" in p
    assert "10 filters: 760 parameters" in p
    o = explain("output-size", stride=2, padding=1)
    assert "height: (5 - 3 + 2*1) / 2 + 1 = 3" in o


@pytest.mark.parametrize("topic, kw, names", [
    ("params", {"input": "1 2; 3 4"}, "--input: not used by the params topic \\(it takes "
                                      "--stride, --padding\\)"),
    ("rgb-conv", {"stride": 2}, "--stride: not used by the rgb-conv topic \\(it takes no "
                                "options\\)"),
    ("pooling", {"kernel": "1 1; 1 1", "padding": 1},
     "--kernel, --padding: not used by the pooling topic \\(it takes --input, --stride\\)")])
def test_explain_refuses_unused_options(topic, kw, names):
    from cnnlab.scratch.explain import explain

    with pytest.raises(ValueError, match=names):
        explain(topic, **kw)


def test_explain_blames_the_default_kernel_not_an_unpassed_flag(capsys):
    from cnnlab.cli import main

    assert main(["explain", "conv", "--input", "1 2; 3 4"]) == 2
    err = capsys.readouterr().err
    assert "the default 3x3 filter is larger than the 2x2 input" in err
    assert "--kernel:" not in err


# -- 8. per-epoch lines and the result on stdout ----------------------------------------------
def test_train_epoch_lines_go_to_stdout(tmp_path, capsys):
    from cnnlab.cli import main

    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "r"), "--progress", "lines",
                 "--threads", "1"]) == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert [ln.split()[1] for ln in lines if ln.startswith("epoch ")] == ["1/2", "2/2"], cap.out
    assert "epoch 1/2" not in cap.err


# -- a small trained run (the `make demo` data: built-in digits, 360 test images) ------------
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from cnnlab.config import make_config
    from cnnlab.training.loop import train

    out = tmp_path_factory.mktemp("promises") / "demo"
    train(make_config(epochs=1, out=str(out), progress="none", seed=0, threads=1))
    return out


# -- 4. a default shrinks to the data, an explicit value is checked ---------------------------
def test_embed_default_n_shrinks_to_the_test_set(demo_run, tmp_path, capsys):
    from cnnlab.cli import main

    out = tmp_path / "e.png"
    assert main(["viz", "embed", str(demo_run), "--method", "pca", "--out", str(out),
                 "--json"]) == 0
    cap = capsys.readouterr()
    import json

    assert json.loads(cap.out)["images"] == 360 and out.exists()
    assert "--n: using all 360 test images (the default 2000" in cap.err
    assert "embed: pca map 1/2 of 360 images by features" in cap.err  # progress line
    assert main(["viz", "embed", str(demo_run), "--method", "pca", "--n", "2000",
                 "--out", str(out)]) == 2
    assert "--n 2000: expected 1..360" in capsys.readouterr().err


def test_retrieve_defaults_shrink_and_own_images_are_queries(demo_run, tmp_path, capsys):
    import json

    import numpy as np

    from cnnlab.cli import main
    from conftest import write_png

    img = write_png(tmp_path / "my.png", np.full((20, 20), 200, np.uint8))
    assert main(["viz", "retrieve", str(demo_run), str(img), "--k", "3", "--json",
                 "--out", str(tmp_path / "r.png")]) == 0
    cap = capsys.readouterr()
    r = json.loads(cap.out)
    assert r["gallery"] == 1437 and "--gallery: using all 1437 training images" in cap.err
    q, = r["query_images"]
    assert q["image"] == str(img) and len(q["features"]) == 3 and len(q["pixels"]) == 3
    assert main(["viz", "retrieve", str(demo_run), "--queries", "9999",
                 "--out", str(tmp_path / "r.png")]) == 2
    assert "--queries 9999: expected 1..360" in capsys.readouterr().err


# -- 11. --class by name, one per image; cnnlab.gradcam returns NumPy -------------------------
def test_gradcam_class_names_and_one_per_image(demo_run, tmp_path, capsys):
    import json

    from cnnlab.cli import main

    assert main(["viz", "gradcam", str(demo_run), "--n", "2", "--class", "7,3", "--json",
                 "--out", str(tmp_path / "g.png")]) == 0
    assert json.loads(capsys.readouterr().out)["target_classes"] == ["7", "3"]
    assert main(["viz", "gradcam", str(demo_run), "--n", "2", "--class", "seven",
                 "--out", str(tmp_path / "g.png")]) == 2
    assert "--class seven: no such class" in capsys.readouterr().err


def test_public_gradcam_returns_numpy(demo_run, tmp_path):
    import numpy as np

    import cnnlab
    from cnnlab.data import load_data

    test = load_data("digits").test
    maps, classes, layer = cnnlab.gradcam(demo_run, test.images[:3], target=["1", 2, "3"])
    assert isinstance(maps, np.ndarray) and maps.shape == (3, 32, 32)
    assert maps.dtype == np.float32 and 0 <= maps.min() and maps.max() <= 1
    assert classes.tolist() == [1, 2, 3] and layer == "features.3"
    from conftest import write_png

    p = write_png(tmp_path / "x.png", test.images[0, 0])
    r = cnnlab.gradcam(str(demo_run), p, target="7")
    assert r.maps.shape == (1, 32, 32) and r.classes.tolist() == [7]


# -- 13. the public API documents its parameters ---------------------------------------------
@pytest.mark.parametrize("name", ["train", "evaluate", "predict", "summary", "load_model",
                                  "gradcam"])
def test_public_functions_document_every_parameter(name):
    import inspect
    import pydoc

    import cnnlab

    f = getattr(cnnlab, name)
    assert inspect.isfunction(f) or inspect.isfunction(inspect.unwrap(f)), type(f)
    text = pydoc.render_doc(f, renderer=pydoc.plaintext)
    assert text.splitlines()[0].startswith("Python Library Documentation: function"), text[:200]
    assert "old home" not in text and "DATA" not in text  # not a module's help page
    doc = inspect.getdoc(f)
    for p in inspect.signature(f).parameters:
        assert p in doc, f"cnnlab.{name}: parameter {p!r} is not documented"


def test_train_is_the_function_and_its_parts_live_in_training():
    import importlib.util

    import cnnlab
    from cnnlab import train
    from cnnlab.training.evaluation import normalizer, split_output  # noqa: F401 - their home

    assert train is cnnlab.train and callable(cnnlab.train)
    assert importlib.util.find_spec("cnnlab.train") is None  # no module shadowing the function
    assert "epochs" in __import__("inspect").signature(cnnlab.train).parameters


# -- 9. messages -----------------------------------------------------------------------------
def test_unknown_model_message_does_not_dump_every_name(capsys):
    from cnnlab.cli import main

    assert main(["summary", "lenet"]) == 2
    err = capsys.readouterr().err
    assert "lenet5" in err and "`cnnlab models` lists all" in err
    assert "vgg19_bn" not in err and err.count("\n") == 1


def test_data_path_in_the_wrong_case_gets_did_you_mean(tmp_path, capsys, monkeypatch):
    from cnnlab.cli import main

    (tmp_path / "mnist.tar.gz").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--data", "MNIST.tar.gz", "--epochs", "1"]) == 2
    assert "did you mean mnist.tar.gz?" in capsys.readouterr().err
    assert main(["eval", "nowhere", "--data", str(tmp_path / "MNIST.tar.gz")]) != 0


def test_teacher_class_mismatch_reads_well(demo_run):
    from cnnlab.training.teacher import load_teacher

    with pytest.raises(UserError, match=r"its 10 classes \[0, 1, 2, 3, \.\.\.\] are not the "
                                        r"student's 3 classes \[a, b, c\]"):
        load_teacher(str(demo_run), ["a", "b", "c"], "cpu")


def test_ctrl_c_says_interrupted_once(monkeypatch, tmp_path, capsys):
    from cnnlab.cli import main
    from cnnlab.training import log, loop

    def stopped(s):
        log.say(True, f"interrupted after epoch 1: checkpoint saved; continue with cnnlab "
                      f"train --resume {s.run.path}")
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "fit", stopped)
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r"),
                 "--progress", "none"]) == 130
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split()[0] for ln in lines] == ["interrupted"], lines


def test_predict_with_swapped_arguments_says_so(demo_run, tmp_path, capsys):
    import numpy as np

    from cnnlab.cli import main
    from conftest import write_png

    img = write_png(tmp_path / "seven.png", np.zeros((8, 8), np.uint8))
    assert main(["predict", str(img), str(demo_run)]) == 2
    err = capsys.readouterr().err
    assert "the checkpoint comes first" in err and "has no images" not in err
    assert main(["predict", str(img), str(img)]) == 2
    assert f"{img} is an image: the checkpoint or run directory comes first" in \
        capsys.readouterr().err


# -- 10. augment-preview shows the originals beside the augmented images ----------------------
def test_augment_preview_shows_originals_above_augmented(tmp_path):
    import numpy as np
    from PIL import Image

    from cnnlab.data import DataSplits, ImageData
    from cnnlab.transforms import preview

    rng = np.random.default_rng(0)
    img = ImageData(rng.integers(0, 256, (10, 1, 6, 6), dtype=np.uint8), np.zeros(10, int),
                    ["a"])
    s = DataSplits("t", img, img)
    preview(s, "flip:1", n=3, out=tmp_path / "g.png", zoom=1, seed=0)  # always flipped
    grid = np.asarray(Image.open(tmp_path / "g.png"))
    idx = np.sort(np.random.default_rng(0).choice(10, 3, replace=False))
    first = img.images[idx[0], 0]
    np.testing.assert_array_equal(grid[2:8, 2:8], first)  # original, top row
    np.testing.assert_array_equal(grid[10:16, 2:8], first[:, ::-1])  # flipped, below it


# -- 6. bench says what it is doing ----------------------------------------------------------
def test_bench_has_progress_lines(capsys):
    from cnnlab.cli import main

    assert main(["bench", "lenet5", "--batch", "1", "--runtime", "torch,onnx",
                 "--seconds", "0.05", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "cnnlab bench: onnx: exporting the model" in err
    assert "cnnlab bench: torch: timing batch 1" in err


def test_train_with_bars_on_a_terminal_still_logs_epochs_to_a_redirected_stdout(
        tmp_path, capsys):
    from cnnlab.cli import main

    assert main(["train", "--epochs", "2", "--out", str(tmp_path / "r"), "--progress", "bar",
                 "--threads", "1"]) == 0
    out = capsys.readouterr().out  # captured: not a terminal, as with `> log.txt`
    assert [ln.split()[1] for ln in out.splitlines() if ln.startswith("epoch ")] == ["1/2",
                                                                                    "2/2"]


def test_lab_compare_default_k_shrinks_to_a_tiny_training_set(tmp_path):
    import numpy as np

    from cnnlab.baselines.compare import compare
    from conftest import write_png

    for split in ("train", "test"):
        for c, v in (("a", 20), ("b", 220)):
            write_png(tmp_path / "d" / split / c / "0.png", np.full((8, 8), v, np.uint8))
    said = []
    (row,) = compare(str(tmp_path / "d"), methods="knn", log=said.append)
    assert row["detail"].startswith("k=2") and any("--k: using 2" in s for s in said)
    with pytest.raises(UserError, match="--k 3: larger than the training set"):
        compare(str(tmp_path / "d"), methods="knn", k=3)
