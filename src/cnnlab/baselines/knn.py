"""k-nearest neighbours on pixels or features: batched torch matrix products, no Python loop
over test images, memory bounded by ``chunk`` (test rows per block).

L2 distances use the expansion ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2, so the work is one
GEMM per chunk (10,000 x 60,000 MNIST images of 784 pixels: 2 * 10^4 * 6 * 10^4 * 784 =
0.94 TFLOP). Three modes:

- ``exact``: float32 GEMM picks ``k + margin`` candidates per test row, which are re-ranked
  with float64 distances; rows where float32 rounding could have hidden a neighbour (the
  candidate cutoff is within the rounding bound of the k-th exact distance) are re-ranked in
  float64 over every training row inside that bound (all of them, when that is over a
  quarter of the training set). The result is the exact k-NN, with scikit-learn's tie
  rules: among equal distances the lower training index, among equal votes the lower class.
  So predictions equal ``KNeighborsClassifier(algorithm="brute")``'s.
- ``fast``: project onto the training set's top ``pca`` principal components (default 64),
  then one float32 GEMM with no re-ranking. An approximation, reported as such.
- ``l1`` metric: exact float64 ``torch.cdist(p=1)`` per chunk (no GEMM form exists).

cs231n's figures (1-NN on CIFAR-10 raw pixels: 38.6% L1, 35.4% L2) are exact searches.
"""

from __future__ import annotations

import contextlib

import numpy as np

from cnnlab.errors import UserError

MODES = ("exact", "fast")
METRICS = ("l2", "l1")
# float64 elements per block of the re-ranking passes (1 MiB): the gathered rows stay in
# cache for the subtract-square-sum that follows; 8 MiB blocks were 2.5x slower (5,000 x 500
# x 3,072 random pixels: 0.08 s against 0.20 s for the candidate pass, one thread)
_BLOCK = 1 << 17


@contextlib.contextmanager
def _one_thread():
    """Torch on one thread for the memory-bound passes (gathers, squares, sums over
    cache-sized blocks): a second thread adds nothing there but its spin-waits, which on a
    busy 2-core machine made the same pass 2-5x slower (0.08 s vs 0.2-0.5 s)."""
    import torch

    n = torch.get_num_threads()
    if n > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if n > 1:
            torch.set_num_threads(n)


def _flat(x) -> "torch.Tensor":  # noqa: F821
    import torch

    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    return t.reshape(len(t), int(np.prod(t.shape[1:])))  # (0, ...) too: -1 is ambiguous there


