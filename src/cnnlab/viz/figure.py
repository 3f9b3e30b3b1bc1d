"""The figure every picture is drawn on: a matplotlib Figure that shows itself in Jupyter.

Made outside pyplot (no backend is chosen, nothing global is kept), so a notebook shows it
once, as the value of the cell that returned it, and dropping it frees it.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.figure import Figure


class NotebookFigure(Figure):
    """A :class:`matplotlib.figure.Figure` with ``_repr_png_``: IPython shows it inline even
    where pyplot never set up the inline backend. ``numbers``: what the picture shows, as
    ``cnnlab viz KIND --json`` prints it (set by :mod:`cnnlab.viz.pictures`)."""

    numbers: dict | None = None

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
        return buf.getvalue()


def new_figure(width: float, height: float, dpi: int = 100) -> NotebookFigure:
    """A ``width`` x ``height`` inch figure."""
    return NotebookFigure(figsize=(width, height), dpi=dpi)


def save_figure(fig, out: str | Path | None, dpi: int = 100):
    """Write ``fig`` as PNG at ``out`` (folders created) and return the path; with ``out``
    None write nothing and return the figure, set to ``dpi``, to show or save later."""
    if out is None:
        fig.set_dpi(dpi)
        return fig
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, bbox_inches="tight", facecolor="white")
    return out
