"""`cnnlab compare`: the classic baselines and the zoo's CNNs on one dataset, one table.

Each row: test accuracy, parameters (or, for k-NN, the bytes it stores: the training set),
training time and prediction time per test image. k-NN and the bag-of-words variants run
here; ``linear``, ``mlp`` and zoo models are trained by the normal trainer
(:func:`cnnlab.train`) into a temporary run directory.
"""

from __future__ import annotations

import difflib
import tempfile
import time

import numpy as np

from cnnlab.errors import UserError

DEFAULT_METHODS = "knn,linear,mlp,lenet5"
BASELINES = ("knn", "knn-fast", "knn-l1", "bovw", "coates")
# cs231n's 1-NN on CIFAR-10 raw pixels, printed beside our table as an anchor
ANCHORS = ["cs231n (CIFAR-10, raw pixels, 1-NN): 38.6% with L1, 35.4% with L2",
           "Coates, Lee & Ng 2011 (CIFAR-10, k-means triangle features, stride 1): 77.9% "
           "with 1,600 centroids, 79.6% with 4,000"]


def parse_methods(methods: str | list[str] | None) -> list[str]:
    """Validated method names; an unknown one raises UserError with close matches."""
    from cnnlab.registry import list_models

    names = methods if isinstance(methods, list) else (methods or DEFAULT_METHODS).split(",")
    names = [m.strip() for m in names if m.strip()]
    known = [*BASELINES, *list_models()]
    for m in names:
        if m not in known:
            close = difflib.get_close_matches(m, known, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"--methods: unknown method {m!r}{hint} (baselines: "
                            f"{', '.join(BASELINES)}, or any model of `cnnlab models`)")
    if not names:
        raise UserError("--methods: expected at least one method")
    return names


def _knn_row(m, data, k):
    from cnnlab.baselines.knn import KNN

    metric, mode = ("l1", "exact") if m == "knn-l1" else ("l2", "fast" if m == "knn-fast" else "exact")
    if k > len(data.train):
        raise UserError(f"--k {k}: larger than the training set ({len(data.train)} images)")
    t0 = time.perf_counter()
    knn = KNN(k, metric, mode).fit(data.train.images, data.train.labels)
    t1 = time.perf_counter()
    pred = knn.predict(data.test.images)
    t2 = time.perf_counter()
    return {"accuracy": float((pred == data.test.labels).mean()), "size": knn.stored_bytes,
            "size_unit": "bytes stored", "train_s": t1 - t0,
            "predict_ms": 1000 * (t2 - t1) / len(data.test), "detail": f"k={k}, {metric}, {mode}"}


def _bovw_row(m, data, seed, k_words=None):
    from cnnlab.baselines.bovw import KMeansFeatures, train_ridge

    hard = m == "bovw"
    k_words = k_words or (400 if hard else 1600)
    fe = KMeansFeatures(k=k_words, encoding="hard" if hard else "triangle", stride=2,
                        n_patches=min(200_000, 100 * len(data.train)), seed=seed)
    t0 = time.perf_counter()
    f_train = fe.fit(data.train.images).transform(data.train.images)
    predict = train_ridge(f_train, data.train.labels, seed=seed)
    t1 = time.perf_counter()
    pred = predict(fe.transform(data.test.images))
    t2 = time.perf_counter()
    params = fe.centroids.numel() + fe.zca.numel() + fe.dim * (len(data.classes) + 2)
    return {"accuracy": float((pred == data.test.labels).mean()), "size": params,
            "size_unit": "params", "train_s": t1 - t0,
            "predict_ms": 1000 * (t2 - t1) / len(data.test),
            "detail": f"{k_words} words, {'hard histogram' if hard else 'triangle, 4 quadrants'}, "
                      f"6x6 stride 2, ridge"}


