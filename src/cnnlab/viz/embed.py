"""A CNN maps images to a semantic space (lectures; Hinton & Salakhutdinov 2006): 2-D maps of
test images by their features (t-SNE, PCA or UMAP), beside the same map of raw pixels, and
nearest-neighbour retrieval by features vs by pixel L2.

Features: by default the input of the model's last ``nn.Linear`` (the classifier head: F6's
84 values for LeNet-5, the 64 pooled values of ResNet-20, GoogLeNet's 1024); ``layer`` names
another module whose output is flattened. Pixels: the normalized image flattened (C*H*W).

Numbers behind the pictures:
- k-NN accuracy in the 2-D map: each point's class predicted by the majority of its k = 5
  nearest other points (leave-one-out), the fraction right.
- precision@k of retrieval: for each query (test image) the fraction of its k nearest gallery
  (training) images by L2 distance that share its class, averaged over the queries.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import UserError
from cnnlab.viz.common import batched, get_layer

EMBED_METHODS = ("tsne", "tsne-sklearn", "pca", "umap")


def head_linear(model: nn.Module) -> str:
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise UserError(f"{type(model).__name__} has no Linear head; pass --layer")
    return names[-1]


def features(model: nn.Module, x: torch.Tensor, layer: str | None = None,
             batch_size: int = 512) -> tuple[np.ndarray, str]:
    """(features (N, F) float32, description): the input of the last Linear layer, or the
    flattened output of ``layer``, for the normalized images ``x`` (N, C, H, W)."""
    name = layer or head_linear(model)
    module = get_layer(model, name)
    store: list[torch.Tensor] = []
    if layer is None:
        h = module.register_forward_pre_hook(lambda _m, inp: store.append(inp[0].flatten(1)))
        what = f"input of {name}"
    else:
        h = module.register_forward_hook(lambda _m, _i, out: store.append(out.flatten(1)))
        what = f"output of {name}"
    try:
        def run(xb):
            store.clear()
            model(xb)
            return store[0].float().clone()
        f = batched(model, x, run, batch_size)
    finally:
        h.remove()
    return f.cpu().numpy(), what


def embed_2d(z: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """(N, F) -> (N, 2). All t-SNE runs use perplexity 30 and PCA init, after PCA to 50
    dimensions (as van der Maaten recommends; it also makes the neighbour search cheap).

    - ``tsne``: openTSNE's FFT-interpolated gradients (Linderman et al. 2019), 250 early-
      exaggeration + 250 iterations (5-NN accuracy of 10,000 MNIST points as with 1000), on
      all cores; without openTSNE installed, scikit-learn's Barnes-Hut with the same 500
      iterations in all (``max_iter``) instead of its default 1000.
    - ``tsne-sklearn``: scikit-learn's Barnes-Hut ``TSNE`` with its 1000 iterations.
    - ``pca``: the first two components; ``umap``: umap-learn if installed.
    benchmarks/bench_viz.py (part tsne) compares their speed and 5-NN accuracy."""
    if method not in EMBED_METHODS:
        raise UserError(f"--method {method}: expected one of {', '.join(EMBED_METHODS)}")
    z = np.asarray(z, dtype=np.float32)
    from sklearn.decomposition import PCA

    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(z)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise UserError("--method umap: umap-learn is not installed "
                            "(pip install umap-learn); use tsne or pca") from None
        return umap.UMAP(random_state=seed).fit_transform(z)
    if z.shape[1] > 50:
        z = PCA(50, random_state=seed).fit_transform(z)
    if method == "tsne-sklearn":
        return tsne_sklearn(z, seed, max_iter=1000)
    try:
        import openTSNE
    except ImportError:  # optional dependency: same objective, fewer Barnes-Hut iterations
        return tsne_sklearn(z, seed, max_iter=500)
    return np.asarray(openTSNE.TSNE(2, perplexity=30, initialization="pca",
                                    negative_gradient_method="fft", n_jobs=-1,
                                    random_state=seed, n_iter=250, verbose=False).fit(z))


def tsne_sklearn(z: np.ndarray, seed: int = 0, max_iter: int = 1000) -> np.ndarray:
    """scikit-learn's Barnes-Hut t-SNE of (N, F) ``z`` on all cores, PCA init."""
    from sklearn.manifold import TSNE

    return TSNE(2, init="pca", random_state=seed, n_jobs=-1,
                max_iter=max(max_iter, 250)).fit_transform(z)


