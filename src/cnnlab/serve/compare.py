"""Two served models side by side on one image (``POST /api/compare?a=ID&b=ID``; the page's
Compare tab): each model's top-5, its Grad-CAM and its first convolution's filters.

Nothing is computed here that the explorer does not already compute: each column is the
model's own :meth:`cnnlab.serve.explorer.Explorer.explore` (its decoder reads the same
upload with the model's own input spec, its Grad-CAM, its softmax), cut down to what the
view shows, plus the filters of :func:`cnnlab.viz.filters.conv_filters`. So a column equals
what the model's ``/explore`` route answers for the same image.
"""

from __future__ import annotations

import time

import numpy as np

from cnnlab.errors import UserError
from cnnlab.serve.explorer import Explorer, b64

MAX_FILTERS = 64  # filters of the first conv sent (AlexNet's conv1 has 96; 64 show the kinds)


class UnknownModel(LookupError):
    """An id that is not among the served models (the app answers 404 with the message)."""


def check_pair(explorers: dict[str, Explorer], a: str, b: str) -> tuple[Explorer, Explorer]:
    """The two explorers to compare; :class:`UnknownModel` naming every unknown id and a
    UserError (400) for one model compared with itself."""
    unknown = [m for m in dict.fromkeys((a, b)) if m not in explorers]
    if unknown:
        raise UnknownModel(f"no model {', '.join(map(repr, unknown))}; served: "
                          f"{', '.join(explorers)}")
    if a == b:
        raise UserError(f"a={a!r}, b={b!r}: expected two different models to compare")
    return explorers[a], explorers[b]


def first_filters(ex: Explorer) -> dict:
    """The first convolution's weight (K, C, kh, kw), its first :data:`MAX_FILTERS` filters
    as base64 float32; ``error`` for a model with no convolution (the MLP, the linear model)."""
    from cnnlab.viz.filters import conv_filters

    try:
        w, layer = conv_filters(ex.model)
    except UserError as e:
        return {"error": str(e)}
    shown = w[:MAX_FILTERS]
    return {"layer": layer, "shape": list(w.shape), "count": int(w.shape[0]),
            "shown": int(shown.shape[0]), "data": b64(shown),
            "min": float(w.min()), "max": float(w.max())}


def column(ex: Explorer, image: np.ndarray, notes: dict | None = None) -> dict:
    """One model's column for a uint8 image decoded with its spec: ``explore``'s input,
    prediction (softmax detail and top-5) and Grad-CAM (predicted class, default layer),
    with one activation column computed instead of all of them."""
    r = ex.explore(image, layers=ex.stages[:1], notes=notes)
    info = ex.info()
    return {"id": ex.id, "name": info["name"], "model": info["model"],
            "test_accuracy": info["test_accuracy"], "classes": ex.classes,
            "input": r["input"], "prediction": r["prediction"], "gradcam": r["gradcam"],
            "filters": first_filters(ex)}


def compare(explorers: dict[str, Explorer], a: str, b: str, decode) -> dict:
    """Both columns for one image; ``decode(spec, notes)`` reads the upload for a model's
    input spec (the app's one decoder, once per model: a gray and a colour model each see
    the image as they were trained)."""
    t0 = time.perf_counter()
    pair = check_pair(explorers, a, b)
    cols = []
    for ex in pair:
        notes: dict = {}
        cols.append(column(ex, decode(ex.spec, notes), notes))
    same = cols[0]["prediction"]["class"] == cols[1]["prediction"]["class"]
    return {"a": cols[0], "b": cols[1], "same_class": same,
            "server_ms": (time.perf_counter() - t0) * 1e3}
