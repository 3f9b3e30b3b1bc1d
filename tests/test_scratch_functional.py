"""Kernels of cnnlab.scratch.functional: the lectures' worked examples, shapes, dtypes,
argument errors and the tie rule of max pooling."""

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from cnnlab.scratch import functional as F

IMAGE = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                  [0, 1, 1, 0, 0]], dtype=np.float64)[None, None]
X_FILTER = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=np.float64)[None, None]
CENTER = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64)[None, None]


def test_lecture_convolution_examples():
    np.testing.assert_array_equal(F.conv2d(IMAGE, X_FILTER)[0, 0],
                                  [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    np.testing.assert_array_equal(F.conv2d(IMAGE, CENTER)[0, 0], IMAGE[0, 0, 1:4, 1:4])
    np.testing.assert_array_equal(F.conv2d(IMAGE, CENTER, stride=2)[0, 0], [[1, 1], [0, 1]])


@pytest.mark.parametrize("size,f,s,p,expected", [(5, 3, 1, 0, 3), (5, 3, 2, 1, 3),
                                                 (5, 3, 1, 1, 5), (7, 3, 1, 0, 5),
                                                 (7, 3, 2, 0, 3), (32, 5, 1, 2, 32)])
def test_output_size_formula(size, f, s, p, expected):
    assert F.output_size(size, f, s, p) == expected
    x = np.zeros((1, 1, size, size))
    assert F.conv2d(x, np.zeros((1, 1, f, f)), stride=s, padding=p).shape[2:] == (expected,) * 2


def test_non_integer_output_size_floors_like_torch_or_raises_when_strict():
    x = np.random.default_rng(0).standard_normal((1, 1, 7, 7))
    w = np.ones((1, 1, 3, 3))
    assert F.conv2d(x, w, stride=3).shape == (1, 1, 2, 2)  # (7 - 3) / 3 + 1 = 2.33 -> 2
    np.testing.assert_allclose(F.conv2d(x, w, stride=3),
                               TF.conv2d(torch.tensor(x), torch.tensor(w), stride=3).numpy())
    with pytest.raises(ValueError,
                       match=r"conv2d.*\(7 - 3 \+ 2\*0\) / 3 \+ 1 = 2.33.*does not fit"):
        F.conv2d(x, w, stride=3, strict=True)
    with pytest.raises(ValueError, match="max_pool2d.*not an integer"):
        F.max_pool2d(x, 2, strict=True)


def test_conv_errors_name_op_and_shapes():
    x = np.zeros((2, 3, 8, 8))
    with pytest.raises(ValueError,
                       match=r"channel mismatch: x \(2, 3, 8, 8\).*weight \(4, 1, 3, 3\)"):
        F.conv2d(x, np.zeros((4, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"kernel height 11 is larger than the padded input"):
        F.conv2d(x, np.zeros((4, 3, 11, 3)), padding=1)
    with pytest.raises(ValueError, match="padding must be >= 0"):
        F.conv2d(x, np.zeros((4, 3, 3, 3)), padding=-1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, np.zeros((4, 3, 3, 3)), stride=0)
    with pytest.raises(ValueError, match=r"bias \(3,\) must be \(4,\)"):
        F.conv2d(x, np.zeros((4, 3, 3, 3)), np.zeros(3))


def test_lecture_pooling_examples():
    a = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 5, 2, 3]], float)[None, None]
    np.testing.assert_array_equal(F.max_pool2d(a, 2)[0, 0], [[6, 8], [5, 3]])
    b = np.array([[1, 1, 2, 3], [4, 6, 6, 8], [3, 1, 1, 0], [1, 2, 2, 4]], float)[None, None]
    np.testing.assert_array_equal(F.max_pool2d(b, 2)[0, 0], [[6, 8], [3, 4]])
    np.testing.assert_array_equal(F.avg_pool2d(b, 2)[0, 0], [[3, 4.75], [1.75, 1.75]])
    np.testing.assert_array_equal(F.min_pool2d(b, 2)[0, 0], [[1, 2], [1, 0]])
    np.testing.assert_array_equal(F.global_avg_pool2d(b)[0, 0], [[b.mean()]])


def test_max_pool_ties_route_gradient_to_first_element_like_torch():
    x = np.full((1, 1, 4, 4), -0.4242)  # a normalised MNIST background: all equal
    x[0, 0, 2, 3] = x[0, 0, 3, 2] = 1.0  # a tie between two maxima in one window
    out, cache = F.max_pool2d_forward(x, 2)
    dx = F.max_pool2d_backward(np.ones_like(out), cache)
    assert dx.sum() == 4  # one element per window, not all of the tied ones
    expected = np.zeros((4, 4))
    expected[0, 0] = expected[0, 2] = expected[2, 0] = expected[2, 3] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    xt = torch.tensor(x, requires_grad=True)
    TF.max_pool2d(xt, 2).sum().backward()
    np.testing.assert_array_equal(dx, xt.grad.numpy())
    # overlapping windows: also the first maximum of each window, as torch
    x = np.round(np.random.default_rng(0).random((2, 2, 7, 7)) * 2)
    out, cache = F.max_pool2d_forward(x, 3, 2)
    xt = torch.tensor(x, requires_grad=True)
    TF.max_pool2d(xt, 3, 2).sum().backward()
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones_like(out), cache), xt.grad)


