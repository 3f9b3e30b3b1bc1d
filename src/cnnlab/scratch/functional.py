"""Pure NumPy kernels of a CNN, NCHW, float32 or float64, each with its backward.

Every op comes as a pair, cs231n style::

    out, cache = conv2d_forward(x, weight, bias, stride, padding)
    dx, dweight, dbias = conv2d_backward(dout, cache)

and a plain ``conv2d(...)`` that returns only ``out``. Sizes follow PyTorch: an output size
``(H + 2P - kh) / S + 1`` that is not an integer is floored (the last rows/columns the
window cannot reach are dropped), exactly like ``torch.nn.functional.conv2d``; pass
``strict=True`` to get a ``ValueError`` instead (``cnnlab explain`` does). Errors are
``ValueError`` messages that name the op and the shapes.

Vectorization: no Python loop over the batch, channels or pixels. Convolution is im2col
plus matmul. With stride 1 the zero-padded input is *flattened*, so that offset (i, j) of
every window is one contiguous run of memory shifted by ``i*Wp + j``: im2col is kh*kw
(25 for 5x5) long ``memcpy``-like slice copies and col2im the same number of slice adds
(a loop over kernel offsets, never over pixels); the few wrapped-around positions this
creates are computed and dropped. Small layers use ``cols (N, C*kh*kw, H'*Wp)`` and a
batched matmul whose output is already NCHW; larger ones put the channels first,
``(C*kh*kw, N*Hp*Wp)``, so the whole batch is a single GEMM that BLAS runs on all cores.
The bias rides in the GEMM as a row of ones. Scratch buffers can be kept in a workspace
dict between steps (no page faults on fresh multi-MB arrays). Pooling works on strided
window slices, also one slice per kernel offset.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from cnnlab.scratch._pool import (  # noqa: F401  (re-exported)
    avg_pool2d, avg_pool2d_backward, avg_pool2d_forward, global_avg_pool2d,
    global_avg_pool2d_backward, global_avg_pool2d_forward, kmax_pool, kmax_pool_backward,
    kmax_pool_forward, max_pool2d, max_pool2d_backward, max_pool2d_forward, min_pool2d,
    min_pool2d_backward, min_pool2d_forward, output_size, pair, stochastic_pool2d,
    stochastic_pool2d_backward, stochastic_pool2d_forward)
from cnnlab.scratch._layers import (  # noqa: F401  (re-exported)
    alexnet_lrn_args, batch_norm, batch_norm_backward, batch_norm_forward, cross_entropy,
    cross_entropy_backward, cross_entropy_forward, dropout, dropout_backward, dropout_forward,
    leaky_relu, leaky_relu_backward, leaky_relu_forward, linear, linear_backward,
    linear_forward, local_response_norm, local_response_norm_backward,
    local_response_norm_forward, log_softmax, log_softmax_backward, log_softmax_forward, relu,
    relu_backward, relu_forward, sigmoid, sigmoid_backward, sigmoid_forward, softmax,
    softmax_backward, softmax_forward, tanh, tanh_backward, tanh_forward)


def _check_conv(x, weight, bias, stride, padding, strict):
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected x (N, C, H, W) and weight (K, C, kh, kw), "
                         f"got x {x.shape} and weight {weight.shape}.")
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding")
    if sh < 1 or sw < 1:
        raise ValueError(f"conv2d: stride must be >= 1, got {(sh, sw)}.")
    if ph < 0 or pw < 0:
        raise ValueError(f"conv2d: padding must be >= 0, got {(ph, pw)} "
                         f"(x {x.shape}, weight {weight.shape}).")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: channel mismatch: x {x.shape} has {x.shape[1]} channels "
                         f"but weight {weight.shape} expects {weight.shape[1]}.")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias {bias.shape} must be ({weight.shape[0]},) for "
                         f"weight {weight.shape}.")
    kh, kw = weight.shape[2:]
    ho = output_size(x.shape[2], kh, sh, ph, strict, "conv2d", "height")
    wo = output_size(x.shape[3], kw, sw, pw, strict, "conv2d", "width")
    return (sh, sw), (ph, pw), ho, wo


def _buffer(ws, name, shape, dtype, zero=False):
    """``(array, is_new)``: a scratch array kept in the workspace dict `ws` between calls
    (fresh when `ws` is None). Reuse saves the page faults of a new multi-MB array per step;
    regions never written (padding, wrapped-around columns) keep their zeros."""
    a = None if ws is None else ws.get(name)
    if a is not None and a.shape == shape and a.dtype == dtype:
        return a, False
    a = np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    if ws is not None:
        ws[name] = a
    return a, True


def im2col(x: np.ndarray, kh: int, kw: int, stride, ho: int, wo: int, out=None) -> np.ndarray:
    """Copy every (kh, kw) window of an already padded ``x (N, C, Hp, Wp)`` into
    ``cols (N, C*kh*kw, ho*wo)``; row ``c*kh*kw + i*kw + j`` holds pixel ``(i, j)`` of
    channel ``c`` of each window, matching ``weight.reshape(K, -1)``."""
    n, c = x.shape[:2]
    sh, sw = stride
    cols = np.empty((n, c * kh * kw, ho * wo), dtype=x.dtype) if out is None else out
    view = cols.reshape(n, c, kh, kw, ho, wo)
    for i in range(kh):  # a loop over kernel offsets only: each step copies (N, C, ho, wo)
        for j in range(kw):
            view[:, :, i, j] = x[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw]
    return cols


def col2im(cols: np.ndarray, shape, kh: int, kw: int, stride, ho: int, wo: int) -> np.ndarray:
    """Adjoint of :func:`im2col`: add ``cols (N, C*kh*kw, ho*wo)`` back into a zero
    ``(N, C, Hp, Wp)`` buffer (overlapping windows accumulate)."""
    n, c = shape[:2]
    sh, sw = stride
    cols = cols.reshape(n, c, kh, kw, ho, wo)
    out = np.zeros(shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw] += cols[:, :, i, j]
    return out


def _shifted_copies(src, dst, kh, kw, wp, length):
    """``dst[..., i, j, :] = src[..., i*wp + j : i*wp + j + length]`` for every kernel offset:
    in a flattened padded image, offset (i, j) of *every* window is one contiguous run."""
    for i in range(kh):
        for j in range(kw):
            dst[..., i, j, :] = src[..., i * wp + j:i * wp + j + length]


def _shifted_adds(src, dst, kh, kw, wp, length):
    """The adjoint of :func:`_shifted_copies`: ``dst[..., run(i, j)] += src[..., i, j, :]``."""
    for i in range(kh):
        for j in range(kw):
            dst[..., i * wp + j:i * wp + j + length] += src[..., i, j, :]


# Stride-1 layouts (the common case). The padded input is flattened so that the kh*kw
# window offsets become contiguous shifted runs (positions x >= W' wrap around: their
# outputs are discarded and their gradients are zero). Two arrangements, picked by size:
# - "batched" (C*kh*kw < 64, e.g. LeNet's C1): cols (N, C*kh*kw, H'*Wp), one BLAS call per
#   image; the output is NCHW as it comes out of matmul.
# - "cn" (larger): the channels lead, ``xb (C, N*Hp*Wp)`` and ``cols (C*kh*kw, N*H'*Wp)``,
#   so forward, weight and input gradients are each a *single* large GEMM that BLAS runs
#   on every core; the output is a transposed view.
#   Measured on LeNet's C3 (2 cores): 2.5 ms forward, 4.9 ms backward vs 3.3 and 9.0 ms.
def _conv_s1_forward(x, wmat, kh, kw, ph, pw, ho, wo, ws):
    n, c, h, w = x.shape
    k, rows = wmat.shape
    ckk = c * kh * kw
    hp, wp = h + 2 * ph, w + 2 * pw
    if ckk < 64:
        xf, _ = _buffer(ws, "xf", (n, c, hp * wp + kw - 1), x.dtype, zero=True)
        xf[:, :, :hp * wp].reshape(n, c, hp, wp)[:, :, ph:ph + h, pw:pw + w] = x
        cols, new = _buffer(ws, "cols", (n, rows, ho * wp), x.dtype)
        _shifted_copies(xf, cols[:, :ckk].reshape(n, c, kh, kw, ho * wp), kh, kw, wp, ho * wp)
        if new and rows > ckk:
            cols[:, ckk] = 1  # the bias row; never overwritten
        out = np.matmul(wmat, cols).reshape(n, k, ho, wp)  # N x K x H' x Wp
        return out[..., :wo], ("batched", cols)
    tail = (kh - 1) * wp + kw - 1
    xb, _ = _buffer(ws, "xb", (c, n * hp * wp + tail), x.dtype, zero=True)
    xb[:, :n * hp * wp].reshape(c, n, hp, wp)[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    cols, new = _buffer(ws, "cols", (rows, n * ho * wp), x.dtype)
    view = cols[:ckk].reshape(c, kh, kw, n, ho * wp)
    for (i, j), run in _offset_runs(xb, n, hp, wp, ho, kh, kw):  # one copy per offset
        view[:, i, j] = run
    if new and rows > ckk:
        cols[ckk] = 1
    out = (wmat @ cols).reshape(k, n, ho, wp)  # K x N x H' x Wp: one GEMM
    return out.transpose(1, 0, 2, 3)[..., :wo], ("cn", cols)


def _offset_runs(buf, n, hp, wp, ho, kh, kw):
    """For each kernel offset (i, j) of a channels-first flat buffer ``buf (C, N*Hp*Wp +
    tail)``: the ``(C, N, H'*Wp)`` view of the runs it reads. One ``as_strided`` view
    (image stride Hp*Wp, no copy), so the H' x Wp positions of all images are gathered in
    one assignment and the rows past H' are never computed."""
    item = buf.itemsize
    for i in range(kh):
        for j in range(kw):
            yield (i, j), as_strided(buf[:, i * wp + j:], (buf.shape[0], n, ho * wp),
                                     (buf.strides[0], hp * wp * item, item))


def _conv_s1_backward(dout, layout, cols, weight, shape, ph, pw, ho, wo, ws, input_grad):
    n, c, h, w = shape
    k, _, kh, kw = weight.shape
    ckk = c * kh * kw
    hp, wp = h + 2 * ph, w + 2 * pw
    wmat_t = weight.reshape(k, ckk).T
    if layout == "batched":
        d, _ = _buffer(ws, "d", (n, k, ho, wp), dout.dtype, zero=True)
        d[..., :wo] = dout  # the wrapped-around columns stay zero
        d = d.reshape(n, k, ho * wp)
        # sum_n d[n] @ cols[n].T: one batched matmul and a tiny sum over the batch
        dwb = np.matmul(d, cols.transpose(0, 2, 1)).sum(0)
        if not input_grad:
            return None, dwb
        dcols, _ = _buffer(ws, "dcols", (n, ckk, ho * wp), dout.dtype)
        np.matmul(wmat_t, d, out=dcols)
        dxf = np.zeros((n, c, hp * wp + kw - 1), dtype=dout.dtype)
        _shifted_adds(dcols.reshape(n, c, kh, kw, ho * wp), dxf, kh, kw, wp, ho * wp)
        return dxf[:, :, :hp * wp].reshape(n, c, hp, wp)[:, :, ph:ph + h, pw:pw + w], dwb
    d, _ = _buffer(ws, "d", (k, n, ho, wp), dout.dtype, zero=True)
    d[..., :wo] = dout.transpose(1, 0, 2, 3)  # the wrapped-around columns stay zero
    d = d.reshape(k, n * ho * wp)
    dwb = d @ cols.T  # K x rows: one GEMM
    if not input_grad:
        return None, dwb
    dcols, _ = _buffer(ws, "dcols", (ckk, n * ho * wp), dout.dtype)
    np.matmul(wmat_t, d, out=dcols)  # one GEMM
    dxb = np.zeros((c, n * hp * wp + (kh - 1) * wp + kw - 1), dtype=dout.dtype)
    view = dcols.reshape(c, kh, kw, n, ho * wp)
    for (i, j), run in _offset_runs(dxb, n, hp, wp, ho, kh, kw):  # the adjoint: add back
        run += view[:, i, j]
    dx = dxb[:, :n * hp * wp].reshape(c, n, hp, wp).transpose(1, 0, 2, 3)
    return dx[:, :, ph:ph + h, pw:pw + w], dwb


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, strict=False, workspace=None):
    """2-D cross-correlation (what deep learning calls convolution), as torch's ``conv2d``.

    out[n, k, y, x'] = bias[k] + sum_{c, i, j} weight[k, c, i, j] * xpad[n, c, S*y + i, S*x' + j]

    Args:
        x: ``(N, C, H, W)``.
        weight: ``(K, C, kh, kw)``.
        bias: ``(K,)`` or None. It rides in the matmul: ``cols`` gets a constant row of
            ones and the weight matrix a bias column, so no extra pass adds it.
        stride, padding: an int or a pair ``(h, w)``; zero padding on both sides.
        strict: raise ValueError when ``(H + 2P - kh) / S`` is not an integer instead of
            flooring it like torch.
        workspace: a dict in which to keep scratch buffers between calls (``Conv2d`` passes
            its own); the cache then refers to them until the next call.
    Returns:
        ``out (N, K, H', W')`` with ``H' = floor((H + 2P - kh) / S) + 1`` (possibly a
        strided view), and the cache for :func:`conv2d_backward`.
    """
    s, (ph, pw), ho, wo = _check_conv(x, weight, bias, stride, padding, strict)
    n, c, h, w = x.shape
    k, _, kh, kw = weight.shape
    wmat = weight.reshape(k, c * kh * kw)
    if bias is not None:
        wmat = np.concatenate([wmat, bias[:, None].astype(wmat.dtype)], axis=1)
    if s == (1, 1):
        out, (layout, cols) = _conv_s1_forward(x, wmat, kh, kw, ph, pw, ho, wo, workspace)
    else:  # general strides: strided window copies, one batched matmul
        xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        cols, new = _buffer(workspace, "cols", (n, wmat.shape[1], ho * wo), x.dtype)
        if new and bias is not None:
            cols[:, -1] = 1
        im2col(xp, kh, kw, s, ho, wo, cols[:, :c * kh * kw])  # N x C*kh*kw x H'*W'
        out, layout = np.matmul(wmat, cols).reshape(n, k, ho, wo), "strided"
    return out, (layout, cols, x.shape, weight, bias is not None, s, (ph, pw), (ho, wo),
                 workspace)


