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
  channels_last, 3 epochs (time to 99.0% is taken at the epoch that reaches it).
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
CNNLAB_ARGS = ["--epochs", "2", "--batch-size", "128", "--lr", "0.1", "--augment", "none"]


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
    ap.add_argument("--skip-official", action="store_true", help="skip reference (a) (~10 min)")
    args = ap.parse_args()
    if not MNIST.exists():
        sys.exit(f"{MNIST} not found: this benchmark reads ../shared/datasets/mnist.tar.gz")
    print(machine())
    data = load_tensors()  # also warms cnnlab's decoded-array cache
    res = {"cnnlab_wall": [], "cnnlab_loop": [], "cnnlab_acc": [], "b": [], "b_acc": []}
    for s in args.seeds:
        wall, loop, acc = run_cnnlab(s)
        print(f"cnnlab seed {s}: {acc:.4f}, wall {wall:.1f}s (loop to 99%: {loop:.1f}s)", flush=True)
        res["cnnlab_wall"].append(wall)
        res["cnnlab_loop"].append(loop)
        res["cnnlab_acc"].append(acc)
        tb, accb, _ = reference_lenet(data, s)
        print(f"(b) seed {s}: {accb:.4f}, time to 99%: {tb:.1f}s", flush=True)
        res["b"].append(tb)
        res["b_acc"].append(accb)
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"\nmedian cnnlab wall {med['cnnlab_wall']:.1f}s (accuracies "
          f"{', '.join(f'{a:.2%}' for a in res['cnnlab_acc'])}); (b) {med['b']:.1f}s; "
          f"ratio cnnlab/(b) = {med['cnnlab_wall'] / med['b']:.2f}")
    if not args.skip_official:
        ta, acca, ep = reference_official(data, args.seeds[0])
        print(f"(a) seed {args.seeds[0]}: {acca:.4f} after {ep} epochs, time to 99%: {ta:.1f}s; "
              f"ratio cnnlab/(a) = {med['cnnlab_wall'] / ta:.3f}")


if __name__ == "__main__":
    main()
