"""One served checkpoint: its model, metadata, summary, training curves, test samples, and the
explorer's computations for one input image.

What the page shows is computed by the library, not here: preprocessing by
:mod:`cnnlab.inference` and the trainer's normaliser, the summary by
:func:`cnnlab.analysis.summary`, activation maps by :func:`cnnlab.viz.activations.
capture_activations`, Grad-CAM by :func:`cnnlab.viz.gradcam.grad_cam`, unit detail by the
NumPy engine (:mod:`cnnlab.serve.units`). This module only packs the results for JSON.

Concurrency: a torch module with hooks is shared mutable state (a hook registered by one
request would record another request's forward pass). So no model is shared: each request
borrows a replica of its own from a :class:`ModelPool` (deep copies of the loaded model, at
most ``replicas`` of them, made on demand) and gives it back; requests beyond that wait. The
loaded model itself is never lent, only copied and read (names, weights for unit detail).
"""

from __future__ import annotations

import base64
import copy
import csv
import json
import math
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import UserError

PAGE = 16  # channels of a stage sent per page (wide layers are paged) ...
PAGE_VALUES = 1 << 18  # ... fewer for large maps: at most ~1 MiB of float32 per stage


def b64(a) -> str:
    """A float array as base64 of little-endian float32 (the page decodes it into a
    ``Float32Array``): a quarter of the size of JSON numbers, and no parsing."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode()


def _maps(t: torch.Tensor) -> np.ndarray:
    """One image's activation: (C, H, W), or (1, 1, F) for a vector."""
    a = t[0].float().cpu().numpy()
    return a[None, None, :] if a.ndim == 1 else a.reshape(a.shape[0], a.shape[1], -1)


