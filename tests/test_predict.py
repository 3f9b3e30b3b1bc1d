"""`cnnlab predict` (issues 9 and 13): folders, --csv, EXIF orientation, mismatch warnings,
decompression bombs; an exported .onnx model predicts without importing torch and gives the
same top-k as the checkpoint does through torch."""

import csv
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from cnnlab.cli import main
from cnnlab.preprocess import load_image

from conftest import write_png


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, its .onnx export, a folder of real test digits in class sub-folders)."""
    from cnnlab.data import load_data

    root = tmp_path_factory.mktemp("pred")
    assert main(["train", "--epochs", "3", "--out", str(root / "run"), "--progress", "none"]) == 0
    ckpt = root / "run" / "checkpoints" / "best.safetensors"
    assert main(["export", str(ckpt), "--dynamic-batch"]) == 0
    d = load_data("digits", progress=False)
    for i in range(12):
        write_png(root / "imgs" / str(d.test.labels[i]) / f"{i}.png", d.test.images[i, 0])
    return ckpt, ckpt.with_suffix(".onnx"), root / "imgs"


def predict_json(capsys, *argv) -> list[dict]:
    assert main(["predict", *map(str, argv), "--json", "--topk", "3"]) == 0
    return json.loads(capsys.readouterr().out)


def test_onnx_gives_the_same_topk_as_torch_on_a_folder(trained, capsys):
    ckpt, onnx_path, folder = trained
    by_torch = predict_json(capsys, ckpt, folder, "--runtime", "torch")
    by_onnx = predict_json(capsys, onnx_path, folder)
    assert len(by_torch) == 12 == len(by_onnx)  # the folder, searched recursively
    assert [r["image"] for r in by_torch] == sorted(str(p) for p in folder.rglob("*.png"))
    for a, b in zip(by_torch, by_onnx):
        assert a["image"] == b["image"]
        assert [t["class"] for t in a["top"]] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose([t["probability"] for t in a["top"]],
                                   [t["probability"] for t in b["top"]], atol=1e-5)


# Packages a `pip install "cnnlab[onnx]"` does not have: importing one fails, as it would there.
FULL_ONLY = ["torch", "safetensors", "tqdm", "sklearn", "matplotlib", "captum", "onnx",
             "onnxscript", "fastapi", "uvicorn"]


def blocking(packages: list[str]) -> str:
    """Python source making every import of `packages` fail, as if not installed."""
    return f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
"""


BLOCK = blocking(FULL_ONLY)


def test_onnx_predict_never_imports_torch(trained, tmp_path):
    """In a fresh interpreter where torch (and every other package of cnnlab[full]) cannot
    be imported, as after `pip install "cnnlab[onnx]"`."""
    _, onnx_path, folder = trained
    code = BLOCK + ("import json; from cnnlab.cli import main; "
                    f"rc = main(['predict', {str(onnx_path)!r}, {str(folder)!r}, '--csv', "
                    f"{str(tmp_path / 'p.csv')!r}]); "
                    "print(json.dumps([rc, sorted(m.split('.')[0] for m in sys.modules "
                    f"if m.split('.')[0] in {FULL_ONLY!r})]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, []]
    code = BLOCK + "from cnnlab.cli import main; sys.exit(main(['train', '--epochs', '1']))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.strip().startswith("cnnlab train: error: needs "
                                                                 "the package")
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert rows[0] == ["image", "class_1", "probability_1", "class_2", "probability_2",
                       "class_3", "probability_3"]
    assert len(rows) == 13 and all(0 <= float(r[2]) <= 1 for r in rows[1:])


