"""Rich display in Jupyter: HTML tables for cnnlab's results, figures that show inline.

IPython shows an object's ``_repr_html_()`` when it has one and its ``repr()`` everywhere
else, so results keep their plain text and gain a table in a notebook:

    Summary, explain(...)      one table of the layers / of each matrix worked out
    a lab report, compare()    their tables, the verdict and notes below
    train(...)                 the final summary, the run's metrics per epoch

and the pictures of :mod:`cnnlab.viz` are figures that show inline
(:class:`cnnlab.viz.figure.NotebookFigure`).

Every value put into HTML goes through :func:`html.escape` (a model or class name may hold
``<`` or ``&``). Nothing here imports IPython: the methods are plain strings, so they cost
nothing outside a notebook.
"""

from __future__ import annotations

import html
import sys


def esc(v) -> str:
    """``str(v)`` escaped for HTML text and attributes."""
    return html.escape(str(v), quote=True)


_esc = esc


def _is_number(text: str) -> bool:
    t = text.replace(",", "").replace("%", "").replace("_", "").strip()
    for unit in (" MiB", " KiB", " GiB", " params", " MiB stored", "K", "M", "G", "T"):
        if t.endswith(unit):
            t = t[: -len(unit)].strip()
    try:
        float(t)
    except ValueError:
        return False
    return True


def html_table(headers, rows, caption: str = "", notes=()) -> str:
    """``<table>`` of ``rows`` (lists of cell values, shown as ``str(value)``) under
    ``headers``; numeric cells right-aligned; ``caption`` above, ``notes`` (lines) below."""
    cells = [[str(v) for v in r] for r in rows]
    right = [bool(col) and all(_is_number(c) or c in ("", "-", "None") for c in col)
             for col in (list(c) for c in zip(*cells))] if cells else []
    out = ['<table class="cnnlab">']
    if caption:
        out.append(f'<caption style="text-align:left">{_esc(caption)}</caption>')
    if headers:
        out.append("<thead><tr>" + "".join(f"<th>{_esc(h)}</th>" for h in headers)
                   + "</tr></thead>")
    out.append("<tbody>")
    for r in cells:
        tds = [f'<td style="text-align:{"right" if right[i] else "left"}">{_esc(c)}</td>'
               for i, c in enumerate(r)]
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    if notes:
        out.append("<div>" + "<br>".join(_esc(n) for n in notes) + "</div>")
    return "\n".join(out)


def key_value_table(items, caption: str = "") -> str:
    """A two-column table (name, value) of a dict's items or (name, value) pairs."""
    pairs = items.items() if isinstance(items, dict) else items
    return html_table([], [[k, v] for k, v in pairs], caption)


def _grid_row(line: str) -> list[str] | None:
    """The numbers of a matrix row as explain prints it (4-space indent), else None."""
    if not line.startswith("    ") or not line.strip():
        return None
    cells = line.split()
    return cells if all(_is_number(c) for c in cells) else None


def text_html(text: str) -> str:
    """Plain text with its matrices (runs of 4-space-indented rows of numbers) as
    ``<table>``s and every other line kept as preformatted, escaped text."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        j = i
        while j < len(lines) and _grid_row(lines[j]) is not None:
            j += 1
        if j > i:
            out.append(html_table([], [_grid_row(t) for t in lines[i:j]]))
            i = j
            continue
        while j < len(lines) and _grid_row(lines[j]) is None:
            j += 1
        block = "\n".join(lines[i:j]).strip("\n")
        if block:
            out.append(f'<pre style="margin:0.3em 0">{_esc(block)}</pre>')
        i = j
    return "\n".join(out)


class Text(str):
    """A ``str`` (printing, ``repr`` and comparison unchanged) that Jupyter shows with its
    matrices as HTML tables (:func:`text_html`)."""

    def _repr_html_(self) -> str:
        return text_html(str(self))


def image_html(path, alt: str = "") -> str:
    """``<img>`` holding the PNG at ``path`` (base64), so the notebook keeps it; "" when the
    file is missing."""
    import base64
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        return ""
    data = base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt or p.name)}" src="data:image/png;base64,{data}">'


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where tqdm.auto draws a notebook bar)."""
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None and hasattr(ip, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")


class Table(list):
    """Rows (dicts) with columns: ``str()`` is a plain-text table, ``_repr_html_()`` an HTML
    one; otherwise a list of dicts (``run.metrics[0]["train_loss"]``)."""

    def __init__(self, rows=(), columns=None, caption: str = ""):
        super().__init__(rows)
        self.columns = list(columns) if columns is not None else \
            list(dict.fromkeys(k for r in self for k in r))
        self.caption = caption

    def cells(self) -> list[list[str]]:
        return [[_cell(r.get(c)) for c in self.columns] for r in self]

    def __str__(self) -> str:
        rows = [self.columns, *self.cells()]
        w = [max(len(r[i]) for r in rows) for i in range(len(self.columns))]
        lines = ["  ".join(c.rjust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
        return "\n".join(([self.caption] if self.caption else []) + lines)

    def _repr_html_(self) -> str:
        return html_table(self.columns, self.cells(), self.caption)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
