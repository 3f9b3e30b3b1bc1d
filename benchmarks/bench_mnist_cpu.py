"""MNIST on CPU: wall time to 99.0% test accuracy, cnnlab vs two plain-PyTorch references,
all measured in this one invocation on the same machine and the same decoded data.

    python benchmarks/bench_mnist_cpu.py [--seeds 0 1 2] [--skip-official]

- cnnlab: `cnnlab train --data ../shared/datasets/mnist.tar.gz ...` as a subprocess; the
  wall time of the whole command (interpreter start, cached data load, training, per-epoch
  evaluation and checkpoints), and the in-loop time of the first epoch reaching 99.0%.
- (a) PyTorch's official MNIST example recipe (pytorch/examples mnist/main.py): its two-conv
  net with dropout, Adadelta lr 1.0, StepLR gamma 0.7, batch 64, DataLoader; stopped at the
  first epoch reaching 99.0% (at most 5 epochs).
- (b) a plain PyTorch LeNet-5 loop: SGD nesterov, one-cycle max lr 0.1, batch 128,
  channels_last, 3 epochs (time to 99.0% is taken at the epoch that reaches it). It runs as
  its own script (a subprocess: interpreter, `import torch`, loading the same decoded arrays
  from .npy files, training), so both sides have a whole-command time and an in-loop time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist.tar.gz"
CNNLAB_ARGS = ["--epochs", "2", "--batch-size", "128", "--lr", "0.15", "--label-smoothing", "0.1",
               "--augment", "none"]


def load_tensors():
    from cnnlab.data import load_data

    d = load_data(str(MNIST), progress=False)
    to = lambda a: torch.from_numpy(a.images).float().div_(255)  # noqa: E731
    return (to(d.train), torch.from_numpy(d.train.labels), to(d.test),
            torch.from_numpy(d.test.labels))


def accuracy(model, x, y, norm):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(norm(x[i:i + 2000])).argmax(1) for i in range(0, len(x), 2000)])
    model.train()
    return (pred == y).float().mean().item()


class OfficialNet(nn.Module):  # pytorch/examples mnist/main.py
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        x = self.dropout1(F.max_pool2d(x, 2)).flatten(1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return F.log_softmax(self.fc2(x), dim=1)


def reference_official(data, seed, max_epochs=5):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    norm = lambda x: (x - 0.1307) / 0.3081  # noqa: E731
    model = OfficialNet()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xtr, ytr), batch_size=64,
                                         shuffle=True)
    t0 = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        for x, y in loader:
            opt.zero_grad()
            F.nll_loss(model(norm(x)), y).backward()
            opt.step()
        sched.step()
        acc = accuracy(model, xte, yte, norm)
        print(f"  (a) epoch {epoch}: {acc:.4f} at {time.perf_counter() - t0:.1f}s", flush=True)
        if acc >= 0.99:
            return time.perf_counter() - t0, acc, epoch
    return float("nan"), acc, max_epochs


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                 nn.Linear(84, 10))

    def forward(self, x):
        return self.net(x)


def reference_lenet(data, seed, epochs=3):
    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    mean, std = xtr.mean().item(), xtr.std().item()
    norm = lambda x: ((x - mean) / std).contiguous(memory_format=torch.channels_last)  # noqa: E731
    model = LeNet5().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    steps = epochs * ((len(xtr) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    t0 = time.perf_counter()
    hit = None
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            opt.zero_grad()
            F.cross_entropy(model(norm(xtr[idx])), ytr[idx]).backward()
            opt.step()
            sched.step()
        acc = accuracy(model, xte, yte, norm)
        print(f"  (b) epoch {epoch}: {acc:.4f} at {time.perf_counter() - t0:.1f}s", flush=True)
        if acc >= 0.99 and hit is None:
            hit = time.perf_counter() - t0
    return (hit if hit is not None else float("nan")), acc, epochs


def save_arrays(data, folder: Path) -> list[str]:
    """The decoded tensors as .npy files that reference (b)'s script loads with numpy alone."""
    import numpy as np

    paths = []
    for name, t in zip(("xtr", "ytr", "xte", "yte"), data):
        paths.append(str(folder / f"{name}.npy"))
        np.save(paths[-1], t.numpy())
    return paths


