"""Full figures behind `cnnlab viz` (issue 10), for benchmarks/RESULTS.md.

    python benchmarks/bench_viz.py --mnist RUN --cifar RUN --mnist-linear RUN \
        --cifar-linear RUN [--parts speed,deletion,templates,embed,retrieval,tsne]

Parts:
- speed: Grad-CAM of one 32x32 image on ResNet-20 and all activation maps of ResNet-18 at
  224x224 for one image (median of --repeats), each beside a plain forward (+ backward for
  Grad-CAM) of the same model in the same run, as a ratio.
- deletion: deletion AUC (Petsiuk et al. 2018) of Grad-CAM (and --deletion-methods) order vs
  random order, --n test images of each model, true class (pixels set to black in 20 steps; AUC = trapezoid mean of
  the class probability; smaller is more faithful).
- templates: correlation of each linear-model template with its class's mean training image.
- embed: 5-NN accuracy in the t-SNE map of --embed-n test images, CNN features vs pixels.
- retrieval: precision@10 over the whole test set (gallery: 10,000 training images).
- tsne: seconds and 5-NN accuracy of t-SNE of --tsne-n test images' features: embed_2d's
  tsne (openTSNE FFT), its fallback and tsne-sklearn beside scikit-learn's TSNE defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def part_speed(repeats: int) -> dict:
    from cnnlab.registry import get_model
    from cnnlab.viz.activations import capture_activations
    from cnnlab.viz.gradcam import grad_cam

    torch.manual_seed(0)
    r20 = get_model("resnet20").eval()
    x = torch.randn(1, 3, 32, 32)

    def fwd_bwd():
        y = r20(x.requires_grad_(False))
        y[0, 0].backward()
        r20.zero_grad(set_to_none=True)

    t_cam = _median_time(lambda: grad_cam(r20, x), repeats)
    t_ref = _median_time(fwd_bwd, repeats)
    r18 = get_model("resnet18").eval()
    x224 = torch.randn(1, 3, 224, 224)
    t_act = _median_time(lambda: capture_activations(r18, x224), repeats)

    def fwd():
        with torch.no_grad():
            r18(x224)
    t_fwd = _median_time(fwd, repeats)
    return {"gradcam_resnet20_32px_ms": 1e3 * t_cam, "resnet20_forward_backward_ms": 1e3 * t_ref,
            "gradcam_ratio": t_cam / t_ref, "activations_resnet18_224_s": t_act,
            "resnet18_forward_224_s": t_fwd, "activations_ratio": t_act / t_fwd,
            "threads": torch.get_num_threads()}


def _test_batch(run, n, seed=0):
    from cnnlab.viz import common

    model, meta = common.load_checkpoint_model(run)
    d = common.load_split(meta)
    idx = np.sort(np.random.default_rng(seed).choice(len(d), min(n, len(d)), replace=False))
    return model, meta, common.normalize(d.images[idx], meta["input"]), d.labels[idx]


def part_deletion(run: str, n: int, methods=("gradcam",)) -> dict:
    from cnnlab.viz.attribution import attribute, deletion_curve
    from cnnlab.viz.gradcam import find_cam_layer

    model, meta, x, y = _test_batch(run, n)
    black = -np.array(meta["input"]["mean"]) / np.array(meta["input"]["std"])
    auc = lambda a: np.trapezoid(a, dx=1 / (a.shape[1] - 1), axis=1)  # noqa: E731
    per = {m: [] for m in ("random", *methods)}
    for i in range(0, len(x), 100):
        xb, yb = x[i:i + 100], y[i:i + 100]
        noise = np.random.default_rng(i).random((len(xb), *xb.shape[-2:])).astype(np.float32)
        per["random"].append(auc(deletion_curve(model, xb, noise, yb, baseline=black)))
        for m in methods:
            a, _ = attribute(model, xb, m, target=yb)
            per[m].append(auc(deletion_curve(model, xb, a, yb, baseline=black)))
    per = {m: np.concatenate(v) for m, v in per.items()}
    return {"images": len(x), "gradcam_layer": find_cam_layer(model, x[:1]),
            **{f"auc_{m}": float(v.mean()) for m, v in per.items()},
            **{f"images_lower_than_random_{m}": float((per[m] < per["random"]).mean())
               for m in methods}}


def part_templates(run: str) -> dict:
    from cnnlab.viz import common
    from cnnlab.viz.filters import class_means, class_templates, template_correlations

    model, meta = common.load_checkpoint_model(run)
    d = common.load_split(meta, split="train")
    t = class_templates(model, common.normalize(d.images[:16], meta["input"]))
    means, mu = class_means(d.images, d.labels, len(meta["classes"]))
    norm = lambda a: common.normalize(a * 1.0, meta["input"]).double().numpy()  # noqa: E731
    c = template_correlations(t, norm(means), norm(mu[None])[0])
    return {"classes": meta["classes"], "raw": np.round(c["raw"], 3).tolist(),
            "centred": np.round(c["centred"], 3).tolist(),
            "mean_raw": float(np.mean(c["raw"])), "mean_centred": float(np.mean(c["centred"])),
            "own_class_best": c["own_class_best"]}


def part_embed(run: str, n: int) -> dict:
    from cnnlab.viz.embed import embed_dataset

    model, _, x, y = _test_batch(run, n, seed=1)
    r = embed_dataset(model, x, y, "tsne")
    return {k: {"knn_accuracy": v["knn_accuracy"], "dims": v["dims"],
                "seconds": v["seconds"]} for k, v in r.items()} | {"images": len(x)}


def part_retrieval(run: str, k: int = 10, gallery: int = 10000) -> dict:
    from cnnlab.viz import common
    from cnnlab.viz.embed import features, nearest, precision_at_k

    model, meta = common.load_checkpoint_model(run)
    test, train = common.load_split(meta), common.load_split(meta, split="train")
    gi = np.sort(np.random.default_rng(0).choice(len(train), min(gallery, len(train)),
                                                 replace=False))
    xq, xg = (common.normalize(a, meta["input"]) for a in (test.images, train.images[gi]))
    fq, what = features(model, xq)
    fg, _ = features(model, xg)
    yq, yg = test.labels, train.labels[gi]
    return {"queries": len(xq), "gallery": len(gi), "k": k, "features": what,
            "precision_features": precision_at_k(yq, yg, nearest(fq, fg, k)),
            "precision_pixels": precision_at_k(yq, yg, nearest(xq.flatten(1).numpy(),
                                                               xg.flatten(1).numpy(), k))}


def part_tsne(run: str, n: int, repeats: int = 3) -> dict:
    """Per repeat, in turn: scikit-learn ``TSNE(2)`` defaults (the reference), embed_2d's
    ``tsne`` (openTSNE FFT if installed), its openTSNE-less fallback (scikit-learn, 500
    iterations) and ``tsne-sklearn`` (1000 iterations); median seconds, ratio to the
    reference's median, 5-NN accuracy of each map."""
    from sklearn.manifold import TSNE

    from cnnlab.viz.embed import embed_2d, features, knn_accuracy, tsne_sklearn

    model, _, x, y = _test_batch(run, n, seed=2)
    f, what = features(model, x)
    f50 = __import__("sklearn.decomposition").decomposition.PCA(50, random_state=0)
    f50 = f50.fit_transform(f) if f.shape[1] > 50 else f
    runs = {"sklearn_default": lambda: TSNE(2).fit_transform(f),
            "tsne": lambda: embed_2d(f, "tsne"),
            "sklearn_pca50_500iter": lambda: tsne_sklearn(f50, 0, max_iter=500),
            "tsne_sklearn": lambda: embed_2d(f, "tsne-sklearn")}
    secs: dict = {k: [] for k in runs}
    acc: dict = {}
    for _ in range(repeats):
        for k, fn in runs.items():
            t = time.perf_counter()
            p = fn()
            secs[k].append(time.perf_counter() - t)
            acc[k] = knn_accuracy(p, y)
            print(f"  tsne {k}: {secs[k][-1]:.1f} s, 5-NN {acc[k]:.4f}", flush=True)
    ref = statistics.median(secs["sklearn_default"])
    return {"images": len(x), "features": what, "dims": int(f.shape[1]), "repeats": repeats,
            **{k: {"median_s": statistics.median(v), "runs_s": [round(t, 1) for t in v],
                   "ratio_to_sklearn_default": statistics.median(v) / ref,
                   "knn5_accuracy": acc[k]} for k, v in secs.items()}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("mnist", "cifar", "mnist-linear", "cifar-linear"):
        p.add_argument(f"--{name}", help="run directory or checkpoint")
    p.add_argument("--parts", default="speed,deletion,templates,embed,retrieval,tsne")
    p.add_argument("--n", type=int, default=500, help="test images for deletion AUC")
    p.add_argument("--deletion-methods", default="gradcam,saliency,integrated-gradients")
    p.add_argument("--embed-n", type=int, default=2000, help="test images for the 2-D maps")
    p.add_argument("--tsne-n", type=int, default=10000)
    p.add_argument("--tsne-repeats", type=int, default=3)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args()
    parts = a.parts.split(",")
    res: dict = {}
    data = {"mnist": a.mnist, "cifar10": a.cifar}
    for part in parts:
        t = time.perf_counter()
        if part == "speed":
            res["speed"] = part_speed(a.repeats)
        elif part == "templates":
            res["templates"] = {k: part_templates(v) for k, v in
                                (("mnist", a.mnist_linear), ("cifar10", a.cifar_linear)) if v}
        else:
            fn = {"deletion": lambda r: part_deletion(r, a.n, a.deletion_methods.split(",")),
                  "embed": lambda r: part_embed(r, a.embed_n), "retrieval": part_retrieval,
                  "tsne": lambda r: part_tsne(r, a.tsne_n, a.tsne_repeats)}[part]
            targets = {"mnist": a.mnist} if part == "tsne" else data
            res[part] = {k: fn(v) for k, v in targets.items() if v}
        print(f"{part} ({time.perf_counter() - t:.0f} s):",
              json.dumps(res[part], indent=1), flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
