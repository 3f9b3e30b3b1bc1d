"""``cnnlab bench``: inference latency (p50/p99) and throughput of one model, per batch size
and runtime, side by side in one process on the same input.

Runtimes: ``torch`` (eager, ``inference_mode``), ``compile`` (``torch.compile``, default
mode; its compile time is reported as set-up, not in the latency), ``onnx`` (onnxruntime on
a ``--dynamic-batch`` export made on the spot; export time reported as set-up). Each case
is warmed up, then timed call by call for about ``seconds``: latency percentiles are over
those calls, throughput is images / total time. The input is a normalised random batch of
the model's input shape, the same array for every runtime.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

RUNTIMES = ("torch", "compile", "onnx")


@dataclass
class BenchRow:
    runtime: str
    batch: int
    p50_ms: float
    p99_ms: float
    images_per_s: float
    calls: int
    setup_s: float  # compile or export time before the first timed call


@dataclass
class BenchReport:
    model: str
    input: tuple[int, int, int]
    threads: int
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    machine: str = ""

    def fastest(self, batch: int) -> str | None:
        rows = [r for r in self.rows if r.batch == batch]
        return min(rows, key=lambda r: r.p50_ms).runtime if rows else None

    def to_dict(self) -> dict:
        return {**asdict(self), "fastest": {b: self.fastest(b) for b in self.batches()}}

    def batches(self) -> list[int]:
        return sorted({r.batch for r in self.rows})

    def format(self) -> str:
        c, h, w = self.input
        lines = [f"{self.model}, input {c}x{h}x{w}, {self.threads} thread(s), {self.machine}",
                 "", f"{'runtime':<8} {'batch':>5} {'p50 ms':>9} {'p99 ms':>9} "
                     f"{'images/s':>10} {'calls':>6} {'set-up s':>9}"]
        for r in sorted(self.rows, key=lambda r: (r.batch, r.runtime)):
            best = " *" if self.fastest(r.batch) == r.runtime else ""
            lines.append(f"{r.runtime:<8} {r.batch:>5} {r.p50_ms:>9.3f} {r.p99_ms:>9.3f} "
                         f"{r.images_per_s:>10,.0f} {r.calls:>6} {r.setup_s:>9.1f}{best}")
        lines.append("(* fastest p50 at that batch size)")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def time_calls(fn, seconds: float, min_calls: int = 5, warmup: int = 3) -> np.ndarray:
    """Per-call wall times (s) of ``fn()`` over about ``seconds`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    end = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return np.asarray(times)


def _row(runtime: str, batch: int, times: np.ndarray, setup: float) -> BenchRow:
    return BenchRow(runtime, batch, float(np.percentile(times, 50) * 1e3),
                    float(np.percentile(times, 99) * 1e3), batch * len(times) / times.sum(),
                    len(times), setup)


def parse_input(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise UserError(f"--input {text!r}: expected CxHxW, e.g. 3x32x32") from e
    if min(c, h, w) < 1:
        raise UserError(f"--input {text!r}: expected positive sizes")
    return c, h, w


def load_for_bench(source: str, input_size: str | None):
    """(torch model or None, meta with input spec, onnx path or None, label) for a
    checkpoint / run directory, an .onnx file, or a registered model name."""
    p = Path(source)
    if p.suffix == ".onnx":
        from cnnlab.deploy.onnx_predict import OnnxClassifier

        clf = OnnxClassifier(p)
        return None, {"input": clf.spec, "classes": clf.classes}, p, p.name
    if p.exists() or p.suffix in (".safetensors", ".json"):
        from cnnlab.inference import load_model

        model, meta = load_model(source)
        return model, meta, None, f"{meta['model']} ({source})"
    from cnnlab.registry import get_model, model_info

    info = model_info(source)  # unknown names: ValueError with close matches
    c, h, w = parse_input(input_size) if input_size else info.input_size
    kw = {"in_channels": c} if c != info.input_size[0] else {}
    if h <= 32 < info.input_size[1]:
        kw["small_input"] = True
    if source == "lenet5" and h in (28, 32):
        kw["input_size"] = h
    model = get_model(source, **kw)
    spec = {"channels": c, "size": [h, w], "mean": [0.5] * c, "std": [0.25] * c}
    return model, {"input": spec, "classes": [str(i) for i in range(info.num_classes)],
                   "model": source, "model_kwargs": kw}, None, f"{source} (random weights)"


def _torch_fn(model, x, compiled: bool):
    import torch

    m = torch.compile(model) if compiled else model
    xt = torch.from_numpy(x)

    def fn():
        with torch.inference_mode():
            return m(xt)
    return fn


def _onnx_session(model, meta, onnx_path, tmp: Path, threads: int | None):
    from cnnlab.deploy.onnx_predict import OnnxClassifier

    if onnx_path is None:
        from cnnlab.deploy.export import export_model

        onnx_path = tmp / "model.onnx"
        export_model(model, meta, onnx_path, "onnx", dynamic_batch=True)
    return OnnxClassifier(onnx_path, threads=threads)


def bench(source: str, batches=(1, 32, 256), runtimes=RUNTIMES, threads: int | None = None,
          input_size: str | None = None, seconds: float = 1.0, say=None) -> BenchReport:
    """Measure every (runtime, batch) pair; see the module docstring.

    ``say(message)``, when given, hears one progress line per step (an export or a compile
    takes tens of seconds; each timed case about ``seconds``)."""
    say = say or (lambda message: None)
    bad = [r for r in runtimes if r not in RUNTIMES]
    if bad or not runtimes:
        raise UserError(f"--runtime {','.join(runtimes)}: unknown {bad or 'none'}; expected "
                        f"some of {','.join(RUNTIMES)}")
    model, meta, onnx_path, label = load_for_bench(source, input_size)
    spec = meta["input"]
    import torch

    if threads:
        torch.set_num_threads(threads)
    report = BenchReport(label, (spec["channels"], *spec["size"]), threads or
                         torch.get_num_threads(), machine=f"{platform.machine()} "
                         f"{os.cpu_count()} cores, torch {torch.__version__}")
    if model is not None:
        model.eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for rt in runtimes:
            if model is None and rt != "onnx":
                report.notes.append(f"{rt}: skipped (an .onnx file has no torch model)")
                continue
            t0 = time.perf_counter()
            if rt == "onnx":
                say("onnx: exporting the model (dynamic batch) and loading it in onnxruntime..."
                    if onnx_path is None else f"onnx: loading {onnx_path} in onnxruntime...")
            session = _onnx_session(model, meta, onnx_path, Path(tmp), threads) \
                if rt == "onnx" else None
            setup = time.perf_counter() - t0
            for b in batches:
                x = rng.standard_normal((b, *report.input)).astype(np.float32)
                t0 = time.perf_counter()
                if rt == "onnx":
                    def fn(x=x):
                        return session.logits(x)
                else:
                    fn = _torch_fn(model, x, rt == "compile")
                    if rt == "compile":
                        say(f"compile: compiling for batch {b}...")
                        fn()  # compile for this shape outside the timing
                say(f"{rt}: timing batch {b} for about {seconds:g} s...")
                setup += time.perf_counter() - t0 if rt == "compile" else 0.0
                report.rows.append(_row(rt, b, time_calls(fn, seconds), setup))
                setup = 0.0
    return report
