"""Load a trained model from a checkpoint; evaluate it; predict on image files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.checkpoint import load_checkpoint, resolve_checkpoint
from cnnlab.config import RANGES
from cnnlab.data import load_data
from cnnlab.errors import UserError
from cnnlab.registry import check_model_kwargs, get_model


def load_model(checkpoint: str | Path, engine: str = "torch", device: str = "cpu",
               model=None):
    """Load a trained model: ``cnnlab.load_model`` in the public API.

    Args:
        checkpoint: a run directory (its chosen checkpoint, ``best``), a checkpoint
            ``.safetensors`` file, or its ``.json`` sidecar; written by either engine.
        engine: ``"torch"`` (a ``torch.nn.Module``) or ``"numpy"`` (the scratch engine's
            module; same state-dict keys and shapes).
        device: ``"cpu"`` or ``"cuda"`` (torch engine).
        model: for a run of your own module (its ``model`` is ``"package.module:Class"``):
            an instance of that class to load the weights into. Without it the class is
            imported and built as ``Class(**model_kwargs)`` (see
            :mod:`cnnlab.training.usermodel`), which needs it importable from here.

    Returns:
        ``(model, meta)``: the model in eval mode, and the checkpoint's metadata dict
        (``model``, ``classes``, ``input`` spec with mean/std and size, ``config``, ...).

    Raises UserError (a ValueError) for a missing or corrupt checkpoint, or one naming a
    model cnnlab cannot build.
    """
    weights, meta = load_checkpoint(checkpoint)
    path = resolve_checkpoint(checkpoint)
    if ":" in str(meta.get("model", "")):  # a user's module:Class
        return _load_user_model(weights, meta, path, engine, device, model), meta
    if model is not None:
        raise UserError(f"model=: {path} holds the zoo model {meta.get('model')!r}, built by "
                        f"name; model= is for runs of your own module class")
    try:
        kw = check_model_kwargs(meta["model"], meta.get("model_kwargs", {}), engine,
                                where=f"{path}: model_kwargs")
        n = kw.get("num_classes", 1)  # an edited count would ask for any amount of memory
        if not isinstance(n, int) or not 1 <= n <= RANGES["num_classes"][1]:
            raise ValueError(f"num_classes={n!r}")
        model = get_model(meta["model"], engine=engine, **kw)
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, MemoryError) as e:
        raise UserError(f"{path}: checkpoint names a model cnnlab cannot build "
                        f"({str(e).splitlines()[0]})") from e
    if (n := _num_outputs(meta, engine)) is not None and n != len(meta["classes"]):
        raise UserError(f"{path}: corrupt checkpoint metadata: {len(meta['classes'])} class "
                        f"names for a model with {n} outputs (expected one name per output)")
    if engine == "torch":
        _load_torch_weights(model, weights, path, meta["model"]).to(device).eval()
    else:
        try:
            model.load_state_dict(weights)
        except (KeyError, ValueError, RuntimeError) as e:
            raise UserError(f"{path}: weights do not fit model {meta['model']!r} "
                            f"({str(e).splitlines()[0]})") from e
        model.eval()
    return model, meta


def _load_user_model(weights: dict, meta: dict, path, engine: str, device: str, model):
    """A run of a user's ``module:Class``: ``model`` (checked to be of that class) or the
    class imported and built from the checkpoint's ``model_kwargs``, with its weights."""
    from cnnlab.training import usermodel

    name = meta["model"]
    if engine != "torch":
        raise UserError(f"{path}: model {name} is a torch.nn.Module: load it with "
                        f"engine='torch'")
    if model is not None:
        usermodel.check_instance(model, name)
    else:
        kw = meta.get("model_kwargs", {})
        if not isinstance(kw, dict):
            raise UserError(f"{path}: corrupt checkpoint metadata: model_kwargs is "
                            f"{type(kw).__name__}, expected a dict")
        model = usermodel.build(name, kw, f"{path}: model")
    return _load_torch_weights(model, weights, path, name).to(device).eval()


def _load_torch_weights(model, weights: dict, path, name: str):
    """``model`` with the checkpoint's NumPy ``weights`` loaded strictly; a UserError naming
    the checkpoint when they do not fit."""
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit model {name!r} "
                        f"({str(e).splitlines()[0]})") from e
    return model


def _num_outputs(meta: dict, engine: str) -> int | None:
    """The model's number of outputs: ``num_classes`` as built (given, or the builder's
    default); None when the builder takes no ``num_classes``."""
    import inspect

    from cnnlab.registry import model_info

    kw = meta.get("model_kwargs", {})
    if "num_classes" in kw:
        return kw["num_classes"]
    info = model_info(meta["model"])
    builder = info.builder if engine == "torch" else info.engines.get(engine, info.builder)
    p = inspect.signature(builder).parameters.get("num_classes")
    return p.default if p is not None and isinstance(p.default, int) else None


