"""What the lab's experiments share: data subsets in memory, a compact training loop for
models and data the trainer cannot name, evaluation, and matplotlib set-up.

Why a loop of its own: :func:`cnnlab.train.train` takes its data as a spec string and its
model as a registry name, while the experiments train small networks defined in their own
modules on in-memory subsets and perturbed copies (shifted, rescaled, 10% subsets). The loop
uses the trainer's parts (``cnnlab.optim.SGD`` with torch's update rule, the one-cycle
schedule, ``cnnlab.transforms`` augmentation) so numbers are comparable with ``cnnlab train``.
"""

from __future__ import annotations

import time

import numpy as np


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def load(spec: str):
    """``cnnlab.data.load_data(spec)`` with a one-line error naming the spec."""
    from cnnlab.data import load_data

    return load_data(spec, progress=False)


def subset(images: np.ndarray, labels: np.ndarray, n: int | None, seed: int = 0):
    """A stratified random subset of ``n`` images (all of them when n is None or too big)."""
    if n is None or n >= len(labels):
        return images, labels
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = max(1, n // len(classes))
    idx = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per] for c in classes])
    idx = np.sort(idx)
    return images[idx], labels[idx]


def onecycle(t: float) -> float:
    """The trainer's one-cycle factor at fraction ``t`` of training: linear warm-up over
    25%, linear decay to zero (Smith 2018)."""
    return t / 0.25 if t < 0.25 else max(0.0, (1 - t) / 0.75)


def fit(model, xtr, ytr, xte, yte, *, epochs: int, lr: float, seed: int = 0,
        batch_size: int = 64, weight_decay: float = 5e-4, momentum: float = 0.9,
        prep=None, augment: str = "none", schedule: str = "onecycle",
        eval_train: bool = False, threads: int | None = None, log=None) -> dict:
    """Train ``model`` with SGD (Nesterov) on uint8 tensors ``xtr (N, C, H, W)``, ``ytr (N,)``.

    ``prep(x)``: float images in [0, 1] -> network input (default: x). ``augment``: a
    ``--augment`` spec applied to the [0, 1] images before ``prep``. Returns a dict with
    per-epoch lists ``train_loss``, ``train_acc`` (running, over the epoch), ``test_acc``,
    ``train_eval_acc`` (clean pass over the training set, if ``eval_train``), ``seconds``,
    and ``diverged`` (True when the loss became NaN/inf: training stops there). ``log(msg)``,
    if given, gets one progress line per epoch.
    """
    import torch
    import torch.nn.functional as F

    from cnnlab import optim
    from cnnlab.transforms import parse_augment

    if threads:
        torch.set_num_threads(threads)
    prep = prep or (lambda x: x)
    aug = parse_augment(augment)
    torch.manual_seed(seed)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = optim.SGD([{"params": decay, "weight_decay": weight_decay},
                     {"params": rest, "weight_decay": 0.0}], lr=lr, momentum=momentum,
                    nesterov=momentum > 0)
    n = len(ytr)
    steps = (n + batch_size - 1) // batch_size
    total = steps * epochs
    hist = {"train_loss": [], "train_acc": [], "test_acc": [], "train_eval_acc": [],
            "seconds": 0.0, "diverged": False}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        loss_sum, correct = 0.0, 0
        for s in range(steps):
            idx = perm[s * batch_size:(s + 1) * batch_size]
            x = xtr[idx].float().div_(255)
            if aug:
                x = aug(x, generator=g)
            x, y = prep(x), ytr[idx]
            f = onecycle((epoch * steps + s) / total) if schedule == "onecycle" else 1.0
            for group in opt.param_groups:
                group["lr"] = lr * f
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if not torch.isfinite(loss):
                hist["diverged"] = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
        if hist["diverged"]:
            break
        hist["train_loss"].append(loss_sum / n)
        hist["train_acc"].append(correct / n)
        hist["test_acc"].append(accuracy(model, xte, yte, prep))
        if eval_train:
            hist["train_eval_acc"].append(accuracy(model, xtr, ytr, prep))
        if log is not None:
            log(f"  epoch {epoch + 1}/{epochs}: loss {hist['train_loss'][-1]:.4f}, train "
                f"{100 * hist['train_acc'][-1]:.1f}%, test {100 * hist['test_acc'][-1]:.1f}% "
                f"({time.perf_counter() - t0:.0f} s)")
    hist["seconds"] = time.perf_counter() - t0
    return hist


def predict(model, x, prep=None, batch_size: int = 1000):
    """Argmax predictions (N,) of uint8 images ``x (N, C, H, W)`` in eval mode."""
    import torch

    prep = prep or (lambda v: v)
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(prep(x[i:i + batch_size].float().div(255))).argmax(1))
    model.train()
    return torch.cat(out)


def accuracy(model, x, y, prep=None) -> float:
    return float((predict(model, x, prep) == y).float().mean())


def standardizer(xtr):
    """``prep`` subtracting the training set's per-channel mean and dividing by its std
    (on the [0, 1] scale), as ``cnnlab train`` does by default."""
    x = xtr.float().div(255)
    mean = x.mean((0, 2, 3), keepdim=True)
    std = x.std((0, 2, 3), keepdim=True)
    return lambda v: (v - mean) / std


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def mean_sd(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def pm(values, scale: float = 100.0, digits: int = 2) -> str:
    """``"98.12 ± 0.31"`` (mean ± sample std over seeds), in percent by default."""
    m, s = mean_sd(values)
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}" if len(values) > 1 else \
        f"{m * scale:.{digits}f}"


def dataset(kind: str) -> str:
    """A loadable spec for ``digits``, ``mnist`` or ``cifar10``: the team's archives beside
    the repository (``../shared/datasets/<kind>.tar.gz``) when present, else the canonical
    name (read from ``$CNNLAB_CACHE/datasets``, downloaded when online)."""
    from pathlib import Path

    if kind == "digits":
        return kind
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        p = root.parent / "shared" / "datasets" / f"{kind}.tar.gz"
        if p.is_file():
            return str(p)
    return kind


def tensors(spec: str, n_train: int | None = None, n_test: int | None = None, seed: int = 0):
    """(xtr, ytr, xte, yte, classes) as torch tensors (uint8 images, int64 labels), with
    optional stratified subsets of ``n_train`` / ``n_test`` images."""
    import torch

    d = load(spec)
    xtr, ytr = subset(d.train.images, d.train.labels, n_train, seed)
    xte, yte = subset(d.test.images, d.test.labels, n_test, seed)
    t = torch.from_numpy
    return t(xtr), t(ytr), t(xte), t(yte), d.classes


def shift(x, dy: int, dx: int):
    """Images (N, C, H, W) moved by (dy, dx) pixels, vacated pixels 0 (black)."""
    import torch

    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def kind_of(spec: str) -> str:
    from cnnlab.lab import dataset_kind

    return dataset_kind(spec)