def test_min_pool_ties_go_to_first_minimum():
    x = np.zeros((1, 1, 2, 2))
    _, cache = F.min_pool2d_forward(x, 2)
    np.testing.assert_array_equal(F.min_pool2d_backward(np.ones((1, 1, 1, 1)), cache)[0, 0],
                                  [[1, 0], [0, 0]])


def test_stochastic_pool_probabilities_and_inference():
    window = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]  # p = 0.1, 0.2, 0.3, 0.4
    x = np.tile(window, (1, 1, 1, 1))
    draws = np.array([0.05, 0.15, 0.45, 0.95]).reshape(4, 1, 1, 1)
    picks = F.stochastic_pool2d(np.repeat(x, 4, 0), 2, draws=draws)
    np.testing.assert_array_equal(picks.ravel(), [1, 2, 3, 4])
    many = F.stochastic_pool2d(np.repeat(x, 20000, 0), 2, rng=0).ravel()
    freq = [(many == v).mean() for v in (1, 2, 3, 4)]
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.015)
    assert F.stochastic_pool2d(x, 2, training=False)[0, 0, 0, 0] == pytest.approx(30 / 10)
    zero = np.zeros((1, 1, 2, 2))
    assert F.stochastic_pool2d(zero, 2)[0, 0, 0, 0] == 0
    assert F.stochastic_pool2d(zero, 2, training=False)[0, 0, 0, 0] == 0
    with pytest.raises(ValueError, match="non-negative"):
        F.stochastic_pool2d(-x, 2)


def test_kmax_pool_keeps_original_order():
    x = np.array([[5, 1, 9], [2, 8, 3], [7, 0, 4]], float)[None, None]
    np.testing.assert_array_equal(F.kmax_pool(x, 3)[0, 0], [9, 8, 7])
    np.testing.assert_array_equal(F.kmax_pool(x, 4)[0, 0], [5, 9, 8, 7])
    with pytest.raises(ValueError, match=r"k must be in \[1, H\*W = 9\]"):
        F.kmax_pool(x, 10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_preserved(dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(dtype)
    w = np.ones((4, 3, 3, 3), dtype)
    outs = [F.conv2d(x, w, np.zeros(4, dtype), padding=1), F.max_pool2d(x, 2),
            F.avg_pool2d(x, 2), F.relu(x), F.sigmoid(x), F.local_response_norm(x, 3),
            F.batch_norm(x, np.zeros(3, dtype), np.ones(3, dtype), training=True),
            F.stochastic_pool2d(np.abs(x), 2, training=False)]
    assert all(o.dtype == dtype for o in outs)


def test_numerically_stable_softmax_family():
    z = np.array([[1000.0, 1000.0, -1000.0]])
    np.testing.assert_allclose(F.softmax(z), [[0.5, 0.5, 0.0]])
    assert np.isfinite(F.log_softmax(z)).all()
    assert F.cross_entropy(z, np.array([0])) == pytest.approx(np.log(2))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        F.cross_entropy(z, np.array([3]))


def test_alexnet_lrn_convention():
    x = np.random.default_rng(0).random((1, 7, 2, 2))
    args = F.alexnet_lrn_args()  # n=5, k=2, alpha=1e-4, beta=0.75 (paper)
    sq = np.pad(x ** 2, ((0, 0), (2, 2), (0, 0), (0, 0)))
    paper = x / (2 + 1e-4 * sum(sq[:, i:i + 7] for i in range(5))) ** 0.75
    np.testing.assert_allclose(F.local_response_norm(x, **args), paper, rtol=1e-12)


def test_dropout_is_inverted_and_seeded():
    x = np.ones((1000, 100))
    a, b = F.dropout(x, 0.3, rng=1), F.dropout(x, 0.3, rng=1)
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) == {0.0, 1 / 0.7}
    assert abs(a.mean() - 1) < 0.01
    np.testing.assert_array_equal(F.dropout(x, 0.3, training=False), x)


def test_batch_norm_running_statistics_like_torch():
    x = np.random.default_rng(0).standard_normal((4, 3, 5, 5))
    rm, rv = np.zeros(3), np.ones(3)
    F.batch_norm(x, rm, rv, training=True)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    TF.batch_norm(torch.tensor(x), trm, trv, training=True)
    np.testing.assert_allclose(rm, trm.numpy(), atol=1e-12)
    np.testing.assert_allclose(rv, trv.numpy(), atol=1e-12)
