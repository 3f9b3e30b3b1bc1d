"""The docs site and the outputs shown in it (issue 22).

- the README stays a short front page that names the two set-up commands;
- ``mkdocs build --strict`` passes: a broken link, a missing page or an unrendered
  docstring is a warning, and a warning fails the build;
- every marked output block (``<!-- cnnlab-output: CMD -->``, tools/docs_outputs.py) that
  is fast enough is rerun, and the committed text must match the fresh one once timings,
  paths and dates are normalised; a hand-edited number is caught;
- the CLI reference lists every option of every command;
- each tutorial page is the executed form of its current source, and (slow) the tutorials
  execute without error and print what their pages show.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import docs_cli  # noqa: E402
import docs_outputs  # noqa: E402
import docs_tutorials  # noqa: E402


def test_readme_is_a_short_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make test" in text and "make demo" in text
    for page in ("docs/how-to/train.md", "docs/reference/file-formats.md",
                 "docs/tutorials/02-convolution-by-hand.md"):
        assert f"]({page})" in text, page
    import re

    broken = [t for t in re.findall(r"\]\(([^)#:]+)\)", text) if not (ROOT / t).exists()]
    assert not broken, f"README links to missing files: {broken}"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    """``mkdocs build --strict`` into a temporary folder: (the process, the site folder)."""
    site = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                        str(site)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    return p, site


def test_mkdocs_build_strict(built_site):
    p, site = built_site
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-5000:]
    assert "WARNING" not in p.stderr, p.stderr[-5000:]
    for page in ("index.html", "reference/cli.html", "reference/api.html",
                 "tutorials/02-convolution-by-hand.html", "explanation/results.html"):
        assert (site / page).is_file(), page
    api = (site / "reference/api.html").read_text()
    assert "conv2d_forward" in api and "Summarise a model" in api  # docstrings rendered
    results = (site / "explanation/results.html").read_text()
    assert "Main job" in results  # benchmarks/RESULTS.md included, not copied
    # offline: no web fonts, no assets from a CDN
    home = (site / "index.html").read_text()
    assert "fonts.googleapis" not in home and "cdn.jsdelivr" not in home


def fast_blocks():
    return [b for p in docs_outputs.documents() for b in docs_outputs.find_blocks(p)]


def test_there_are_marked_blocks_and_their_options_are_known():
    blocks = fast_blocks()
    assert any(b.path.name == "README.md" for b in blocks)
    assert any("slow" not in b.opts for b in blocks)


@pytest.mark.parametrize("doc", [p.relative_to(ROOT).as_posix() for p in docs_outputs.documents()
                                 if docs_outputs.find_blocks(p)])
def test_marked_outputs_match_a_fresh_run(doc):
    problems = docs_outputs.check(ROOT / doc)
    assert not problems, "\n".join(problems) + "\n(run `make docs-outputs` to regenerate)"


def test_a_hand_edited_output_is_caught(tmp_path):
    doc = tmp_path / "page.md"
    good = ("<!-- cnnlab-output: cnnlab explain output-size -->\n"
            "<!-- /cnnlab-output -->\n")
    doc.write_text(good)
    docs_outputs.update(doc, include_slow=False)
    text = doc.read_text()
    assert "$ cnnlab explain output-size\n" in text
    assert docs_outputs.check(doc) == []
    # a digit typed by hand into the output is a difference, not noise
    body = text.split("$ cnnlab explain output-size\n", 1)[1]
    i = next(i for i, ch in enumerate(body) if ch.isdigit())
    edited = body[:i] + str((int(body[i]) + 1) % 10) + body[i + 1:]
    doc.write_text(text.replace(body, edited))
    problems = docs_outputs.check(doc)
    assert len(problems) == 1 and "prints something else now" in problems[0]


def test_volatile_parts_are_normalised():
    a = ("epoch 1/3  train loss 2.2854 acc 15.40%  4,753 img/s  0.2s\n"
         "after 3 epochs (0.7 s) · run directory runs/lenet5-digits-20261122-120102 /tmp/x1/y")
    b = ("epoch 1/3  train loss 2.2854 acc 15.40%  806 img/s  12.9s\n"
         "after 3 epochs (35.6 s) · run directory runs/lenet5-digits-20261206-040000 /tmp/q/z")
    assert docs_outputs.normalise(a) == docs_outputs.normalise(b)
    assert docs_outputs.normalise(a) != docs_outputs.normalise(a.replace("2.2854", "2.2855"))


def test_unknown_block_option_is_refused(tmp_path):
    doc = tmp_path / "page.md"
    doc.write_text("<!-- cnnlab-output[fast]: cnnlab models -->\n<!-- /cnnlab-output -->\n")
    with pytest.raises(ValueError, match="unknown cnnlab-output option"):
        docs_outputs.find_blocks(doc)


def test_cli_reference_lists_every_command_and_option():
    from cnnlab.cli import build_parser

    page = docs_cli.cli_markdown()

    def walk(parser, path):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    assert f"`{' '.join([*path, name])}`" in page, [*path, name]
                    walk(sub, [*path, name])
            elif a.option_strings and a.dest != "help":
                assert f"`{', '.join(a.option_strings)}" in page, (path, a.option_strings)

    walk(build_parser(), ["cnnlab"])
    assert "| `--epochs EPOCHS` | `30` |" in page  # the default, from the parser


def test_tutorial_pages_are_executed_from_their_current_sources():
    assert docs_tutorials.sources(), "no tutorials found"
    assert docs_tutorials.stale() == [], "run `python tools/docs_tutorials.py`"


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in docs_tutorials.sources()])
def test_tutorial_executes_and_prints_what_its_page_shows(name):
    problems = docs_tutorials.check(docs_tutorials.SRC / name)
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the site in a browser
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
# CNNLAB_DOCS_SCREENSHOTS=docs writes the screenshots into docs/ (how docs/site-*.png were
# made); by default they go to the test's tmp dir.
SHOTS = os.environ.get("CNNLAB_DOCS_SCREENSHOTS")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM} (apt-get install "
                    "chromium); it is not installed here")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site_url(built_site):
    import functools
    import http.server
    import threading

    p, site = built_site
    assert p.returncode == 0, p.stderr[-3000:]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("page_path,text,shot", [
    ("index.html", "Two commands", "site-home.png"),
    ("tutorials/02-convolution-by-hand.html", "4., 3., 4.", "site-tutorial.png"),
])
def test_site_pages_load_offline_without_errors(browser, site_url, tmp_path, page_path, text,
                                                shot):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors, off_machine = [], []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))

    def route(r):
        if r.request.url.startswith(site_url):
            return r.continue_()
        off_machine.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.goto(f"{site_url}/{page_path}", wait_until="networkidle")
    assert text in page.inner_text("article")
    out = (ROOT / SHOTS if SHOTS else tmp_path) / shot
    page.screenshot(path=str(out))
    search = page.locator("input.md-search__input")  # the search index loads locally
    search.click()
    for _ in range(30):  # the index is built in a worker: type again until it answers
        search.fill("")
        search.type("receptive field")
        if page.locator(".md-search-result__item").count():
            break
        page.wait_for_timeout(1000)
    assert page.locator(".md-search-result__item").count(), "the site's search found nothing"
    page.close()
    assert not off_machine, off_machine
    assert not errors, errors
