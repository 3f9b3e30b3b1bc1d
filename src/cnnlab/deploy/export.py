"""Export a trained classifier: ONNX (``torch.onnx.export``, the dynamo exporter built on
``onnx``/``onnxscript``) or a ``torch.export`` program (``.pt2``).

The exported file is self-describing: the ONNX model's ``metadata_props`` (and the ``.pt2``
archive's ``cnnlab.json``) hold the class names, the input spec (channels, size, mean/std,
resize policy) and the model's name and arguments, so ``cnnlab predict model.onnx`` needs
nothing else. The graph takes the normalised float32 batch ``input (N, C, H, W)`` and gives
``logits (N, classes)``; the preprocessing (decode, resize, normalise) stays outside, in
:mod:`cnnlab.preprocess`, shared with the torch path.

Every export is checked before it is kept: ``onnx.checker``, then onnxruntime's (or the
reloaded program's) logits against torch's on the same input. A difference beyond
``PARITY_TOL`` times the logits' scale (at least 1) is an error and no file is kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab import __version__
from cnnlab.errors import UserError
from cnnlab.preprocess import check_spec, normalize

FORMATS = ("onnx", "pt2")
ONNX_FORMAT = "cnnlab-onnx/1"
MIN_OPSET = 7  # older opsets lack what every CNN needs (Conv with dilations, Gemm forms)
INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Exported logits may differ from torch's by this much per unit of logit scale (at least 1):
# float32 kernels that sum in another order differ by ~1e-6 relative on the zoo's models;
# 1e-3 leaves room for deep nets at random init (plain-110 amplifies rounding; see the tests)
# while an operator exported wrongly moves logits by far more.
PARITY_TOL = 1e-3


@dataclass
class ExportResult:
    path: Path
    format: str
    opset: int | None  # ONNX opset written (None for .pt2)
    dynamic_batch: bool
    max_abs_diff: float  # |exported - torch| over the check batch's logits
    max_abs_logit: float  # scale of those logits, to read the difference against
    seconds: float
    size_bytes: int

    def format_line(self) -> str:
        what = f"ONNX opset {self.opset}" if self.format == "onnx" else "torch.export program"
        runtime = "onnxruntime" if self.format == "onnx" else "reloaded program"
        batch = "any batch size" if self.dynamic_batch else "batch size 1"
        return (f"wrote {self.path} ({what}, {batch}, {self.size_bytes / 1e6:.1f} MB) in "
                f"{self.seconds:.1f} s; checked: max |{runtime} - torch| = "
                f"{self.max_abs_diff:.2g} on logits up to {self.max_abs_logit:.3g}")


class _Logits(nn.Module):
    """The model in eval mode, returning only its logits (GoogLeNet's auxiliary heads run
    only in training mode; a tuple or namedtuple output keeps its first element)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        if isinstance(out, torch.Tensor):
            return out
        return out.logits if hasattr(out, "logits") else out[0]


class _StochasticPoolInference(nn.Module):
    """:class:`cnnlab.nn.StochasticPool2d` at inference, sum a_i^2 / sum a_i per window
    (Zeiler & Fergus 2013, eq. 4), without the input check: "any negative value?" is a
    data-dependent branch an exported graph cannot hold (the ReLU before it makes it moot)."""

    def __init__(self, kernel_size, stride):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x):
        from cnnlab.nn import _windows

        win = _windows(x, self.kernel_size, self.stride)
        total = win.sum(2)
        safe = torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(total > 0, (win * win).sum(2) / safe, torch.zeros_like(total))


def exportable(model: nn.Module) -> nn.Module:
    """The model as exported: eval mode, logits only, cnnlab's own layers in their
    inference form (the original model is not changed)."""
    import copy

    from cnnlab.nn import StochasticPool2d

    m = copy.deepcopy(model).eval()
    for name, child in list(m.named_modules()):
        if isinstance(child, StochasticPool2d):
            parent = m.get_submodule(name.rpartition(".")[0]) if "." in name else m
            setattr(parent, name.rpartition(".")[2],
                    _StochasticPoolInference(child.kernel_size, child.stride))
    return _Logits(m).eval()