def knn_accuracy(points: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN accuracy: majority vote of the k nearest other points (ties: the
    nearest of the tied classes)."""
    from sklearn.neighbors import NearestNeighbors

    idx = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points,
                                                                    return_distance=False)
    nb = labels[idx[:, 1:]]  # N x k, nearest first
    n_cls = int(labels.max()) + 1
    votes = np.zeros((len(points), n_cls))
    for j in range(k):  # a tiny bonus to nearer neighbours breaks ties
        np.add.at(votes, (np.arange(len(points)), nb[:, j]), 1 + 1e-3 * (k - j))
    return float((votes.argmax(1) == labels).mean())


def nearest(queries: np.ndarray, gallery: np.ndarray, k: int, chunk: int = 1024,
            exclude_self: bool = False) -> np.ndarray:
    """Indices (Q, k) of the k nearest gallery rows by L2 distance, in chunks of queries
    (||q||^2 - 2 q.g + ||g||^2 with torch matmul; ``exclude_self`` when both are the same)."""
    g = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32))
    gn = (g * g).sum(1)
    out = []
    for i in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[i:i + chunk], dtype=np.float32))
        d = gn[None] - 2 * q @ g.T  # + ||q||^2, the same for every gallery row
        if exclude_self:
            d[torch.arange(len(q)), torch.arange(i, i + len(q))] = float("inf")
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out).numpy()


def precision_at_k(q_labels: np.ndarray, g_labels: np.ndarray, idx: np.ndarray) -> float:
    return float((g_labels[idx] == q_labels[:, None]).mean())


def embed_dataset(model, x: torch.Tensor, labels: np.ndarray, method: str = "tsne",
                  layer: str | None = None, pixels: bool = True, k: int = 5,
                  seed: int = 0, say=None) -> dict:
    """2-D maps of ``x`` (N, C, H, W normalized) by features (and by pixels), with k-NN
    accuracy in each map and the seconds each took. Returns {"features": {...}, "pixels":
    {...}}, each with ``points`` (N, 2), ``knn_accuracy``, ``seconds``, ``dims``.
    ``say(message)``, when given, hears a progress line before each map (t-SNE of a few
    thousand images takes tens of seconds)."""
    f, what = features(model, x, layer)
    spaces = {"features": (f, what)}
    if pixels:
        spaces["pixels"] = (x.flatten(1).cpu().numpy(), "raw pixels (normalized)")
    out = {}
    for i, (name, (z, desc)) in enumerate(spaces.items()):
        if say is not None:
            say(f"embed: {method} map {i + 1}/{len(spaces)} of {len(z):,} images by {name} "
                f"({z.shape[1]:,} dims)...")
        t = time.perf_counter()
        p = embed_2d(z, method, seed)
        out[name] = {"points": p, "knn_accuracy": knn_accuracy(p, labels, k),
                     "seconds": time.perf_counter() - t, "dims": int(z.shape[1]), "what": desc}
    return out


def embed_figure(result: dict, labels: np.ndarray, classes: list[str], method: str, out,
                 k: int = 5, thumbs: np.ndarray | None = None) -> Path:
    """One scatter per space, coloured by class (tab10), the k-NN accuracy in each title;
    ``thumbs`` uint8 (N, C, H, W) draws a few hundred images at their points."""
    from cnnlab.viz.common import new_figure, save_figure, to_display

    fig = new_figure(6.2 * len(result), 6.2)
    axes = np.atleast_1d(fig.subplots(1, len(result)))
    cmap = __import__("matplotlib").colormaps["tab10" if len(classes) <= 10 else "tab20"]
    for ax, (name, r) in zip(axes, result.items()):
        p = r["points"]
        for c in range(len(classes)):
            m = labels == c
            ax.scatter(p[m, 0], p[m, 1], s=3, color=cmap(c % cmap.N), label=classes[c],
                       alpha=0.7, linewidths=0)
        if thumbs is not None:
            _thumbnails(ax, p, to_display(thumbs))
        label = {"tsne": "t-SNE", "tsne-sklearn": "t-SNE", "pca": "PCA",
                 "umap": "UMAP"}.get(method, method)
        ax.set_title(f"{name}: {r['what']} ({r['dims']} dims)\n{label}; {k}-NN accuracy "
                     f"in this 2-D map: {r['knn_accuracy']:.1%}", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([])
    axes[-1].legend(markerscale=4, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
                    title="class")
    fig.suptitle(f"{len(labels):,} test images in 2-D: similar images should sit together",
                 fontsize=12)
    return save_figure(fig, out)


def _thumbnails(ax, p: np.ndarray, imgs: np.ndarray, n: int = 300) -> None:
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    rng = np.random.default_rng(0)
    for i in rng.choice(len(p), min(n, len(p)), replace=False):
        ab = AnnotationBbox(OffsetImage(imgs[i], zoom=0.5), p[i], frameon=False)
        ax.add_artist(ab)


def retrieval_figure(q_imgs, feat_imgs, pix_imgs, q_labels, feat_labels, pix_labels,
                     classes, out, p_feat: float, p_pix: float, k: int,
                     q_titles: list[str] | None = None) -> Path:
    """Per query, two rows: its k nearest gallery images by CNN features, then by pixel L2;
    a neighbour of another class gets a red title. ``*_imgs`` uint8: queries (Q, C, H, W),
    neighbours (Q, k, C, H, W). ``q_labels`` None (the user's own images): each query is
    titled by ``q_titles`` and no neighbour is marked."""
    from cnnlab.viz.common import new_figure, save_figure, to_display

    q = len(q_imgs)
    fig = new_figure(1.05 * (k + 1) + 0.5, 2.3 * q + 0.8)
    axes = np.array(fig.subplots(2 * q, k + 1, squeeze=False))
    for i in range(q):
        for row, (imgs, labs, name) in enumerate(((feat_imgs, feat_labels, "features"),
                                                  (pix_imgs, pix_labels, "pixels"))):
            r = 2 * i + row
            ax = axes[r, 0]
            if row == 0:
                ax.imshow(to_display(q_imgs[i:i + 1])[0], interpolation="nearest")
                title = (Path(q_titles[i]).name if q_labels is None
                         else f"query: {classes[q_labels[i]]}")
                ax.set_title(title, fontsize=8)
            else:  # no image: keep the axis (for its label) without a frame
                ax.set_frame_on(False)
            ax.set_ylabel(name, fontsize=8)
            disp = to_display(imgs[i])
            for j in range(k):
                a = axes[r, j + 1]
                a.imshow(disp[j], interpolation="nearest")
                ok = q_labels is None or labs[i, j] == q_labels[i]
                a.set_title(classes[labs[i, j]], fontsize=7, color="black" if ok else "red")
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle(f"{k} nearest training images: CNN features (upper row) vs pixel L2 (lower)\n"
                 f"precision@{k} over the test set: features {p_feat:.1%}, pixels {p_pix:.1%}"
                 + ("; red: another class" if q_labels is not None else ""), fontsize=9)
    return save_figure(fig, out)


from cnnlab.viz import callable_module  # noqa: E402

callable_module(__name__)  # `cnnlab.viz.embed(...)` draws the picture (cnnlab.viz)