class Explorer:
    """A checkpoint loaded once at start-up, served by id (never by a path from a request)."""

    def __init__(self, ident: str, path: str | Path, replicas: int = 2, loaded=None):
        """``loaded``: (model, meta) already built (a pretrained model; ``path`` then only
        names it), instead of the checkpoint at ``path``."""
        from cnnlab.inference import load_model, resolve_checkpoint
        from cnnlab.preprocess import check_spec

        self.id = ident
        if loaded is None:
            self.path = resolve_checkpoint(path)
            self.model, self.meta = load_model(self.path)
        else:
            self.path, (self.model, self.meta) = Path(path), loaded
        self.spec = check_spec(self.meta["input"], f"{self.path}: input spec")
        self.classes = list(self.meta["classes"])
        self.model.eval()
        size = (1, self.spec["channels"], *self.spec["size"])
        self.stages = view_stages(self.model, torch.zeros(size))
        self.shapes, self.in_shapes = column_shapes(self.model, self.stages, torch.zeros(size))
        self.pool = ModelPool(self.model, replicas)
        self._summary_lock = threading.Lock()  # each computed once, on first use
        self._samples_lock = threading.Lock()
        self._summary = None
        self._samples = None
        run = self.path.parent.parent if self.path.parent.name == "checkpoints" else None
        self.run_dir = run if run is not None and (run / "metrics.csv").exists() else None

    # ---- what the model is ------------------------------------------------------------------
    def info(self) -> dict:
        m = self.meta
        metrics = m.get("metrics") or {}
        final = {}
        if self.run_dir is not None and (self.run_dir / "final.json").exists():
            try:
                final = json.loads((self.run_dir / "final.json").read_text())
            except (OSError, ValueError):  # a run still being written
                final = {}
        return {"id": self.id, "name": self.run_dir.name if self.run_dir else self.path.stem,
                "checkpoint": self.path.name, "model": m["model"],
                "model_kwargs": m.get("model_kwargs", {}), "classes": self.classes,
                "input": self.spec, "data": (m.get("config") or {}).get("data", m.get("data")),
                "epoch": m.get("epoch"),
                "test_accuracy": final.get("test_accuracy", metrics.get("test_acc")),
                "val_accuracy": final.get("val_accuracy", metrics.get("val_acc"))}

    def details(self) -> dict:
        from cnnlab.analysis import summary

        with self._summary_lock:
            if self._summary is None:
                size = (self.spec["channels"], *self.spec["size"])
                try:
                    with self.pool.borrow() as model:
                        self._summary = summary(model, size).to_dict()
                    self._summary["model"] = self.meta["model"]
                except UserError as e:  # the explorer works without the table
                    self._summary = {"error": str(e)}
        return {**self.info(), "summary": self._summary, "curves": self.curves(),
                "stages": list(self.stages)}

    def curves(self) -> dict:
        """metrics.csv of the run as columns ({"epoch": [...], "test_acc": [...], ...})."""
        if self.run_dir is None:
            return {}
        with open(self.run_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        cols: dict[str, list] = {}
        for r in rows:
            for k, v in r.items():
                try:
                    cols.setdefault(k, []).append(float(v) if v not in ("", None) else None)
                except ValueError:
                    cols.setdefault(k, []).append(None)
        return cols

    # ---- test samples -----------------------------------------------------------------------
    def samples(self):
        """The test split of the checkpoint's dataset (loaded on first use)."""
        from cnnlab.config import run_test_split
        from cnnlab.data import ImageData, load_data
        from cnnlab.data.resize import read_as_trained

        if self.meta.get("pretrained"):
            raise UserError(f"test samples of {self.id}: a pretrained ImageNet model has no "
                            f"test split here; upload or draw an image")
        with self._samples_lock:
            if self._samples is None:
                cfg = self.meta.get("config") or {}
                source = cfg.get("data", "digits")
                split = run_test_split(cfg)
                try:
                    test = load_data(source, val_split=split, seed=cfg.get("seed", 0),
                                     progress=False, **read_as_trained(self.meta["input"])).test
                except (UserError, OSError) as e:
                    raise UserError(f"test samples of {self.id}: dataset {source} cannot be "
                                    f"loaded ({e})") from e
                if not isinstance(test, ImageData):
                    raise UserError(f"test samples of {self.id}: {source} is streamed from "
                                    f"disk; pick an image file instead")
                self._samples = test
        return self._samples

    def sample(self, index: int) -> tuple[np.ndarray, int]:
        test = self.samples()
        if not 0 <= index < len(test):
            raise IndexError(f"sample {index}: expected 0..{len(test) - 1}")
        return test.images[index], int(test.labels[index])

    # ---- one image --------------------------------------------------------------------------
    def tensor(self, image: np.ndarray) -> torch.Tensor:
        """uint8 (C, H, W) -> normalized float (1, C, H, W), as ``cnnlab predict`` does
        (:func:`cnnlab.preprocess.normalize`)."""
        from cnnlab.preprocess import normalize

        return torch.from_numpy(normalize(image[None], self.spec))

    def explore(self, image: np.ndarray, target: int | None = None,
                offsets: dict | None = None, layers: list[str] | None = None,
                notes: dict | None = None, cam_layer: str | None = None) -> dict:
        """Everything the page shows for one uint8 image (C, H, W): the input as the model
        sees it, prediction with the softmax detail, the maps of every stage (a page of
        ``PAGE`` channels, fewer for large maps, from ``offsets[stage]``), Grad-CAM for ``target`` (default: the
        predicted class). ``notes``: the decoder's mismatch notes, shown as warnings.
        ``cam_layer``: Grad-CAM's layer (default: the last conv). ``server_ms`` is the time
        of the whole update."""
        from cnnlab.training.evaluation import split_output
        from cnnlab.viz.activations import capture_activations
        from cnnlab.viz.gradcam import GradCAM

        t0 = time.perf_counter()
        x = self.tensor(image)
        if target is not None and not 0 <= target < len(self.classes):
            raise UserError(f"target {target}: expected a class index 0..{len(self.classes) - 1}")
        with self.pool.borrow() as model:
            with torch.no_grad():
                logits = split_output(model(x))[0]
            acts = capture_activations(model, x, layers or self.stages)
            cam, cam_error, native = None, None, {}
            try:
                with GradCAM(model, cam_layer, example=x) as gc:
                    h = gc.module.register_forward_hook(  # the map's own size (None: kept)
                        lambda _m, _i, o: native.setdefault("shape", list(o.shape[2:])) and None)
                    try:
                        cam, cls = gc(x, target)
                    finally:
                        h.remove()
                    cam_layer = gc.layer
            except UserError as e:  # the MLP and the linear model have no spatial layer
                cam_error = str(e)
        out = {"input": {**self._input(image, x), "warnings": list(notes or {})},
               "prediction": softmax_detail(logits[0].double().numpy(), self.classes),
               "stages": [self._stage(n, t, (offsets or {}).get(n, 0)) for n, t in acts.items()]}
        choices = [n for n, t in acts.items() if t.dim() == 4 and t.shape[-1] * t.shape[-2] > 1]
        out["gradcam"] = ({"error": cam_error, "layers": choices} if cam is None else
                          {"map": b64(cam[0]), "shape": list(cam.shape[1:]), "layer": cam_layer,
                           "resolution": native.get("shape"), "layers": choices,
                           "target": int(cls[0]), "class": self.classes[int(cls[0])]})
        out["server_ms"] = (time.perf_counter() - t0) * 1e3
        return out

    def _input(self, image: np.ndarray, x: torch.Tensor) -> dict:
        xs = x[0].numpy()
        return {"shape": list(image.shape), "pixels": base64.b64encode(image.tobytes()).decode(),
                "normalized": b64(xs), "min": float(xs.min()), "max": float(xs.max()),
                "mean": self.spec["mean"], "std": self.spec["std"]}

    def _stage(self, name: str, t: torch.Tensor, offset: int) -> dict:
        a = _maps(t)
        c = a.shape[0]
        size = max(1, min(PAGE, PAGE_VALUES // (a.shape[1] * a.shape[2])))
        offset = max(0, min(int(offset), max(c - 1, 0)))
        offset -= offset % size
        module = self.model.get_submodule(name)
        page = a[offset:offset + size]
        return {"name": name, "type": type(module).__name__, "shape": list(t.shape[1:]),
                "channels": c, "offset": offset, "count": len(page), "page": size,
                "map_shape": list(a.shape[1:]),
                "data": b64(page), "min": float(a.min()), "max": float(a.max()),
                "unit_detail": _unit_ok(module)}

    def field(self, layer: str, y: int, x: int) -> dict:
        """Unit (y, x) of column ``layer``: its receptive field in every earlier column and
        the input, and the units it feeds in the next (:mod:`cnnlab.serve.fields`)."""
        from cnnlab.serve.fields import unit_fields

        if layer not in self.stages:
            raise UserError(f"layer {layer!r}: not a column of the overview; columns: "
                            f"{', '.join(self.stages)}")
        shape = self.shapes[layer]
        if len(shape) == 3 and not (0 <= y < shape[1] and 0 <= x < shape[2]):
            raise UserError(f"unit (row {y}, col {x}): outside {layer}'s {shape[1]}x{shape[2]} "
                            f"maps")
        size = (self.spec["channels"], *self.spec["size"])
        return {"layer": layer, "unit": [y, x], **unit_fields(
            self.model, self.stages, self.shapes, self.in_shapes, size, layer, y, x)}

    def unit(self, image: np.ndarray, layer: str, c: int, y: int, x: int) -> dict:
        """Unit (c, y, x) of ``layer`` for the image: NumPy engine beside torch
        (:func:`cnnlab.serve.composite.compute_unit`); a vector's unit i is (0, 0, i)."""
        from cnnlab.serve.composite import compute_unit
        from cnnlab.serve.units import supports

        t0 = time.perf_counter()
        try:
            module = self.model.get_submodule(layer)
        except AttributeError:
            raise UserError(f"layer {layer!r}: no such layer in {self.meta['model']}") from None
        if not supports(module):
            raise UserError(f"layer {layer}: no unit detail for a {type(module).__name__}")
        xt = self.tensor(image)
        with self.pool.borrow() as model:
            d = compute_unit(self.model, model, layer, xt, c, y, x)
        xin = d.pop("_input")
        if d["kind"] in ("conv", "maxpool", "avgpool") and xin.ndim == 3:
            chans = d["channels"][:8]  # the input maps under the window
            d["input_maps"] = b64(xin[chans])
            d["input_maps_shown"] = chans
        d["server_ms"] = (time.perf_counter() - t0) * 1e3
        return d


def column_shapes(model, names: list[str], example: torch.Tensor) -> tuple[dict, dict]:
    """Each column's output and input shape for one image ((C, H, W) or (F,))."""
    outs: dict = {}
    ins: dict = {}

    def hook(_m, args, o, n):
        outs.setdefault(n, tuple(o.shape[1:]))
        ins.setdefault(n, tuple(args[0].shape[1:]))

    hs = [model.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: hook(m, a, o, n)) for n in names]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hs:
            h.remove()
    return outs, ins


def view_stages(model, example: torch.Tensor) -> list[str]:
    """The overview's columns, in forward order: the stages of :func:`cnnlab.viz.activations.
    stages` (blocks collapsed) and every leaf module outside them, so the classifier half
    (flatten, each fully connected layer, dropout) and the stem's batch norm are columns too."""
    from cnnlab.viz.activations import stages

    names = [n for n, _ in stages(model)]
    inside = tuple(n + "." for n in names)
    order: list[str] = []
    hooks = [m.register_forward_hook(lambda *_a, n=n: order.append(n))
             for n, m in model.named_modules()
             if n and (n in names or (not list(m.children()) and not n.startswith(inside)
                                      and not n.startswith(("aux1.", "aux2."))))]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(order))


def leaf_layers(model) -> list[str]:
    """Every convolution, pooling and ReLU module, in definition order: the overview's
    "every layer" mode, where each unit can be opened (inside residual blocks too)."""
    from cnnlab.serve.units import SUPPORTED

    return [n for n, m in model.named_modules()
            if n and isinstance(m, SUPPORTED) and not isinstance(m, torch.nn.Identity)]


def _unit_ok(module) -> bool:
    from cnnlab.serve.units import supports

    return supports(module)


class ModelPool:
    """Up to ``size`` deep copies of ``model`` lent to one request at a time.

        with pool.borrow() as model:   # this request's own copy: hooks on it see only it
            model(x)

    Copies are made on first need (a server that sees one request at a time holds one); the
    prototype is never lent, so a copy never inherits another request's hooks."""

    def __init__(self, model, size: int = 2):
        if size < 1:
            raise UserError(f"replicas={size}: expected at least 1 model copy")
        self._proto, self._size, self._made = model, size, 0
        self._free: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self):
        try:
            m = self._free.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self._size
                self._made += make
            m = copy.deepcopy(self._proto) if make else self._free.get()
        try:
            yield m
        finally:
            self._free.put(m)


def softmax_detail(logits: np.ndarray, classes: list[str], topk: int = 5) -> dict:
    """The softmax written out: p_i = exp(z_i - m) / sum_j exp(z_j - m) with m = max z.

    Subtracting m changes nothing (it cancels) and keeps exp from overflowing; the page shows
    m, each exp, their sum and each division."""
    m = float(logits.max())
    exps = np.exp(logits - m)
    total = float(exps.sum())
    probs = exps / total
    order = np.argsort(-probs, kind="stable")
    return {"logits": logits.tolist(), "shift": m, "exps": exps.tolist(), "sum": total,
            "probs": probs.tolist(), "top": [{"index": int(i), "class": classes[i],
                                              "probability": float(probs[i])}
                                             for i in order[:topk]],
            "predicted": int(order[0]), "class": classes[int(order[0])],
            "entropy": float(-(probs * np.log(np.maximum(probs, 1e-300))).sum() / math.log(2))}
