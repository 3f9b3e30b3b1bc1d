"""Checkpoints: safetensors weights + a JSON sidecar, written atomically, never unpickled.

A checkpoint ``checkpoints/last`` is:
- ``last.safetensors``: the model's state dict (torch's key names, so it loads into either
  engine and into any safetensors reader). Its header metadata also holds the full JSON
  metadata under ``"cnnlab"``: one file, one atomic rename, so weights and metadata never
  disagree.
- ``last.json``: the same metadata, human-readable (model name and constructor arguments,
  class names, input spec, epoch, metrics, config, cnnlab version, and a reference to the
  training-state file).
- ``state-e0005-s00001234.safetensors``: training state needed to resume exactly
  (optimizer, scheduler, grad scaler tensors; RNG states), referenced by name and sha256.
  It is written *before* the weights, under a name unique to the step, and older ones are
  removed only after the new weights are committed: a crash at any point leaves a complete
  checkpoint.

Non-tensor parts of the training state (optimizer hyper-parameters, step counters) go into
the JSON; tensors go into safetensors. Nothing is ever loaded with pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load_bytes_np
from safetensors.numpy import save as st_save_np

from cnnlab import __version__
from cnnlab.errors import UserError
from cnnlab.utils import atomic_write

FORMAT = "cnnlab-checkpoint/1"


def _to_numpy(v) -> np.ndarray:
    if isinstance(v, np.ndarray):
        return np.ascontiguousarray(v)
    import torch

    if isinstance(v, torch.Tensor):
        t = v.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    return np.asarray(v)


def flatten_state(obj, prefix: str = "") -> tuple[dict, object]:
    """Split a nested state (dicts/lists of tensors and scalars) into (tensors, json_skeleton).

    Tensors are replaced in the skeleton by ``{"__tensor__": key}``; ``unflatten_state``
    reverses it. Used for optimizer/scheduler states, which torch keeps as nested dicts.
    """
    tensors: dict[str, np.ndarray] = {}

    def walk(o, path):
        if isinstance(o, dict):
            return {"__dict__": [[walk(k, f"{path}.k{i}"), walk(v, f"{path}.{i}")]
                                 for i, (k, v) in enumerate(o.items())]}
        if isinstance(o, (list, tuple)):
            return {"__list__" if isinstance(o, list) else "__tuple__":
                    [walk(v, f"{path}.{i}") for i, v in enumerate(o)]}
        if hasattr(o, "shape") and hasattr(o, "dtype") and not isinstance(o, (int, float)):
            tensors[path] = _to_numpy(o)
            return {"__tensor__": path, "torch": type(o).__module__.startswith("torch")}
        if isinstance(o, (np.integer, np.floating)):
            return o.item()
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} in a checkpoint state")

    return tensors, walk(obj, prefix or "s")


def unflatten_state(skeleton, tensors: dict, as_torch: bool = True):
    import torch

    def walk(o):
        if isinstance(o, dict):
            if "__dict__" in o:
                return {walk(k): walk(v) for k, v in o["__dict__"]}
            if "__list__" in o:
                return [walk(v) for v in o["__list__"]]
            if "__tuple__" in o:
                return tuple(walk(v) for v in o["__tuple__"])
            if "__tensor__" in o:
                a = tensors[o["__tensor__"]]
                return torch.from_numpy(a.copy()) if (as_torch and o.get("torch")) else a
        return o

    return walk(skeleton)


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def save_checkpoint(path: Path | str, state_dict: dict, meta: dict,
                    train_state: dict | None = None) -> Path:
    """Save ``state_dict`` (torch tensors or numpy arrays) at ``path`` (``.../last``).

    ``meta`` must hold ``model``, ``model_kwargs``, ``classes`` and ``input`` (the input
    spec: channels, size, mean, std); ``epoch``, ``step``, ``metrics``, ``config`` are usual.
    ``train_state`` (optional) is a nested dict of tensors and scalars for exact resume.
    Returns the path of the weights file.
    """
    path = Path(path)
    stem = path.name.removesuffix(".safetensors")
    folder = path.parent
    meta = {"format": FORMAT, "cnnlab_version": __version__, **meta}
    if train_state is not None:
        tensors, skeleton = flatten_state(train_state)
        blob = st_save_np(tensors) if tensors else st_save_np({"_empty": np.zeros(0)})
        name = f"state-e{meta.get('epoch', 0):04d}-s{meta.get('step', 0):08d}.safetensors"
        with atomic_write(folder / name) as f:
            f.write(blob)
        meta["train_state"] = {"file": name, "sha256": _sha256(blob), "skeleton": skeleton}
    weights = {k: _to_numpy(v) for k, v in state_dict.items()}
    text = json.dumps(meta, indent=2, default=_json_default)
    blob = st_save_np(weights, metadata={"cnnlab": text})
    with atomic_write(folder / f"{stem}.safetensors") as f:
        f.write(blob)
    with atomic_write(folder / f"{stem}.json", "w") as f:
        f.write(text)
    _prune_states(folder)
    return folder / f"{stem}.safetensors"


def _json_default(o):
    if isinstance(o, (np.integer, np.floating)):
        return o.item()
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _prune_states(folder: Path) -> None:
    """Remove training-state files no checkpoint in ``folder`` refers to any more."""
    used = set()
    for w in folder.glob("*.safetensors"):
        if w.name.startswith("state-"):
            continue
        try:
            ts = read_meta(w).get("train_state")
        except UserError:
            continue
        if ts:
            used.add(ts["file"])
    for s in folder.glob("state-*.safetensors"):
        if s.name not in used:
            s.unlink(missing_ok=True)


def resolve_checkpoint(path: Path | str) -> Path:
    """Accept a weights file, its ``.json`` sidecar, a checkpoint stem or a run directory."""
    p = Path(path)
    if p.is_dir():
        for cand in (p / "checkpoints" / "best.safetensors", p / "checkpoints" / "last.safetensors",
                     p / "best.safetensors", p / "last.safetensors"):
            if cand.exists():
                return cand
        raise UserError(f"{p}: no checkpoint found (expected {p}/checkpoints/best.safetensors)")
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix != ".safetensors" and not p.exists():
        p = p.with_name(p.name + ".safetensors")
    if not p.exists():
        raise UserError(f"{path}: no such checkpoint (expected a .safetensors file, its .json "
                        f"sidecar or a run directory)")
    return p


MAX_HEADER = 100_000_000  # bytes; safetensors' own limit


def _header(p: Path) -> dict:
    """The safetensors JSON header of ``p`` as a dict (ValueError when it is not one)."""
    with open(p, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n < MAX_HEADER:
            raise ValueError(f"header size {n} out of range")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except RecursionError:  # `[[[[...]]]]` nested deeper than Python's stack
        raise ValueError("header nested too deeply") from None
    if not isinstance(header, dict):
        raise ValueError(f"header is a JSON {type(header).__name__}, not an object")
    md = header.get("__metadata__", {})
    if not isinstance(md, dict) or not all(isinstance(v, str) for v in md.values()):
        raise ValueError("header __metadata__ is not a mapping of strings")
    return md


def read_meta(path: Path | str) -> dict:
    """The metadata stored in a checkpoint's header (raises UserError if not a cnnlab one).

    The metadata is checked (:func:`check_meta`) so that a damaged or edited checkpoint is
    reported here, naming the file, rather than as a crash far from it.
    """
    p = Path(path)
    try:
        text = _header(p).get("cnnlab")
        if text is None:
            raise ValueError("no cnnlab metadata")
        meta = json.loads(text)
    except RecursionError:
        raise UserError(f"{p}: not a cnnlab checkpoint (metadata nested too deeply)") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not a cnnlab checkpoint (expected a .safetensors file written by "
                        f"cnnlab; {e})") from e
    if not isinstance(meta, dict):
        raise UserError(f"{p}: corrupt checkpoint metadata (a JSON {type(meta).__name__}, "
                        f"expected an object)")
    if meta.get("format") != FORMAT:
        raise UserError(f"{p}: unsupported checkpoint format {meta.get('format')!r} "
                        f"(expected {FORMAT})")
    check_meta(meta, p)
    return meta


def _bad(p, key: str, found, expected: str) -> UserError:
    shown = repr(found)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return UserError(f"{p}: corrupt checkpoint metadata: {key} is {shown}, expected {expected}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_meta(meta: dict, p: Path | str) -> None:
    """Types and sizes of what loading a model relies on: ``model`` (a name),
    ``model_kwargs`` (an object), ``classes`` (names, at least 1), ``input`` (channels 1 or 3,
    size [H, W] of 1..65536, mean/std one number per channel, std > 0), ``epoch``.
    Raises UserError naming ``p``, the key, what was found and what was expected."""
    if not isinstance(meta.get("model"), str) or not meta["model"]:
        raise _bad(p, "model", meta.get("model"), "a model name")
    if not isinstance(meta.get("model_kwargs", {}), dict):
        raise _bad(p, "model_kwargs", meta["model_kwargs"], "an object of constructor arguments")
    classes = meta.get("classes")
    if (not isinstance(classes, list) or not classes
            or not all(isinstance(c, str) for c in classes)):
        raise _bad(p, "classes", classes, "a non-empty list of class names")
    spec = meta.get("input")
    if not isinstance(spec, dict):
        raise _bad(p, "input", spec, "the input spec {channels, size, mean, std}")
    c, size = spec.get("channels"), spec.get("size")
    if c not in (1, 3) or not _is_int(c):
        raise _bad(p, "input.channels", c, "1 or 3")
    if (not isinstance(size, list) or len(size) != 2
            or not all(_is_int(v) and 1 <= v <= 65536 for v in size)):
        raise _bad(p, "input.size", size, "[height, width], each 1 to 65536")
    for key in ("mean", "std"):
        v = spec.get(key)
        if (not isinstance(v, list) or len(v) != c or not all(_is_num(x) for x in v)
                or (key == "std" and not all(x > 0 for x in v))):
            raise _bad(p, f"input.{key}", v, f"{c} finite number(s)"
                       + (", each > 0" if key == "std" else ""))
    if "epoch" in meta and not _is_int(meta["epoch"]):
        raise _bad(p, "epoch", meta["epoch"], "an integer")


def load_checkpoint(path: Path | str, with_train_state: bool = False):
    """Load -> (state_dict of numpy arrays, meta[, train_state]). Never unpickles."""
    p = resolve_checkpoint(path)
    meta = read_meta(p)
    try:
        weights = st_load_bytes_np(p.read_bytes())
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{p}: corrupt checkpoint weights ({e})") from e
    if not with_train_state:
        return weights, meta
    ts = meta.get("train_state")
    if not ts:
        raise UserError(f"{p}: checkpoint holds no training state, cannot resume from it")
    sp = p.parent / ts["file"]
    try:
        blob = sp.read_bytes()
    except OSError as e:
        raise UserError(f"{sp}: training state referenced by {p.name} is missing ({e})") from e
    if _sha256(blob) != ts["sha256"]:
        raise UserError(f"{sp}: training state does not match its checksum in {p.name}")
    return weights, meta, unflatten_state(ts["skeleton"], st_load_bytes_np(blob))
