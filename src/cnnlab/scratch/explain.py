"""``cnnlab explain TOPIC``: the lectures' worked examples, step by step, computed by the
scratch kernels (every number printed comes out of :mod:`cnnlab.scratch.functional` or
:mod:`cnnlab.scratch.nn`; nothing is hard-coded but the inputs).

    explain("conv")                                   # 5x5 binary image * 3x3 filter
    explain("conv", input="1 2 0; 0 1 3; 4 0 1", kernel="1 0; 0 1", stride=1, padding=1)
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch import functional as F
from cnnlab.scratch import nn

LECTURE_IMAGE = "1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0"
LECTURE_FILTER = "1 0 1; 0 1 0; 1 0 1"
CENTER_FILTER = "0 0 0; 0 1 0; 0 0 0"
LECTURE_POOL_MAP = "1 1 2 4; 5 6 7 8; 3 2 1 0; 1 5 2 3"


MAX_SIDE = 64  # rows/columns of a user's matrix: the steps are printed, one per output value


def parse_matrix(text: str, arg: str = "--input") -> np.ndarray:
    """``"1 1 0; 0 1 1"`` (rows split by ``;`` or newlines, numbers by spaces or commas)
    -> a float64 2-D array; a ValueError names `arg` on bad input."""
    rows = [r.replace(",", " ").split() for r in text.replace("\n", ";").split(";")]
    rows = [r for r in rows if r]
    if not rows:
        raise ValueError(f"{arg}: empty matrix; expected rows like \"1 0 1; 0 1 0\".")
    try:
        values = [[float(v) for v in r] for r in rows]
    except ValueError as e:
        raise ValueError(f"{arg}: {str(e).split(': ', 1)[-1]} is not a number; expected rows "
                         f"like \"1 0 1; 0 1 0\".") from None
    widths = {len(r) for r in values}
    if len(values) > MAX_SIDE or max(widths) > MAX_SIDE:
        raise ValueError(f"{arg}: a {len(values)}x{max(widths)} matrix is too large for a "
                         f"worked example (expected at most {MAX_SIDE}x{MAX_SIDE}).")
    if len(widths) > 1:
        raise ValueError(f"{arg}: rows have different lengths {[len(r) for r in values]}; "
                         f"every row needs the same number of values.")
    return np.array(values, dtype=np.float64)


def _n(v) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:.3g}"


def _grid(a: np.ndarray, indent: str = "    ") -> str:
    cells = [[_n(v) for v in row] for row in a]
    w = max(len(c) for row in cells for c in row)
    return "\n".join(indent + " ".join(c.rjust(w) for c in row) for row in cells)


def _size_line(n, f, s, p) -> str:
    """The output-size formula worked out, or why the filter does not fit."""
    expr = f"({n} - {f} + 2*{p}) / {s} + 1"
    try:
        return f"{expr} = {F.output_size(n, f, s, p, strict=True)}"
    except ValueError:
        return (f"{expr} = {(n - f + 2 * p) / s + 1:.3g}: not an integer, the filter does not "
                f"fit (torch floors it to {F.output_size(n, f, s, p)} and drops the last "
                f"{(n - f + 2 * p) % s} row(s)/column(s))")


def _conv_steps(image, kernel, stride, padding, bias=0.0, max_windows=9) -> list[str]:
    """Each window's element-wise products and sum, via the kernels' own im2col."""
    x, w = image[None, None], kernel[None, None]
    out = F.conv2d(x, w, np.array([bias]), stride, padding, strict=True)[0, 0]
    kh, kw = kernel.shape
    ho, wo = out.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = F.im2col(xp, kh, kw, (stride, stride), ho, wo)[0]  # kh*kw x ho*wo
    lines = []
    for pos in range(ho * wo):
        y, x_ = divmod(pos, wo)
        if pos == max_windows:
            lines.append(f"  ... ({ho * wo - max_windows} more windows, same rule)")
            break
        terms = " + ".join(f"{_n(a)}*{_n(b)}" for a, b in zip(cols[:, pos], kernel.ravel()))
        total = float(cols[:, pos] @ kernel.ravel()) + bias
        assert np.isclose(total, out[y, x_])  # the kernel and the hand sum agree
        b = f" + {_n(bias)}" if bias else ""
        where = "padded rows" if padding else "rows"
        lines.append(f"  out[{y},{x_}] ({where} {stride * y}..{stride * y + kh - 1}, cols "
                     f"{stride * x_}..{stride * x_ + kw - 1}) = {terms}{b} = {_n(out[y, x_])}")
    return lines + ["", "Output:", _grid(out)]


def _conv(img, ker, stride, padding) -> str:
    (h, w), (f1, f2) = img.shape, ker.shape
    lines = ["Convolution: slide the filter over the image; at each position multiply "
             "element-wise and sum.", "", "Input:", _grid(img), "", "Filter:", _grid(ker), ""]
    if padding:
        padded = np.pad(img, padding)
        lines += [f"Zero-padded by {padding}:", _grid(padded), ""]
    lines += [f"Output size: height {_size_line(h, f1, stride, padding)}; width "
              f"{_size_line(w, f2, stride, padding)}", "", f"Stride {stride}:"]
    return "\n".join(lines + _conv_steps(img, ker, stride, padding))


def _stride(img, ker, padding, stride=2) -> str:
    lines = ["Stride: how far the filter moves between positions.", "", "Input:", _grid(img),
             "", "Filter:", _grid(ker)]
    for s in sorted({1, stride}):
        h, f = img.shape[0], ker.shape[0]
        lines += ["", f"Stride {s}: output size {_size_line(h, f, s, padding)}"]
        try:
            out = F.conv2d(img[None, None], ker[None, None], stride=s, padding=padding,
                           strict=True)[0, 0]
            ys, xs = range(out.shape[0]), range(out.shape[1])
            corners = [f"({s * y},{s * x})" for y in ys for x in xs]
            lines += [f"  windows start at {' '.join(corners)}", _grid(out)]
        except ValueError as e:
            lines.append(f"  {e}")
    return "\n".join(lines)


def _padding(img, ker, stride, padding=None) -> str:
    p = padding if padding is not None else (ker.shape[0] - 1) // 2
    h, f = img.shape[0], ker.shape[0]
    lines = ["Zero padding adds P rows/columns of zeros around the input so the filter can "
             "centre on border pixels.", "Output size: W' = (W - F + 2P) / S + 1.", "",
             "Input:", _grid(img), "", f"Padded by P = {p}:", _grid(np.pad(img, p)), ""]
    for pad in sorted({0, p}):
        lines.append(f"P = {pad}, S = {stride}: {_size_line(h, f, stride, pad)}")
    lines.append("")
    lines.append("'Same' padding for stride 1 keeps the size: P = (F - 1) / 2:")
    for ff in (3, 5, 7):
        pp = (ff - 1) // 2
        lines.append(f"  F = {ff}: P = {pp}, 32 -> {F.output_size(32, ff, 1, pp)}")
    try:
        out = F.conv2d(img[None, None], ker[None, None], stride=stride, padding=p,
                       strict=True)[0, 0]
        lines += ["", f"Convolved with the filter (P = {p}, S = {stride}):", _grid(out)]
    except ValueError as e:
        lines += ["", str(e)]
    return "\n".join(lines)


def _output_size(img, ker, stride, padding, user: bool) -> str:
    lines = ["Output size: W' = (W - F + 2P) / S + 1 (per dimension).", ""]
    if user:
        for dim, n, f in (("height", img.shape[0], ker.shape[0]), ("width", img.shape[1],
                                                                    ker.shape[1])):
            lines.append(f"{dim}: {_size_line(n, f, stride, padding)}")
        return "\n".join(lines)
    cases = [(5, 3, 1, 0), (5, 3, 2, 1), (5, 3, 1, 1), (7, 3, 1, 0), (7, 3, 2, 0), (7, 3, 3, 0)]
    lines += [f"W = {n}, F = {f}, S = {s}, P = {p}: {_size_line(n, f, s, p)}"
              for n, f, s, p in cases]
    sizes = [32]
    for _ in range(3):
        sizes.append(F.output_size(sizes[-1], 5))
    lines += ["", "(One lecture prints (5 - 3 + 2*0)/1 + 1 = 2; it is "
              f"{F.output_size(5, 3)}.)",
              "Repeated 5x5 convolutions without padding shrink the map fast: "
              + " -> ".join(map(str, sizes))]
    return "\n".join(lines)


def _pool_windows(a, k, s):
    o = [F.output_size(n, k, s, 0, strict=True, op="pooling") for n in a.shape]
    return [(y, x, a[s * y:s * y + k, s * x:s * x + k]) for y in range(o[0]) for x in range(o[1])]


def _pooling(a, stride=2) -> str:
    k, s = 2, stride
    x = a[None, None]
    mx, mcache = F.max_pool2d_forward(x, k, s, strict=True)
    av, acache = F.avg_pool2d_forward(x, k, s)
    mn = F.min_pool2d(x, k, s)
    ones = np.ones_like(mx)
    lines = [f"Pooling: a {k}x{k} window, stride {s}, on each map independently (no "
             "parameters).", "", "Input:", _grid(a), "", "Windows:"]
    for y, x_, win in _pool_windows(a, k, s):
        lines.append(f"  ({y},{x_}): {' '.join(_n(v) for v in win.ravel())}  max {_n(win.max())}"
                     f"  mean {_n(win.mean())}  min {_n(win.min())}")
    lines += ["", "Max pooling:", _grid(mx[0, 0]), "", "Average pooling:", _grid(av[0, 0]), "",
              "Min pooling:", _grid(mn[0, 0]), "",
              "Backward, max: create a mask of each window's maximum (the first one on ties) "
              "and route the gradient (here all ones) through it:",
              _grid(F.max_pool2d_backward(ones, mcache)[0, 0]), "",
              "Backward, average: distribute each window's gradient evenly:",
              _grid(F.avg_pool2d_backward(ones, acache)[0, 0])]
    return "\n".join(lines)


def _stochastic(a, stride=2, seed=0) -> str:
    k, s = 2, stride
    if (a < 0).any():
        raise ValueError("--input: stochastic pooling needs non-negative values (after ReLU).")
    x = a[None, None]
    rng = np.random.default_rng(seed)
    out_shape = F.max_pool2d(x, k, s).shape
    draws = rng.random(out_shape)
    picked = F.stochastic_pool2d(x, k, s, training=True, draws=draws)
    expect = F.stochastic_pool2d(x, k, s, training=False)
    lines = ["Stochastic pooling (Zeiler & Fergus 2013): in training pick a_i with probability "
             "p_i = a_i / sum_k a_k; at inference output sum_i p_i a_i.", "", "Input:",
             _grid(a), ""]
    for j, (y, x_, win) in enumerate(_pool_windows(a, k, s)):
        vals = win.ravel()
        total = vals.sum()
        p = vals / total if total else np.zeros_like(vals)
        lines += [f"  window ({y},{x_}): a = {' '.join(_n(v) for v in vals)}, sum {_n(total)}",
                  f"    p = {' '.join(f'{v:.3f}' for v in p)}",
                  f"    inference: sum p_i a_i = {expect[0, 0, y, x_]:.4g}",
                  f"    training: draw u = {draws[0, 0, y, x_]:.3f} -> first cumulative p above "
                  f"u picks {_n(picked[0, 0, y, x_])}"]
    lines += ["", f"Training output (seed {seed}):", _grid(picked[0, 0]), "",
              "Inference output:", _grid(np.round(expect[0, 0], 4))]
    return "\n".join(lines)


def _rgb(seed=0) -> str:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (1, 3, 5, 5)).astype(np.float64)
    w = rng.integers(-1, 2, (1, 3, 3, 3)).astype(np.float64)
    b = np.array([1.0])
    total = F.conv2d(x, w, b)[0, 0]
    lines = ["RGB convolution: a filter spans all input channels (here 3x3x3); "
             "y = X_R * W_R + X_G * W_G + X_B * W_B + w0, one map per filter.", ""]
    parts = []
    for c, name in enumerate("RGB"):
        part = F.conv2d(x[:, c:c + 1], w[:, c:c + 1])[0, 0]
        parts.append(part)
        lines += [f"Channel {name}: input", _grid(x[0, c]), f"  filter W_{name}",
                  _grid(w[0, c]), f"  X_{name} * W_{name} =", _grid(part), ""]
    summed = parts[0] + parts[1] + parts[2] + b[0]
    assert np.allclose(summed, total)
    lines += [f"Sum of the three maps + bias w0 = {_n(b[0])}:", _grid(summed), "",
              "conv2d on the 3-channel input gives the same map:", _grid(total)]
    return "\n".join(lines)


def _params(stride=None, padding=None) -> str:
    lines = ["Parameters of a convolution layer: each filter has F*F*C weights + 1 bias."]
    for k, f, p, (c, h) in ((10, 5, 2, (3, 32)), (6, 5, 0, (3, 32)), (96, 11, 0, (3, 227))):
        s = stride if stride is not None else (4 if f == 11 else 1)
        p = padding if padding is not None else p
        conv = nn.Conv2d(c, k, f, stride=s, padding=p)
        h2 = F.output_size(h, f, s, p)
        n = sum(q.data.size for q in conv.parameters())
        lines += ["", f"{k} filters {f}x{f}, stride {s}, pad {p} on {h}x{h}x{c}: output "
                  f"{h2}x{h2}x{k} ({_size_line(h, f, s, p)})",
                  f"  each filter {f}*{f}*{c} + 1 = {n // k}; {k} filters: {n:,} parameters"]
    if stride is not None or padding is not None:
        lines.append("  (Stride and padding change the output size, never the parameters.)")
    else:
        lines.append("  (The AlexNet lecture table's 11.6K for Conv1 forgets the 3 input "
                     "channels.)")
    return "\n".join(lines)


TOPICS = ("conv", "stride", "padding", "pooling", "stochastic-pooling", "rgb-conv", "params",
          "output-size")
# The options each topic uses; any other is refused (never silently ignored).
OPTIONS = {"conv": ("input", "kernel", "stride", "padding"),
           "stride": ("input", "kernel", "stride", "padding"),
           "padding": ("input", "kernel", "stride", "padding"),
           "output-size": ("input", "kernel", "stride", "padding"),
           "pooling": ("input", "stride"),
           "stochastic-pooling": ("input", "stride"),
           "rgb-conv": (),
           "params": ("stride", "padding")}


def _check_options(topic: str, given: dict) -> None:
    unused = [f"--{k}" for k, v in given.items() if v is not None and k not in OPTIONS[topic]]
    if unused:
        uses = ", ".join(f"--{k}" for k in OPTIONS[topic])
        raise ValueError(f"{', '.join(unused)}: not used by the {topic} topic (it takes "
                         f"{uses if uses else 'no options'}).")


def _shown_as_tables(fn):
    """``fn``'s text as :class:`cnnlab.notebook.Text`: a str that Jupyter shows with its
    matrices as HTML tables."""
    import functools

    @functools.wraps(fn)
    def text(*args, **kwargs):
        from cnnlab.notebook import Text

        return Text(fn(*args, **kwargs))
    return text


@_shown_as_tables
def explain(topic: str, input: str | None = None, kernel: str | None = None,
            stride: int | None = None, padding: int | None = None) -> str:
    """The worked example of `topic` as text (in Jupyter, its matrices as tables).

    Args:
        topic: one of :data:`TOPICS`.
        input, kernel: the user's own small matrices (``"1 0 1; 0 1 0"``).
        stride, padding: integers (default: the topic's; ``stride`` topic compares stride 1
            with ``stride``, default 2; pooling uses a 2x2 window with ``stride``, default 2).

    Each topic uses the options listed in :data:`OPTIONS`; passing another raises a
    ValueError naming the topic's options. Raises ValueError with a one-line message on a
    bad topic or matrix."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; choose one of: {', '.join(TOPICS)}.")
    _check_options(topic, dict(input=input, kernel=kernel, stride=stride, padding=padding))
    from cnnlab.config import check_range  # the one table of argument ranges

    for name, v in (("stride", stride), ("padding", padding)):
        if v is not None:  # small worked examples: --padding 100000 would ask for
            check_range(name, v)  # a 298 GiB padded matrix
    if topic == "rgb-conv":
        return _rgb()
    if topic == "params":
        return _params(stride, padding)
    pool = topic in ("pooling", "stochastic-pooling")
    img = parse_matrix(input or (LECTURE_POOL_MAP if pool else LECTURE_IMAGE), "--input")
    if pool:
        pool_fn = _pooling if topic == "pooling" else _stochastic
        return pool_fn(img, 2 if stride is None else stride)
    ker = parse_matrix(kernel or (CENTER_FILTER if topic == "stride" else LECTURE_FILTER),
                       "--kernel")
    pad = padding or 0
    if ker.shape[0] > img.shape[0] + 2 * pad or ker.shape[1] > img.shape[1] + 2 * pad:
        what = "--kernel: a" if kernel is not None else "the default"
        raise ValueError(f"{what} {ker.shape[0]}x{ker.shape[1]} filter is larger than the "
                         f"{img.shape[0]}x{img.shape[1]} input padded by {pad}"
                         + ("." if kernel is not None else "; pass a smaller --kernel or a "
                            "--padding."))
    if topic == "conv":
        return _conv(img, ker, stride or 1, pad)
    if topic == "stride":
        return _stride(img, ker, pad, 2 if stride is None else stride)
    if topic == "padding":
        return _padding(img, ker, stride or 1, padding)
    return _output_size(img, ker, stride or 1, pad,
                        user=any(v is not None for v in (input, kernel, stride, padding)))
