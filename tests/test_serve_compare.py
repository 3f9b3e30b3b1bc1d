"""Two served models side by side on one image (``POST /api/compare?a=&b=``, the page's
Compare tab): each column is what the model's own explore route answers for the image,
unknown ids are a 404 naming them, and the page renders both columns in a real browser."""

import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from test_serve import _random_checkpoint, digits_run, f32  # noqa: F401  (shared fixtures)
from test_serve_browser import ARGS, CHROMIUM

warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
from fastapi.testclient import TestClient  # noqa: E402

# CNNLAB_DOCS_SCREENSHOTS=docs rewrites the docs' screenshots; otherwise they go to a
# temporary folder, so a test run never changes the checkout
DOCS = (Path(__file__).resolve().parents[1] / "docs" if os.environ.get("CNNLAB_DOCS_SCREENSHOTS")
        else Path(tempfile.mkdtemp(prefix="cnnlab-shots-")))


@pytest.fixture(scope="module")
def two(digits_run, tmp_path_factory):  # noqa: F811
    """The digits LeNet-5 (gray 32x32), a random ResNet-20 (RGB 32x32) and a random MLP (no
    convolution), served together."""
    from cnnlab.serve.app import load_explorers

    tmp = tmp_path_factory.mktemp("compare")
    paths = [digits_run, _random_checkpoint(tmp, "resnet20", 3, 32),
             _random_checkpoint(tmp, "mlp", 1, 28)]
    return load_explorers(paths, replicas=1)


@pytest.fixture(scope="module")
def client(two):
    from cnnlab.serve.app import create_app

    return TestClient(create_app(two), raise_server_exceptions=False)


def _sample(client) -> bytes:
    return client.get("/api/models/digits-run/samples/3").content


def test_each_column_is_what_the_models_own_explore_route_gives(client):
    data = _sample(client)
    r = client.post("/api/compare?a=digits-run&b=resnet20", files={"image": ("s.png", data)})
    assert r.status_code == 200, r.text
    r = r.json()
    for key, mid in (("a", "digits-run"), ("b", "resnet20")):
        own = client.post(f"/api/models/{mid}/explore", files={"image": ("s.png", data)}).json()
        col = r[key]
        assert col["id"] == mid
        assert col["prediction"] == own["prediction"]  # logits, softmax, top-5: identical
        assert len(col["prediction"]["top"]) == 5
        assert col["input"] == own["input"]  # the same decoder, with the model's own spec
        for k in ("layer", "shape", "target", "class"):
            assert col["gradcam"][k] == own["gradcam"][k]
        np.testing.assert_allclose(f32(col["gradcam"]["map"]), f32(own["gradcam"]["map"]),
                                   atol=1e-6)
    assert r["a"]["input"]["shape"] == [1, 32, 32] and r["b"]["input"]["shape"] == [3, 32, 32]
    assert r["same_class"] == (r["a"]["prediction"]["class"] == r["b"]["prediction"]["class"])


def test_filters_are_the_first_convolutions_weights(client, two):
    data = _sample(client)
    r = client.post("/api/compare?a=resnet20&b=mlp", files={"image": ("s.png", data)}).json()
    f = r["a"]["filters"]
    w = two["resnet20"].model.conv1.weight.detach().numpy()
    assert f["layer"] == "conv1" and f["shape"] == [16, 3, 3, 3] == list(w.shape)
    np.testing.assert_array_equal(f32(f["data"]).reshape(w.shape), w)
    assert "no convolution" in r["b"]["filters"]["error"]  # the MLP: said, not a 500
    assert "spatial" in r["b"]["gradcam"]["error"] and r["b"]["prediction"]["top"]
    lenet = client.post("/api/compare?a=digits-run&b=mlp",
                        files={"image": ("s.png", data)}).json()["a"]["filters"]
    assert lenet["layer"] == "features.0" and lenet["shape"][:2] == [6, 1]


