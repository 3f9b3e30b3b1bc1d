"""The explorer page in a real browser: Playwright driving Debian's Chromium against
``cnnlab serve``'s app under uvicorn on 127.0.0.1 (the fixtures of test_serve.py).

A user uploads a digit and reads the right class, draws one on the pad and gets the
prediction ``cnnlab predict`` gives for the same picture, and clicks a convolution unit
whose products, sum and bias add up to the activation the overview shows. Screenshots go to
each test's tmp dir.
"""

import base64
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_serve import digits_run, explorers, live_server  # noqa: F401  (shared fixtures)

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="browser tests need Debian's chromium at /usr/bin/chromium (apt-get install "
           "chromium); it is not installed here")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server):
    url, _ = live_server
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(url)
    pg.wait_for_selector("body[data-input='sample-0.png']", timeout=30_000)
    yield pg
    pg.close()
    assert not errors, errors


def shown(page) -> str:
    return page.inner_text("#top-class").strip()


def test_upload_an_image_shows_its_class(page, digits_run, tmp_path):  # noqa: F811
    from cnnlab.data import load_data
    from cnnlab.inference import predict

    test = load_data("digits").test
    files = []
    for i in range(0, 40, 4):  # digits the checkpoint gets right, as `cnnlab predict` says
        f = tmp_path / f"digit-{i}.png"
        Image.fromarray(test.images[i, 0]).save(f)
        if predict(digits_run, [f])[0]["top"][0]["class"] == str(test.labels[i]):
            files.append((f, str(test.labels[i])))
        if len(files) == 2:
            break
    assert len(files) == 2
    page.click("#input-tabs button[data-src=upload]")
    for f, label in files:
        page.set_input_files("#file-input", str(f))
        page.wait_for_selector(f"body[data-input='{f.name}']")
        assert shown(page) == label
    page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)


def test_draw_a_digit_gives_the_prediction_of_cnnlab_predict(page, digits_run, tmp_path):  # noqa: F811
    from cnnlab.inference import predict

    page.click("#input-tabs button[data-src=draw]")
    box = page.locator("#draw-canvas").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + 0.25 * w, y0 + 0.2 * h)  # a "7": the bar, then the stem
    page.mouse.down()
    for t in np.linspace(0, 1, 12):
        page.mouse.move(x0 + (0.25 + 0.5 * t) * w, y0 + 0.2 * h)
    for t in np.linspace(0, 1, 12):
        page.mouse.move(x0 + (0.75 - 0.3 * t) * w, y0 + (0.2 + 0.65 * t) * h)
    page.mouse.up()
    page.wait_for_selector("body[data-input='drawing.png']")
    drawn = page.evaluate("document.getElementById('draw-canvas').toDataURL('image/png')")
    f = tmp_path / "drawing.png"
    f.write_bytes(base64.b64decode(drawn.split(",", 1)[1]))
    assert np.asarray(Image.open(f).convert("L")).max() == 255  # the stroke is on the pad
    expected = predict(digits_run, [f])[0]["top"][0]
    assert shown(page) == expected["class"]
    pct = page.inner_text("#bars .bar .pct").strip()
    assert float(pct.rstrip("%")) == pytest.approx(100 * expected["probability"], abs=0.06)
    page.screenshot(path=str(tmp_path / "draw.png"), full_page=True)


@pytest.mark.parametrize("stage, channel, at", [("features.0", 2, (0.55, 0.40)),
                                               ("features.3", 5, (0.35, 0.65))])
def test_click_a_conv_unit_products_sum_equal_overview(page, tmp_path, stage, channel, at):
    cell = page.locator(f".col[data-stage='{stage}'] .cell[data-channel='{channel}'] canvas")
    box = cell.bounding_box()
    cell.click(position={"x": at[0] * box["width"], "y": at[1] * box["height"]})
    page.wait_for_selector("#unit-result")
    size = 28 if stage == "features.0" else 10
    y, x = int(at[1] * size), int(at[0] * size)  # the unit under the click
    assert page.get_attribute("#overview-value", "data-unit") == f"{stage}:{channel}:{y}:{x}"
    assert f"channel {channel}, row {y}, col {x}" in page.inner_text("#unit-title")
    value = float(page.get_attribute("#overview-value", "data-value"))
    total = float(page.get_attribute("#unit-sum", "data-value"))
    bias = float(page.get_attribute("#unit-bias", "data-value"))
    result = float(page.get_attribute("#unit-result", "data-value"))
    assert total + bias == pytest.approx(value, rel=1e-5, abs=1e-5)
    assert result == pytest.approx(value, rel=1e-5, abs=1e-5)
    assert "agree" in page.inner_text("#unit-body")
    # the products shown are window x kernel, one 5x5 grid per input channel
    grids = page.locator("#unit-products table.grid.products")
    assert grids.count() == (1 if stage == "features.0" else 6)
    assert grids.first.locator("td").count() == 25
    page.screenshot(path=str(tmp_path / f"unit-{stage}.png"), full_page=True)
