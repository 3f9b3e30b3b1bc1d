"""ImageNet-pretrained weights (``--pretrained``, :mod:`cnnlab.pretrained`).

No test touches the internet: downloads come from an HTTP server on 127.0.0.1 started here
(``CNNLAB_WEIGHTS_URL``), serving state dicts made here under file names that carry their
real SHA-256 prefix, into a temporary ``TORCH_HOME``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import pretrained as PT
from cnnlab.cli import main
from cnnlab.config import load_yaml, make_config
from cnnlab.errors import UserError
from cnnlab.registry import get_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURE = SHARED / "fixtures" / "torchvision_state_dicts.json"


# ------------------------------------------------------------------------- the table
def test_every_entry_has_torchvisions_keys_and_shapes_and_loads_strictly():
    if not FIXTURE.exists():
        pytest.skip(f"{FIXTURE} absent (../shared is not beside this checkout): cannot "
                    f"compare with torchvision's state dicts")
    ref = json.loads(FIXTURE.read_text())
    checked = []
    for model in PT.models_with_weights():
        if model not in ref:
            continue
        with torch.device("meta"):  # no memory, no time: shapes only
            m = get_model(model, num_classes=1000)
        ours = [(k, list(v.shape)) for k, v in m.state_dict().items()]
        theirs = [(k, list(s)) for k, s in ref[model]["state_dict"]]
        assert ours == theirs, model  # same keys, same shapes, same order
        assert sum(p.numel() for p in m.parameters()) == ref[model]["num_params"]
        sd = {k: torch.empty(s, device="meta") for k, s in theirs}
        m.load_state_dict(sd, strict=True, assign=True)
        checked.append(model)
    # the fixture has every table model but vgg13_bn (torchvision 0.26's list)
    assert sorted(set(PT.models_with_weights()) - set(checked)) == ["vgg13_bn"]
    assert len(checked) == 12


def test_table_facts():
    assert len(PT.WEIGHTS) == 16 and len({w.key for w in PT.WEIGHTS}) == 16
    r50 = PT.weight_set("resnet50")
    assert (r50.name, r50.file, r50.sha256_prefix, r50.top1, r50.top5, r50.resize) == (
        "IMAGENET1K_V2", "resnet50-11ad3fa6.pth", "11ad3fa6", 80.858, 95.434, 232)
    r18 = PT.weight_set("resnet18")
    assert r18.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert (r18.top1, r18.top5, r18.resize, r18.crop) == (69.758, 89.078, 256, 224)
    assert PT.weight_set("resnet50", "imagenet1k_v1").file == "resnet50-0676ba61.pth"
    assert PT.weight_set("vgg16_bn").top1 == 73.360
    for w in PT.WEIGHTS:
        assert w.url.endswith(f"/{w.model}-{w.sha256_prefix}.pth") and len(w.sha256_prefix) == 8
    spec = PT.input_spec(r18)
    assert spec == {"channels": 3, "size": [224, 224], "mean": [0.485, 0.456, 0.406],
                    "std": [0.229, 0.224, 0.225], "resize": "crop"}
    with pytest.raises(UserError, match=r"--pretrained: model 'lenet5' has no published "
                                        r"ImageNet weights; models with them: resnet18, "):
        PT.weight_set("lenet5")
    with pytest.raises(UserError, match="--pretrained IMAGENET1K_V9: model resnet50 has weight "
                                        "sets IMAGENET1K_V1, IMAGENET1K_V2"):
        PT.weight_set("resnet50", "IMAGENET1K_V9")


def test_imagenet_class_names():
    names = PT.class_names()
    assert len(names) == 1000 and len(set(names)) == 1000
    assert (names[0], names[207], names[281], names[409], names[817], names[999]) == (
        "tench", "golden retriever", "tabby", "analog clock", "sports car", "toilet tissue")


# ------------------------------------------------------------------ loopback server
def _state_bytes(sd: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(sd, buf)
    return buf.getvalue()


class _Server:
    """Files by name on 127.0.0.1; ``cut[name] = n`` sends the first n bytes once (with the
    full Content-Length), then closes: an interrupted download."""

    def __init__(self):
        self.files, self.cut, self.hits = {}, {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                outer.hits.append(name)
                body = outer.files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                n = outer.cut.pop(name, None)
                self.wfile.write(body if n is None else body[:n])
                if n is not None:
                    self.close_connection = True

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, stem: str, body: bytes, prefix: str | None = None) -> str:
        name = f"{stem}-{prefix or hashlib.sha256(body).hexdigest()[:8]}.pth"
        self.files[name] = body
        return name

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch, tmp_path):
    s = _Server()
    monkeypatch.setenv("CNNLAB_WEIGHTS_URL", s.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield s
    s.close()


TINY = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([0.5, -1.0])}


def _use(monkeypatch, model: str, file: str) -> PT.WeightSet:
    """Make ``model``'s IMAGENET1K_V1 entry point at ``file`` (the only entry for it)."""
    ws = PT.WeightSet(model, "IMAGENET1K_V1", file, 1.0, 2.0)
    monkeypatch.setattr(PT, "WEIGHTS", tuple(w for w in PT.WEIGHTS if w.model != model) + (ws,))
    monkeypatch.setitem(PT.DEFAULT, model, "IMAGENET1K_V1")
    return ws


