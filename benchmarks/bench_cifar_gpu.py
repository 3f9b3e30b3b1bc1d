"""CIFAR-10 on one GPU (run on the device machine), all in one invocation:

1. The ResNet paper's degradation experiment, shortened to fit: plain-20, plain-56,
   ResNet-20 and ResNet-56 with the paper's recipe (SGD momentum 0.9, lr 0.1 divided by 10 at
   50% and 75% of training, weight decay 1e-4, batch 128, 4-pixel-pad crop + flip) for
   --epochs epochs, the four runs side by side on the one GPU. Expected: plain-56 has a higher
   *training* error than plain-20, while ResNet-56 beats ResNet-20.
2. A fast recipe's wall time to 90% test accuracy, alone on the GPU: ResNet-18 (small-input
   stem), bf16 autocast, channels_last, batch 512, one-cycle, label smoothing 0.1.
3. NCCL: the same trainer under torchrun with the NCCL backend (one GPU: one process).

    python benchmarks/bench_cifar_gpu.py --data PATH/cifar10.tar.gz --out OUTDIR [--epochs 20]

OUTDIR receives degradation.json, fast.json and nccl.json (per-epoch metrics and summaries);
`python benchmarks/plot_degradation.py OUTDIR/degradation.json` draws the curves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

PAPER = ["--batch-size", "128", "--lr", "0.1", "--momentum", "0.9", "--no-nesterov",
         "--weight-decay", "1e-4", "--decay-norm-and-bias", "--schedule", "step",
         "--milestones", "0.5,0.75", "--augment", "crop:4,flip", "--amp", "bf16"]
FAST = ["--model", "resnet18", "--model-kwargs", '{"small_input": true}', "--batch-size", "512",
        "--lr", "0.4", "--schedule", "onecycle", "--weight-decay", "5e-4",
        "--label-smoothing", "0.1", "--augment", "crop:4,flip", "--amp", "bf16"]


def cnnlab(*args, out: Path, launcher=None):
    cmd = [*(launcher or [sys.executable, "-m"]), "cnnlab", "train", *args, "--out", str(out),
           "--progress", "lines"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def collect(run: Path) -> dict:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {"final": json.loads((run / "final.json").read_text()), "epochs": rows}


def wait(procs: dict, log) -> None:
    for name, p in procs.items():
        out, _ = p.communicate()
        log.write(f"==== {name} (exit {p.returncode})\n{out}\n")
        log.flush()
        if p.returncode != 0:
            print(out[-3000:])
            raise SystemExit(f"{name} failed")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--fast-epochs", type=int, default=18)
    ap.add_argument("--runs", default="/tmp/cnnlab-runs")
    ap.add_argument("--models", default="plain20,plain56,resnet20,resnet56")
    ap.add_argument("--parts", default="degradation,fast,nccl")
    ap.add_argument("--tag", default="", help="suffix of the output file names")
    args = ap.parse_args()
    out, runs = Path(args.out), Path(args.runs)
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__}, {gpu}", flush=True)
    from cnnlab.data import load_data

    t = time.perf_counter()
    load_data(args.data, progress=False)  # decode the JPEGs once; the runs read the cache
    print(f"decoded CIFAR-10 in {time.perf_counter() - t:.1f}s", flush=True)
    log = open(out / "log.txt", "w")

    parts = args.parts.split(",")
    if "fast" in parts:
        run_fast(args, out, runs, log)
    if "degradation" in parts:
        run_degradation(args, out, runs, log)
    if "nccl" in parts:
        run_nccl(args, out, runs, log)


def run_degradation(args, out, runs, log):
    t = time.perf_counter()
    models = args.models.split(",")
    procs = {m: cnnlab("--model", m, "--data", args.data, "--epochs", str(args.epochs), *PAPER,
                       out=runs / m) for m in models}
    wait(procs, log)
    deg = {m: collect(runs / m) for m in models}
    json.dump(deg, open(out / f"degradation{args.tag}.json", "w"), indent=1)
    print(f"degradation runs: {time.perf_counter() - t:.0f}s wall ({len(models)} concurrent)")
    for m in models:
        last = deg[m]["epochs"][-1]
        print(f"  {m:9s} train error {1 - last['train_acc']:.2%}  test error "
              f"{1 - last['test_acc']:.2%}")


def run_fast(args, out, runs, log):
    t0 = time.perf_counter()
    p = cnnlab("--data", args.data, "--epochs", str(args.fast_epochs), *FAST, out=runs / "fast")
    wait({"fast": p}, log)
    wall = time.perf_counter() - t0
    fast = collect(runs / "fast")
    hit = next((r for r in fast["epochs"] if r["test_acc"] >= 0.90), None)
    fast["wall_seconds"] = wall
    fast["seconds_to_90"] = hit["seconds"] if hit else None
    json.dump(fast, open(out / f"fast{args.tag}.json", "w"), indent=1)
    print(f"fast recipe: final {fast['final']['test_accuracy']:.2%}; 90% reached at epoch "
          f"{hit['epoch'] if hit else '-'} after {hit['seconds'] if hit else float('nan'):.1f}s "
          f"in the loop; command wall {wall:.1f}s")


def run_nccl(args, out, runs, log):
    p = cnnlab("--data", args.data, "--model", "resnet20", "--epochs", "1", *PAPER,
               out=runs / "nccl", launcher=[sys.executable, "-m", "torch.distributed.run",
                                            "--standalone", "--nproc_per_node=1", "-m"])
    wait({"nccl": p}, log)
    nccl = collect(runs / "nccl")
    json.dump(nccl, open(out / "nccl.json", "w"), indent=1)
    print(f"torchrun + {nccl['final']['backend']}: epoch 1 test accuracy "
          f"{nccl['final']['test_accuracy']:.2%}")


if __name__ == "__main__":
    main()