def test_a_checkpoint_with_its_export_beside_it_runs_without_torch(trained, tmp_path, capsys):
    ckpt, onnx_path, folder = trained
    img = str(next(folder.rglob("*.png")))
    code = blocking(["torch"]) + ("from cnnlab.cli import main; "
                                  f"sys.exit(main(['predict', {str(ckpt)!r}, {img!r}, "
                                  "'--timing']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "runtime onnxruntime" in out.stderr, out.stderr
    # a checkpoint that changed since its export: the export is stale, torch runs it
    from cnnlab.checkpoint import load_checkpoint, save_checkpoint

    weights, meta = load_checkpoint(ckpt)
    weights = {k: v * 1.01 if v.dtype.kind == "f" else v for k, v in weights.items()}
    moved = save_checkpoint(tmp_path / "best", weights, meta)
    (tmp_path / "best.onnx").write_bytes(onnx_path.read_bytes())
    assert main(["predict", str(moved), img, "--timing"]) == 0
    assert "runtime torch" in capsys.readouterr().err
    assert main(["predict", str(moved), img, "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cnnlab predict: error: --runtime onnx: no ONNX export of {moved} beside it "
                   f"(or it is out of date); run `cnnlab export {moved}` first")


def test_onnx_without_metadata_needs_classes_and_input(trained, tmp_path, capsys):
    _, onnx_path, folder = trained
    proto = onnx.load(str(onnx_path))
    spec = json.loads({p.key: p.value for p in proto.metadata_props}["cnnlab.input"])
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    img = next(folder.rglob("*.png"))
    assert main(["predict", str(bare), str(img)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"cnnlab predict: error: {bare}: ONNX model has no cnnlab metadata "
                   f"(cnnlab.classes); export it with `cnnlab export`, or give --classes by hand")
    names = ",".join("zero one two three four five six seven eight nine".split())
    want = predict_json(capsys, onnx_path, img)[0]["top"]
    got = predict_json(capsys, bare, img, "--classes", names, "--input", json.dumps(spec))
    assert [t["class"] for t in got[0]["top"]] == [names.split(",")[int(t["class"])]
                                                   for t in want]
    assert main(["predict", str(bare), str(img), "--classes", "a,b", "--input", "1x32x32"]) == 2
    assert "the model has 10 outputs but 2 class names were given" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    (b"not a model at all", "not a usable ONNX model"),
    (b"", "not a usable ONNX model"),
])
def test_a_file_that_is_not_onnx_exits_2(trained, tmp_path, content, message, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    assert main(["predict", str(bad), str(next(trained[2].rglob("*.png")))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cnnlab predict: error: {bad}: {message}") and "\n" not in err


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40), np.uint8)
    a[:5, :10] = 255  # a bright block in the top-left corner of a wide image
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write
    im.save(tmp_path / "phone.png", exif=exif)
    spec = {"channels": 1, "size": [40, 20], "mean": [0.1], "std": [0.3]}
    got = load_image(tmp_path / "phone.png", spec)[0]
    np.testing.assert_array_equal(got, np.rot90(a, k=-1))  # upright: tall, block top-right


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A few-byte PNG declaring width x height 8-bit gray pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_exits_2_naming_the_path(trained, tmp_path, capsys):
    bomb = _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    assert main(["predict", str(trained[0]), str(bomb)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cnnlab predict: error: {bomb}: refused as a decompression bomb")
    assert "\n" not in err


def test_a_large_honest_image_predicts_without_a_pillow_warning(trained, tmp_path, capsys):
    im = Image.new("L", (12_000, 12_000), 0)  # 144 M pixels: over Pillow's warning limit
    im.paste(255, (5000, 2000, 7000, 10000))  # a "1"
    im.save(tmp_path / "big.png", compress_level=1)
    del im
    assert main(["predict", str(trained[0]), str(tmp_path / "big.png")]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{tmp_path / 'big.png'}: ") and err == ""


def test_plain_mismatches_warn_once_per_kind(trained, tmp_path, capsys):
    ckpt, _, folder = trained
    digit = np.asarray(Image.open(next(folder.rglob("*.png"))))
    rng = np.random.default_rng(0)
    files = [write_png(tmp_path / "inverted" / f"{i}.png", 255 - digit) for i in range(2)]
    files.append(write_png(tmp_path / "photo.png",
                           rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)))
    files.append(write_png(tmp_path / "strip.png", np.tile(digit, (1, 5))))
    files.append(next(folder.rglob("*.png")))  # a normal digit
    assert main(["predict", str(ckpt), *map(str, files)]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 5
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(ln.startswith("cnnlab predict: warning: ") for ln in lines)
    assert "2 of 5 image(s) plainly unlike the model's input, inverted polarity" in err
    assert "1 of 5 image(s) plainly unlike the model's input, a colour image" in err
    assert "an aspect ratio far from the model's 32:32" in err
    assert main(["predict", str(ckpt), str(files[-1])]) == 0
    assert capsys.readouterr().err == ""


def test_csv_and_folder_errors_are_one_line(trained, tmp_path, capsys):
    ckpt, _, folder = trained
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(ckpt), str(tmp_path / "empty")]) == 2
    assert "empty: folder has no images (searched recursively" in capsys.readouterr().err
    assert main(["predict", str(ckpt), str(folder), "--csv", str(tmp_path / "no" / "such" /
                                                                 "dir" / "x.csv")]) == 0
    capsys.readouterr()
    assert main(["predict", str(ckpt), str(folder), "--classes", "a,b"]) == 2
    assert "--classes/--input: only for an .onnx model" in capsys.readouterr().err


def test_python_predict_takes_paths_folders_pil_images_and_arrays(trained):
    import cnnlab

    ckpt, onnx_path, folder = trained
    files = sorted(folder.rglob("*.png"))[:3]
    arrays = [np.asarray(Image.open(f)) for f in files]
    by_path = cnnlab.predict(ckpt, [str(f) for f in files], runtime="torch")
    one = cnnlab.predict(ckpt, str(files[0]), runtime="torch")  # a single path: one image
    for model, runtime in ((ckpt, "torch"), (ckpt, "auto"), (onnx_path, "auto")):
        mixed = cnnlab.predict(model, [Image.open(files[0]), arrays[1], arrays[2][..., None]],
                               runtime=runtime)
        assert [r["image"] for r in mixed] == ["[0]", "[1]", "[2]"]
        assert [r["top"][0]["class"] for r in mixed] == [r["top"][0]["class"] for r in by_path]
    assert one[0]["image"] == by_path[0]["image"] and len(cnnlab.predict(ckpt, folder)) == 12
    assert [t["probability"] for t in one[0]["top"]] == pytest.approx(
        [t["probability"] for t in by_path[0]["top"]], abs=1e-6)  # batch 1 vs 3: round-off
    with pytest.raises(ValueError, match=r"image array of shape \(2, 2, 4\) and dtype uint8"):
        cnnlab.predict(ckpt, [np.zeros((2, 2, 4), np.uint8)])


@pytest.mark.parametrize("which", ["checkpoint", "onnx"])
def test_a_folder_with_an_unreadable_file_predicts_the_rest_and_exits_1(trained, tmp_path,
                                                                         capsys, which):
    import shutil

    ckpt, onnx_path, folder = trained
    mixed = tmp_path / "mixed"
    shutil.copytree(folder, mixed)
    sub = sorted(p for p in mixed.iterdir() if p.is_dir())[0]
    (sub / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    model = ckpt if which == "checkpoint" else onnx_path
    assert main(["predict", str(model), str(mixed)]) == 1
    out, err = capsys.readouterr()
    good = sorted(p for p in mixed.rglob("*.png") if p.name != "broken.png")
    assert [line.split(": ")[0] for line in out.strip().splitlines()] == [str(p) for p in good]
    assert err.count("\n") == 1 and "skipped 1 of 13 image(s), unreadable: " in err
    assert "broken.png (" in err and "Error" not in err  # no Python class names
    # one unreadable file given alone: its own error, exit 2
    assert main(["predict", str(model), str(sub / "broken.png")]) == 2
    assert "broken.png: " in capsys.readouterr().err
