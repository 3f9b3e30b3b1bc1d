"""`cnnlab serve`: the explorer's JSON API against independent computations (torch, the
checkpoint's own preprocessing, cnnlab.viz), its safety (uploads, paths, errors, concurrency)
and the command (address printed, no browser opened, clean Ctrl-C).

The browser tests are in test_serve_browser.py and share the fixtures below.
"""

import base64
import csv
import http.client
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient  # noqa: E402

from cnnlab.errors import UserError  # noqa: E402
from cnnlab.serve.units import explain_unit  # noqa: E402

_RUN: dict = {}


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Path:
    """A LeNet-5 trained for 4 epochs on the built-in digits (about 96% test accuracy)."""
    if "path" not in _RUN:  # shared with test_serve_browser.py, which imports this fixture
        from cnnlab.config import make_config
        from cnnlab import train

        base = tmp_path_factory.mktemp("serve")
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("CNNLAB_CACHE", str(base / "cache"))
            train(make_config(epochs=4, out=str(base / "digits-run"), progress="none", seed=0))
        _RUN["path"] = base / "digits-run"
    return _RUN["path"]


@pytest.fixture(scope="session")
def explorers(digits_run):
    from cnnlab.serve.app import load_explorers

    if "explorers" not in _RUN:
        _RUN["explorers"] = load_explorers([digits_run])
    return _RUN["explorers"]


