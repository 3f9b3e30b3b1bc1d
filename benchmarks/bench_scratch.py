"""Benchmark: one LeNet-5 training step (batch 128, MNIST shape 1x28x28 padded by 2 in C1)
in the NumPy engine vs torch's fastest CPU setting (channels_last), measured in one run.

    python benchmarks/bench_scratch.py               # step times, ratio (median of --repeats)
    python benchmarks/bench_scratch.py --profile     # per-layer forward/backward of NumPy
    python benchmarks/bench_scratch.py --epochs 3    # + seconds per MNIST epoch, time to 99%

Steps of the two engines alternate in blocks so background load hits both alike. Results
go to benchmarks/RESULTS.md ("NumPy engine").
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from cnnlab.models.lenet import LeNet5 as TorchLeNet5
from cnnlab.scratch import nn as snn
from cnnlab.scratch import optim as soptim
from cnnlab.scratch.models import LeNet5 as NumpyLeNet5


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, nproc={os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}), "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy "
            f"{np.__version__}, Python {platform.python_version()}")


def make_engines(batch: int, seed: int = 0):
    torch.manual_seed(seed)
    tmodel = TorchLeNet5(input_size=28).to(memory_format=torch.channels_last)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    nmodel = NumpyLeNet5(input_size=28)
    nmodel.load_state_dict(tmodel.state_dict())
    nmodel.features[0].needs_input_grad = False  # like torch: the input needs no gradient
    nopt = soptim.SGD(nmodel.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    yt = torch.from_numpy(y)
    crit = snn.CrossEntropyLoss()

    def torch_step():
        topt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(tmodel(xt), yt).backward()
        topt.step()

    def numpy_step():
        nopt.zero_grad()
        crit(nmodel(x), y)
        nmodel.backward(crit.backward())
        nopt.step()

    return torch_step, numpy_step, nmodel, x, y


def bench_step(batch: int, repeats: int, warmup: int = 5, block: int = 10) -> dict:
    """Median step time of each engine. The engines alternate in blocks of `block` steps
    (torch x10, numpy x10, ...): slow drifts of background load hit both alike, and each
    block's first step (where the other engine's thread pool may still be spinning) is
    dropped."""
    torch_step, numpy_step, *_ = make_engines(batch)
    for _ in range(warmup):
        torch_step()
        numpy_step()
    tt, tn = [], []
    while len(tn) < repeats:
        for step, out in ((torch_step, tt), (numpy_step, tn)):
            for i in range(block + 1):
                t0 = time.perf_counter()
                step()
                if i:
                    out.append(time.perf_counter() - t0)
    mt, mn = statistics.median(tt), statistics.median(tn)
    return {"torch_ms": mt * 1e3, "numpy_ms": mn * 1e3, "ratio": mn / mt,
            "torch_min_ms": min(tt) * 1e3, "numpy_min_ms": min(tn) * 1e3}


def profile(batch: int, repeats: int) -> None:
    _, _, model, x, y = make_engines(batch)
    crit = snn.CrossEntropyLoss()
    layers = [*model.features, model.flatten, *model.classifier]
    fw, bw = np.zeros(len(layers)), np.zeros(len(layers))
    for _ in range(repeats):
        h = x
        for i, m in enumerate(layers):
            t = time.perf_counter()
            h = m(h)
            fw[i] += time.perf_counter() - t
        crit(h, y)
        d = crit.backward()
        for i in reversed(range(len(layers))):
            t = time.perf_counter()
            d = layers[i].backward(d)
            bw[i] += time.perf_counter() - t
    for i, m in enumerate(layers):
        print(f"{m._short_repr()[:58]:58s} fwd {fw[i] / repeats * 1e3:6.2f} ms   "
              f"bwd {bw[i] / repeats * 1e3:6.2f} ms")
    print(f"total {(fw.sum() + bw.sum()) / repeats * 1e3:.2f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--epochs", type=int, default=0,
                    help="also train both engines on MNIST for this many epochs")
    ap.add_argument("--data", default="../shared/datasets/mnist.tar.gz", help="for --epochs")
    ap.add_argument("--lr", type=float, default=0.1, help="peak learning rate for --epochs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    if args.profile:
        profile(args.batch, args.repeats)
    r = bench_step(args.batch, args.repeats)
    print(f"LeNet-5 training step, batch {args.batch}, 1x28x28: torch channels_last "
          f"{r['torch_ms']:.2f} ms (min {r['torch_min_ms']:.2f}), numpy {r['numpy_ms']:.2f} ms "
          f"(min {r['numpy_min_ms']:.2f}); ratio {r['ratio']:.2f}x")
    if args.epochs:
        for row in train_both(args.data, args.epochs, args.batch, args.lr):
            print(row)


def train_both(data: str, epochs: int, batch: int, lr: float) -> list[str]:
    """Train LeNet-5 with each engine through the real trainer (same data, augmentation,
    schedule); report seconds per epoch (training + test evaluation) and time to 99%."""
    import json
    import tempfile

    from cnnlab import train

    rows = []
    for engine in ("torch", "numpy"):
        with tempfile.TemporaryDirectory() as tmp:
            s = train(engine=engine, data=data, epochs=epochs, batch_size=batch, lr=lr,
                      out=tmp, progress="none")
            metrics = [json.loads(x) for x in open(f"{tmp}/metrics.jsonl")]
        secs = [m["seconds"] for m in metrics]
        per_epoch = statistics.median(b - a for a, b in zip([0.0] + secs[:-1], secs))
        hit = next((m for m in metrics if m["test_acc"] >= 0.99), None)
        to99 = (f"{hit['seconds']:.0f} s (epoch {hit['epoch']})" if hit
                else f"not reached in {epochs} epochs")
        rows.append(f"{engine:5s}: {per_epoch:.1f} s/epoch, best test accuracy "
                    f"{s['best_test_accuracy']:.2%}, time to 99%: {to99}")
    return rows


if __name__ == "__main__":
    main()
