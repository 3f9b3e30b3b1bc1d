"""cnnlab.baselines: k-NN against scikit-learn, the k-means feature pipeline against
scikit-learn's KMeans and hand computations, `cnnlab compare`'s bad input."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.baselines.bovw import (KMeansFeatures, kmeans, normalize, patches, train_linear,
                                   train_ridge)
from cnnlab.baselines.compare import parse_methods
from cnnlab.baselines.knn import KNN
from cnnlab.cli import main
from cnnlab.data import load_data
from cnnlab.errors import UserError


@pytest.fixture(scope="module")
def digits():
    d = load_data("digits")
    return (d.train.images.reshape(len(d.train), -1), d.train.labels,
            d.test.images.reshape(len(d.test), -1), d.test.labels)


@pytest.mark.parametrize("k,metric", [(1, "l2"), (3, "l2"), (5, "l2"), (3, "l1"), (4, "l2")])
def test_exact_knn_equals_sklearn(digits, k, metric):
    from sklearn.neighbors import KNeighborsClassifier

    xtr, ytr, xte, _ = digits
    ours = KNN(k, metric, chunk=100).fit(xtr, ytr).predict(xte)  # 4 chunks
    ref = KNeighborsClassifier(k, algorithm="brute", p=2 if metric == "l2" else 1).fit(
        xtr.astype(np.float32), ytr).predict(xte.astype(np.float32))
    np.testing.assert_array_equal(ours, ref)


def test_exact_knn_neighbours_equal_sklearn_and_fallback_path(digits):
    """margin=0 leaves no float32 slack, so every row takes the float64 recomputation."""
    from sklearn.neighbors import NearestNeighbors

    xtr, ytr, xte, _ = digits
    ref = NearestNeighbors(n_neighbors=3, algorithm="brute").fit(xtr.astype(np.float64))
    _, ref_idx = ref.kneighbors(xte[:50].astype(np.float64))
    for margin in (0, 8):
        idx = KNN(3, margin=margin).fit(xtr, ytr).kneighbors(xte[:50])
        np.testing.assert_array_equal(idx, ref_idx)



@pytest.mark.parametrize("offset, path", [(1e4, "full"), (100.0, "shortlist")])
@pytest.mark.parametrize("margin", [0, 8])
def test_exact_knn_with_a_large_common_offset_equals_sklearn(margin, offset, path, monkeypatch):
    """Points ``offset`` from the origin, about 1 apart: float32 ||q||^2 - 2 q.b + ||b||^2
    loses the digits that rank them (at 1e4: ||q||^2 ~ 2e9, float32 spacing ~ 256), so only
    the float64 recheck of unsafe rows finds the true neighbours: over a shortlist of the rows
    within the rounding bound (offset 100) or over all of them (1e4: the bound holds most)."""
    from sklearn.neighbors import NearestNeighbors

    import cnnlab.baselines.knn as K

    rng = np.random.default_rng(0)
    xtr = (offset + rng.standard_normal((600, 20))).astype(np.float32)
    xte = (offset + rng.standard_normal((40, 20))).astype(np.float32)
    ytr = rng.integers(0, 3, 600)
    # float64 differences, no expansion: the reference
    d = ((xte[:, None].astype(np.float64) - xtr[None].astype(np.float64)) ** 2).sum(-1)
    direct = np.argsort(d, axis=1, kind="stable")[:, :4]
    _, ref = NearestNeighbors(n_neighbors=4, algorithm="brute").fit(
        xtr.astype(np.float64)).kneighbors(xte.astype(np.float64))
    np.testing.assert_array_equal(ref, direct)
    widths = []  # candidates per row of each float64 pass (None: all training rows)
    real = K.KNN._exact_dist
    monkeypatch.setattr(K.KNN, "_exact_dist", lambda self, q, s, c: (
        widths.append(None if c is None else c.shape[1]), real(self, q, s, c))[1])
    knn = KNN(4, margin=margin, chunk=16).fit(xtr, ytr)
    idx = knn.kneighbors(xte)
    assert isinstance(idx, np.ndarray) and idx.dtype == np.int64 and idx.shape == (40, 4)
    np.testing.assert_array_equal(idx, ref)
    rechecks = [w for w in widths if w != 4 + margin]
    assert rechecks and (all(w is None for w in rechecks) if path == "full"
                         else all(w is not None and w > 4 for w in rechecks))


def test_knn_public_functions_return_numpy(digits):
    from cnnlab.baselines.knn import knn_predict

    xtr, ytr, xte, _ = digits
    for mode, metric in [("exact", "l2"), ("exact", "l1"), ("fast", "l2")]:
        knn = KNN(3, metric, mode).fit(torch.as_tensor(xtr), torch.as_tensor(ytr))
        for out in (knn.kneighbors(xte[:5]), knn.predict(xte[:5])):
            assert isinstance(out, np.ndarray) and out.dtype == np.int64, (mode, metric)
    assert isinstance(knn_predict(xtr, ytr, xte[:5]), np.ndarray)
    assert KNN(3).fit(xtr, ytr).kneighbors(xte[:0]).shape == (0, 3)

def test_vote_ties_go_to_the_lowest_class():
    # query at 0: neighbours at distance 1 (class 2) and 2 (class 1), k=2: one vote each
    xtr = np.array([[1.0], [2.0], [10.0]])
    ytr = np.array([2, 1, 0])
    assert KNN(2).fit(xtr, ytr).predict(np.array([[0.0]]))[0] == 1


def test_fast_knn_close_to_exact(digits):
    xtr, ytr, xte, yte = digits
    exact = (KNN(3).fit(xtr, ytr).predict(xte) == yte).mean()
    fast = (KNN(3, mode="fast", pca=64).fit(xtr, ytr).predict(xte) == yte).mean()
    assert abs(fast - exact) <= 0.02


def test_knn_bad_input(digits):
    xtr, ytr, *_ = digits
    with pytest.raises(UserError, match="larger than the training set"):
        KNN(len(xtr) + 1).fit(xtr, ytr)
    with pytest.raises(UserError, match="metric 'cosine'"):
        KNN(3, metric="cosine")


def test_patches_equal_unfold():
    x = torch.randint(0, 256, (2, 3, 11, 9), dtype=torch.uint8)
    for stride in (1, 2):
        ref = F.unfold(x.float(), 4, stride=stride).transpose(1, 2)
        assert torch.equal(patches(x, 4, stride), ref)


def test_normalize_and_whitening():
    p = torch.randn(5000, 12, dtype=torch.float64) * torch.linspace(20, 60, 12)
    z = normalize(p)
    assert torch.allclose(z.mean(1), torch.zeros(5000, dtype=torch.float64), atol=1e-9)
    np.testing.assert_allclose(z.var(1), p.var(1) / (p.var(1) + 10), rtol=1e-9)
    x = torch.randint(0, 256, (40, 1, 16, 16), dtype=torch.uint8)
    fe = KMeansFeatures(k=4, patch=4, n_patches=20000, iters=1).fit(x)
    pw = (normalize(patches(x, 4).flatten(0, 1)) - fe.mean) @ fe.zca
    cov = torch.cov(pw.T.double())
    lam = torch.linalg.eigvalsh(cov)
    assert lam.max() < 1.05  # whitened: eigenvalues lambda / (lambda + 0.1) <= 1
    assert lam[lam > 0.5].numel() >= 14  # all but the directions normalisation removed


def test_kmeans_equals_sklearn_lloyd():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, (4, 3))
    x = (centres[rng.integers(0, 4, 400)] + rng.normal(0, 1, (400, 3))).astype(np.float64)
    xt = torch.from_numpy(x)
    ours = kmeans(xt, 4, iters=20, seed=0)
    init = xt[torch.randperm(400, generator=torch.Generator().manual_seed(0))[:4]].numpy()
    ref = KMeans(4, init=init, n_init=1, max_iter=20, tol=0, algorithm="lloyd").fit(x)
    np.testing.assert_allclose(ours.numpy(), ref.cluster_centers_, atol=1e-8)


def test_triangle_and_hard_encodings_by_hand():
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    fe = KMeansFeatures(k=3, patch=4, stride=2, n_patches=500, iters=2, encoding="triangle").fit(x)
    f = fe.transform(x)  # (3, 4 * 3): quadrant sums of 3x3 positions
    pw = (normalize(patches(x, 4, 2).flatten(0, 1)) - fe.mean) @ fe.zca
    z = torch.cdist(pw.double(), fe.centroids.double())
    tri = (z.mean(1, keepdim=True) - z).clamp_min(0).view(3, 3, 3, 3)  # (N, 3, 3, k)
    ref = torch.cat([tri[:, :1, :1].sum((1, 2)), tri[:, :1, 1:].sum((1, 2)),
                     tri[:, 1:, :1].sum((1, 2)), tri[:, 1:, 1:].sum((1, 2))], 1)
    np.testing.assert_allclose(f.double(), ref, rtol=1e-4, atol=1e-3)
    fe.encoding, fe.quadrants = "hard", False
    h = fe.transform(x)
    assert torch.equal(h.sum(1), torch.full((3,), 9.0))  # one word per patch position
    assert torch.equal(h.argmax(1), F.one_hot(z.argmin(1), 3).view(3, 9, 3).sum(1).argmax(1))


def test_train_linear_separates_blobs():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 4, (3, 5))
    y = rng.integers(0, 3, 300)
    f = torch.from_numpy((centres[y] + rng.normal(0, 0.5, (300, 5))).astype(np.float32))
    predict = train_linear(f, y, iters=50)
    assert (predict(f) == y).mean() > 0.98


def test_train_ridge_equals_sklearn_ridge_classifier():
    from sklearn.linear_model import RidgeClassifier

    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 400)
    f = torch.from_numpy((rng.normal(0, 1, (4, 12))[y] + rng.normal(0, 1.5, (400, 12)) * [
        rng.uniform(0.5, 20, 12)]).astype(np.float32))
    predict = train_ridge(f, y, lams=(10.0,))
    z = ((f - f.mean(0)) / (f.var(0) + 0.01).sqrt()).double().numpy()
    ref = RidgeClassifier(alpha=predict.lam_all).fit(z, y)
    np.testing.assert_allclose(predict.coef.numpy(), ref.coef_.T, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(predict.intercept.numpy(), ref.intercept_, atol=1e-5)
    assert (predict(f) == ref.predict(z)).mean() > 0.99
    # lam chosen on the held-out tenth: the best there, never from the test set
    pick = train_ridge(f, y, lams=(1e-3, 1e6))
    assert pick.lam == max(pick.holdout_acc, key=lambda v: (pick.holdout_acc[v], v))
    # groups (an image and its mirror): whole groups on one side of the held-out split
    from cnnlab.baselines.bovw import _holdout_split

    fit, val = _holdout_split(np.concatenate([y, y]), 0.1, 0, np.tile(np.arange(400), 2))
    assert len(val) == 80 and not set((fit % 400).tolist()) & set((val % 400).tolist())


def test_compare_bad_input(capsys):
    with pytest.raises(UserError, match="did you mean knn"):
        parse_methods("knnn,linear")
    assert main(["compare", "--methods", "linear,lenet6"]) == 2
    assert "unknown method 'lenet6'; did you mean lenet5" in capsys.readouterr().err
    assert main(["compare", "--methods", "knn", "--k", "5000"]) == 2
    assert "--k 5000: larger than the training set (1437 images)" in capsys.readouterr().err


def test_compare_knn_row_on_digits():
    from cnnlab.baselines.compare import compare, format_table

    rows = compare("digits", methods="knn,knn-fast", k=3)
    assert [r["method"] for r in rows] == ["knn", "knn-fast"]
    assert rows[0]["size"] == 1437 * 1024 * 4 + 1437 * 8  # float32 pixels + int64 labels
    assert 0.95 < rows[0]["accuracy"] <= 1.0
    assert "cs231n" in format_table(rows)


def test_compare_scores_trained_rows_like_the_others():
    # every row's accuracy is a float64 share of correct test labels, so equal counts compare
    # equal (a float32 figure from the trainer made a 357/360 tie look like a win)
    from cnnlab.baselines.compare import compare

    (row,) = compare("digits", methods="linear", epochs=1)
    correct = row["accuracy"] * 360
    assert abs(correct - round(correct)) < 1e-9 and row["accuracy"] == round(correct) / 360