def metadata(meta: dict, spec: dict) -> dict[str, str]:
    """The string key/values stored in the exported file (ONNX ``metadata_props``);
    ``cnnlab.checkpoint_sha256`` (exports of a checkpoint) lets ``predict`` on that
    checkpoint use this file instead of torch."""
    props = {"cnnlab.format": ONNX_FORMAT, "cnnlab.version": __version__,
             "cnnlab.model": str(meta.get("model", "")),
             "cnnlab.model_kwargs": json.dumps(meta.get("model_kwargs", {})),
             "cnnlab.classes": json.dumps(list(meta["classes"])),
             "cnnlab.input": json.dumps(spec)}
    if meta.get("checkpoint_sha256"):
        props["cnnlab.checkpoint_sha256"] = meta["checkpoint_sha256"]
    return props


def example_input(spec: dict, batch: int, seed: int = 0) -> torch.Tensor:
    """A normalised batch of random uint8 images of the spec's shape (the export's trace
    input and the check's input)."""
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (batch, spec["channels"], *spec["size"]), dtype=np.uint8)
    return torch.from_numpy(normalize(u8, spec))


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, warnings and logged tracebacks (a failed
    opset conversion is logged, then ignored); yields the list of logged messages."""
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnxscript", "torch.export",
                                              "torch._dynamo", "torch.fx")]
    saved = [(lg, lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    for lg in loggers:
        lg.handlers, lg.propagate = [Keep()], False
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield records
    finally:
        for lg, level, prop, handlers in saved:
            lg.setLevel(level)
            lg.propagate, lg.handlers = prop, handlers


def failing_layer(model: nn.Module, x: torch.Tensor) -> str | None:
    """``"name (Type): reason"`` of the first leaf module that ``torch.export`` cannot
    trace on its own, with the input it gets inside the model; None if each one can."""
    inputs: dict[str, tuple] = {}

    def keep(name):
        def hook(mod, args, out):  # returns None: the output passes on unchanged
            inputs.setdefault(name, args)
        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in model.named_modules()
             if not list(m.children())]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    for name, args in inputs.items():
        mod = model.get_submodule(name)
        try:
            with _quiet():
                torch.export.export(mod, args, strict=False)
        except Exception as e:  # noqa: BLE001 - any failure names the layer
            reason = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), repr(e))
            return f"{name.removeprefix('model.')} ({type(mod).__name__}): {reason[:200]}"
    return None


def _trace_error(model: nn.Module, x: torch.Tensor, e: Exception) -> UserError:
    layer = failing_layer(model, x)
    where = f"layer {layer}" if layer else f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return UserError(f"cannot export this model: {where}")


def _reuse_torchlib_registry() -> None:
    """Build torch.onnx's table of ~500 ATen -> ONNX translations once per opset and process.

    ``torch.onnx.export`` rebuilds it on every call (about 1.5 s of a 4 s ResNet-20 export
    on a 2-core CPU); it only changes it for a ``custom_translation_table``, so each call
    gets a copy of the cached lists, and nothing another caller does can leak into ours.
    """
    try:
        from torch.onnx._internal.exporter import _registration as R
    except ImportError:  # a torch whose exporter moved: no cache, same results
        return
    if getattr(R.ONNXRegistry, "_cnnlab_cache", None) is not None:
        return
    build = R.ONNXRegistry.from_torchlib.__func__
    cache: dict = {}

    def from_torchlib(cls, opset_version=R._constants.TORCHLIB_OPSET):
        if opset_version not in cache:
            cache[opset_version] = build(cls, opset_version)
        reg = cls()
        reg._opset_version = cache[opset_version]._opset_version
        reg.functions = {k: list(v) for k, v in cache[opset_version].functions.items()}
        return reg

    R.ONNXRegistry.from_torchlib = classmethod(from_torchlib)
    R.ONNXRegistry._cnnlab_cache = cache


def _dynamic(dynamic_batch: bool):
    return ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None


def _write_onnx(model: nn.Module, x: torch.Tensor, tmp: Path, opset: int | None,
                dynamic_batch: bool, props: dict[str, str], optimize: bool = True) -> int:
    """Export to ``tmp``; returns the opset written. A requested opset the converter cannot
    reach (the exporter then silently keeps its own) is an error naming the operator."""
    import onnx

    _reuse_torchlib_registry()
    try:
        with _quiet() as logged:
            prog = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                     dynamic_shapes=_dynamic(dynamic_batch), verbose=False,
                                     optimize=optimize)
    except Exception as e:  # noqa: BLE001 - traced again layer by layer to name the culprit
        raise _trace_error(model, x, e) from e
    proto = prog.model_proto
    written = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset is not None and written != opset:
        why = next((m.split("failed: ")[-1] for m in logged if "Adapter" in m), "")
        raise UserError(f"--opset {opset}: this model's operators cannot be written in opset "
                        f"{opset} ({why or 'no conversion'}); use --opset {written} or newer")
    del proto.metadata_props[:]
    for k, v in props.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.save(proto, str(tmp))
    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except onnx.checker.ValidationError as e:
        raise UserError(f"exported ONNX model fails onnx.checker: {str(e).splitlines()[0]}") from e
    return written


def _check_onnx(path: Path, ref: np.ndarray, x: torch.Tensor) -> float:
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - e.g. an opset newer than this onnxruntime knows
        raise UserError(f"onnxruntime {ort.__version__} cannot load the exported model: "
                        f"{str(e).splitlines()[0][:200]}") from e
    out = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
    return float(np.abs(out - ref).max())


def _write_pt2(model: nn.Module, x: torch.Tensor, tmp: Path, dynamic_batch: bool,
               props: dict[str, str]) -> None:
    try:
        with _quiet():
            ep = torch.export.export(model, (x,), dynamic_shapes=_dynamic(dynamic_batch),
                                     strict=False)
    except Exception as e:  # noqa: BLE001
        raise _trace_error(model, x, e) from e
    torch.export.save(ep, str(tmp), extra_files={"cnnlab.json": json.dumps(props)})


def load_pt2(path: str | Path) -> tuple[nn.Module, dict[str, str]]:
    """(callable module, metadata) of a ``.pt2`` written by :func:`export_model`."""
    extra = {"cnnlab.json": ""}
    with _quiet():
        ep = torch.export.load(str(path), extra_files=extra)
    return ep.module(), json.loads(extra["cnnlab.json"] or "{}")


def _check_pt2(path: Path, ref: np.ndarray, x: torch.Tensor) -> float:
    module, _ = load_pt2(path)
    with torch.no_grad():
        out = module(x).numpy()
    return float(np.abs(out - ref).max())


def _float32_error(m: nn.Module, x: torch.Tensor, ref: np.ndarray) -> float:
    """max |torch float32 - torch float64| on ``x``: torch's own rounding error (0 when the
    model cannot run in float64)."""
    import copy

    try:
        with torch.no_grad():
            exact = copy.deepcopy(m).double()(x.double()).numpy()
    except Exception:  # noqa: BLE001 - a layer without float64 kernels: no second opinion
        return 0.0
    return float(np.abs(ref - exact).max())


def _check_parity(diff: float, ref: np.ndarray, tolerance: float, fmt: str,
                  float32_error=lambda: 0.0) -> None:
    """UserError when the exported logits differ from torch's (``ref``) by more than
    ``tolerance`` x the logit scale (at least 1), or, where torch's own float32 error is
    larger (a deep net at random init amplifies rounding), twice that error."""
    scale = max(1.0, float(np.abs(ref).max()))
    allowed = tolerance * scale
    if not diff <= allowed:  # NaN fails too
        allowed = max(allowed, 2 * float32_error())  # computed only when needed
    if not diff <= allowed:
        runtime = "onnxruntime" if fmt == "onnx" else "the reloaded program"
        raise UserError(f"export check failed: {runtime}'s logits differ from torch's by "
                        f"{diff:.3g} (allowed {allowed:.3g}: {tolerance:g} x logit scale "
                        f"{scale:.3g}); no file written")


def default_out(checkpoint: str | Path, fmt: str) -> Path:
    """``runs/X/checkpoints/best.safetensors`` -> ``runs/X/checkpoints/best.onnx``."""
    from cnnlab.checkpoint import resolve_checkpoint

    return resolve_checkpoint(checkpoint).with_suffix(f".{fmt}")


def check_export_args(fmt: str, out: Path, opset: int | None, force: bool) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format; expected one of {', '.join(FORMATS)}")
    if opset is not None:
        import onnx

        newest = onnx.defs.onnx_opset_version()
        if fmt != "onnx":
            raise UserError(f"--opset {opset}: only for --format onnx")
        if not MIN_OPSET <= opset <= newest:
            raise UserError(f"--opset {opset}: expected an ONNX opset from {MIN_OPSET} to "
                            f"{newest} (onnx {onnx.__version__})")
    if out.exists() and not force:
        raise UserError(f"{out}: already exists; pass --force to overwrite it")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; expected a file name for --out")


def export_model(model: nn.Module, meta: dict, out: str | Path, fmt: str = "onnx",
                 opset: int | None = None, dynamic_batch: bool = False,
                 force: bool = False, optimize: bool = True,
                 tolerance: float = PARITY_TOL) -> ExportResult:
    """Export ``model`` (eval mode, logits only) to ``out`` and check it against torch.

    ``meta`` needs ``classes`` and ``input`` (the input spec), as in a checkpoint.
    Without ``dynamic_batch`` the graph takes batches of exactly 1 image. ``optimize``:
    torch.onnx's graph clean-up (constant folding, fewer nodes; about a quarter of the
    export time; onnxruntime does the same at load, so results and speed there do not
    depend on it). The file appears only once checked (written under a temporary name,
    then renamed): a UserError, and no file, when the exported logits differ from torch's by
    more than ``tolerance * max(1, max |logit|)``.
    """
    out = Path(out)
    check_export_args(fmt, out, opset, force)
    spec = check_spec(meta.get("input"), f"{out}: model metadata")
    props = metadata(meta, spec)
    m = exportable(model)
    x = example_input(spec, 2 if dynamic_batch else 1)
    with torch.no_grad():
        ref = m(x).numpy()
    t0 = time.perf_counter()
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")  # .pt2 wants its suffix
    try:
        if fmt == "onnx":
            written = _write_onnx(m, x, tmp, opset, dynamic_batch, props, optimize)
            diff = _check_onnx(tmp, ref, x)
        else:
            written = None
            _write_pt2(m, x, tmp, dynamic_batch, props)
            diff = _check_pt2(tmp, ref, x)
        _check_parity(diff, ref, tolerance, fmt, lambda: _float32_error(m, x, ref))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, fmt, written, dynamic_batch, diff, float(np.abs(ref).max()),
                        time.perf_counter() - t0, out.stat().st_size)


def export_checkpoint(checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None,
                      opset: int | None = None, dynamic_batch: bool = False,
                      force: bool = False) -> ExportResult:
    """``cnnlab export``: the checkpoint's model to ONNX or ``.pt2`` (default: beside the
    checkpoint, ``best.safetensors`` -> ``best.onnx``)."""
    from cnnlab.inference import load_model

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: unknown format; expected one of {', '.join(FORMATS)}")
    out = Path(out) if out else default_out(checkpoint, fmt)
    check_export_args(fmt, out, opset, force)  # before the (slow) model load
    from cnnlab.checkpoint import resolve_checkpoint
    from cnnlab.deploy.onnx_predict import file_sha256

    model, meta = load_model(checkpoint)
    meta = {**meta, "checkpoint_sha256": file_sha256(resolve_checkpoint(checkpoint))}
    return export_model(model, meta, out, fmt, opset, dynamic_batch, force)