def _norm(spec: dict, device):
    from cnnlab.training.evaluation import normalizer

    return normalizer(spec, device)


@dataclass
class EvalResult:
    accuracy: float
    top5: float | None
    loss: float
    per_class: list[tuple[str, float, int]]  # (class, accuracy, count)
    confusion: np.ndarray  # (classes, classes): rows true, columns predicted
    classes: list[str]

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "top5": self.top5, "loss": self.loss,
                "per_class": [{"class": c, "accuracy": a, "count": n} for c, a, n in self.per_class],
                "confusion": self.confusion.tolist(), "classes": self.classes}

    def format(self) -> str:
        lines = [f"test accuracy {self.accuracy:.2%}" + (f"  top-5 {self.top5:.2%}" if self.top5
                 is not None else "") + f"  loss {self.loss:.4f}  ({int(self.confusion.sum())} images)",
                 "", "per-class accuracy:"]
        w = max(len(c) for c in self.classes)
        for c, a, k in self.per_class:
            lines.append(f"  {c:>{w}}  {a:7.2%}  ({k})")
        lines += ["", "confusion matrix (rows: true class, columns: predicted):"]
        cw = max(w, len(str(int(self.confusion.max()))), 3)
        short = [c[:cw] for c in self.classes]
        lines.append(" " * (w + 2) + " ".join(f"{c:>{cw}}" for c in short))
        for c, row in zip(self.classes, self.confusion):
            lines.append(f"{c:>{w}}  " + " ".join(f"{v:>{cw}d}" for v in row))
        return "\n".join(lines)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)


def evaluate(checkpoint: str | Path, data: str | None = None, device: str = "cpu",
             test_split: float | None = None, in_memory: str = "auto",
             workers: int = 2, val_split: float | None = None) -> EvalResult:
    """Test a trained model: ``cnnlab.evaluate`` in the public API.

    Args:
        checkpoint: a run directory, a checkpoint ``.safetensors`` or its ``.json``.
        data: the dataset to test on (default: the one the checkpoint was trained on): a
            built-in or canonical name, an image folder or a ``.tar.gz``.
        device: ``"cpu"`` or ``"cuda"``.
        test_split: the fraction held out for testing when the data has no test/ folder
            (default: the run's).
        in_memory: as for training (:func:`cnnlab.data.load_data`): an image folder too big
            for memory (``"no"``, or ``"auto"`` over the budget) is streamed from disk in
            batches; the results are the same as in memory, batch for batch.
        workers: processes decoding batches when streaming (0: in this process).
        val_split: the old name of ``test_split``.

    Returns:
        :class:`EvalResult`: ``accuracy``, ``top5``, ``loss`` (floats), ``per_class``
        [(class, accuracy, count)], ``confusion`` (NumPy int (K, K), rows true, columns
        predicted), ``classes``; ``.to_dict()`` and ``.format()`` (what ``cnnlab eval``
        prints).
    """
    if workers < 0:
        raise UserError(f"--workers {workers}: expected 0 or more worker processes")
    from cnnlab.data.resize import fit_split_to_spec, read_as_trained

    model, meta = load_model(checkpoint, device=device)
    spec = meta["input"]
    cfg = meta.get("config", {})
    source = data or cfg.get("data", "digits")
    if source == "<in-memory>":  # cnnlab.data.memory.NAME: the run directory has no copy
        raise UserError(f"{checkpoint}: the run trained on in-memory arrays, which it does not "
                        f"keep; pass data= (a dataset name, folder or .tar.gz of test images)")
    if test_split is None:  # ``val_split``: this argument's old name, still accepted
        test_split = val_split
    if test_split is None:
        from cnnlab.config import run_test_split

        test_split = run_test_split(cfg)
    splits = load_data(source, val_split=test_split, seed=cfg.get("seed", 0), progress="auto",
                       in_memory=in_memory, **read_as_trained(spec))
    test = splits.test
    if list(test.classes) != list(meta["classes"]):
        raise UserError(f"--data {source}: classes {test.classes} differ from the checkpoint's "
                        f"{meta['classes']}")
    test = fit_split_to_spec(test, meta, source)
    from cnnlab.training.evaluation import predict_logits, predict_logits_stream, topk_accuracy
    from cnnlab.training.setup import streaming as _streaming

    norm = _norm(spec, device)
    if _streaming(test):  # decoded batch by batch; unreadable files skipped with a warning
        logits, y = predict_logits_stream(model, test, norm, torch.device(device), workers=workers)
    else:
        y = torch.from_numpy(test.labels).to(device)
        logits = predict_logits(model, torch.from_numpy(test.images).to(device), norm)
    k = len(meta["classes"])
    pred = logits.argmax(1)
    top5 = topk_accuracy(logits, y, 5)
    cm = confusion_matrix(y.cpu().numpy(), pred.cpu().numpy(), k)
    per = [(c, cm[i, i] / max(cm[i].sum(), 1), int(cm[i].sum())) for i, c in enumerate(meta["classes"])]
    return EvalResult((pred == y).float().mean().item(), top5, F.cross_entropy(logits, y).item(),
                      per, cm, list(meta["classes"]))


