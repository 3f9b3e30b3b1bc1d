"""Fine-tuning: start from other weights (``--init``, ``--pretrained``), freeze layers
(``--freeze``).

Sources (:func:`load_source`): a cnnlab checkpoint or run directory (either engine), a
torchvision state dict (``.pth``/``.pt``, read with ``torch.load(weights_only=True)``, which
never unpickles code; cnnlab's ResNet and VGG keep torchvision's key names), or any
``.safetensors`` file. :func:`adapt` aligns it with the new model key by key (nanoGPT's
``from_pretrained`` habit) and reports matched / missing / unexpected / mismatched keys:

- the classifier head (``model.head_names()``) is left at its fresh initialisation when the
  class count or the class names differ (what ``reset_classifier`` gives);
- a 3-channel first convolution on 1-channel data is summed over its input channels (a grey
  image replicated to RGB gives the same response); a 1-channel one on 3-channel data is
  replicated and divided by 3 (as timm's ``adapt_input_conv`` does).

Freezing (Yosinski et al. 2014: how transferable are features): ``backbone`` trains the head
only (a linear probe on fixed features); ``until:LAYER`` freezes every parameter registered
up to and including module LAYER. Frozen batch-norm layers also keep their running
statistics (they run in eval mode), so a frozen layer computes exactly what it did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.errors import UserError


def load_source(source: str) -> tuple[dict, dict]:
    """(state dict of numpy arrays, cnnlab metadata or {}) of ``--init SOURCE``."""
    p = Path(source).expanduser()
    if p.suffix in (".pth", ".pt"):
        return _load_pth(p, source), {}
    if p.suffix == ".safetensors" or p.is_dir():
        from cnnlab.checkpoint import load_checkpoint, read_meta, resolve_checkpoint

        try:
            path = resolve_checkpoint(p)
        except UserError as e:
            raise UserError(f"--init {source}: {e}") from e
        try:
            read_meta(path)
        except UserError:  # a plain safetensors file, not written by cnnlab
            return _load_plain_safetensors(path, source), {}
        try:
            return load_checkpoint(path)
        except UserError as e:
            raise UserError(f"--init {source}: {e}") from e
    raise UserError(f"--init {source}: expected a cnnlab checkpoint or run directory, a .pth "
                    f"state dict or a .safetensors file")


def _load_pth(p: Path, source: str) -> dict:
    import torch

    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as e:
        raise UserError(f"--init {source}: cannot read it as a state dict "
                        f"({str(e).splitlines()[0]})") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):  # common wrappers of a state dict
            if isinstance(obj.get(key), dict):
                obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"--init {source}: expected a state dict (names -> tensors)")
    return {k.removeprefix("module."): v.float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in obj.items()}


def _load_plain_safetensors(path: Path, source: str) -> dict:
    from safetensors import SafetensorError
    from safetensors.numpy import load as load_bytes

    try:
        return load_bytes(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"--init {source}: not a readable .safetensors file ({e})") from e


def adapt(source: dict, target: dict, head_keys: set[str], replace_head: bool) -> tuple[dict, dict]:
    """(weights to load, report) aligning ``source`` with ``target`` (name -> array shapes).

    The report lists matched, missing (in the target only), unexpected (in the source only)
    and mismatched (same name, other shape) keys, plus the head and first-conv decisions.
    """
    load, rep = {}, {"matched": [], "missing": [], "unexpected": [], "mismatched": [],
                     "head": "kept", "first_conv": None}
    first_conv = next((k for k, v in target.items() if np.ndim(v) == 4), None)
    for k, tv in target.items():
        if k not in source:
            rep["missing"].append(k)
            continue
        sv, tshape = np.asarray(source[k]), tuple(np.shape(tv))
        if k in head_keys and (replace_head or sv.shape != tshape):
            rep["head"] = "replaced"
            continue
        if sv.shape != tshape and k == first_conv and _channels_differ(sv.shape, tshape):
            sv, how = _adapt_first_conv(sv, tshape[1])
            rep["first_conv"] = f"{k}: {how}"
        if sv.shape != tshape:
            rep["mismatched"].append(f"{k} {sv.shape}->{tshape}")
            continue
        load[k] = sv.astype(np.asarray(tv).dtype) if sv.dtype != np.asarray(tv).dtype else sv
        rep["matched"].append(k)
    rep["unexpected"] = [k for k in source if k not in target]
    return load, rep


def _channels_differ(s: tuple, t: tuple) -> bool:
    return len(s) == 4 and s[0] == t[0] and s[2:] == t[2:] and {s[1], t[1]} == {1, 3}


def _adapt_first_conv(w: np.ndarray, in_channels: int) -> tuple[np.ndarray, str]:
    if in_channels == 1:
        return w.sum(1, keepdims=True), "3 -> 1 input channels (weights summed)"
    return np.repeat(w, in_channels, 1) / in_channels, \
        f"1 -> {in_channels} input channels (weights replicated / {in_channels})"


def format_report(source: str, rep: dict, n_values: int) -> str:
    """The short table printed at the start of a fine-tuning run."""
    def names(ks):
        return (": " + ", ".join(ks[:3]) + (", ..." if len(ks) > 3 else "")) if ks else ""
    lines = [f"init from {source}",
             f"  matched     {len(rep['matched']):4d} tensors ({n_values:,} values)",
             f"  missing     {len(rep['missing']):4d}{names(rep['missing'])}",
             f"  unexpected  {len(rep['unexpected']):4d}{names(rep['unexpected'])}",
             f"  mismatched  {len(rep['mismatched']):4d}{names(rep['mismatched'])}",
             f"  head        {rep['head']}"]
    if rep["first_conv"]:
        lines.append(f"  first conv  {rep['first_conv']}")
    return "\n".join(lines)


def init_weights(cfg, target: dict, head_keys: set[str], classes: list[str]):
    """(weights to load, report, printable table) for ``cfg.init``; refuses a source that
    matches nothing."""
    source, meta = load_source(cfg.init)
    src_classes = meta.get("classes")
    replace_head = src_classes is not None and list(src_classes) != list(classes)
    load, rep = adapt(source, target, head_keys, replace_head)
    if not load:
        raise UserError(f"--init {cfg.init}: none of its {len(source)} tensors match model "
                        f"{cfg.model!r} (e.g. {', '.join(list(source)[:3])} vs "
                        f"{', '.join(list(target)[:3])})")
    rep["source"] = str(cfg.init)
    return load, rep, format_report(cfg.init, rep, sum(int(np.size(v)) for v in load.values()))


def init_from_pretrained(cfg, target: dict, head_keys: set[str], classes: list[str]):
    """(weights to load, report, printable table) for ``--pretrained``: torchvision's ImageNet
    weight set ``cfg.pretrained`` of ``cfg.model`` (:mod:`cnnlab.pretrained`), aligned by
    :func:`adapt`; the head is replaced unless the classes are ImageNet's 1,000 in order."""
    from cnnlab import pretrained as PT

    ws = PT.weight_set(cfg.model, cfg.pretrained)
    sd = PT.state_dict(cfg.model, ws.name, progress=cfg.progress != "none")
    source = {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in sd.items()}
    replace_head = list(classes) != PT.class_names()
    load, rep = adapt(source, target, head_keys, replace_head)
    if not load:
        raise UserError(f"--pretrained {ws.key}: none of its {len(source)} tensors match model "
                        f"{cfg.model!r} (built with --model-kwargs {cfg.model_kwargs})")
    rep["source"] = f"pretrained:{ws.key}"
    rep["pretrained"] = PT.record(ws)
    label = f"{ws.key} ({ws.file}, ImageNet top-1 {ws.top1:.2f}%)"
    return load, rep, format_report(label, rep, sum(int(np.size(v)) for v in load.values()))