def test_download_good_file_then_offline_from_cache(server, monkeypatch, tmp_path):
    ws = _use(monkeypatch, "tiny", server.add("tiny", _state_bytes(TINY)))
    sd = PT.state_dict("tiny", progress=False)
    assert torch.equal(sd["w"], TINY["w"]) and torch.equal(sd["b"], TINY["b"])
    cached = tmp_path / "torch" / "hub" / "checkpoints" / ws.file
    assert PT.cached_path(ws) == cached and cached.read_bytes() == server.files[ws.file]
    server.close()  # offline now: the cached file is used
    monkeypatch.setenv("CNNLAB_WEIGHTS_URL", "http://127.0.0.1:9/models/")
    assert torch.equal(PT.state_dict("tiny", progress=False)["w"], TINY["w"])
    assert server.hits == [ws.file]


def test_wrong_hash_is_refused_and_nothing_is_cached(server, monkeypatch):
    ws = _use(monkeypatch, "tiny", server.add("tiny", _state_bytes(TINY), prefix="0badc0de"))
    with pytest.raises(UserError) as e:
        PT.state_dict("tiny", progress=False)
    msg = str(e.value)
    assert ws.url in msg and str(PT.cached_path(ws)) in msg and "--init FILE" in msg
    assert "0badc0de" in msg and "\n" not in msg
    assert not PT.cached_path(ws).parent.exists() or not any(PT.cached_path(ws).parent.iterdir())


