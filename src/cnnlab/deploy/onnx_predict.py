"""Classify images with an exported ``.onnx`` model: onnxruntime, NumPy and Pillow only.

Nothing here imports torch (a test runs ``cnnlab predict model.onnx`` and checks
``sys.modules``), so a machine with ``pip install "cnnlab[onnx]"`` and no PyTorch can use
a model trained elsewhere. The class names and input spec come from the model's metadata
(written by ``cnnlab export``), or are given by hand for an ONNX file from elsewhere.
Decoding and normalisation are :mod:`cnnlab.preprocess`, the torch path's own code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from cnnlab import preprocess as P
from cnnlab.errors import UserError


def parse_classes(text: str) -> list[str]:
    """``--classes``: ``"cat,dog"`` or a text file with one class name per line."""
    p = Path(text)
    names = p.read_text().split("\n") if p.is_file() else text.split(",")
    names = [n.strip() for n in names if n.strip()]
    if not names:
        raise UserError(f"--classes {text!r}: expected comma-separated class names or a file "
                        f"with one name per line")
    return names


def parse_input(text: str) -> dict:
    """``--input``: ``CxHxW`` (pixels scaled to 0-1, no mean/std) or a JSON input spec
    ``{"channels": 1, "size": [28, 28], "mean": [0.13], "std": [0.31]}``."""
    if text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--input {text!r}: not valid JSON ({e})") from e
        return P.check_spec(spec, f"--input {text!r}")
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise UserError(f"--input {text!r}: expected CxHxW (e.g. 1x28x28) or a JSON input "
                        f"spec") from e
    return P.check_spec({"channels": c, "size": [h, w], "mean": [0.0] * c, "std": [1.0] * c},
                        f"--input {text!r}")


def file_sha256(path: Path) -> str:
    """The checkpoint file's SHA-256 (recorded in an export beside it)."""
    from cnnlab.utils import sha256_file

    return sha256_file(path)


def export_beside(checkpoint: str | Path, threads: int | None = None):
    """An :class:`OnnxClassifier` of this very checkpoint's ONNX export next to it
    (``best.safetensors`` -> ``best.onnx``, written by ``cnnlab export``; its recorded
    sha256 equal to the checkpoint file's), or None."""
    from cnnlab.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint)
    onnx_path = ckpt.with_suffix(".onnx")
    if not onnx_path.is_file():
        return None
    try:
        clf = OnnxClassifier(onnx_path, threads=threads)
    except (ImportError, UserError):  # no onnxruntime, or not a usable model: use torch
        return None
    return clf if clf.meta.get("cnnlab.checkpoint_sha256") == file_sha256(ckpt) else None


PREDICT_RUNTIMES = ("auto", "torch", "onnx")


def onnx_for_checkpoint(checkpoint, runtime: str = "auto", device: str = "cpu",
                        threads: int | None = None):
    """The runtime ``predict`` uses for a checkpoint: an :class:`OnnxClassifier` of its
    up-to-date export (``auto`` when there is one on the CPU, or ``onnx``), or None for
    torch. ``auto`` prefers onnxruntime because it was faster at every batch size measured
    for LeNet-5, ResNet-20 and ResNet-18 on CPU and spares the command torch's import
    (benchmarks/RESULTS.md, "Export and inference"); exporting on the spot never pays off
    within one command, so without an export it is torch."""
    if runtime not in PREDICT_RUNTIMES:
        raise UserError(f"--runtime {runtime}: expected one of {', '.join(PREDICT_RUNTIMES)}")
    if runtime == "torch" or (runtime == "auto" and device != "cpu"):
        return None
    clf = export_beside(checkpoint, threads)
    if clf is None and runtime == "onnx":
        raise UserError(f"--runtime onnx: no ONNX export of {checkpoint} beside it (or it is "
                        f"out of date); run `cnnlab export {checkpoint}` first")
    return clf


