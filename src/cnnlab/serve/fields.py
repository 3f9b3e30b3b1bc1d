"""Where one unit comes from and where it goes: its exact receptive field in every earlier
column of the overview, back to the input, and the units of the next column it feeds.

A box is ``[top, left, bottom, right]`` (inclusive) in a column's map. Going back through a
layer maps an output box to the input box it reads:

- a window (conv, pooling; kernel k, stride s, padding p, dilation d):
  ``[top s - p, bottom s - p + (k - 1) d]`` per axis, clipped to the map (padding is read
  from no input);
- adaptive average pooling: torch's windows ``floor(i n / m) .. ceil((i + 1) n / m) - 1``;
- a pointwise layer (ReLU, batch norm, LRN, dropout): the same box;
- a block: its inner layers composed in order (a ``Sequential``, a residual block's main
  path), the union over paths (a residual block's shortcut, GoogLeNet's four branches);
- flatten, fully connected layers, global pooling: the whole map.

For every unit away from the borders the box's side equals the receptive field of
:func:`cnnlab.analysis.summary` (the tests check it); at the borders it is the part inside
the image.
"""

from __future__ import annotations

from torch import nn

from cnnlab.serve.blocks import is_basic_conv, is_inception, is_residual

POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.LocalResponseNorm, nn.Dropout, nn.Identity)


