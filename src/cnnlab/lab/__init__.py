"""The lab: the lectures' claims as experiments anyone can rerun (``cnnlab lab NAME``).

Each experiment is one small module in this package that registers itself at import time::

    from cnnlab.lab import new_report, register_experiment

    def run(ctx):                      # ctx: RunContext(quick, seed, out, log)
        import torch                   # heavy imports inside: `cnnlab lab list` stays fast
        ...
        rep = new_report(ctx, setup=["LeNet-5 on the built-in digits, 3 seeds"])
        rep.table(["method", "test acc"], [["a", 0.98], ["b", 0.97]], caption="...")
        rep.plot(fig, "curves.png")    # a matplotlib figure, saved as ctx.out / "curves.png"
        rep.results["acc"] = {...}     # anything JSON-serialisable, for results.json
        rep.verdict("supported", "why, in one or two sentences, from the numbers above")
        return rep

    register_experiment("my-claim", run, claim="what the lectures say",
                        expected_minutes_full=12, expected_seconds_quick=30)

Rules every experiment follows: seeds fixed from ``ctx.seed``; the spread over seeds
reported where the effect is small; ``ctx.quick`` selects a version that finishes in under a
minute on a 2-core CPU (CI runs it); the verdict is one of ``supported``, ``not supported``,
``mixed`` and never hides a result that goes against the claim. Modules whose names start
with ``_`` are helpers, not experiments; every other module of the package is imported by
:func:`list_experiments`, so adding an experiment means adding a module (nothing else).

:func:`run_experiment` creates the run directory (default ``runs/lab-<name>-<time>``), calls
the experiment and writes ``report.md`` (claim, setup, tables, plots, verdict with why),
``results.json`` (the same plus ``results``) and the PNG plots.
"""

from __future__ import annotations

import difflib
import importlib
import json
import pkgutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from cnnlab.errors import UserError

VERDICTS = ("supported", "not supported", "mixed")


@dataclass
class Experiment:
    name: str
    run: Callable  # run(ctx: RunContext) -> Report
    claim: str
    expected_minutes_full: float  # the full version on a 2-core CPU
    expected_seconds_quick: float  # the --quick version on a 2-core CPU
    data: str = ""  # what data it uses, shown by `cnnlab lab list`
    datasets: tuple[str, ...] = ()  # kinds `--data` may name (digits, mnist, cifar10, ...)


@dataclass
class RunContext:
    quick: bool
    seed: int
    out: Path  # the run directory (exists); plots and extra files go here
    data: str | None = None  # `--data`: one dataset instead of the experiment's defaults
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)


@dataclass
class Report:
    """What an experiment measured; :func:`write_report` turns it into files."""

    setup: list[str] = field(default_factory=list)  # one bullet per line
    tables: list[dict] = field(default_factory=list)  # {"caption", "headers", "rows"}
    plots: list[str] = field(default_factory=list)  # file names inside the run directory
    results: dict = field(default_factory=dict)  # raw numbers for results.json
    verdict_: str = ""
    why: str = ""
    notes: list[str] = field(default_factory=list)
    _out: Path | None = None

    def table(self, headers: list[str], rows: list[list], caption: str = "") -> None:
        self.tables.append({"caption": caption, "headers": list(headers),
                            "rows": [list(r) for r in rows]})

    def plot(self, fig, name: str, out: Path | None = None) -> str:
        """Save a matplotlib figure as ``<run dir>/name`` (PNG, 100 dpi) and close it."""
        import matplotlib.pyplot as plt

        path = Path(out or self._out or ".") / name
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        self.plots.append(name)
        return name

    def verdict(self, verdict: str, why: str) -> None:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        self.verdict_, self.why = verdict, why

    def _repr_html_(self) -> str:
        return report_html({"setup": self.setup, "tables": self.tables, "plots": self.plots,
                            "verdict": self.verdict_, "why": self.why, "notes": self.notes},
                           self._out)


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(name: str, run_fn: Callable, *, claim: str,
                        expected_minutes_full: float, expected_seconds_quick: float,
                        data: str = "", datasets: tuple[str, ...] = ()) -> Experiment:
    """Register ``run_fn(ctx) -> Report`` under ``name`` (raises on duplicates).

    ``datasets``: the kinds of data (:func:`dataset_kind`) the experiment can take through
    ``--data``; empty means it takes no ``--data``.
    """
    if name in _REGISTRY and _REGISTRY[name].run is not run_fn:
        raise ValueError(f"experiment {name!r} is already registered")
    _REGISTRY[name] = Experiment(name, run_fn, claim, expected_minutes_full,
                                 expected_seconds_quick, data, tuple(datasets))
    return _REGISTRY[name]


def _load_all() -> None:
    for m in pkgutil.iter_modules(__path__):
        if not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


def list_experiments() -> list[Experiment]:
    """Every registered experiment, sorted by name."""
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_experiment(name: str) -> Experiment:
    """The experiment ``name``; an unknown name raises UserError listing close matches."""
    _load_all()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown experiment {name!r}{hint} (known: {', '.join(sorted(_REGISTRY))})")
    return _REGISTRY[name]


