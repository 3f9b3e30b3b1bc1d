"""One call per kind of picture: compute, draw, write the PNG at ``out`` (none when ``out`` is
None), return the numbers behind it as a JSON-able dict (what ``cnnlab viz KIND --json``
prints) whose ``.figure`` is the matplotlib figure. The CLI calls these; ``cnnlab.viz.KIND``
returns the figure itself (:mod:`cnnlab.viz`).

    >>> from cnnlab.viz import pictures
    >>> r = pictures.gradcam("runs/lenet5-mnist", out="gradcam.png", n=6)
    >>> r["layer"], type(r.figure).__name__
    ('features.3', 'NotebookFigure')
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError
from cnnlab.viz import common


class Picture(dict):
    """The numbers behind a picture (a JSON-able dict, ``"out"`` the PNG written or None);
    ``.figure``: the matplotlib figure (its ``.numbers`` is this dict)."""

    figure = None


def _done(fig, out, numbers: dict) -> Picture:
    """Write ``fig`` at ``out`` when given (at the dpi its figure function chose), keep it
    open, and return its numbers with it."""
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, bbox_inches="tight", facecolor="white")
    r = Picture({"out": None if out is None else str(out), **numbers})
    r.figure, fig.numbers = fig, dict(r)
    return r


def say(message: str) -> None:
    """A note or progress line for the person waiting (stderr; stdout keeps the result)."""
    print(f"cnnlab viz: {message}", file=sys.stderr, flush=True)


def count(n: int | None, default: int, available: int, flag: str = "--n",
          what: str = "test images") -> int:
    """How many to use: an explicit ``n`` must fit (1..available, else UserError); the
    default (``n=None``) shrinks to what the data holds, said in one line."""
    if n is not None:
        return common.take(n, available, flag)
    if default > available:
        say(f"{flag}: using all {available} {what} (the default {default} is more than the "
            f"data holds)")
        return available
    return default


def _pick(n_total: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct indices spread over the split (seeded; test splits are often sorted)."""
    common.take(n, n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def _images(checkpoint, images, n, data, seed, device="cpu"):
    """(model, meta, raw uint8, x normalized, labels or None): image files when given, else
    ``n`` test images of the checkpoint's data."""
    if images:
        model, meta, raw, x = common.load_inputs(checkpoint, images, device)
        return model, meta, raw, x, None
    model, meta = common.load_checkpoint_model(checkpoint, device)
    d = common.load_split(meta, data)
    idx = _pick(len(d), count(n, 6, len(d)), seed)
    raw = d.images[idx]
    return model, meta, raw, common.normalize(raw, meta["input"]).to(device), d.labels[idx]


def kernel(image="china", kernel="edge", stride=1, padding=0, out="viz-kernel.png") -> dict:
    from cnnlab.viz.kernel import apply_kernel, kernel_figure

    r = apply_kernel(image, kernel, stride, padding)
    return _done(kernel_figure(r, None), out, r.to_dict())


def filters(checkpoint, layer=None, n=64, out="viz-filters.png") -> dict:
    from cnnlab.viz.filters import conv_filters, filters_figure

    model, _ = common.load_checkpoint_model(checkpoint)
    w, name = conv_filters(model, layer)
    fig = filters_figure(w, name, None, max_filters=n)
    norms = np.sqrt((w.reshape(len(w), -1) ** 2).sum(1))
    return _done(fig, out, {"layer": name, "shape": list(w.shape),
                            "filter_l2_norms": norms.round(5).tolist()})


def activations(checkpoint, image=None, index=0, layers=None, channels=8, data=None,
                out="viz-activations.png") -> dict:
    from cnnlab.viz.activations import activations_figure, capture_with_probs

    model, meta = common.load_checkpoint_model(checkpoint)
    if image:
        raw = common.load_images([image], meta["input"])
        label = None
    else:
        d = common.load_split(meta, data)
        if not 0 <= index < len(d):
            raise UserError(f"--index {index}: expected 0..{len(d) - 1} (test images)")
        raw, label = d.images[[index]], int(d.labels[index])
    if channels < 1:
        raise UserError(f"--channels {channels}: expected 1 or more")
    acts, probs = capture_with_probs(model, common.normalize(raw, meta["input"]), layers)
    kinds = {n: type(model.get_submodule(n)).__name__ for n in acts}
    cls = meta["classes"]
    p = probs[0].numpy()
    src = image or f"test image {index} (true class {cls[label]})"
    fig = activations_figure(raw[0], acts, p, cls, None, channels,
                       f"Activation maps of {meta['model']} for {src}: first {channels} "
                       f"channels per stage; viridis, one scale per row [min, max]", kinds)
    return _done(fig, out, {
        "image": src, "predicted": cls[int(p.argmax())],
        "probabilities": dict(zip(cls, p.round(5).tolist())),
        "layers": [{"name": n, "type": kinds[n], "shape": list(t.shape[1:]),
                    "min": float(t.min()), "max": float(t.max()),
                    "mean": float(t.float().mean())} for n, t in acts.items()]})


def gradcam(checkpoint, images=None, n=None, target=None, layer=None, methods=("gradcam",),
            data=None, seed=0, out="viz-gradcam.png") -> dict:
    """``n``: test images when no file is given (default 6, or all when fewer); ``target``:
    None (predicted), a class index or name, or one per image (list or ``"cat,dog"``)."""
    from cnnlab.viz.activations import capture_with_probs
    from cnnlab.viz.attribution import attribute, gradcam_figure
    from cnnlab.viz.gradcam import class_targets, find_cam_layer

    model, meta, raw, x, labels = _images(checkpoint, images, n, data, seed)
    target = class_targets(target, meta["classes"])
    _, probs = capture_with_probs(model, x, [])
    maps, cls = {}, None
    for m in methods:
        maps[m], cls = attribute(model, x, m, target, layer)
    used = layer or (find_cam_layer(model, x) if any("gradcam" in m for m in methods) else "")
    fig = gradcam_figure(raw, maps, meta["classes"], cls, probs.numpy(), labels, used, None)
    return _done(fig, out, {
        "layer": used, "methods": list(methods),
        "target_classes": [meta["classes"][c] for c in cls],
        "probabilities": [float(probs[i, c]) for i, c in enumerate(cls)],
        "true_classes": None if labels is None else [meta["classes"][c] for c in labels],
        "peak_yx": {m: [list(np.unravel_index(int(a.argmax()), a.shape)) for a in v]
                    for m, v in maps.items()}})


def top_patches(checkpoint, layer=None, channels=None, n=8, images=None, data=None, seed=0,
                out="viz-top-patches.png") -> dict:
    """``images``: test images searched (default 2000, or all when fewer)."""
    from cnnlab.viz.patches import patches_figure, top_patches as compute
    from cnnlab.viz.gradcam import find_cam_layer

    model, meta = common.load_checkpoint_model(checkpoint)
    d = common.load_split(meta, data)
    idx = _pick(len(d), count(images, 2000, len(d), "--images"), seed)
    raw = d.images[idx]
    name = layer or find_cam_layer(model, common.normalize(raw[:1], meta["input"]))
    r = compute(model, raw, common.normalize(raw, meta["input"]), name, channels, n)
    fig = patches_figure(r, None)
    g = r["geometry"]
    return _done(fig, out, {"layer": name, "receptive_field": list(g["rf"]),
            "jump": list(g["jump"]), "offset": [float(v) for v in g["offset"]],
            "channels": [{"channel": c["channel"], "values": c["values"],
                          "test_indices": [int(idx[i]) for i in c["images"]],
                          "positions": c["positions"]} for c in r["channels"]]})


def templates(checkpoint, data=None, out="viz-templates.png") -> dict:
    from cnnlab.viz.filters import (class_means, class_templates, template_correlations,
                                    templates_figure)

    model, meta = common.load_checkpoint_model(checkpoint)
    d = common.load_split(meta, data, split="train")
    idx = _pick(len(d), min(4096, len(d)), 0)
    t = class_templates(model, common.normalize(d.images[idx], meta["input"]), d.labels[idx])
    # normalizing is affine per channel: the mean of normalized images = normalized means
    means, mu = class_means(d.images, d.labels, len(meta["classes"]))
    norm = lambda a: common.normalize(a * 1.0, meta["input"]).double().numpy()  # noqa: E731
    c = template_correlations(t, norm(means), norm(mu[None])[0])
    kind = "linear classifier: rows of fc.weight" if hasattr(model, "fc") else \
        "MLP: mean input gradient of each class score"
    fig = templates_figure(t, meta["classes"], c, None, f"Class templates of the {kind}")
    return _done(fig, out, {"kind": kind, "classes": meta["classes"],
                            "correlation_with_class_mean": c["raw"],
                            "correlation_with_centred_class_mean": c["centred"],
                            "own_class_best": c["own_class_best"]})


def embed(checkpoint, method="tsne", n=None, layer=None, pixels=True, thumbnails=False, k=5,
          data=None, seed=0, out="viz-embed.png") -> dict:
    """``n``: test images (default 2000, or all when fewer)."""
    from cnnlab.viz.embed import embed_dataset, embed_figure

    model, meta = common.load_checkpoint_model(checkpoint)
    d = common.load_split(meta, data)
    n = count(n, 2000, len(d))
    idx = _pick(len(d), n, seed)
    x, y = common.normalize(d.images[idx], meta["input"]), d.labels[idx]
    r = embed_dataset(model, x, y, method, layer, pixels, k, seed, say=say)
    fig = embed_figure(r, y, meta["classes"], method, None, k,
                       d.images[idx] if thumbnails else None)
    return _done(fig, out, {
        "method": method, "images": int(n), "k": k,
        **{name: {"what": v["what"], "dims": v["dims"], "knn_accuracy": v["knn_accuracy"],
                  "seconds": round(v["seconds"], 3)} for name, v in r.items()}})


def retrieve(checkpoint, images=None, k=None, queries=None, gallery=None, layer=None,
             data=None, seed=0, out="viz-retrieve.png") -> dict:
    """Nearest training images of some queries by CNN features and by pixel L2, and
    precision@k of both over the whole test set.

    ``images``: the user's own query files (default: ``queries`` test images, 4 or all when
    fewer); ``gallery``: training images searched (default 10000, or all when fewer); ``k``:
    neighbours (default 10, or the gallery size when smaller). Explicit values that do not
    fit the data are refused."""
    from cnnlab.viz.embed import features, nearest, precision_at_k, retrieval_figure

    model, meta = common.load_checkpoint_model(checkpoint)
    if images and queries is not None:
        raise UserError("--queries: draws queries from the test set; with image files the "
                        "files are the queries (give one or the other)")
    test, train = common.load_split(meta, data), common.load_split(meta, data, "train")
    gi = _pick(len(train), count(gallery, 10000, len(train), "--gallery", "training images"),
               seed)
    k = count(k, 10, len(gi), "--k", "gallery images")
    nq = None if images else count(queries, 4, len(test), "--queries")  # before the work
    spec = meta["input"]
    xq, xg = common.normalize(test.images, spec), common.normalize(train.images[gi], spec)
    fq, what = features(model, xq, layer)
    fg, _ = features(model, xg, layer)
    yq, yg = test.labels, train.labels[gi]
    pix = lambda x: x.flatten(1).numpy()  # noqa: E731
    nf, npx = nearest(fq, fg, k), nearest(pix(xq), pix(xg), k)
    pf, pp = precision_at_k(yq, yg, nf), precision_at_k(yq, yg, npx)
    result = {"k": k, "features": what, "queries": len(test), "gallery": len(gi),
              "precision_at_k_features": pf, "precision_at_k_pixels": pp}
    if images:  # the user's own queries: no class to check, their neighbours' classes shown
        q_raw = common.load_images(list(images), spec)
        xu = common.normalize(q_raw, spec)
        uf, up = nearest(features(model, xu, layer)[0], fg, k), nearest(pix(xu), pix(xg), k)
        names = [str(p) for p in images]
        fig = retrieval_figure(q_raw, train.images[gi][uf], train.images[gi][up], None,
                               yg[uf], yg[up], meta["classes"], None, pf, pp, k,
                               q_titles=names)
        cls = meta["classes"]
        result["query_images"] = [{"image": n, "features": [cls[c] for c in yg[uf[i]]],
                                   "pixels": [cls[c] for c in yg[up[i]]]}
                                  for i, n in enumerate(names)]
        return _done(fig, out, result)
    qi = _pick(len(test), nq, seed + 1)
    fig = retrieval_figure(test.images[qi], train.images[gi][nf[qi]],
                           train.images[gi][npx[qi]], yq[qi], yg[nf[qi]], yg[npx[qi]],
                           meta["classes"], None, pf, pp, k)
    return _done(fig, out, result)


def curves(run_dirs, out="viz-curves.png") -> dict:
    from cnnlab.viz.runs import curves_figure, read_curves

    c = read_curves(run_dirs)
    return _done(curves_figure(c, None), out, {
        "runs": {r: {k: [None if np.isnan(v) else v for v in vals] for k, vals in cols.items()}
                 for r, cols in c.items()}})


def confusion(checkpoint, data=None, out="viz-confusion.png") -> dict:
    from cnnlab.viz.runs import confusion as cm_of, confusion_figure, predictions

    pred = predictions(checkpoint, data)
    cm = cm_of(pred)
    return _done(confusion_figure(cm, pred["classes"], None), out, {
        "classes": pred["classes"], "confusion": cm.tolist(),
        "accuracy": float(np.trace(cm) / max(cm.sum(), 1))})


def mistakes(checkpoint, n=16, data=None, out="viz-mistakes.png") -> dict:
    from cnnlab.viz.runs import mistakes_figure, most_confident_mistakes, predictions

    if n < 1:
        raise UserError(f"--n {n}: expected 1 or more")
    pred = predictions(checkpoint, data)
    m = most_confident_mistakes(pred, n)
    fig = mistakes_figure(pred, m, None)
    cls = pred["classes"]
    return _done(fig, out, {"mistakes": [{**e, "true": cls[e["true"]], "pred": cls[e["pred"]]}
                                         for e in m]})


from cnnlab.viz import KINDS  # noqa: E402 - the kinds are listed once, in the package

__all__ = ["KINDS", *[k.replace("-", "_") for k in KINDS]]