@pytest.fixture(scope="session")
def client(explorers):
    from cnnlab.serve.app import create_app

    return TestClient(create_app(explorers, max_upload_mb=0.05), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def live_server(explorers):
    """The app under uvicorn on 127.0.0.1 and a free port, in a thread: (url, port)."""
    if "live" in _RUN:
        return _RUN["live"]
    import uvicorn

    from cnnlab.serve import bind
    from cnnlab.serve.app import create_app

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(explorers, max_upload_mb=1),
                                           log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    t0 = time.time()
    while not server.started and time.time() - t0 < 20:
        time.sleep(0.05)
    port = sock.getsockname()[1]
    _RUN["live"] = (f"http://127.0.0.1:{port}/", port)
    return _RUN["live"]


def reference(digits_run):
    """The checkpoint's model and test split, loaded without the server."""
    from cnnlab.data import load_data
    from cnnlab.inference import load_model, resolve_checkpoint

    model, meta = load_model(resolve_checkpoint(digits_run))
    return model, meta, load_data("digits").test


def png_bytes(chw: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(chw[0]).save(buf, format="PNG")
    return buf.getvalue()


def f32(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4")


def explore(client, data: bytes, **form):
    return client.post("/api/models/digits-run/explore", files={"image": ("x.png", data)},
                       data=form)


# ---- the API against independent computations ---------------------------------------------
def test_models_details_summary_and_curves(client, digits_run):
    (m,) = client.get("/api/models").json()
    assert m["id"] == "digits-run" and m["model"] == "lenet5" and len(m["classes"]) == 10
    d = client.get("/api/models/digits-run").json()
    model, meta, _ = reference(digits_run)
    assert d["summary"]["total_params"] == sum(p.numel() for p in model.parameters())
    assert d["input"] == {"resize": "bilinear", **meta["input"]}
    final = json.loads((digits_run / "final.json").read_text())
    assert d["test_accuracy"] == pytest.approx(final["test_accuracy"])
    rows = list(csv.DictReader(open(digits_run / "metrics.csv")))
    assert d["curves"]["epoch"] == [1, 2, 3, 4] == [int(r["epoch"]) for r in rows]
    assert d["curves"]["train_loss"] == pytest.approx([float(r["train_loss"]) for r in rows])
    assert d["stages"][0] == "features.0"


def test_explore_matches_torch_and_viz(client, digits_run):
    from cnnlab.training.evaluation import normalizer
    from cnnlab.viz.gradcam import grad_cam

    model, meta, test = reference(digits_run)
    r = client.get("/api/models/digits-run/samples/7")
    assert r.status_code == 200 and int(r.headers["x-label"]) == test.labels[7]
    img = np.asarray(Image.open(io.BytesIO(r.content)))
    np.testing.assert_array_equal(img, test.images[7, 0])  # lossless sample PNG
    res = explore(client, r.content).json()
    x = normalizer(meta["input"], "cpu")(torch.from_numpy(test.images[7:8]).float() / 255)
    with torch.no_grad():
        logits = model(x)[0].double()
    p = res["prediction"]
    np.testing.assert_allclose(p["logits"], logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p["probs"], logits.softmax(0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.array(p["exps"]) / p["sum"], p["probs"], rtol=1e-9)
    assert p["predicted"] == int(logits.argmax())
    with torch.no_grad():  # first conv's maps, straight from the layer
        conv = model.features[0](x)[0].numpy()
    st = res["stages"][0]
    assert st["name"] == "features.0" and st["shape"] == [6, 28, 28]
    np.testing.assert_allclose(f32(st["data"]).reshape(6, 28, 28), conv, rtol=1e-5, atol=1e-5)
    cam, cls, layer = grad_cam(model, x)
    g = res["gradcam"]
    assert g["layer"] == layer and g["target"] == int(cls[0]) and g["shape"] == [32, 32]
    np.testing.assert_allclose(f32(g["map"]).reshape(32, 32), cam[0], atol=1e-5)
    # a chosen class, and the input as the model sees it
    g3 = explore(client, r.content, target="3").json()["gradcam"]
    assert g3["target"] == 3 and g3["class"] == "3"
    np.testing.assert_array_equal(np.frombuffer(base64.b64decode(res["input"]["pixels"]),
                                                np.uint8), test.images[7].ravel())
    np.testing.assert_allclose(f32(res["input"]["normalized"]), x.numpy().ravel(), atol=1e-6)


def test_unit_detail_conv_pool_relu_agree_with_overview(client, digits_run):
    png = client.get("/api/models/digits-run/samples/11").content
    stages = {s["name"]: s for s in explore(client, png).json()["stages"]}
    for layer, (c, y, x) in {"features.0": (3, 13, 9), "features.1": (2, 7, 4),
                             "features.2": (1, 5, 6), "features.3": (9, 4, 2)}.items():
        u = client.post("/api/models/digits-run/unit", files={"image": ("x.png", png)},
                        data={"layer": layer, "channel": c, "y": y, "x": x}).json()
        st = stages[layer]
        h, w = st["map_shape"]
        shown = f32(st["data"]).reshape(-1, h, w)[c - st["offset"], y, x]
        assert u["result"] == pytest.approx(shown, rel=1e-5, abs=1e-5), layer
        assert u["agree"] and u["torch_value"] == pytest.approx(shown, rel=1e-6, abs=1e-6)
        if u["kind"] == "conv":
            prods = np.array(u["window"]) * np.array(u["kernel"])
            np.testing.assert_allclose(u["products"], prods, rtol=1e-6)
            assert u["sum"] + u["bias"] == pytest.approx(shown, rel=1e-5, abs=1e-5)
        if u["kind"] == "maxpool":
            i, j = u["chosen"]
            assert u["window"][i][j] == pytest.approx(u["result"]) == np.max(u["window"])


def _random_checkpoint(folder: Path, name: str, channels: int, size: int, **kw) -> Path:
    from cnnlab.checkpoint import save_checkpoint
    from cnnlab.registry import get_model

    torch.manual_seed(0)
    model = get_model(name, in_channels=channels, num_classes=10, **kw)
    meta = {"model": name, "model_kwargs": {"in_channels": channels, "num_classes": 10, **kw},
            "classes": [f"c{i}" for i in range(10)], "epoch": 0,
            "input": {"channels": channels, "size": [size, size], "mean": [0.5] * channels,
                      "std": [0.25] * channels}}
    return save_checkpoint(folder / name / "best", model.state_dict(), meta)


def test_residual_and_mlp_models(tmp_path):
    """ResNet-20 (residual: one column per stage; every layer inside the blocks on request,
    a strided conv without bias inside a block explained), and the MLP (no spatial layer:
    Grad-CAM says so, the rest works)."""
    from cnnlab.serve.app import create_app, load_explorers

    paths = [_random_checkpoint(tmp_path, "resnet20", 3, 32),
             _random_checkpoint(tmp_path, "mlp", 1, 28)]
    c = TestClient(create_app(load_explorers(paths)))
    rgb = np.random.default_rng(1).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb.transpose(1, 2, 0)).save(buf, format="PNG")
    post = lambda **f: c.post("/api/models/resnet20/explore",  # noqa: E731
                              files={"image": ("x.png", buf.getvalue())}, data=f).json()
    res = post()
    names = [s["name"] for s in res["stages"]]
    assert names[0] == "conv1" and "layer3" in names and res["gradcam"]["layer"] == "layer3"
    every = post(every_layer="true", offsets=json.dumps({"layer2.0.conv1": 16}))
    st = {s["name"]: s for s in every["stages"]}["layer2.0.conv1"]
    assert st["shape"] == [32, 16, 16] and st["offset"] == 16 and st["count"] == 16
    u = c.post("/api/models/resnet20/unit", files={"image": ("x.png", buf.getvalue())},
               data={"layer": "layer2.0.conv1", "channel": 20, "y": 0, "x": 15}).json()
    shown = f32(st["data"]).reshape(16, 16, 16)[20 - 16, 0, 15]
    assert u["bias"] is None and u["stride"] == [2, 2] and u["padding"] == [1, 1]
    assert u["result"] == pytest.approx(shown, rel=1e-5, abs=1e-5) and u["agree"]
    assert np.array(u["window"])[:, 0, :].tolist() == np.zeros((16, 3)).tolist()  # the pad row
    r = c.post("/api/models/mlp/explore", files={"image": ("x.png", png_bytes(rgb[:1]))}).json()
    assert "no spatial" in r["gradcam"]["error"] or "spatial" in r["gradcam"]["error"]
    assert len(r["prediction"]["probs"]) == 10 and r["stages"]


@pytest.mark.parametrize("module, shape", [
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, dilation=2), (4, 9, 8)),
    (nn.Conv2d(3, 2, (3, 2), stride=(1, 2), padding=(2, 0), bias=False), (3, 6, 7)),
    (nn.MaxPool2d(3, 2, padding=1), (2, 7, 7)),
    (nn.MaxPool2d(3, 2, ceil_mode=True), (1, 8, 8)),
    (nn.AvgPool2d(3, 2, padding=1), (2, 7, 6)),
    (nn.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 7, 6)),
    (nn.AdaptiveAvgPool2d((2, 3)), (2, 5, 7)),
    (nn.ReLU(inplace=True), (2, 3, 3)),
])
def test_every_unit_of_a_layer_matches_torch(module, shape):
    """Stride, padding, dilation, groups, ceil mode, uneven adaptive windows: the NumPy
    engine's unit equals torch's output at every position."""
    torch.manual_seed(0)
    x = torch.randn(1, *shape)
    xin = x[0].numpy().copy()
    with torch.no_grad():
        out = module(x.clone())[0].numpy()
    for c, y, xx in np.ndindex(*out.shape):
        d = explain_unit(module, "layer", xin, out, c, y, xx)
        assert d["result"] == pytest.approx(float(out[c, y, xx]), rel=1e-5, abs=1e-5), (c, y, xx)
        assert d["agree"]
    with pytest.raises(UserError, match="outside layer"):
        explain_unit(module, "layer", xin, out, out.shape[0], 0, 0)


