"""The dataset patches that excite a unit most (Zeiler & Fergus, "Visualizing and
understanding convolutional networks", ECCV 2014, Figure 2's image patches).

For each chosen channel of a layer, every image's strongest position in that channel's map
is found; the ``n`` images with the largest values give their patch: the input window the
unit sees. Its size is the layer's exact receptive field from :func:`cnnlab.analysis.summary`
(the largest field over all paths); its position is unit index x jump + an offset. The offset
(where unit 0's field is centred, which depends on the paddings) is measured once: the input
gradient of the middle unit, summed over a few random images, is non-zero only inside its
field, and the centre of that support minus (middle index x jump) is the offset. Patches are
clipped to the image where the field extends past it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.errors import UserError
from cnnlab.viz.activations import ActivationRecorder, stages
from cnnlab.viz.common import train_mode_kept


def field_geometry(model: nn.Module, layer: str, shape: tuple) -> dict:
    """{"rf": (h, w), "jump": (h, w), "offset": (y, x), "map": (h', w')} of ``layer`` for
    inputs of ``shape`` (C, H, W): unit (i, j) sees rows centre_y +- rf_h/2 with
    centre_y = offset_y + i * jump_h."""
    from cnnlab.analysis import summary

    s = summary(model, tuple(shape))
    try:
        row = s.layer(layer)
    except KeyError:  # a block shown as one row only at its own depth
        row = next((l for l in summary(model, tuple(shape), depth=layer.count(".") + 1).layers
                    if l.name == layer), None)
        if row is None:
            raise UserError(f"--layer {layer}: not in the model's summary") from None
    if len(row.output_shape) != 3 or row.jump is None:
        raise UserError(f"--layer {layer}: top patches need a layer with spatial maps, this one "
                        f"gives {row.output_shape}")
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    rf, jump = pair(row.receptive_field), pair(row.jump)
    h, w = row.output_shape[1:]
    x = torch.randn(4, *shape, requires_grad=True)
    with train_mode_kept(model), torch.enable_grad(), ActivationRecorder(model, [layer]) as rec:
        rec.outputs.clear()
        # the recorder keeps detached clones; hook again for the graph-carrying output
        held = {}
        hnd = rec.modules[layer].register_forward_hook(lambda _m, _i, o: held.setdefault("o", o))
        try:
            model(x)
        finally:
            hnd.remove()
        o = held["o"]
        (g,) = torch.autograd.grad(o[:, :, h // 2, w // 2].abs().sum(), x)
    support = g.abs().sum((0, 1)) > 0
    ys, xs = np.nonzero(support.numpy())
    cy = (ys.min() + ys.max()) / 2 if len(ys) else (shape[1] - 1) / 2
    cx = (xs.min() + xs.max()) / 2 if len(xs) else (shape[2] - 1) / 2
    return {"rf": rf, "jump": jump, "offset": (cy - (h // 2) * jump[0], cx - (w // 2) * jump[1]),
            "map": (h, w)}


def crop(image: np.ndarray, i: int, j: int, geo: dict) -> np.ndarray:
    """The (C, rf_h, rf_w) window of ``image`` (C, H, W) that unit (i, j) sees, zero outside
    the image (so that the unit's position in its field stays visible)."""
    (rh, rw), (jh, jw), (oy, ox) = geo["rf"], geo["jump"], geo["offset"]
    y0 = int(round(oy + i * jh - (rh - 1) / 2))
    x0 = int(round(ox + j * jw - (rw - 1) / 2))
    c, hh, ww = image.shape
    out = np.zeros((c, rh, rw), image.dtype)
    ys, xs = slice(max(y0, 0), min(y0 + rh, hh)), slice(max(x0, 0), min(x0 + rw, ww))
    out[:, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = image[:, ys, xs]
    return out


def top_patches(model: nn.Module, raw: np.ndarray, x: torch.Tensor, layer: str,
                channels, n: int = 8, batch_size: int = 256) -> dict:
    """For each channel in ``channels`` of ``layer``: the ``n`` images of ``x`` (normalized
    (N, C, H, W); ``raw`` its uint8 twin) whose strongest unit in that channel is strongest.
    Returns {"geometry", "channels": [{"channel", "images", "positions", "values",
    "patches" uint8 (n, C, rf_h, rf_w)}]}."""
    valid = [s for s, _ in stages(model)]
    if layer not in dict(model.named_modules()):
        raise UserError(f"--layer {layer}: no such layer; valid names: {', '.join(valid)}")
    best_v, best_pos = [], []
    with train_mode_kept(model), torch.no_grad():
        for i in range(0, len(x), batch_size):
            with ActivationRecorder(model, [layer]) as rec:
                model(x[i:i + batch_size])
            a = rec.outputs[layer]
            if a.dim() != 4:
                raise UserError(f"--layer {layer}: top patches need spatial maps, this layer "
                                f"gives {tuple(a.shape[1:])}")
            v, p = a.flatten(2).max(2)  # B x C: each image's strongest unit per channel
            best_v.append(v)
            best_pos.append(p)
    v, pos = torch.cat(best_v), torch.cat(best_pos)
    n_ch = v.shape[1]
    channels = list(range(min(8, n_ch))) if channels is None else list(channels)
    bad = [c for c in channels if not 0 <= c < n_ch]
    if bad:
        raise UserError(f"--channels {bad[0]}: {layer} has channels 0..{n_ch - 1}")
    geo = field_geometry(model, layer, tuple(x.shape[1:]))
    w = geo["map"][1]
    out = []
    for c in channels:
        top = v[:, c].topk(min(n, len(v))).indices.tolist()
        ps = [divmod(int(pos[k, c]), w) for k in top]
        out.append({"channel": c, "images": top, "positions": ps,
                    "values": [float(v[k, c]) for k in top],
                    "patches": np.stack([crop(raw[k], i, j, geo) for k, (i, j) in zip(top, ps)])})
    return {"geometry": geo, "channels": out, "layer": layer}


def patches_figure(result: dict, out, title: str = "") -> Path:
    """One row per channel, its top patches left to right (strongest first)."""
    from cnnlab.viz.common import new_figure, save_figure, to_display

    rows = result["channels"]
    n = max(len(r["patches"]) for r in rows)
    fig = new_figure(1.0 * n + 1.0, 1.05 * len(rows) + 0.9)
    axes = np.array(fig.subplots(len(rows), n, squeeze=False))
    for r, row in enumerate(rows):
        disp = to_display(row["patches"])
        for j in range(n):
            ax = axes[r, j]
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(disp):
                ax.imshow(disp[j], interpolation="nearest")
                ax.set_title(f"{row['values'][j]:.2g}", fontsize=6, pad=2)
        axes[r, 0].set_ylabel(f"ch {row['channel']}", fontsize=8, rotation=0, ha="right",
                              va="center")
    g = result["geometry"]
    fig.suptitle(title or f"{result['layer']}: the image patches that excite each channel "
                 f"most\n(receptive field {g['rf'][0]}x{g['rf'][1]}, jump {g['jump'][0]}; "
                 f"number: the unit's activation)", fontsize=9)
    return save_figure(fig, out)