def run_reference_b(paths, seed):
    """(whole-command wall, in-loop time to 99%, final accuracy) of (b) as its own process."""
    cmd = [sys.executable, __file__, "--child-b", str(seed), *paths]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    *epochs, last = out.stdout.strip().splitlines()
    print("\n".join(epochs), flush=True)  # the child's per-epoch lines
    res = json.loads(last)
    return wall, res["time_to_99"], res["accuracy"]


def child_b(seed: int, paths: list[str]) -> None:
    import numpy as np

    xtr, ytr, xte, yte = (torch.from_numpy(np.load(p)) for p in paths)
    t, acc, _ = reference_lenet((xtr.float().div_(255), ytr, xte.float().div_(255), yte), seed)
    print(json.dumps({"time_to_99": t, "accuracy": acc}))


def run_cnnlab(seed):
    out = Path(tempfile.mkdtemp()) / "run"
    cmd = [sys.executable, "-m", "cnnlab", "train", "--data", str(MNIST), *CNNLAB_ARGS,
           "--seed", str(seed), "--out", str(out), "--progress", "none"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    hit = next((r for r in rows if r["test_acc"] >= 0.99), None)
    final = json.loads((out / "final.json").read_text())
    return wall, (hit["seconds"] if hit else float("nan")), final["test_accuracy"]


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                if ln.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--skip-official", action="store_true", help="skip reference (a) (~6 min)")
    ap.add_argument("--child-b", nargs=5, metavar=("SEED", "XTR", "YTR", "XTE", "YTE"),
                    help=argparse.SUPPRESS)  # internal: reference (b) as its own process
    args = ap.parse_args()
    if args.child_b:
        return child_b(int(args.child_b[0]), args.child_b[1:])
    if not MNIST.exists():
        sys.exit(f"{MNIST} not found: this benchmark reads ../shared/datasets/mnist.tar.gz")
    print(machine())
    data = load_tensors()  # also warms cnnlab's decoded-array cache
    paths = save_arrays((data[0].mul(255).round().to(torch.uint8), data[1],
                         data[2].mul(255).round().to(torch.uint8), data[3]),
                        Path(tempfile.mkdtemp()))
    res = {k: [] for k in ("c_wall", "c_loop", "c_acc", "b_wall", "b_loop", "b_acc")}
    for s in args.seeds:  # interleaved, so drifts in machine speed hit both sides alike
        wall, loop, acc = run_cnnlab(s)
        print(f"cnnlab seed {s}: {acc:.4f}, whole command {wall:.1f}s, in the loop to 99%: "
              f"{loop:.1f}s", flush=True)
        bwall, bloop, bacc = run_reference_b(paths, s)
        print(f"(b)    seed {s}: {bacc:.4f}, whole command {bwall:.1f}s, in the loop to 99%: "
              f"{bloop:.1f}s", flush=True)
        for k, v in zip(res, (wall, loop, acc, bwall, bloop, bacc)):
            res[k].append(v)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"\nmedians: cnnlab whole {med['c_wall']:.1f}s, loop {med['c_loop']:.1f}s "
          f"(accuracies {', '.join(f'{a:.2%}' for a in res['c_acc'])}); (b) whole "
          f"{med['b_wall']:.1f}s, loop {med['b_loop']:.1f}s (accuracies "
          f"{', '.join(f'{a:.2%}' for a in res['b_acc'])})")
    print(f"ratio cnnlab/(b): whole command {med['c_wall'] / med['b_wall']:.2f}, in the loop "
          f"{med['c_loop'] / med['b_loop']:.2f}, cnnlab whole vs (b) loop "
          f"{med['c_wall'] / med['b_loop']:.2f}")
    if not args.skip_official:
        ta, acca, ep = reference_official(data, args.seeds[0])
        print(f"(a) seed {args.seeds[0]}: {acca:.4f} after {ep} epochs, time to 99%: {ta:.1f}s "
              f"(in the loop); ratio cnnlab loop/(a) = {med['c_loop'] / ta:.3f}")


if __name__ == "__main__":
    main()