def test_output_size_formula(client):
    r = client.get("/api/output-size", params={"size": 7, "kernel": 3, "stride": 2}).json()
    assert r["output"] == 3 and r["fits"]
    r = client.get("/api/output-size", params={"size": 7, "kernel": 3, "stride": 3}).json()
    assert r["output"] == 2 and not r["fits"] and "floor" in r["formula"]
    r = client.get("/api/output-size", params={"size": 3, "kernel": 5})
    assert r.status_code == 400 and "larger than the padded input" in r.json()["detail"]


# ---- safety ---------------------------------------------------------------------------------
def _bomb() -> bytes:
    buf = io.BytesIO()  # 100 megapixels of one bit: a 12 KB file, 100 MB once decoded as "L"
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_uploads_are_400_413_and_the_server_keeps_serving(client):
    good = client.get("/api/models/digits-run/samples/0").content
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")  # ~120 KB > the 0.05 MiB limit
    cases = {"": (400, "empty"), "not an image at all": (400, "not a readable image"),
             good[: len(good) // 2]: (400, "truncated"),
             _bomb(): (400, "decompression bombs"), buf.getvalue(): (413, "too large")}
    from cnnlab.data.decode import FORMATS_TEXT  # the one list of every upload path
    for data, (status, words) in cases.items():
        r = explore(client, data)
        detail = r.json()["detail"]
        assert r.status_code == status and words in detail, r.text
        assert "Traceback" not in r.text and "File \"" not in r.text
        assert not re.search(r"[A-Z]\w*(Error|Exception)", detail), detail  # no class names
        if status == 400 and words != "decompression bombs":  # one wording, one format list
            assert detail.endswith(f" (expected {FORMATS_TEXT})"), detail
        assert explore(client, good).status_code == 200  # and it goes on serving
    def chunks():  # no Content-Length: refused while it streams in, before it is parsed
        yield b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n\r\n"
        for _ in range(100):
            yield bytes(10_000)
        yield b"\r\n--b--\r\n"

    r = client.post("/api/models/digits-run/explore", content=chunks(),
                    headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "0.05 MiB" in r.json()["detail"]
    r = client.post("/api/models/digits-run/unit", files={"image": ("x.png", good)},
                    data={"layer": "classifier.0", "channel": 0, "y": 0, "x": 999})
    assert r.status_code == 400 and "vector of 120 values" in r.json()["detail"]


def test_internal_error_is_500_without_traceback(client, explorers, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(explorers["digits-run"], "explore", boom)
    r = explore(client, client.get("/api/models/digits-run/samples/0").content)
    assert r.status_code == 500 and "RuntimeError" in r.json()["detail"]
    assert "secret" not in r.text and "Traceback" not in r.text


def _raw_get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)  # sent exactly as written: no client-side normalisation
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


@pytest.mark.parametrize("path", [
    "/static/../pyproject.toml", "/static/../app.py", "/static/%2e%2e/app.py",
    "/static/%2e%2e%2fapp.py", "/static/..%2f..%2f__init__.py", "/static/%252e%252e/app.py",
    "/static/%252e%252e%252fapp.py", "/static//etc/passwd", "/static/%2fetc%2fpasswd",
    "/static/..\\app.py", "/api/models/..%2f..%2fetc%2fpasswd", "/api/models/%2Fetc%2Fpasswd",
])
def test_no_path_traversal(live_server, path):
    _, port = live_server
    status, body = _raw_get(port, path)
    assert status in (400, 404), (path, status)
    assert b"import" not in body and b"root:" not in body
    assert _raw_get(port, "/static/app.js")[0] == 200


def test_model_pool_lends_private_copies_never_the_prototype():
    from cnnlab.serve.explorer import ModelPool

    proto = nn.Sequential(nn.Conv2d(1, 2, 3))
    pool = ModelPool(proto, size=2)
    with pool.borrow() as a, pool.borrow() as b:
        assert a is not b and proto not in (a, b)
        a[0].register_forward_hook(lambda *_: None)  # a request's hook stays on its copy
        assert not b[0]._forward_hooks and not proto[0]._forward_hooks
        torch.testing.assert_close(a[0].weight, proto[0].weight)
    got = []
    t = threading.Thread(target=lambda: got.append(pool.borrow().__enter__()))
    t.start()
    t.join()
    assert got[0] in (a, b)  # a third borrower reuses a copy: at most `size` are made


def test_concurrent_requests_get_their_own_answers(live_server, digits_run):
    """16 threads, each posting a different digit: each answer is the one a lone request
    gets (hooks and model calls do not mix requests)."""
    _, port = live_server
    pngs = [_raw_get(port, f"/api/models/digits-run/samples/{i}")[1] for i in range(8)]

    def post(png):
        boundary = "cnnlabtest"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                f"filename=\"x.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png + \
            f"\r\n--{boundary}--\r\n".encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/api/models/digits-run/explore", body,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        r = conn.getresponse()
        d = json.loads(r.read())
        conn.close()
        return r.status, d["prediction"]["logits"], d["stages"][3]["data"]

    alone = [post(p) for p in pngs]
    results: dict = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, post(pngs[i % 8])))
               for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (status, logits, maps) in results.items():
        assert status == 200 and logits == alone[i % 8][1] and maps == alone[i % 8][2]