class OnnxClassifier:
    """An exported classifier in an onnxruntime session.

    ``logits(x)`` takes a normalised float32 ``(N, C, H, W)``; a model exported for batch
    size 1 (no ``--dynamic-batch``) is run image by image.
    """

    def __init__(self, path: str | Path, classes: list[str] | None = None,
                 input_spec: dict | None = None, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such ONNX model file")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3  # errors only: no "unused initializer" chatter
        try:
            self.session = ort.InferenceSession(str(self.path), opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own, unexported types
            raise UserError(f"{self.path}: not a usable ONNX model (onnxruntime: "
                            f"{str(e).splitlines()[0][:200]})") from e
        props = self.session.get_modelmeta().custom_metadata_map
        self.meta = props
        self.classes = classes or self._from_meta(props, "cnnlab.classes", "--classes")
        spec = input_spec or self._from_meta(props, "cnnlab.input", "--input")
        self.spec = P.check_spec(spec, f"{self.path}: metadata cnnlab.input")
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self._check_shapes(inp.shape, out.shape)
        self.normalize = P.Normalizer(self.spec)

    def _from_meta(self, props: dict, key: str, flag: str):
        if key not in props:
            raise UserError(f"{self.path}: ONNX model has no cnnlab metadata ({key}); export "
                            f"it with `cnnlab export`, or give {flag} by hand")
        try:
            return json.loads(props[key])
        except json.JSONDecodeError as e:
            raise UserError(f"{self.path}: metadata {key} is not valid JSON ({e})") from e

    def _check_shapes(self, in_shape, out_shape) -> None:
        want = [self.spec["channels"], *self.spec["size"]]
        got = list(in_shape[1:])
        if len(got) != 3 or any(isinstance(g, int) and g != w for g, w in zip(got, want)):
            raise UserError(f"{self.path}: graph input {in_shape} does not match the input "
                            f"spec {'x'.join(map(str, want))}")
        k = out_shape[-1] if out_shape else None
        if isinstance(k, int) and k != len(self.classes):
            raise UserError(f"{self.path}: the model has {k} outputs but {len(self.classes)} "
                            f"class names were given")

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, C, H, W), normalised -> logits (N, classes)."""
        run = self.session.run
        b = self.fixed_batch
        if b is None or b == len(x):
            return run([self.output_name], {self.input_name: x})[0]
        outs = []
        for i in range(0, len(x), b):
            chunk = x[i:i + b]
            pad = b - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            outs.append(run([self.output_name], {self.input_name: chunk})[0][:b - pad])
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)), np.float32)

    def predict_arrays(self, images: np.ndarray, topk: int = 3, paths=None,
                       batch_size: int = 256) -> list[dict]:
        """uint8 (N, C, H, W) at the model's size -> top-k results (as :func:`predict_onnx`)."""
        n = batch_size
        if len(images) <= n:  # one call: nothing to split or join (batch-1 latency)
            probs = P.softmax(self.logits(self.normalize(images)))
        else:
            probs = np.concatenate([P.softmax(self.logits(self.normalize(images[i:i + n])))
                                    for i in range(0, len(images), n)])
        paths = paths if paths is not None else [f"[{i}]" for i in range(len(images))]
        return P.results(paths, probs, self.classes, topk)


def predict_onnx(model, images, topk: int = 3, classes: list[str] | None = None,
                 input_spec: dict | None = None, workers: int | None = None,
                 threads: int | None = None, timings: dict | None = None) -> list[dict]:
    """Top-k classes with probabilities for image files and folders (searched recursively),
    with an exported ONNX model (a path, or an :class:`OnnxClassifier`); never imports torch.
    ``timings`` (a dict) receives the seconds spent loading the model, decoding and in the
    model."""
    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    paths = P.list_images([images] if isinstance(images, (str, Path)) else images)
    clf = model if isinstance(model, OnnxClassifier) else OnnxClassifier(model, classes,
                                                                          input_spec, threads)
    workers = P.default_workers(len(paths)) if workers is None else workers
    t1 = time.perf_counter()
    batch, notes, paths = P.load_batch(paths, clf.spec, workers)  # unreadable: skipped, said
    P.warn_mismatches(notes, len(paths))
    t2 = time.perf_counter()
    out = clf.predict_arrays(batch, topk, paths)
    timings.update({"images": len(paths), "runtime": "onnxruntime", "model load": t1 - t0,
                    "decoding": t2 - t1, "workers": workers, "model": time.perf_counter() - t2})
    return out
