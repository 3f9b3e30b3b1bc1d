"""The explorer page in a real browser: Playwright driving Debian's Chromium against
``cnnlab serve``'s app under uvicorn on 127.0.0.1 (the fixtures of test_serve.py).

A user uploads a digit and reads the right class, draws one on the pad and gets the
prediction ``cnnlab predict`` gives for the same picture, and clicks a convolution unit
whose products, sum and bias add up to the activation the overview shows. Screenshots go to
each test's tmp dir.
"""

import os
import tempfile
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


def test_a_failed_upload_clears_the_previous_images_results(page, tmp_path):
    """Before: the last image's prediction, maps and Grad-CAM stayed beside the bad file's
    name. Now they are cleared and the page says why."""
    assert shown(page) not in ("", "—") and page.locator("#overview .cell").count() > 0
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    page.click("#input-tabs button[data-src=upload]")
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("body[data-input='notes.png'][data-failed='1']")
    assert "notes.png: not a readable image (expected PNG" in page.inner_text("#error")
    assert "Error" not in page.inner_text("#error")  # no Python class names
    assert shown(page) == "—" and page.locator("#bars .bar").count() == 0
    assert page.locator("#overview .cell").count() == 0
    assert "could not be used" in page.inner_text("#overview")
    assert "notes.png could not be used" in page.inner_text("#cam-caption")


def test_training_curves_legend_colours_differ_and_epochs_are_ticked(page):
    page.click("#tabs button[data-tab=model]")
    page.wait_for_selector("#curves svg.chart")
    fills = page.evaluate("""() => [...document.querySelectorAll('#curves svg.chart')].map(svg =>
        [...svg.querySelectorAll('text.legend-label')].map(t => [t.textContent,
          getComputedStyle(t).fill, svg.querySelector(`polyline[data-series=${t.textContent}]`)
            .getAttribute('stroke')]))""")
    for legend in fills:
        names = [n for n, _, _ in legend]
        assert "train" in names and "val" in names, legend
        assert len({f for _, f, _ in legend}) == len(legend), legend  # one colour each
        for _, fill, stroke in legend:  # the label has its line's colour
            r, g, b = (int(int(stroke[i:i + 2], 16)) for i in (1, 3, 5))
            assert fill == f"rgb({r}, {g}, {b})", (fill, stroke)
    ticks = page.evaluate("[...document.querySelector('#curves svg.chart')"
                          ".querySelectorAll('text.xtick')].map(t => t.textContent)")
    assert ticks == ["1", "2", "3", "4"]


def test_gradcam_says_its_resolution_and_offers_the_layer(page):
    cap = page.locator("#cam-caption")
    assert cap.get_attribute("data-resolution") == "10x10"  # LeNet-5's last conv, 28x28 in
    assert "10×10 cells" in cap.inner_text() and "earlier layer" in cap.inner_text()
    options = page.evaluate("[...document.querySelectorAll('#cam-layer option')].map(o => o.value)")
    assert "features.0" in options
    page.select_option("#cam-layer", "features.0")
    page.wait_for_selector("#cam-caption[data-resolution='28x28']")
    assert "at layer features.0" in cap.inner_text()


# CNNLAB_DOCS_SCREENSHOTS=docs rewrites the docs' screenshots; otherwise they go to a
# temporary folder, so a test run never changes the checkout
DOCS = (Path(__file__).resolve().parents[1] / "docs" if os.environ.get("CNNLAB_DOCS_SCREENSHOTS")
        else Path(tempfile.mkdtemp(prefix="cnnlab-shots-")))


def test_classifier_half_linear_unit_and_output_into_softmax(page):
    """Flatten and every Linear layer are columns; a unit of the first one (after flatten)
    shows its inputs grouped by the map they came from, and sum + bias = torch's value; the
    output layer's unit leads into the softmax."""
    cols = page.evaluate("[...document.querySelectorAll('#overview .col')]"
                         ".map(c => c.dataset.stage)")
    assert {"flatten", "classifier.0", "classifier.2", "classifier.4"} <= set(cols), cols
    cv = page.locator(".col[data-stage='classifier.0'] canvas.vcol")
    box = cv.bounding_box()
    cv.click(position={"x": box["width"] / 2, "y": box["height"] * 10.5 / 120})  # unit 10
    page.wait_for_selector("#linear-groups")
    assert page.get_attribute("#overview-value", "data-unit") == "classifier.0:0:0:10"
    value = float(page.get_attribute("#overview-value", "data-value"))
    total = float(page.get_attribute("#unit-sum", "data-value"))
    bias = float(page.get_attribute("#unit-bias", "data-value"))
    assert total + bias == pytest.approx(value, rel=1e-5, abs=1e-5)
    assert "✓ agree" in page.inner_text("#unit-body")
    assert "flattened from 16×5×5" in page.inner_text("#unit-body")
    page.locator("#unit-card").screenshot(path=str(DOCS / "explorer-linear-unit.png"))
    out = page.locator(".col[data-stage='classifier.4'] canvas.vcol")
    box = out.bounding_box()
    out.click(position={"x": box["width"] / 2, "y": box["height"] * 3.5 / 10})  # class 3
    page.wait_for_selector("#to-softmax")
    page.click("#to-softmax")
    assert page.locator("#softmax-table tr.hl td").first.inner_text() == "3"