def test_unknown_ids_are_a_404_naming_them_and_a_pair_must_differ(client):
    data = _sample(client)
    post = lambda q: client.post(f"/api/compare?{q}", files={"image": ("s.png", data)})  # noqa: E731
    r = post("a=nope&b=../../etc")
    assert r.status_code == 404
    assert "'nope'" in r.json()["detail"] and "'../../etc'" in r.json()["detail"]
    assert "served: digits-run, resnet20, mlp" in r.json()["detail"]
    r = post("a=digits-run&b=gone")
    assert r.status_code == 404 and "'gone'" in r.json()["detail"]
    assert "digits-run'" not in r.json()["detail"].split(";")[0]
    r = post("a=mlp&b=mlp")
    assert r.status_code == 400 and "two different models" in r.json()["detail"]
    assert post("a=mlp").status_code == 422  # b missing
    bad = client.post("/api/compare?a=digits-run&b=mlp", files={"image": ("x.png", b"no")})
    assert bad.status_code == 400 and "Traceback" not in bad.text


def test_compare_needs_two_models(digits_run):  # noqa: F811
    from cnnlab.errors import UserError
    from cnnlab.serve import serve

    import torch

    n = torch.get_num_threads()  # serve() sets --threads for the process
    try:
        with pytest.raises(UserError, match="--compare: serves 1 model"):
            serve([digits_run], port=0, compare=True, replicas=1)
    finally:
        torch.set_num_threads(n)


# ---- the page ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lenet_pair(digits_run, tmp_path_factory):  # noqa: F811
    """The digits LeNet-5 (ReLU, max pooling) beside the 1998 paper's (tanh, average
    pooling), trained briefly on the same digits: two real models for the screenshot."""
    from cnnlab import train
    from cnnlab.config import make_config

    base = tmp_path_factory.mktemp("classic")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(base / "cache"))
        train(make_config(epochs=3, out=str(base / "lenet5-tanh-avg"), progress="none", seed=1,
                          model_kwargs={"activation": "tanh", "pool": "avg"}))
    return [digits_run, base / "lenet5-tanh-avg"]


@pytest.fixture(scope="module")
def compare_server(lenet_pair):
    import uvicorn

    from cnnlab.serve import bind
    from cnnlab.serve.app import create_app, load_explorers

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(load_explorers(lenet_pair, replicas=1)),
                                           log_level="warning"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    t0 = time.time()
    while not server.started and time.time() - t0 < 20:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    t.join(10)


@pytest.mark.skipif(not CHROMIUM.exists(), reason="browser tests need /usr/bin/chromium")
def test_compare_tab_renders_both_columns(compare_server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            pg = b.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(compare_server + "#compare")  # what `cnnlab serve A B --compare` opens
            pg.wait_for_selector("body[data-compare='sample-0.png']", timeout=60_000)
            assert pg.is_visible("#tab-compare") and pg.is_visible("#compare-input #input-card")
            ids = [pg.get_attribute(f"#compare-col-{k}", "data-id") for k in "ab"]
            assert ids == ["digits-run", "lenet5-tanh-avg"]
            for k in "ab":
                col = f"#compare-col-{k}"
                assert pg.inner_text(f"{col} .compare-top").strip().isdigit()
                assert pg.locator(f"{col} .bar").count() == 5
                assert pg.locator(f"{col} .filters canvas").count() == 6  # LeNet's conv1
                assert pg.locator(f"{col} canvas.cam").count() == 1
            pg.click("#input-tabs button[data-src=draw]")  # a drawing feeds both columns
            box = pg.locator("#draw-canvas").bounding_box()
            pg.mouse.move(box["x"] + 140, box["y"] + 40)
            pg.mouse.down()
            pg.mouse.move(box["x"] + 140, box["y"] + 240, steps=8)
            pg.mouse.up()
            pg.wait_for_selector("body[data-compare='drawing.png']", timeout=60_000)
            pg.click("#input-tabs button[data-src=sample]")
            pg.fill("#sample-index", "3")
            pg.press("#sample-index", "Enter")
            pg.wait_for_selector("body[data-compare='sample-3.png']", timeout=60_000)
            DOCS.mkdir(exist_ok=True)
            pg.set_viewport_size({"width": 1400, "height": 760})
            pg.screenshot(path=str(DOCS / "explorer-compare.png"), full_page=False)
            pg.click("#tabs button[data-tab=explore]")  # the Input card goes back
            assert pg.is_visible("#tab-explore #input-card")
            assert not errors, errors
        finally:
            b.close()
