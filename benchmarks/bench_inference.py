"""Inference benchmark (issue 13): runtimes side by side, predict's overhead, a 10,000-image
folder, and start-up with and without torch.

    python benchmarks/bench_inference.py                   # everything below
    python benchmarks/bench_inference.py --part runtimes   # or: overhead, folder, startup

1. runtimes: ``cnnlab.deploy.bench`` (what ``cnnlab bench`` prints) for LeNet-5 (1x28x28),
   ResNet-20 (3x32x32) and ResNet-18 (3x224x224), torch eager / torch.compile /
   onnxruntime, batches 1, 32, 256 (ResNet-18: 1 and 32 unless --full), random weights.
2. overhead: at batch 1, one thread, CPU time: ``OnnxClassifier.predict_arrays``
   (normalise, run, softmax, top-k, result dicts: what ``cnnlab predict model.onnx`` does
   per image once decoded) against the bare ``session.run`` on an already normalised
   array; the same for the torch path against a bare ``model(x)``. Median of interleaved
   rounds.
3. folder: ``cnnlab predict`` on MNIST's 10,000 test PNGs (extracted from
   ../shared/datasets/mnist.tar.gz into /tmp) with a checkpoint trained for one epoch and
   its ONNX export; whole command (subprocess wall time) and its --timing split.
4. startup: ``cnnlab predict`` on one image, checkpoint (torch) vs .onnx (no torch).
5. zoo: every zoo model exported, onnxruntime vs torch float32 vs torch float64.

Timings on a shared machine move with the load: compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
WORK = Path(os.environ.get("BENCH_DIR", "/tmp/cnnlab-bench-inference"))
CNNLAB = [sys.executable, "-m", "cnnlab"]


def part_runtimes(full: bool) -> None:
    from cnnlab.deploy.bench import bench

    for name, size, batches in [("lenet5", "1x28x28", [1, 32, 256]),
                                ("resnet20", "3x32x32", [1, 32, 256]),
                                ("resnet18", "3x224x224", [1, 32, 256] if full else [1, 32])]:
        r = bench(name, batches=batches, input_size=size, seconds=1.0)
        print(r.format(), "\n", flush=True)


def part_zoo() -> None:
    """Every zoo model at its small input (28/32 px, 3 classes), BatchNorm statistics from
    the batch: onnxruntime vs torch float32, and both vs torch float64 (the rounding-free
    reference), on 8 standard-normal inputs; CPU seconds of build + export + checks."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from test_export import calibrate, small  # the CI test's own definitions

    import onnxruntime as ort

    from cnnlab.deploy.export import export_model
    from cnnlab.registry import get_model, list_models

    WORK.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print("| model | CPU s | max abs logit | ort - torch32 | torch32 - torch64 | ort - torch64 |")
    print("|---|---|---|---|---|---|")
    for name in list_models():
        kw, spec = small(name)
        c0 = time.process_time()
        m = get_model(name, **kw)
        x = torch.randn(8, spec["channels"], *spec["size"])
        calibrate(m, x)
        path = WORK / f"zoo-{name}.onnx"
        export_model(m, {"classes": ["a", "b", "c"], "input": spec}, path, force=True,
                     dynamic_batch=True, optimize=False)
        with torch.no_grad():
            y32, y64 = m(x).numpy(), m.double()(x.double()).numpy()
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        yo = s.run(None, {"input": x.numpy()})[0]
        print(f"| {name} | {time.process_time() - c0:.1f} | {abs(y64).max():.3g} | "
              f"{abs(yo - y32).max():.2g} | {abs(y32 - y64).max():.2g} | "
              f"{abs(yo - y64).max():.2g} |", flush=True)


def _median_ratio(fn_a, fn_b, rounds: int = 15, calls: int = 200) -> tuple[float, float, float]:
    """(median µs of a, median µs of b, median of the per-round ratios a/b), interleaved.

    Timed by this process's CPU time, with every runtime on one thread (the caller's): on
    a busy machine the wall clock mostly measures the waits for a core."""
    ta, tb = [], []
    for _ in range(rounds):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            t = time.process_time()
            for _ in range(calls):
                fn()
            out.append((time.process_time() - t) / calls * 1e6)
    ratios = np.array(ta) / np.array(tb)
    return float(np.median(ta)), float(np.median(tb)), float(np.median(ratios))