def _axis(lo: int, hi: int, k: int, s: int, p: int, d: int, n: int) -> tuple[int, int]:
    return max(0, lo * s - p), min(n - 1, hi * s - p + (k - 1) * d)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def back(module: nn.Module, box, in_hw) -> list | None:
    """The box of ``module``'s input (spatial size ``in_hw``) that output ``box`` reads;
    None when the module is not one this module knows (the field stops there)."""
    top, left, bottom, right = box
    H, W = in_hw
    if isinstance(module, POINTWISE) or module is None:
        return [top, left, min(bottom, H - 1), min(right, W - 1)]
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
        p, d = _pair(module.padding), _pair(getattr(module, "dilation", 1))
        if isinstance(module.padding, str):  # "same"/"valid" convolutions
            p = tuple(dd * (kk - 1) // 2 for dd, kk in zip(d, k)) if module.padding == "same" \
                else (0, 0)
        t, b = _axis(top, bottom, k[0], s[0], p[0], d[0], H)
        lft, r = _axis(left, right, k[1], s[1], p[1], d[1], W)
        return [t, lft, b, r]
    if isinstance(module, nn.AdaptiveAvgPool2d):
        m = _pair(module.output_size)
        rows = ((top * H) // m[0], -((-(bottom + 1) * H) // m[0]) - 1)
        cols = ((left * W) // m[1], -((-(right + 1) * W) // m[1]) - 1)
        return [rows[0], cols[0], rows[1], cols[1]]
    return None


def block_back(module: nn.Module, box, in_hw, out_hw) -> list | None:
    """``back`` for a block: a ``Sequential`` composed, a residual block's main path united
    with its shortcut, an inception module's branches united."""
    if is_basic_conv(module):
        return back(module.conv, box, in_hw)
    if isinstance(module, nn.Sequential):
        return _chain(list(module), box, in_hw, out_hw)
    if is_residual(module):
        main = [module.conv1, module.conv2] + ([module.conv3] if hasattr(module, "conv3") else [])
        boxes = [_chain(main, box, in_hw, out_hw)]
        sc = getattr(module, "shortcut", None) or getattr(module, "downsample", None)
        if sc is not None:
            stride = getattr(sc, "stride", None) or _first_stride(sc)
            boxes.append(_strided(box, stride, in_hw))
        elif not hasattr(module, "shortcut"):  # torchvision-style block, identity shortcut
            boxes.append(_strided(box, 1, in_hw))
        return _union(boxes)
    if is_inception(module):
        branches = [getattr(module, f"branch{k}") for k in range(1, 5)]
        return _union([_chain(list(b) if isinstance(b, nn.Sequential) else [b], box, in_hw,
                              out_hw) for b in branches])
    return back(module, box, in_hw)


def _first_stride(m):
    for x in m.modules():
        if isinstance(x, nn.Conv2d):
            return _pair(x.stride)[0]
    return 1


def _strided(box, s, in_hw):
    s = _pair(s)[0] if not isinstance(s, int) else s
    H, W = in_hw
    return [box[0] * s, box[1] * s, min(H - 1, box[2] * s), min(W - 1, box[3] * s)]


def _union(boxes):
    if any(b is None for b in boxes):
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


def _chain(mods, box, in_hw, out_hw):
    """Back through ``mods`` (run in this order) from the last; the inner sizes are taken
    as the input's for stride-1 layers and scaled by each layer's stride otherwise."""
    sizes = [tuple(in_hw)]
    for m in mods:  # forward: each layer's output size, from the kernel geometry
        h, w = sizes[-1]
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
            p = _pair(m.padding) if not isinstance(m.padding, str) else (
                tuple((kk - 1) // 2 for kk in k) if m.padding == "same" else (0, 0))
            ceil = getattr(m, "ceil_mode", False)
            f = (lambda n, kk, ss, pp: -(-(n + 2 * pp - kk) // ss) + 1) if ceil else \
                (lambda n, kk, ss, pp: (n + 2 * pp - kk) // ss + 1)
            sizes.append((f(h, k[0], s[0], p[0]), f(w, k[1], s[1], p[1])))
        elif is_basic_conv(m) or isinstance(m, nn.Sequential) or is_residual(m) or \
                is_inception(m):
            sizes.append(_size_through(m, (h, w)))
        else:
            sizes.append((h, w))
    for m, hw in zip(reversed(mods), reversed(sizes[:-1])):
        if box is None:
            return None
        box = block_back(m, box, hw, None) if not isinstance(m, POINTWISE) and \
            list(m.children()) else back(m, box, hw)
    return box


def _size_through(m, hw):
    """Output size of a block from its strided layers (every block here keeps or divides)."""
    h, w = hw
    main = [x for x in m.modules() if isinstance(x, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    if is_inception(m):
        return (h, w)
    if is_residual(m):
        main = [m.conv1, m.conv2] + ([m.conv3] if hasattr(m, "conv3") else [])
    for x in main:
        k, s = _pair(x.kernel_size), _pair(x.stride or x.kernel_size)
        p = _pair(x.padding) if not isinstance(x.padding, str) else (0, 0)
        h, w = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
    return (h, w)


def unit_fields(model: nn.Module, columns: list[str], shapes: dict, in_shapes: dict,
                input_shape, layer: str, y: int, x: int) -> dict:
    """The unit (y, x) of column ``layer``: its box in every earlier column (and
    ``"input"``), and the box of units it feeds in the next column. ``shapes``/``in_shapes``:
    each column's output/input shape (C, H, W) or (F,)."""
    i = columns.index(layer)
    out: dict = {"boxes": {}, "feeds": None}
    shape = shapes[layer]
    if len(shape) != 3:
        return out
    box = [y, x, y, x]
    for j in range(i, -1, -1):
        name = columns[j]
        m = model.get_submodule(name)
        hw = tuple(in_shapes[name][-2:]) if len(in_shapes[name]) == 3 else None
        if hw is None:
            break
        box = block_back(m, box, hw, shapes[name][-2:]) if list(m.children()) else \
            back(m, box, hw)
        if box is None:
            break
        out["boxes"][columns[j - 1] if j > 0 else "input"] = box
    if i + 1 < len(columns):
        nxt = columns[i + 1]
        nshape = shapes[nxt]
        if len(nshape) == 3:
            m = model.get_submodule(nxt)
            H, W = nshape[1:]
            rows = [r for r in range(H) if _reads(m, [r, 0, r, 0], shape[1:], y, axis=0)]
            cols = [c for c in range(W) if _reads(m, [0, c, 0, c], shape[1:], x, axis=1)]
            if rows and cols:
                out["feeds"] = {"column": nxt, "box": [rows[0], cols[0], rows[-1], cols[-1]]}
        else:
            out["feeds"] = {"column": nxt, "all": True}
    return out


def _reads(m, box, in_hw, v, axis):
    b = block_back(m, box, in_hw, None) if list(m.children()) else back(m, box, in_hw)
    return b is not None and b[axis] <= v <= b[axis + 2]