def _trained_row(m, spec, epochs, seed):
    import torch

    from cnnlab.config import make_config
    from cnnlab.inference import load_model
    from cnnlab.training.api import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = make_config(model=m, data=spec, epochs=epochs, seed=seed, out=f"{tmp}/run",
                          progress="none", batch_size=64 if spec == "digits" else 128)
        s = train(cfg)
        model, meta = load_model(f"{tmp}/run/checkpoints/last.safetensors")
    from cnnlab.data import load_data

    test = load_data(spec, progress=False).test
    mean = torch.tensor(meta["input"]["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(meta["input"]["std"]).view(1, -1, 1, 1)
    t0 = time.perf_counter()
    with torch.no_grad():
        pred = torch.cat([model((torch.from_numpy(test.images[i:i + 1000]).float() / 255
                                 - mean) / std).argmax(1) for i in range(0, len(test), 1000)])
    t1 = time.perf_counter()
    # scored like the other rows (float64 share of correct labels), so equal counts compare equal
    return {"accuracy": float((pred.numpy() == test.labels).mean()),
            "size": sum(p.numel() for p in model.parameters()),
            "size_unit": "params", "train_s": s["seconds"],
            "predict_ms": 1000 * (t1 - t0) / len(test), "detail": f"{epochs} epochs, cnnlab train"}


def compare(data: str = "digits", methods=None, k: int | None = None,
            epochs: int | None = None, seed: int = 0, log=None) -> list[dict]:
    """One row per method (dicts with method, accuracy, size, size_unit, train_s,
    predict_ms, detail; a :class:`Comparison`, shown as a table in Jupyter); the data is
    loaded once (``cnnlab.data.load_data``).

    ``k``: neighbours of k-NN (default 3, or the whole training set when smaller, said
    through ``log``); an explicit ``k`` larger than the training set is refused."""
    from cnnlab.data import load_data

    names = parse_methods(methods)
    if k is not None and (not isinstance(k, int) or k < 1):
        raise UserError(f"--k {k}: expected a positive number of neighbours")
    d = load_data(data, progress=False)
    if k is None:
        k = min(3, len(d.train))
        if k < 3 and log and any(m.startswith("knn") for m in names):
            log(f"--k: using {k}, all the training images (the default 3 is more)")
    if k > len(d.train) and any(m.startswith("knn") for m in names):
        raise UserError(f"--k {k}: larger than the training set ({len(d.train)} images)")
    epochs = epochs or (30 if len(d.train) < 5000 else 5)
    rows = []
    for m in names:
        if log:
            log(f"compare: {m} on {d.name} ...")
        if m.startswith("knn"):
            r = _knn_row(m, d, k)
        elif m in ("bovw", "coates"):
            r = _bovw_row(m, d, seed)
        else:
            r = _trained_row(m, data, epochs, seed)
        rows.append({"method": m, "data": d.name, **r})
    return Comparison(rows)


class Comparison(list):
    """:func:`compare`'s rows (a list of dicts); Jupyter shows them as the table
    :func:`format_table` prints, in HTML."""

    def _repr_html_(self) -> str:
        from cnnlab.notebook import html_table

        head = ["Method", "Test acc", "Size", "Train s", "ms/image", "Detail"]
        return html_table(head, [_cells(r) for r in self], notes=["Anchors:", *ANCHORS])


def _cells(r: dict) -> list[str]:
    """One row's cells as :func:`format_table` prints them."""
    size = (f"{r['size'] / 2**20:,.1f} MiB stored" if r["size_unit"] == "bytes stored"
            else f"{r['size']:,} params")
    return [r["method"], f"{r['accuracy']:.2%}", size, f"{r['train_s']:.1f}",
            f"{r['predict_ms']:.3f}", r["detail"]]


def format_table(rows: list[dict]) -> str:
    head = f"{'Method':<10} {'Test acc':>8}  {'Size':>20}  {'Train s':>8}  {'ms/image':>8}  Detail"
    lines = [head, "-" * len(head)]
    for r in rows:
        m, acc, size, train_s, ms, detail = _cells(r)
        lines.append(f"{m:<10} {acc:>8}  {size:>20}  {train_s:>8}  {ms:>8}  {detail}")
    lines += ["", "Anchors:", *[f"  {a}" for a in ANCHORS]]
    return "\n".join(lines)
