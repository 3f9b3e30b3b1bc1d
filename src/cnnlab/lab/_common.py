"""What the lab's experiments share: data subsets in memory, :func:`fit` (their call into
the trainer), evaluation, and matplotlib set-up.

The experiments train small networks defined in their own modules on in-memory subsets and
perturbed copies (shifted, rescaled, 10% subsets): :func:`cnnlab.train` takes both (an
``nn.Module`` and uint8 arrays), so there is one training loop and the lab's numbers come
from the same optimiser, schedule, augmentation and normalisation as ``cnnlab train``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from pathlib import Path

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


def fit(model, xtr, ytr, xte, yte, *, epochs: int, lr: float, seed: int = 0,
        batch_size: int = 64, weight_decay: float = 5e-4, momentum: float = 0.9,
        prep=None, augment: str = "none", schedule: str = "onecycle",
        eval_train: bool = False, threads: int | None = None, log=None) -> dict:
    """Train ``model`` in place with :func:`cnnlab.train` (SGD, Nesterov when ``momentum``,
    no validation split: the test set is evaluated after every epoch, as the experiments
    plot it) on uint8 tensors ``xtr (N, C, H, W)``, ``ytr (N,)``, in a temporary run directory.

    ``prep(x)``: float images in [0, 1] -> network input (default: x); one made by
    :func:`standardizer` becomes the trainer's ``normalize``, any other is applied by a
    wrapper module in front of ``model``. ``augment``: a ``--augment`` spec. Returns a dict
    with per-epoch lists ``train_loss``, ``train_acc`` (running, over the epoch), ``test_acc``
    (the run's metrics rows), ``train_eval_acc`` (clean pass over the training set, if
    ``eval_train``), ``seconds``, and ``diverged`` (True when the loss became NaN/inf: the
    trainer stops there). ``log(msg)``, if given, gets one progress line per epoch.
    """
    import tempfile

    from cnnlab.errors import TrainingError
    from cnnlab.training.api import train

    normalize = getattr(prep, "normalize", None) if prep is not None else "none"
    net = model if normalize is not None else Prepped(model, prep)  # the wrapper preps
    normalize = normalize or "none"
    hist = {"train_loss": [], "train_acc": [], "test_acc": [], "train_eval_acc": [],
            "seconds": 0.0, "diverged": False}
    t0 = time.perf_counter()

    def on_epoch(row: dict) -> None:
        if eval_train:
            hist["train_eval_acc"].append(accuracy(model, xtr, ytr, prep))
        if log is not None:
            log(f"  epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}, train "
                f"{100 * row['train_acc']:.1f}%, test {100 * row['test_acc']:.1f}% "
                f"({time.perf_counter() - t0:.0f} s)")

    data = ((xtr.numpy(), ytr.numpy()), (xte.numpy(), yte.numpy()))
    with tempfile.TemporaryDirectory(prefix="cnnlab-lab-") as tmp, _without_notes():
        try:
            train(model=net, data=data, out=f"{tmp}/run", epochs=epochs, lr=lr, seed=seed,
                  batch_size=batch_size, weight_decay=weight_decay, momentum=momentum,
                  nesterov=momentum > 0, augment=augment, schedule=schedule,
                  normalize=normalize, val_split=0.0, threads=threads, device="cpu",
                  progress="none", on_epoch=on_epoch)
        except TrainingError:  # a non-finite loss: the run stops, as the experiments record
            hist["diverged"] = True
        metrics = Path(tmp) / "run" / "metrics.jsonl"  # the run's record, one row per epoch
        rows = [json.loads(r) for r in metrics.read_text().splitlines()] if metrics.exists() else []
    for key in ("train_loss", "train_acc", "test_acc"):
        hist[key] = [r[key] for r in rows]
    hist["seconds"] = time.perf_counter() - t0
    return hist


@contextlib.contextmanager
def _without_notes():
    """Hold back the trainer's one-line notes that say the run's arrays are not kept and its
    module cannot be rebuilt from the run: true of every lab run, which keeps neither. Any
    other line (a warning) is passed on to stderr."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            yield
    finally:
        rest = [ln for ln in buf.getvalue().splitlines(keepends=True)
                if not (ln.startswith("data: in-memory arrays (") or (
                    ln.startswith("model ") and "will need the class" in ln))]
        sys.stderr.write("".join(rest))


def Prepped(model, prep):
    """``model`` behind ``prep`` (a callable on [0, 1] images), as one module to train."""
    import torch

    class _Prepped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(prep(x))

    return _Prepped()


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
    import torch

    from cnnlab.training.setup import channel_stats

    m, s = channel_stats([xtr.numpy()], xtr.shape[1])  # exactly the trainer's statistics
    mean, std = (torch.tensor(v).reshape(1, -1, 1, 1) for v in (m, s))

    def prep(v):
        return (v - mean) / std

    prep.normalize = f"{','.join(map(str, m))}/{','.join(map(str, s))}"  # fit's --normalize
    return prep


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