def test_a_unit_shows_its_receptive_field_back_to_the_input_and_what_it_feeds(page):
    """Unit (5, 5) of the second conv (features.3, 5x5 kernel on 14x14 maps) reads rows and
    columns 5..9 of features.2, 10..19 of features.0 (through the 2x2 pool) and 10..23 of
    the 32x32 input (the first 5x5 conv); it feeds unit (2, 2) of the next pooling column."""
    cell = page.locator(".col[data-stage='features.3'] .cell[data-channel='0'] canvas")
    box = cell.bounding_box()
    cell.click(position={"x": 5.5 / 10 * box["width"], "y": 5.5 / 10 * box["height"]})
    page.wait_for_selector("body[data-unit='features.3:0:5:5']")
    page.wait_for_selector(".col[data-stage='input'] .mark.field")

    def marks(stage, kind):
        sel = f".col[data-stage='{stage}'] .mark.{kind}"
        return page.evaluate(f"""[...document.querySelectorAll("{sel}")]
            .map(m => [m.style.top, m.style.left, m.style.height, m.style.width])""")

    def pct(a, n):
        return f"{100 * a / n:g}%"

    inp = marks("input", "field")
    assert inp and inp[0] == [pct(10, 32), pct(10, 32), pct(14, 32), pct(14, 32)], inp
    f0 = marks("features.0", "field")
    assert len(f0) == 6 and f0[0] == [pct(10, 28), pct(10, 28), pct(10, 28), pct(10, 28)]
    f2 = marks("features.2", "field")
    assert len(f2) == 6 and f2[0] == [pct(5, 14), pct(5, 14), pct(5, 14), pct(5, 14)]
    feeds = marks("features.4", "feeds")
    assert feeds and feeds[0] == [pct(2, 5), pct(2, 5), pct(1, 5), pct(1, 5)]
    page.screenshot(path=str(DOCS / "explorer-receptive-field.png"), full_page=True)


def test_the_kernel_slides_over_the_input_with_play_pause_and_step(page):
    cell = page.locator(".col[data-stage='features.0'] .cell[data-channel='1'] canvas")
    box = cell.bounding_box()
    cell.click(position={"x": 0.5 / 28 * box["width"], "y": 0.5 / 28 * box["height"]})
    page.wait_for_selector("#slide #slide-pos")
    assert page.get_attribute("#slide-play", "data-playing") == "1"  # plays by default
    page.click("#slide-play")  # pause
    assert page.get_attribute("#slide-play", "data-playing") == "0"
    pos = page.get_attribute("#slide-pos", "data-pos")
    page.click("#slide-step")
    y, x = map(int, pos.split(":"))
    nxt = f"{y}:{x + 1}" if x + 1 < 28 else f"{(y + 1) % 28}:0"  # features.0 is 28x28
    assert page.get_attribute("#slide-pos", "data-pos") == nxt
    # the window (5x5, padding 2) and the output cell are drawn
    assert page.locator("#slide-input .mark.window").count() == 1
    assert page.locator("#slide-output .mark.window").count() == 1
    page.locator("#unit-card").screenshot(path=str(DOCS / "explorer-sliding-kernel.png"))


def test_reduced_motion_starts_the_kernel_paused(browser, live_server):
    url, _ = live_server
    ctx = browser.new_context(reduced_motion="reduce", viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.goto(url)
    pg.wait_for_selector("body[data-input='sample-0.png']", timeout=30_000)
    cell = pg.locator(".col[data-stage='features.0'] .cell[data-channel='0'] canvas")
    cell.click(position={"x": 10, "y": 10})
    pg.wait_for_selector("#slide #slide-pos")
    assert pg.get_attribute("#slide-play", "data-playing") == "0"
    pos = pg.get_attribute("#slide-pos", "data-pos")
    pg.wait_for_timeout(800)
    assert pg.get_attribute("#slide-pos", "data-pos") == pos  # nothing moves
    ctx.close()


def test_each_column_shows_its_colour_scale_numbers(page):
    """Every column's head carries its min and max beside a colour bar (the maps' colours
    alone say nothing about magnitude); the numbers are the stage's own."""
    heads = page.evaluate("""[...document.querySelectorAll('#overview .col[data-stage]')].map(c =>
        [c.dataset.stage, c.querySelector('.scale .lo')?.textContent,
         c.querySelector('.scale .hi')?.textContent])""")
    assert heads and all(lo and hi for _, lo, hi in heads), heads
    lo, hi = next((lo, hi) for s, lo, hi in heads if s == "features.2")  # a ReLU: min 0
    assert float(lo) == 0 and float(hi) > 0
