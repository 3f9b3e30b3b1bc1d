"""Bag of visual words and Coates, Lee & Ng (2011)'s single-layer k-means features.

Both share one pipeline (Coates et al., "An analysis of single-layer networks in
unsupervised feature learning", AISTATS 2011, section 3):

1. random ``patch`` x ``patch`` patches (6x6 in the paper) from the training images;
2. per-patch normalisation: subtract the patch's mean, divide by sqrt(variance + 10)
   (pixels on the 0..255 scale; the paper's code);
3. ZCA whitening, W = V diag(1 / sqrt(lambda + 0.1)) V^T (the paper's epsilon);
4. a k-means vocabulary of ``k`` centroids (10 iterations, as in the paper's code);
5. every patch of an image (``stride``), encoded against the vocabulary:
   - ``"hard"`` (the lecture's bag of visual words): a one-hot vector of the nearest word,
     summed over the whole image: the image's word histogram;
   - ``"triangle"`` (Coates et al.): f_k = max(0, mean_j(z_j) - z_k), z_k the distance to
     centroid k; sum-pooled over the image's four quadrants: 4k features;
6. features standardised, then a linear classifier: :func:`train_ridge` (one-vs-all
   regularised least squares in closed form, the penalty chosen on a held-out tenth of the
   training set; the paper uses an L2-SVM, whose squared loss it shares) or
   :func:`train_linear` (softmax, L-BFGS).

The paper reports 77.9% test accuracy on CIFAR-10 with 1,600 centroids (stride 1) and 79.6%
with 4,000. All work is torch GEMMs in chunks of images.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from cnnlab.errors import UserError

ENCODINGS = ("hard", "triangle")


def patches(x, size: int, stride: int = 1):
    """uint8/float images (N, C, H, W) -> patches (N, L, C*size*size) float32, L = H'*W'."""
    import torch

    x = torch.as_tensor(x)
    n, c = x.shape[:2]
    w = x.unfold(2, size, stride).unfold(3, size, stride)  # (N, C, H', W', p, p), a view
    # one copy into (N, H'*W', C*p*p), channel-major like F.unfold (which is ~10x slower here)
    return w.permute(0, 2, 3, 1, 4, 5).reshape(n, -1, c * size * size).float()


def normalize(p, eps: float = 10.0):
    """Per-patch brightness/contrast normalisation (last dim), on the 0..255 scale."""
    mean = p.mean(-1, keepdim=True)
    var = p.var(-1, keepdim=True)
    return (p - mean) / (var + eps).sqrt()


def sq_dist(a, c, c_sq=None):
    """Squared L2 distances (M, K) between rows of ``a (M, D)`` and ``c (K, D)``."""
    import torch

    c_sq = (c * c).sum(1) if c_sq is None else c_sq
    d = torch.addmm(c_sq[None], a, c.T, alpha=-2)  # ||c||^2 - 2 a.c in one GEMM pass
    return d.add_(torch.linalg.vector_norm(a, dim=1, keepdim=True).square_()).clamp_min_(0)


def kmeans(x, k: int, iters: int = 10, seed: int = 0, chunk: int = 50_000):
    """Lloyd's k-means of rows ``x (M, D)`` -> centroids (k, D); empty clusters are re-seeded
    from random rows. Initialised from ``k`` distinct random rows."""
    import torch

    g = torch.Generator().manual_seed(seed)
    c = x[torch.randperm(len(x), generator=g)[:k]].clone()
    for _ in range(iters):
        sums = torch.zeros_like(c)
        counts = torch.zeros(k, dtype=x.dtype)
        c_sq = (c * c).sum(1)
        for i in range(0, len(x), chunk):
            xb = x[i:i + chunk]
            a = (c_sq[None] - 2 * (xb @ c.T)).argmin(1)  # ||x||^2 does not change the argmin
            sums.index_add_(0, a, xb)
            counts.index_add_(0, a, torch.ones(len(a), dtype=x.dtype))
        empty = counts == 0
        c = sums / counts.clamp_min(1)[:, None]
        if empty.any():
            c[empty] = x[torch.randint(len(x), (int(empty.sum()),), generator=g)]
    return c


@dataclass
class KMeansFeatures:
    """``KMeansFeatures(k=1600, encoding="triangle").fit(train_images).transform(images)``.

    Images uint8 (N, C, H, W). ``n_patches``: random training patches for whitening and
    k-means (the paper: 400,000). Output (N, 4k) for ``triangle`` (quadrant pooling), (N, k)
    for ``hard`` (``quadrants=True`` gives 4k there too).
    """

    k: int = 1600
    encoding: str = "triangle"
    patch: int = 6
    stride: int = 1
    n_patches: int = 200_000
    iters: int = 10
    quadrants: bool | None = None
    seed: int = 0
    chunk_rows: int = 3000  # patches per encoding block: its distances (rows x k) stay in cache
    timings: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.encoding not in ENCODINGS:
            raise UserError(f"encoding {self.encoding!r}: expected one of {', '.join(ENCODINGS)}")
        if self.k < 2:
            raise UserError(f"vocabulary size k={self.k}: expected at least 2 words")
        if self.quadrants is None:
            self.quadrants = self.encoding == "triangle"

    def fit(self, images) -> "KMeansFeatures":
        import torch

        t0 = time.perf_counter()
        x = torch.as_tensor(np.asarray(images))
        n, c, h, w = x.shape
        if h < self.patch or w < self.patch:
            raise UserError(f"images {h}x{w} are smaller than the {self.patch}x{self.patch} patches")
        g = torch.Generator().manual_seed(self.seed)
        img = torch.randint(n, (self.n_patches,), generator=g)
        r = torch.randint(h - self.patch + 1, (self.n_patches,), generator=g)
        s = torch.randint(w - self.patch + 1, (self.n_patches,), generator=g)
        off = torch.arange(self.patch)
        rows = (r[:, None] + off)[:, :, None].expand(-1, -1, self.patch)  # (P, p, p)
        cols = (s[:, None] + off)[:, None, :].expand(-1, self.patch, -1)
        p = x[img[:, None, None, None], torch.arange(c)[None, :, None, None],
              rows[:, None], cols[:, None]].float().flatten(1)  # (P, C*p*p)
        p = normalize(p)
        self.mean = p.mean(0)
        cov = torch.cov((p - self.mean).T.double())
        lam, vec = torch.linalg.eigh(cov)
        self.zca = (vec @ torch.diag(1.0 / (lam.clamp_min(0) + 0.1).sqrt()) @ vec.T).float()
        pw = (p - self.mean) @ self.zca
        self.centroids = kmeans(pw, self.k, self.iters, self.seed)
        self.timings["fit"] = time.perf_counter() - t0
        return self

    @property
    def dim(self) -> int:
        return self.k * (4 if self.quadrants else 1)

    def transform(self, images):
        """Features (N, dim) float32 of uint8 images (N, C, H, W)."""
        import torch

        t0 = time.perf_counter()
        x = torch.as_tensor(np.asarray(images))
        out = torch.empty(len(x), self.dim)
        c_sq = (self.centroids ** 2).sum(1)
        h, w = x.shape[2:]
        per_image = ((h - self.patch) // self.stride + 1) * ((w - self.patch) // self.stride + 1)
        # a few thousand patches per block: at 1,600 centroids their distance block is ~19 MB
        # and the elementwise passes after the GEMM run from cache (2x faster than blocks of
        # 200 images measured at stride 1)
        step = max(1, self.chunk_rows // per_image)
        for i in range(0, len(x), step):
            out[i:i + step] = self._encode(x[i:i + step], c_sq)
        self.timings["transform"] = self.timings.get("transform", 0) + time.perf_counter() - t0
        return out

    def _encode(self, xb, c_sq):
        import torch
        import torch.nn.functional as F

        b, _, h, w = xb.shape
        p = patches(xb, self.patch, self.stride)  # (B, L, D)
        ho, wo = (h - self.patch) // self.stride + 1, (w - self.patch) // self.stride + 1
        pw = (normalize(p.flatten(0, 1)) - self.mean) @ self.zca  # (B*L, D)
        d2 = sq_dist(pw, self.centroids, c_sq)
        if self.encoding == "triangle":
            z = d2.sqrt_()
            f = (z.mean(1, keepdim=True) - z).clamp_min_(0)
        else:
            f = F.one_hot(d2.argmin(1), self.k).float()
        f = f.view(b, ho, wo, self.k)
        if not self.quadrants:
            return f.sum((1, 2))
        hh, hw = ho // 2, wo // 2
        quads = [f[:, :hh, :hw], f[:, :hh, hw:], f[:, hh:, :hw], f[:, hh:, hw:]]
        return torch.cat([q.sum((1, 2)) for q in quads], 1)


def train_linear(f_train, y_train, l2: float = 1e-4, iters: int = 200, seed: int = 0):
    """Softmax classifier on features (N, D): standardised, full-batch L-BFGS with an L2
    penalty ``l2 * ||W||^2``. Returns ``predict(features) -> labels (M,) numpy``."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-2 * f_train.std(0).mean() + 1e-8
    z = (f_train - mu) / sd
    y = torch.as_tensor(np.asarray(y_train)).long()
    classes = int(y.max()) + 1
    w = torch.zeros(z.shape[1], classes, requires_grad=True)
    b = torch.zeros(classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda f: ((f - mu) / sd @ w + b).argmax(1).numpy()


def _standardizer(f):
    """Per-feature mean and scale, sqrt(var + 0.01) as in Coates et al.'s code."""
    mu = f.mean(0)
    return mu, (f.var(0) + 0.01).sqrt()


def _gram(z, targets, chunk: int = 4096):
    """(Z^T Z, Z^T Y) accumulated in float64 over float32 row chunks (GEMM-bound)."""
    import torch

    d = z.shape[1]
    g = torch.zeros(d, d, dtype=torch.float64)
    b = torch.zeros(d, targets.shape[1], dtype=torch.float64)
    for i in range(0, len(z), chunk):
        zc = z[i:i + chunk]
        g += (zc.T @ zc).double()
        b += (zc.T @ targets[i:i + chunk]).double()
    return g, b


def _holdout_split(y: np.ndarray, holdout: float, seed: int, groups=None):
    """Row indices (fit, held out): stratified by label, by whole groups when given."""
    import torch

    from cnnlab.data import stratified_split

    if groups is None:
        return tuple(torch.as_tensor(i) for i in stratified_split(y, holdout, seed))
    groups = np.asarray(groups)
    ids, first = np.unique(groups, return_index=True)
    _, val_g = stratified_split(y[first], holdout, seed)
    val = np.isin(groups, ids[val_g])
    return torch.as_tensor(np.flatnonzero(~val)), torch.as_tensor(np.flatnonzero(val))


def train_ridge(f_train, y_train, lams=(1.0, 10.0, 100.0, 1000.0, 10000.0),
                holdout: float = 0.1, seed: int = 0, groups=None):
    """One-vs-all regularised least squares on standardised features, in closed form:
    ``W = (Z^T Z + lam I)^-1 Z^T (Y - mean Y)`` and intercept ``mean Y``, targets +1 / -1 (the
    squared loss of Coates et al.'s L2-SVM without its hinge; scikit-learn's
    ``RidgeClassifier``). ``lam`` is chosen from ``lams`` by accuracy on a stratified
    ``holdout`` fraction of the training set (never the test set), then the classifier is
    refit on all of it with ``lam`` scaled to its size; the Gram matrices of both parts are
    computed once and added. ``groups`` (N,): rows with one group id (an image and its
    mirror) fall on the same side of the split, so the held-out part stays unseen.
    Returns ``predict(features) -> labels (M,) numpy`` with ``.scores(features) -> (M,
    classes)``, ``.lam``, ``.holdout_acc`` (per lam), ``.coef`` (D, classes) and
    ``.intercept``."""
    import torch

    y = torch.as_tensor(np.asarray(y_train)).long()
    classes = int(y.max()) + 1
    mu, sd = _standardizer(f_train)
    z = ((f_train - mu) / sd).float()
    t = -torch.ones(len(z), classes)
    t[torch.arange(len(z)), y] = 1.0
    b = t.mean(0)
    t -= b  # the intercept is the targets' mean: the columns of z have mean 0
    fit_idx, val_idx = _holdout_split(y.numpy(), holdout, seed, groups)
    g_fit, b_fit = _gram(z[fit_idx], t[fit_idx])
    g_val, b_val = _gram(z[val_idx], t[val_idx])
    eye = torch.eye(z.shape[1], dtype=torch.float64)
    z_val = z[val_idx].double()
    scores = {}
    for lam in lams:
        w = torch.linalg.solve(g_fit + lam * eye, b_fit)
        scores[lam] = float(((z_val @ w).argmax(1) == y[val_idx]).double().mean())
    lam = max(lams, key=lambda v: (scores[v], v))  # ties: the stronger penalty
    lam_all = lam * len(z) / len(fit_idx)
    w = torch.linalg.solve(g_fit + g_val + lam_all * eye, b_fit + b_val).float()
    mu, sd = mu.float(), sd.float()

    def decision(f):
        return ((f - mu) / sd) @ w + b

    def predict(f):
        return decision(f).argmax(1).numpy()

    predict.scores = decision
    predict.lam, predict.holdout_acc, predict.coef, predict.intercept = lam, scores, w, b
    predict.lam_all = lam_all
    return predict