def conv2d_backward(dout, cache, input_grad: bool = True):
    """Gradients of :func:`conv2d_forward`.

    Args:
        dout: ``(N, K, H', W')``.
        input_grad: False skips ``dx`` (a first layer does not need it) and returns None.
    Returns:
        ``dx (N, C, H, W)`` (or None), ``dweight (K, C, kh, kw)``, ``dbias (K,)`` (or None).
        The column of the bias row of ``cols`` in the weight gradient is the bias gradient.
    """
    layout, cols, shape, weight, has_bias, s, (ph, pw), (ho, wo), ws = cache
    n, c, h, w = shape
    k, _, kh, kw = weight.shape
    ckk = c * kh * kw
    if layout != "strided":
        dx, dwb = _conv_s1_backward(dout, layout, cols, weight, shape, ph, pw, ho, wo, ws,
                                    input_grad)
    else:
        d = np.ascontiguousarray(dout).reshape(n, k, ho * wo)
        dwb = np.matmul(d, cols.transpose(0, 2, 1)).sum(0)
        dx = None
        if input_grad:
            dcols = np.matmul(weight.reshape(k, ckk).T, d)  # N x C*kh*kw x H'*W'
            dxp = col2im(dcols, (n, c, h + 2 * ph, w + 2 * pw), kh, kw, s, ho, wo)
            dx = dxp[:, :, ph:ph + h, pw:pw + w]
    dweight = dwb[:, :ckk].reshape(weight.shape)
    return dx, dweight, (dwb[:, ckk].copy() if has_bias else None)


def conv2d(x, weight, bias=None, stride=1, padding=0, strict=False):
    """``(N, C, H, W)``, ``(K, C, kh, kw)``, ``(K,)`` -> ``(N, K, H', W')``; see
    :func:`conv2d_forward`."""
    return conv2d_forward(x, weight, bias, stride, padding, strict)[0]