def part_overhead() -> None:
    import torch

    from cnnlab import preprocess as P
    from cnnlab.deploy.export import export_model
    from cnnlab.deploy.onnx_predict import OnnxClassifier
    from cnnlab.registry import get_model

    WORK.mkdir(parents=True, exist_ok=True)
    for name, kw, spec in [
        ("lenet5", {"input_size": 28}, {"channels": 1, "size": [28, 28], "mean": [0.13],
                                         "std": [0.31]}),
        ("resnet20", {}, {"channels": 3, "size": [32, 32], "mean": [0.5] * 3,
                          "std": [0.25] * 3})]:
        model = get_model(name, **kw).eval()
        classes = [str(i) for i in range(10)]
        path = WORK / f"{name}.onnx"
        export_model(model, {"classes": classes, "input": spec}, path, dynamic_batch=True,
                     force=True)
        clf = OnnxClassifier(path, threads=1)
        torch.set_num_threads(1)
        u8 = np.random.default_rng(0).integers(0, 256, (1, spec["channels"], *spec["size"]),
                                               dtype=np.uint8)
        x = P.normalize(u8, spec)
        sess, feed = clf.session, {clf.input_name: x}
        a, b, r = _median_ratio(lambda: clf.predict_arrays(u8, 3, ["img"]),
                                lambda: sess.run(None, feed))
        print(f"{name} onnxruntime batch 1: predict path {a:.1f} µs, bare session.run "
              f"{b:.1f} µs, overhead {100 * (r - 1):+.1f}%")
        xt = torch.from_numpy(x)

        norm = P.Normalizer(spec)  # as cnnlab.inference.predict: built once per model

        def torch_predict():
            with torch.inference_mode():
                p = P.softmax(model(torch.from_numpy(norm(u8))).numpy())
            return P.results(["img"], p, classes, 3)

        def torch_bare():
            with torch.inference_mode():
                return model(xt)
        a, b, r = _median_ratio(torch_predict, torch_bare, calls=50)
        print(f"{name} torch eager batch 1: predict path {a:.1f} µs, bare model(x) {b:.1f} µs, "
              f"overhead {100 * (r - 1):+.1f}%", flush=True)


def _mnist_test_folder() -> Path:
    folder = WORK / "mnist" / "test"
    if not folder.exists():
        t = time.perf_counter()
        with tarfile.open(SHARED / "mnist.tar.gz") as tf:
            tf.extractall(WORK, members=[m for m in tf if m.name.startswith("mnist/test")],
                          filter="data")
        print(f"extracted {sum(1 for _ in folder.rglob('*.png'))} test PNGs in "
              f"{time.perf_counter() - t:.1f} s")
    return folder


def _checkpoint() -> tuple[Path, Path]:
    run = WORK / "lenet5-mnist"
    ckpt = run / "checkpoints" / "best.safetensors"
    if not ckpt.exists():
        # a private cache: the benchmark neither depends on nor disturbs the user's
        subprocess.run([*CNNLAB, "train", "--data", str(SHARED / "mnist.tar.gz"), "--epochs",
                        "1", "--out", str(run), "--progress", "none"], check=True,
                       env={**os.environ, "CNNLAB_CACHE": str(WORK / "cache")})
    onnx_path = ckpt.with_suffix(".onnx")
    if not onnx_path.exists():
        subprocess.run([*CNNLAB, "export", str(ckpt), "--dynamic-batch"], check=True)
    return ckpt, onnx_path


def _timed(argv: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(argv, capture_output=True, text=True, check=True)
    return time.perf_counter() - t, p.stderr.strip().splitlines()[-1] if p.stderr else ""


def part_folder(rounds: int = 3) -> None:
    folder = _mnist_test_folder()
    ckpt, onnx_path = _checkpoint()
    for label, model, extra in [("checkpoint, --runtime torch", ckpt, ["--runtime", "torch"]),
                                ("checkpoint, default (its export beside it: onnxruntime)",
                                 ckpt, []),
                                (".onnx file (onnxruntime)", onnx_path, []),
                                (".onnx file, decoding in this process", onnx_path,
                                 ["--workers", "0"])]:
        runs = [_timed([*CNNLAB, "predict", str(model), str(folder), "--csv",
                        str(WORK / "predictions.csv"), "--timing", *extra])
                for _ in range(rounds)]
        walls = sorted(w for w, _ in runs)
        print(f"{label}: whole command {', '.join(f'{w:.2f}' for w, _ in runs)} s "
              f"(median {walls[len(walls) // 2]:.2f} s); last {runs[-1][1]}", flush=True)


def part_startup(rounds: int = 5) -> None:
    folder = _mnist_test_folder()
    ckpt, onnx_path = _checkpoint()
    one = str(next(folder.rglob("*.png")))
    res = {"checkpoint, --runtime torch": [], ".onnx file": [], "import torch": []}
    for _ in range(rounds):  # interleaved
        res["checkpoint, --runtime torch"].append(
            _timed([*CNNLAB, "predict", str(ckpt), one, "--runtime", "torch"])[0])
        res[".onnx file"].append(_timed([*CNNLAB, "predict", str(onnx_path), one])[0])
        res["import torch"].append(_timed([sys.executable, "-c", "import torch"])[0])
    for k, v in res.items():
        runs = ", ".join(f"{t:.2f}" for t in v)
        print(f"{k}: median {np.median(v):.2f} s over {rounds} ({runs})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "runtimes", "overhead", "folder", "startup",
                                       "zoo"],
                    default="all")
    ap.add_argument("--full", action="store_true", help="ResNet-18 at batch 256 too")
    a = ap.parse_args()
    print(json.dumps({"cpus": os.cpu_count(), "python": sys.version.split()[0],
                      "load": os.getloadavg()}))
    if a.part in ("all", "runtimes"):
        part_runtimes(a.full)
    if a.part in ("all", "overhead"):
        part_overhead()
    if a.part in ("all", "folder"):
        part_folder()
    if a.part in ("all", "startup"):
        part_startup()
    if a.part in ("all", "zoo"):
        part_zoo()


if __name__ == "__main__":
    main()