def _sq_norms(x) -> "torch.Tensor":  # noqa: F821
    """float64 ||row||^2 of a float32 (R, D) matrix, in blocks of rows: no (R, D) float64
    copy (converting all of CIFAR-10's 50,000 x 3,072 at once costs more than the sums)."""
    import torch

    out = torch.empty(len(x), dtype=torch.float64)
    step = max(1, _BLOCK // max(x.shape[1], 1))
    with _one_thread():
        for i in range(0, len(x), step):
            b = x[i:i + step].double()
            out[i:i + step] = (b * b).sum(1)
    return out


def _vote(labels, num_classes: int):
    """Majority class of each row of neighbour labels (R, k); ties -> lowest class."""
    import torch

    counts = torch.zeros(len(labels), num_classes, dtype=torch.int64)
    counts.scatter_add_(1, labels, torch.ones_like(labels))
    return counts.argmax(1)  # the first maximum: the lowest class among tied ones


def _topk_stable(d, k: int):
    """Indices (R, k) of the k smallest entries of each row; ties -> lower column index."""
    import torch

    # a stable sort on the k-th smallest neighbourhood: topk itself does not promise an
    # order among equal values, so take a few more and sort them stably
    kk = min(d.shape[1], k + 8)
    vals, idx = d.topk(kk, dim=1, largest=False)
    key = torch.stack([vals.double(), idx.double()], -1)
    order = np.lexsort((key[..., 1].numpy(), key[..., 0].numpy()), axis=-1)[:, :k]
    return torch.gather(idx, 1, torch.from_numpy(order))


class KNN:
    """``KNN(k=3, metric="l2", mode="exact").fit(x, y).predict(x_test)``.

    ``x``: (N, ...) array or tensor, flattened to (N, D); ``y``: int labels (N,).
    ``chunk``: test rows per block (memory ~ chunk x N x 4 bytes for the distances).
    """

    def __init__(self, k: int = 3, metric: str = "l2", mode: str = "exact", chunk: int = 2048,
                 pca: int = 64, margin: int = 8):
        if not isinstance(k, int) or k < 1:
            raise UserError(f"--k {k}: expected a positive number of neighbours")
        if metric not in METRICS:
            raise UserError(f"k-NN metric {metric!r}: expected one of {', '.join(METRICS)}")
        if mode not in MODES:
            raise UserError(f"k-NN mode {mode!r}: expected one of {', '.join(MODES)}")
        if mode == "fast" and metric != "l2":
            raise UserError("k-NN mode 'fast' (PCA + float32) supports metric l2 only")
        self.k, self.metric, self.mode, self.chunk = k, metric, mode, chunk
        self.pca, self.margin = pca, margin

    def fit(self, x, y) -> "KNN":
        import torch

        xt = _flat(x).float()
        yt = torch.as_tensor(np.asarray(y)).long()
        if self.k > len(xt):
            raise UserError(f"--k {self.k}: larger than the training set ({len(xt)} images)")
        self.num_classes = int(yt.max()) + 1
        self.y = yt
        if self.mode == "fast":
            self.mean = xt.mean(0, keepdim=True)
            xc = xt - self.mean
            # the top principal axes of at most 10,000 training rows (a seeded sample; the
            # axes barely move with more) by randomized SVD (Halko et al. 2011): O(N D q)
            # instead of a D x D covariance and its full eigendecomposition
            g = torch.Generator().manual_seed(0)
            rows = torch.randperm(len(xc), generator=g)[:10_000]
            q = min(self.pca, *xc[rows].shape)
            with torch.random.fork_rng():
                torch.manual_seed(0)
                _, _, v = torch.svd_lowrank(xc[rows], q=min(q + 16, *xc[rows].shape), niter=3)
            self.proj = v[:, :q].contiguous()
            self.x = (xc @ self.proj).contiguous()
        else:
            self.x = xt.contiguous()
        self.sq = _sq_norms(self.x)  # ||b||^2, exact for integer pixels
        self.sq32 = self.sq.float()
        return self

    @property
    def stored_bytes(self) -> int:
        """Bytes k-NN keeps: the training vectors (as searched) and their labels."""
        return self.x.numel() * self.x.element_size() + self.y.numel() * 8

    def kneighbors(self, x) -> np.ndarray:
        """Indices (M, k) int64 of each test row's k nearest training rows, nearest first."""
        return self._kneighbors(x).numpy()

    def _kneighbors(self, x):
        import torch

        q = _flat(x).float()
        if self.mode == "fast":
            q = (q - self.mean) @ self.proj
        out = []
        for i in range(0, len(q), self.chunk):
            qc = q[i:i + self.chunk]
            if self.metric == "l1":
                d = torch.cdist(qc.double(), self.x.double(), p=1)
                out.append(_topk_stable(d, self.k))
            elif self.mode == "fast":
                # ||b||^2 - 2 q.b in one GEMM pass (addmm): no (R, N) temporaries
                d = torch.addmm(self.sq32[None], qc, self.x.T, alpha=-2)
                out.append(d.topk(self.k, dim=1, largest=False).indices)
            else:
                out.append(self._exact_chunk(qc))
        return torch.cat(out) if out else torch.zeros(0, self.k, dtype=torch.long)

    def _exact_chunk(self, qc):
        import torch

        k, n = self.k, len(self.x)
        kk = min(n, k + self.margin)
        qsq = _sq_norms(qc)
        d32 = torch.addmm(self.sq32[None], qc, self.x.T, alpha=-2)  # (R, N), ||q||^2 omitted
        cand_d, cand = d32.topk(kk, dim=1, largest=False)
        with _one_thread():
            exact = self._exact_dist(qc, qsq, cand)  # (R, kk) float64
        order = np.lexsort((cand.numpy(), exact.numpy()), axis=-1)
        cand = torch.gather(cand, 1, torch.from_numpy(order))
        exact = torch.gather(exact, 1, torch.from_numpy(order))
        if kk == n:
            return cand[:, :k]
        # float32 rounding bound of each d32 entry (|error| <= D * eps * (||q||^2 + ||b||^2),
        # a loose bound): if the first excluded candidate's d32 (plus ||q||^2) could still be
        # at or below the k-th exact distance, a true neighbour may be outside: recompute.
        bound = qc.shape[1] * 1.2e-7 * (qsq + self.sq.max()) * 2
        unsafe = (cand_d[:, -1].double() + qsq - bound) <= exact[:, k - 1]
        if unsafe.any():
            rows = unsafe.nonzero().squeeze(1)
            cand[rows, :k] = self._recheck(qc[rows], qsq[rows], d32[rows], exact[rows, k - 1],
                                           bound[rows] if bound.dim() else bound)
        return cand[:, :k]

    def _recheck(self, qc, qsq, d32, kth, bound):
        """The k nearest of rows whose float32 candidates may have missed one: every training
        row whose float32 distance is within ``bound`` of the k-th exact one found so far
        (a superset of the true neighbours), re-ranked in float64; the full float64 search
        when that set is a large part of the training set."""
        import torch

        k, n = self.k, len(self.x)
        within = d32 <= (kth - qsq + bound)[:, None]
        m = max(int(within.sum(1).max()), k)
        if m > n // 4:
            return _topk_stable(self._exact_dist(qc, qsq, None), k)
        cand = d32.topk(m, dim=1, largest=False).indices
        with _one_thread():
            exact = self._exact_dist(qc, qsq, cand)
        order = np.lexsort((cand.numpy(), exact.numpy()), axis=-1)[:, :k]
        return torch.gather(cand, 1, torch.from_numpy(order))

    def _exact_dist(self, qc, qsq, cand):
        """float64 squared distances: to the candidates (R, kk), or to all training rows."""
        import torch

        if cand is None:  # blocks of training rows: no float64 copy of all of them
            step = max(1, 8 * _BLOCK // max(self.x.shape[1], 1))  # GEMMs of a few hundred rows
            q64 = qc.double()
            return torch.cat([(qsq[:, None] - 2 * (q64 @ self.x[j:j + step].double().T)
                               + self.sq[None, j:j + step]).clamp_min(0)
                              for j in range(0, len(self.x), step)], 1)
        out = []
        step = max(1, _BLOCK // max(cand.shape[1] * self.x.shape[1], 1))
        for i in range(0, len(cand), step):  # (step, kk, D) float64 at a time: bounded memory
            b = self.x[cand[i:i + step]].double()
            out.append(((b - qc[i:i + step, None].double()) ** 2).sum(-1))
        return torch.cat(out)

    def predict(self, x) -> np.ndarray:
        """Predicted labels (M,) as int64."""
        nb = self._kneighbors(x)
        return _vote(self.y[nb], self.num_classes).numpy()


def knn_predict(x_train, y_train, x_test, k: int = 3, metric: str = "l2", mode: str = "exact",
                chunk: int = 2048) -> np.ndarray:
    """One call: ``KNN(k, metric, mode, chunk).fit(x_train, y_train).predict(x_test)``."""
    return KNN(k, metric, mode, chunk).fit(x_train, y_train).predict(x_test)
