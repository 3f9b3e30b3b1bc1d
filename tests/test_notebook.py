"""cnnlab in Jupyter: every result with a table shows it as HTML (``_repr_html_``) holding the
same cells as its plain text, names escaped; every `cnnlab viz` kind is a function of
``cnnlab.viz`` returning a matplotlib Figure, writing a PNG only when ``out=`` is given."""

import csv
import dataclasses
import json
import re
from html.parser import HTMLParser

import pytest
from matplotlib.figure import Figure

import cnnlab

from test_viz_pictures import checkpoints  # noqa: F401  (a shared fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")
NASTY = "<b>a&b</b>"  # a name that must come out escaped


class _Tables(HTMLParser):
    """Every ``<table>``'s rows of cell texts (th and td), in order."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tables, self._cell = [], None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def tables(html: str) -> list[list[list[str]]]:
    assert html.lstrip().startswith(("<table", "<h4", "<pre", "<p", "<ul")), html[:80]
    return _Tables(html).tables


def columns(line: str) -> list[str]:
    """A fixed-width text table line split at runs of 2+ spaces."""
    return re.split(r"\s{2,}", line.strip())


# ---- tables ---------------------------------------------------------------------------------
def test_summary_html_has_the_text_tables_cells_and_escapes_names():
    s = cnnlab.summary("lenet5")
    text = str(s).splitlines()
    head, *rows = tables(s._repr_html_())[0]
    assert head == columns(text[2])
    body = [columns(t) for t in text[4:4 + len(s.layers)]]
    assert rows == body and len(rows) == len(s.layers) == 12
    assert rows[0][3] == "156" and "61,706" in s._repr_html_()  # LeCun 1998's conv1, total
    html = dataclasses.replace(s, model=NASTY)._repr_html_()
    assert "&lt;b&gt;a&amp;b&lt;/b&gt;" in html and NASTY not in html


def test_explain_html_tables_hold_the_matrices_of_the_text():
    from cnnlab.scratch.explain import explain

    for topic in ("conv", "pooling", "padding"):
        e = explain(topic)
        assert isinstance(e, str) and repr(e).startswith(("'", '"'))  # plain text unchanged
        grids = [line.split() for line in e.splitlines()
                 if line.startswith("    ") and re.fullmatch(r"[\d.\s-]+", line)]
        cells = [row for t in tables(e._repr_html_()) for row in t]
        assert cells == grids and cells
    out = explain("conv")
    assert tables(out._repr_html_())[-1] == [["4", "3", "4"], ["2", "4", "3"], ["2", "3", "4"]]
    from cnnlab.notebook import Text

    html = Text(f"{NASTY}\n    1 2\n    3 4")._repr_html_()
    assert "&lt;b&gt;a&amp;b" in html and NASTY not in html
    assert tables(html.split("\n", 1)[1]) == [[["1", "2"], ["3", "4"]]]


def _lab(tmp_path):
    from cnnlab.lab import Experiment, Report, RunContext, write_report

    rep = Report(setup=[f"data {NASTY}"])
    rep.table(["model", "accuracy", "params"], [[NASTY, 0.98765, 61706], ["mlp", 0.5, 12]],
              caption="results")
    rep.verdict("supported", "because")
    exp = Experiment("demo", lambda ctx: rep, "small filters win", 1, 1)
    return rep, write_report(exp, rep, RunContext(True, 0, tmp_path), 1.0)


def test_lab_report_html_has_the_report_md_cells(tmp_path):
    rep, res = _lab(tmp_path)
    md = [line for line in (tmp_path / "report.md").read_text().splitlines()
          if line.startswith("|") and "---" not in line]
    want = [[c.strip() for c in line.strip("|").split("|")] for line in md]
    for html in (res._repr_html_(), rep._repr_html_()):
        assert tables(html) == [want]
        assert want[1] == [NASTY, "0.9877", "61,706"]
        assert NASTY not in html and "&lt;b&gt;a&amp;b&lt;/b&gt;" in html
    assert "Verdict: supported" in res._repr_html_()
    assert json.loads((tmp_path / "results.json").read_text())["verdict"] == res["verdict"]


def test_compare_html_has_the_text_tables_cells():
    from cnnlab.baselines.compare import Comparison, format_table

    rows = Comparison([
        {"method": "knn", "data": "digits", "accuracy": 0.98333, "size": 1_000_000,
         "size_unit": "bytes stored", "train_s": 0.01, "predict_ms": 0.1234, "detail": "k=3"},
        {"method": NASTY, "data": "digits", "accuracy": 0.5, "size": 61706,
         "size_unit": "params", "train_s": 12.34, "predict_ms": 1.5, "detail": "a & b"}])
    head, *cells = tables(rows._repr_html_())[0]
    text = format_table(rows).splitlines()
    assert head[:5] == ["Method", "Test acc", "Size", "Train s", "ms/image"]
    assert cells[0] == ["knn", "98.33%", "1.0 MiB stored", "0.0", "0.123", "k=3"]
    for line, row in zip(text[2:4], cells):
        assert all(c in line for c in row)
    assert NASTY not in rows._repr_html_() and "a &amp; b" in rows._repr_html_()
    assert rows == list(rows) and repr(rows).startswith("[{")  # plain text as before


def _run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "epoch,train_loss,train_acc,val_loss,val_acc,val_top5,test_loss,test_acc,test_top5,"
        "lr,seconds\n1,2.0,0.3,1.5,0.5,,,,,0.1,1.25\n2,1.0,0.7,0.9,0.75,,,,,0.05,2.5\n")
    summary = {"model": NASTY, "test_accuracy": 0.9125, "checkpoint": {"name": "best",
               "epoch": 2}, "run_dir": str(run)}
    (run / "final.json").write_text(json.dumps(summary))
    return run, summary


def test_train_result_shows_its_summary_and_metrics(tmp_path):
    from cnnlab.run import Run, TrainResult

    run, summary = _run_dir(tmp_path)
    r = TrainResult(summary)
    assert r == summary and isinstance(r, dict)
    kv, metrics = tables(r._repr_html_())
    assert ["test_accuracy", "0.9125"] in kv and ["checkpoint", "name best, epoch 2"] in kv
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert metrics[0] == ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                          "seconds"]  # columns empty in every row left out
    assert [[float(v) for v in row] for row in metrics[1:]] == \
        [[float(r[c]) for c in metrics[0]] for r in rows]
    assert NASTY not in r._repr_html_()
    assert r.run.metrics[1]["val_acc"] == 0.75 and r.run.metrics[0]["test_acc"] is None
    assert "0.75" in str(r.run.metrics)
    fig = Run(run).curves()
    assert isinstance(fig, Figure) and sorted(p.name for p in run.iterdir()) == \
        ["final.json", "metrics.csv"]
    Run(run).curves(out=tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert tables(Run(run)._repr_html_())[0] == kv


def test_html_table_escapes_every_value():
    from cnnlab.notebook import html_table

    html = html_table([NASTY], [[NASTY], ['" onload="x']], caption=NASTY, notes=[NASTY])
    assert NASTY not in html and '" onload' not in html
    assert tables(html) == [[[NASTY], [NASTY], ['" onload="x']]]


# ---- pictures -------------------------------------------------------------------------------
def test_every_cli_kind_is_a_function_returning_a_figure(checkpoints, tmp_path, monkeypatch):
    import cnnlab.viz as viz
    from cnnlab.cli.viz import HELP

    monkeypatch.chdir(tmp_path)
    run, _ = _run_dir(tmp_path)
    lenet = checkpoints["lenet5"]
    calls = {"kernel": (["flower"], dict(kernel="sobel-y", stride=4)),
             "filters": ([lenet], {}),
             "activations": ([lenet], dict(index=3, channels=2)),
             "top-patches": ([lenet], dict(images=60, n=2, channels=[0])),
             "gradcam": ([lenet], dict(n=2, target="3")),
             "templates": ([checkpoints["mlp"]], {}),
             "embed": ([lenet], dict(n=40, method="pca")),
             "retrieve": ([lenet], dict(k=2, gallery=50, queries=1)),
             "curves": ([[str(run)]], {}),
             "confusion": ([lenet], {}),
             "mistakes": ([lenet], dict(n=2))}
    assert set(calls) == set(HELP) == set(viz.KINDS)  # every kind `cnnlab viz` lists
    assert {k.replace("-", "_") for k in HELP} <= set(dir(viz))
    before = sorted(tmp_path.rglob("*"))
    for kind, (args, kw) in calls.items():
        fig = getattr(viz, kind.replace("-", "_"))(*args, **kw)
        assert isinstance(fig, Figure), kind
        assert fig.numbers["out"] is None and fig._repr_png_()[:4] == b"\x89PNG"
    assert sorted(tmp_path.rglob("*")) == before  # no out=: no file
    fig = viz.gradcam(lenet, n=2, target="3", out=tmp_path / "pics" / "cam.png")
    assert (tmp_path / "pics" / "cam.png").read_bytes()[:4] == b"\x89PNG"
    assert fig.numbers["out"] == str(tmp_path / "pics" / "cam.png")
    assert fig.numbers["target_classes"] == ["3", "3"]


def test_kind_modules_stay_modules():
    import inspect

    import cnnlab.viz
    from cnnlab.viz.gradcam import grad_cam

    assert cnnlab.viz.gradcam.grad_cam is grad_cam  # the module's functions as before
    assert inspect.ismodule(cnnlab.viz.kernel) and callable(cnnlab.viz.kernel)
    assert list(inspect.signature(cnnlab.viz.kernel).parameters)[:2] == ["image", "kernel"]
    assert inspect.signature(cnnlab.viz.mistakes).parameters["out"].default is None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cnnlab.viz.nope  # noqa: B018