def load_image(path: str | Path, spec: dict) -> np.ndarray:
    """Any PNG/JPEG/BMP, grayscale or colour -> uint8 (C, H, W) as the model expects: EXIF
    orientation applied, the model's channels and size (:func:`cnnlab.preprocess.load_image`,
    the same code the torch-free ONNX predictor runs)."""
    from cnnlab.preprocess import check_spec
    from cnnlab.preprocess import load_image as _load

    return _load(path, check_spec(spec))


def _as_paths(images) -> list:
    """One path, PIL image or array is one image (or one folder); else a list of them."""
    from PIL import Image

    single = isinstance(images, (str, Path, Image.Image)) or (
        isinstance(images, np.ndarray) and images.ndim <= 3)
    return [images] if single else list(images)


def predict(checkpoint: str | Path, images, topk: int = 3, device: str = "cpu",
            workers: int | None = None, batch_size: int = 256,
            timings: dict | None = None, runtime: str = "auto") -> list[dict]:
    """Classify images: ``cnnlab.predict`` in the public API.

    Args:
        checkpoint: a run directory, a checkpoint ``.safetensors`` or its ``.json``, or an
            exported ``.onnx`` model.
        images: image files and folders (searched recursively; a single path is one image
            or one folder), PIL images or uint8 NumPy arrays (H, W[, C]).
        topk: how many classes per image.
        device: ``"cpu"`` or ``"cuda"``.
        workers: processes decoding images (default: several for 2,000 images or more).
        batch_size: images per forward pass.
        timings: a dict that receives the seconds spent loading, decoding and in the model.
        runtime: ``"auto"``, ``"torch"`` or ``"onnx"`` (see below).

    Returns:
        one dict per image: ``{"image": name, "top": [{"class", "probability"},
        ...]}``, best first.

    ``checkpoint`` may be an exported ``.onnx`` model: then onnxruntime runs it
    (:func:`cnnlab.deploy.onnx_predict.predict_onnx`); so does a checkpoint with its
    up-to-date export beside it when ``runtime`` is "auto" or "onnx" ("torch": never; see
    :func:`cnnlab.deploy.onnx_predict.onnx_for_checkpoint`). Decoding and normalisation are
    :mod:`cnnlab.preprocess` for both, so both see the same input tensor; ``workers``
    processes decode (default: several for 2,000 images or more, else none). A warning
    names images plainly unlike the training data (colour into a gray model, inverted
    polarity, a far-off aspect ratio). ``timings`` (a dict) receives seconds spent loading
    the model, decoding and in the model.
    """
    import time

    from cnnlab import preprocess as P

    if topk < 1:
        raise UserError(f"topk={topk}: expected a positive integer")
    if str(checkpoint).endswith(".onnx"):
        from cnnlab.deploy.onnx_predict import predict_onnx

        return predict_onnx(checkpoint, _as_paths(images), topk, workers=workers,
                            timings=timings)
    from cnnlab.deploy.onnx_predict import onnx_for_checkpoint, predict_onnx

    if (clf := onnx_for_checkpoint(checkpoint, runtime, device)) is not None:
        return predict_onnx(clf, _as_paths(images), topk, workers=workers, timings=timings)
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    paths = P.list_images(_as_paths(images))
    model, meta = load_model(checkpoint, device=device)
    spec = P.check_spec(meta["input"], f"{resolve_checkpoint(checkpoint)}: input spec")
    workers = P.default_workers(len(paths)) if workers is None else workers
    t1 = time.perf_counter()
    batch, notes, paths = P.load_batch(paths, spec, workers)  # unreadable ones: skipped, said
    P.warn_mismatches(notes, len(paths))
    t2 = time.perf_counter()
    probs, normalize = [], P.Normalizer(spec)
    with torch.inference_mode():
        for i in range(0, len(batch), batch_size):
            x = torch.from_numpy(normalize(batch[i:i + batch_size])).to(device)
            probs.append(P.softmax(model(x).float().cpu().numpy()))
    timings.update({"images": len(paths), "runtime": "torch", "model load": t1 - t0,
                    "decoding": t2 - t1, "workers": workers, "model": time.perf_counter() - t2})
    return P.results(paths, np.concatenate(probs), list(meta["classes"]), topk)


__all__ = ["load_model", "evaluate", "predict", "load_image", "EvalResult", "resolve_checkpoint"]