def run_experiment(name: str, quick: bool = False, out: str | Path | None = None,
                   seed: int = 0, log: Callable[[str], None] | None = None,
                   data: str | None = None) -> dict:
    """Run one experiment; writes report.md, results.json and plots into ``out``.

    ``data``: run on this dataset only (it must be of a kind the experiment takes).
    Returns the contents of ``results.json`` (plus ``"run_dir"``).
    """
    exp = get_experiment(name)
    check_data(exp, data)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out) if out else Path("runs") / f"lab-{name}{'-quick' if quick else ''}-{stamp}"
    path.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(quick=quick, seed=seed, out=path, data=data)
    if log is not None:
        ctx.log = log
    t0 = time.perf_counter()
    rep = exp.run(ctx)
    seconds = time.perf_counter() - t0
    return write_report(exp, rep, ctx, seconds)


def dataset_kind(spec: str) -> str:
    """``"digits"``, ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"`` from a
    name or path (its file name), or ``"other"``."""
    base = Path(str(spec)).name.lower()
    for kind in ("digits", "fashion-mnist", "mnist", "cifar100", "cifar10"):
        if base.startswith(kind) or base.startswith(kind.replace("-", "")):
            return kind
    return "other"


def check_data(exp: Experiment, data: str | None) -> None:
    """UserError when ``--data`` names a dataset the experiment cannot take."""
    if data is None:
        return
    if not exp.datasets:
        raise UserError(f"--data {data}: experiment {exp.name!r} takes no --data (it uses "
                        f"{exp.data or 'fixed data'})")
    if dataset_kind(data) not in exp.datasets:
        raise UserError(f"--data {data}: experiment {exp.name!r} needs one of "
                        f"{', '.join(exp.datasets)} (got {dataset_kind(data)})")


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(exp: Experiment, rep: Report, ctx: RunContext, seconds: float) -> dict:
    """report.md and results.json in ``ctx.out``; returns the results.json contents."""
    if rep.verdict_ not in VERDICTS:
        raise RuntimeError(f"experiment {exp.name!r} returned no verdict")
    mode = "quick" if ctx.quick else "full"
    md = [f"# Lab: {exp.name} ({mode} version)", "", f"**Claim.** {exp.claim}", "",
          "**Setup.**", ""]
    md += [f"- {s}" for s in rep.setup] + [f"- seed {ctx.seed}; {seconds:.1f} s on this machine", ""]
    for t in rep.tables:
        if t["caption"]:
            md += [f"**{t['caption']}**", ""]
        md += [markdown_table(t["headers"], t["rows"]), ""]
    md += [f"![{p}]({p})" for p in rep.plots] + ([""] if rep.plots else [])
    md += [f"**Verdict: {rep.verdict_}.** {rep.why}", ""]
    md += [f"- {n}" for n in rep.notes]
    (ctx.out / "report.md").write_text("\n".join(md).rstrip() + "\n")
    res = {"name": exp.name, "claim": exp.claim, "quick": ctx.quick, "seed": ctx.seed,
           "seconds": round(seconds, 2), "verdict": rep.verdict_, "why": rep.why,
           "setup": rep.setup, "tables": rep.tables, "plots": rep.plots,
           "notes": rep.notes, "results": rep.results}
    (ctx.out / "results.json").write_text(json.dumps(res, indent=1, default=_jsonable) + "\n")
    res["run_dir"] = str(ctx.out)
    return LabResult(res)


class LabResult(dict):
    """What :func:`run_experiment` returns (results.json plus ``"run_dir"``); Jupyter shows
    it as the report: its tables as HTML, the same cells as report.md, and its plots."""

    def _repr_html_(self) -> str:
        return report_html(self, self.get("run_dir"))


def report_html(res: dict, folder: str | Path | None = None) -> str:
    """A report (results.json's keys: name, claim, setup, tables, plots, verdict, why,
    notes; any may be missing) as HTML; plots read from ``folder``."""
    from cnnlab.notebook import esc, html_table, image_html

    def items(lines):
        return "<ul>" + "".join(f"<li>{esc(t)}</li>" for t in lines) + "</ul>" if lines else ""

    out = []
    if res.get("name"):
        out.append(f"<h4>Lab: {esc(res['name'])} "
                   f"({'quick' if res.get('quick') else 'full'} version)</h4>")
    if res.get("claim"):
        out.append(f"<p><b>Claim.</b> {esc(res['claim'])}</p>")
    out.append(items(res.get("setup")))
    out += [html_table(t["headers"], [[_cell(v) for v in r] for r in t["rows"]], t["caption"])
            for t in res.get("tables", [])]
    out += [image_html(Path(folder) / p) for p in res.get("plots", []) if folder]
    if res.get("verdict"):
        out.append(f"<p><b>Verdict: {esc(res['verdict'])}.</b> {esc(res.get('why', ''))}</p>")
    out.append(items(res.get("notes")))
    return "\n".join(t for t in out if t)


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def new_report(ctx: RunContext, setup: list[str] | None = None) -> Report:
    """A Report whose plots are saved into the run directory."""
    rep = Report(setup=list(setup or []))
    rep._out = ctx.out
    return rep


__all__ = ["Experiment", "Report", "RunContext", "VERDICTS", "check_data", "dataset_kind",
           "get_experiment", "LabResult",
           "list_experiments", "markdown_table", "new_report", "register_experiment",
           "report_html",
           "run_experiment", "write_report"]