# ---- the command ------------------------------------------------------------------------------
def test_serve_command_prints_address_opens_nothing_and_stops_on_ctrl_c(digits_run, tmp_path):
    marker = tmp_path / "browser-opened"
    opener = tmp_path / "browser.sh"
    opener.write_text(f"#!/bin/sh\ntouch {marker}\n")
    opener.chmod(0o755)
    env = {**os.environ, "BROWSER": str(opener), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(digits_run), "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        while not any("explorer at" in l for l in lines):
            line = p.stdout.readline()
            assert line, f"server exited: {p.stderr.read()}"
            lines.append(line)
        url = lines[-1].split("explorer at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        status, body = _raw_get(port, "/api/models")
        assert status == 200 and json.loads(body)[0]["model"] == "lenet5"
        status, body = _raw_get(port, "/")
        assert status == 200 and b"cnnlab explorer" in body and b"https://" not in body
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert not marker.exists()


def test_non_loopback_host_warns_and_bad_arguments_are_user_errors(tmp_path, capsys):
    from cnnlab.cli import main
    from cnnlab.serve import bind

    assert main(["serve", str(tmp_path / "none"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0 exposes" in err and "no such checkpoint" in err
    assert main(["serve", "--runs", str(tmp_path / "nothing")]) == 2
    assert "--runs" in capsys.readouterr().err
    s = bind("127.0.0.1", 0)
    try:  # TCP, so that asyncio sets TCP_NODELAY on each connection (no 40 ms Nagle stalls)
        assert s.proto == socket.IPPROTO_TCP
        assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        with pytest.raises(UserError, match="cannot listen"):
            bind("127.0.0.1", s.getsockname()[1])
    finally:
        s.close()