def test_truncated_cached_file_is_refused_before_loading(server, monkeypatch):
    body = _state_bytes(TINY)
    ws = _use(monkeypatch, "tiny", server.add("tiny", body))
    path = PT.cached_path(ws)
    path.parent.mkdir(parents=True)
    path.write_bytes(body[: len(body) // 2])
    actual = hashlib.sha256(body[: len(body) // 2]).hexdigest()[:8]

    def never(*a, **k):
        raise AssertionError("a file with the wrong hash was loaded")

    monkeypatch.setattr(torch, "load", never)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", never)
    with pytest.raises(UserError, match=rf"{path} has SHA-256 {actual}\.\.\., expected "
                                        rf"{ws.sha256_prefix}\.\.\. \(a corrupt or truncated "
                                        rf"file\); delete it"):
        PT.state_dict("tiny", progress=False)
    assert server.hits == []  # never downloaded over it either


def test_server_down_fails_fast_naming_url_cache_path_and_init(server, monkeypatch):
    ws = _use(monkeypatch, "tiny", server.add("tiny", _state_bytes(TINY)))
    server.close()
    t0 = time.perf_counter()
    with pytest.raises(UserError) as e:
        PT.state_dict("tiny", progress=False)
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert msg.startswith(f"--pretrained tiny.IMAGENET1K_V1: cannot download {ws.url} (")
    assert f"put the file at {PT.cached_path(ws)} (then it is used offline)" in msg
    assert msg.endswith("or start from a local file with --init FILE")


def test_interrupted_download_then_good_retry(server, monkeypatch):
    body = _state_bytes(TINY)
    ws = _use(monkeypatch, "tiny", server.add("tiny", body))
    server.cut[ws.file] = len(body) // 3
    with pytest.raises(UserError, match="cannot download .*invalid hash value"):
        PT.state_dict("tiny", progress=False)
    folder = PT.cached_path(ws).parent
    assert list(folder.iterdir()) == []  # no partial file left to be mistaken for the weights
    sd = PT.state_dict("tiny", progress=False)
    assert torch.equal(sd["w"], TINY["w"]) and server.hits == [ws.file, ws.file]


# ------------------------------------------------------ config: fine-tuning's defaults
def test_pretrained_sets_recipe_defaults_each_overridable():
    cfg = make_config(model="resnet18", pretrained="default", epochs=5)
    assert (cfg.pretrained, cfg.normalize, cfg.input_size, cfg.resize, cfg.augment) == (
        "IMAGENET1K_V1", "imagenet", "224x224", "crop", "rrc,flip")
    assert (cfg.freeze, cfg.unfreeze_at, cfg.lr_backbone) == ("backbone", 2, 0.5)
    assert len(cfg.recipe_notes) == 7 and all(n.startswith("--pretrained: --") and "\n" not in n
                                              for n in cfg.recipe_notes)
    cfg = make_config({"augment": "flip"}, model="resnet50", pretrained="IMAGENET1K_V1",
                      input_size="64x64", lr_backbone=0.1, epochs=5)
    assert (cfg.augment, cfg.input_size, cfg.lr_backbone, cfg.resize) == (
        "flip", "64x64", 0.1, "crop")
    assert not any("--augment" in n or "--input-size" in n or "--lr-backbone" in n
                   for n in cfg.recipe_notes)
    one = make_config(model="resnet18", pretrained="default", epochs=1)
    assert one.freeze is None and one.unfreeze_at == 0  # no epoch left after a warm-up
    assert make_config(model="resnet18").normalize == "auto"  # no --pretrained: unchanged
    with pytest.raises(UserError, match="give one source of initial weights"):
        make_config(model="resnet18", pretrained="default", init="x.pth")


def test_config_key_alias_suggests_the_cnnlab_name(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"unknown config key 'learning_rate'; did you mean lr"):
        load_yaml(f)
    f.write_text("batch-size: 32\n")
    with pytest.raises(UserError, match=r"'batch-size'; did you mean batch_size"):
        load_yaml(f)


# ------------------------------------------------ issue 21: checks before any folder
@pytest.mark.parametrize("extra, says", [
    (["--augment", "flipp"], "unknown augmentation 'flipp'"),
    (["--schedule", "foo"], "--schedule foo: expected constant, step, cosine, onecycle"),
    (["--schedule", "step", "--milestones", "a,b"], "--milestones a,b"),
    (["--data", "no/such/folder"], "--data no/such/folder: no such file or folder"),
    (["--model", "resnet9"], "--model resnet9"),
    (["--model", "lenet5", "--pretrained"], "no published ImageNet weights; models with them"),
])
def test_refused_arguments_create_nothing(tmp_path, capsys, extra, says):
    out = tmp_path / "runs" / "x"
    assert main(["train", "--epochs", "1", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_library_does_not_import_the_cli():
    code = ("import sys, cnnlab.training.loop, cnnlab.config; "
            "print(sorted(m for m in sys.modules if m.startswith('cnnlab.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_help_says_validation_loss(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "validation-accuracy" not in text and "validation accuracy" not in text
    assert "stop after N epochs without a lower validation loss" in text


# ------------------------------------------------- a real layout: ResNet-18, random
@pytest.fixture(scope="module")
def r18_bytes():
    torch.manual_seed(0)
    return _state_bytes(get_model("resnet18", num_classes=1000).state_dict())


@pytest.fixture
def r18(server, monkeypatch, r18_bytes):
    """ResNet-18's table entry pointing at random weights served on loopback."""
    return _use(monkeypatch, "resnet18", server.add("resnet18", r18_bytes))


def _photo(path: Path, seed: int, size=(48, 40)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


def test_load_gives_eval_model_spec_and_names(r18):
    model, spec, classes = PT.load("resnet18", progress=False)
    assert not model.training and spec["resize"] == "crop" and len(classes) == 1000
    sd = torch.load(PT.cached_path(r18), weights_only=True)
    assert torch.equal(model.fc.weight, sd["fc.weight"])
    assert torch.equal(model.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])


def test_cli_predict_prints_imagenet_names(r18, tmp_path, capsys):
    img = _photo(tmp_path / "photo.jpg", 1)
    assert main(["predict", "--model", "resnet18", "--pretrained", str(img), "--topk", "2",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    model, spec, classes = PT.load("resnet18", progress=False)
    from cnnlab import preprocess as P

    x = torch.from_numpy(P.normalize(P.load_batch([img], P.check_spec(spec))[0], spec))
    with torch.no_grad():
        p = torch.softmax(model(x), 1)[0]
    top = p.topk(2)
    assert [t["class"] for t in got[0]["top"]] == [classes[i] for i in top.indices]
    assert np.allclose([t["probability"] for t in got[0]["top"]], top.values.numpy(), atol=1e-6)
    assert main(["predict", "--model", "resnet18", "--pretrained", "IMAGENET1K_V1",
                 str(img)]) == 0  # a set name, then the image
    assert capsys.readouterr().out.startswith(f"{img}: {classes[int(top.indices[0])]} ")


def test_cli_export_and_summary(r18, tmp_path, capsys):
    assert main(["summary", "--model", "resnet18", "--pretrained"]) == 0
    assert "pretrained: resnet18.IMAGENET1K_V1" in capsys.readouterr().out
    out = tmp_path / "r18.onnx"
    assert main(["export", "--model", "resnet18", "--pretrained", "--out", str(out)]) == 0
    import onnx

    props = {p.key: p.value for p in onnx.load(str(out), load_external_data=False).metadata_props}
    assert json.loads(props["cnnlab.input"])["resize"] == "crop"
    assert json.loads(props["cnnlab.classes"])[207] == "golden retriever"


def _folder(root: Path, classes=("a", "b", "c"), n=6) -> Path:
    for split, k in (("train", n), ("test", 2)):
        for ci, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for i in range(k):
                _photo(root / split / c / f"{i}.png", 100 * ci + i + (0 if split == "train"
                                                                      else 50))
    return root


def test_train_pretrained_loads_weights_replaces_head_and_records_the_set(r18, tmp_path,
                                                                          capsys):
    data = _folder(tmp_path / "photos")
    out = tmp_path / "run"
    # frozen for both epochs (--unfreeze-at 0 overrides the recipe): the backbone must end
    # exactly as served, the new 3-class head trained
    assert main(["train", "--model", "resnet18", "--pretrained", "--data", str(data),
                 "--epochs", "2", "--unfreeze-at", "0", "--input-size", "32x32",
                 "--batch-size", "6", "--val-split", "0", "--progress", "none",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "--pretrained: --normalize imagenet (" in err and "--augment rrc,flip" in err
    assert "--input-size" not in err.split("init from")[0].split("--pretrained: --resize")[0]
    assert "head        replaced" in err
    from cnnlab.checkpoint import load_checkpoint

    weights, meta = load_checkpoint(out / "checkpoints" / "last.safetensors")
    assert meta["pretrained"]["weights"] == "IMAGENET1K_V1"
    assert meta["config"]["pretrained"] == "IMAGENET1K_V1"
    assert meta["input"]["resize"] == "crop" and meta["input"]["mean"] == [0.485, 0.456, 0.406]
    served = torch.load(PT.cached_path(r18), weights_only=True)
    for k in ("conv1.weight", "layer3.0.conv2.weight", "layer4.1.bn2.running_mean"):
        assert np.array_equal(weights[k], served[k].numpy()), k
    assert weights["fc.weight"].shape == (3, 512)
    assert main(["predict", str(out), str(data / "test" / "a" / "0.png")]) == 0
    assert capsys.readouterr().out.split(": ")[1].split()[0] in ("a", "b", "c")