# ---------------------------------------------------------------------------- freezing
def frozen_names(model, freeze: str | None, head_keys: set[str]) -> set[str]:
    """Parameter names ``--freeze`` fixes (torch model): ``backbone`` or ``until:LAYER``."""
    if not freeze:
        return set()
    names = [n for n, _ in model.named_parameters()]
    if freeze == "backbone":
        return {n for n in names if n not in head_keys}
    if freeze.startswith("until:"):
        layer = freeze.split(":", 1)[1]
        modules = [n for n, _ in model.named_modules() if n]
        if layer not in modules:
            top = [n for n in modules if n.count(".") <= 1]
            raise UserError(f"--freeze {freeze}: model {type(model).__name__} has no layer "
                            f"{layer!r}; its layers: {', '.join(top[:40])}")
        inside = [i for i, n in enumerate(names) if n.startswith(layer + ".")]
        return set(names[:max(inside) + 1]) if inside else set()
    raise UserError(f"--freeze {freeze}: expected backbone or until:LAYER")


def apply_freeze(model, frozen: set[str]) -> None:
    """requires_grad off for ``frozen`` (on for the rest)."""
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)


def frozen_norm_eval(model) -> None:
    """Batch-norm layers whose parameters are all frozen run in eval mode: their running
    statistics stay what the source learnt (call after ``model.train()``)."""
    from torch import nn

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            ps = list(m.parameters(recurse=False))
            if ps and not any(p.requires_grad for p in ps):
                m.eval()


def check_finetune_config(cfg) -> None:
    if cfg.pretrained and cfg.init:
        raise UserError(f"--pretrained {cfg.pretrained} and --init {cfg.init}: give one source "
                        f"of initial weights")
    if cfg.unfreeze_at and not cfg.freeze:
        raise UserError(f"--unfreeze-at {cfg.unfreeze_at}: needs --freeze")
    if cfg.unfreeze_at and not 1 <= cfg.unfreeze_at <= cfg.epochs:
        raise UserError(f"--unfreeze-at {cfg.unfreeze_at}: expected an epoch from 1 to "
                        f"--epochs {cfg.epochs}")
    if not cfg.lr_backbone >= 0 or cfg.lr_backbone > 1e6:
        raise UserError(f"--lr-backbone {cfg.lr_backbone}: expected a factor >= 0")
    if cfg.teacher is not None:
        if not cfg.kd_temperature > 0 or cfg.kd_temperature == float("inf"):
            raise UserError(f"--kd-temperature {cfg.kd_temperature}: expected a temperature > 0")
        if not 0 <= cfg.kd_alpha <= 1:
            raise UserError(f"--kd-alpha {cfg.kd_alpha}: expected a weight in [0, 1]")
