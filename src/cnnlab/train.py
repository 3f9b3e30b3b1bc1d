"""The torch trainer: GPU-resident uint8 data, batched augmentation, exact resume.

Reproducibility by construction: every random choice of step ``s`` (the epoch's shuffle,
augmentation, dropout) comes from generators seeded by ``(seed, epoch)`` or
``(seed, step)``, so a run resumed from a mid-epoch checkpoint replays exactly the batches
and draws the uninterrupted run would have made. The RNG states are stored in the
checkpoint all the same.

Under ``torchrun`` (``WORLD_SIZE > 1``) each process takes a contiguous shard of every
global batch, gradients are averaged by DistributedDataParallel (gloo on CPU, NCCL on GPU),
and only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import inspect
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab import optim
from cnnlab.config import TrainConfig, make_config
from cnnlab.data import DataSplits, load_data
from cnnlab.errors import TrainingError, UserError  # noqa: F401 - TrainingError re-exported
from cnnlab.registry import get_model, model_info
from cnnlab.run import RunDir


# ----------------------------------------------------------------------------- setup
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu)")
    try:
        return torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N") from e


def input_spec(data: DataSplits, normalize: str = "auto", workers: int = 2) -> dict:
    """Channels, size and per-channel mean/std (on the [0, 1] scale) of the training set.

    Mean subtraction as VGG does (its mean RGB), plus division by the std so every channel
    has unit variance: faster, more stable optimisation and larger usable learning rates.
    A streaming training set (:class:`~cnnlab.data.stream.StreamingImageData`) is never
    decoded whole: its mean/std come from a seeded sample of up to
    ``STREAM_STATS_SAMPLE`` (10,000) training images, all of them when there are fewer.
    """
    c, h, w = data.train.shape
    if normalize == "none":
        mean, std = [0.0] * c, [1.0] * c
    elif normalize != "auto":
        mean, std = _given_stats(normalize, c)
    else:
        if _streaming(data.train):
            chunks = _stream_stats_chunks(data.train, workers)
        else:
            x = data.train.images
            chunks = (x[i:i + 16384] for i in range(0, len(x), 16384))
        mean, std = _channel_stats(chunks, c)
    return {"channels": c, "size": [h, w], "mean": mean, "std": std}


STREAM_STATS_SAMPLE = 10_000  # images decoded for a streaming set's mean/std


def _channel_stats(chunks, c: int) -> tuple[list[float], list[float]]:
    """Per-channel mean/std (0..1 scale, 6 decimals) of uint8 (B, C, H, W) chunks.

    Exact: each channel's 256-bin histogram (integer counts, ``torch.bincount``, ~0.1 s for
    MNIST's 47M pixels) gives the mean and variance without summing a float copy.
    """
    hist = torch.zeros(c, 256, dtype=torch.int64)
    for xb in chunks:
        xb = torch.as_tensor(xb).reshape(len(xb), c, -1)
        for ch in range(c):
            hist[ch] += torch.bincount(xb[:, ch].reshape(-1), minlength=256)
    h = hist.double()
    v = torch.arange(256, dtype=torch.float64) / 255.0
    n = h.sum(1).clamp_min(1)
    mean = (h * v).sum(1) / n
    var = (h * (v - mean[:, None]) ** 2).sum(1) / n
    std = var.clamp_min(1e-12).sqrt()
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]


def _stream_stats_chunks(train, workers: int):
    """uint8 chunks of a seeded sample of up to STREAM_STATS_SAMPLE streamed training images."""
    n = len(train)
    pick = np.arange(n) if n <= STREAM_STATS_SAMPLE else np.sort(
        np.random.default_rng(0).choice(n, STREAM_STATS_SAMPLE, replace=False))
    for x, _ in train.batches([pick[i:i + 4096] for i in range(0, len(pick), 4096)], workers):
        yield x.numpy()


def _streaming(split) -> bool:
    return not hasattr(split, "images")


def _given_stats(text: str, channels: int) -> tuple[list[float], list[float]]:
    """``"0.49,0.48,0.45/0.25,0.24,0.26"`` -> (mean, std), one value per channel (0..1 scale)."""
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in text.split("/"))
    except ValueError:
        mean = std = None
    if mean is None or len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise UserError(f"--normalize {text}: expected auto, none, or MEAN/STD with {channels} "
                        f"comma-separated value(s) each on the 0..1 scale (std > 0), e.g. "
                        f"{','.join(['0.5'] * channels)}/{','.join(['0.25'] * channels)}")
    return mean, std


def model_kwargs_for(cfg: TrainConfig, spec: dict, num_classes: int) -> dict:
    """Constructor arguments: classes and channels from the data, plus the user's extras.

    A model whose builder takes ``input_size`` (LeNet-5's 28 vs 32) gets the data's size.
    """
    kw = {"num_classes": num_classes, "in_channels": spec["channels"], **cfg.model_kwargs}
    params = inspect.signature(model_info(cfg.model).builder).parameters
    takes = lambda k: k in params or any(p.kind == p.VAR_KEYWORD for p in params.values())  # noqa: E731
    if "input_size" in params and "input_size" not in cfg.model_kwargs:
        kw["input_size"] = spec["size"][0]
    return {k: v for k, v in kw.items() if takes(k)}


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if cfg.decay_norm_and_bias or p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                         nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "adamw":
        return optim.AdamW(groups, lr=cfg.lr)
    raise UserError(f"--optimizer {cfg.optimizer}: expected sgd, adam or adamw")


def lr_factor(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Multiplier of the peak lr at ``step`` (0-based) of ``total`` steps."""
    t = step / max(total, 1)
    if cfg.schedule == "onecycle":
        # Linear warm-up over the first 25% of training, then linear decay to zero: the
        # triangular one-cycle policy (Smith 2018), robust at high peak rates.
        return t / 0.25 if t < 0.25 else max(0.0, (1 - t) / 0.75)
    warm = cfg.warmup_epochs * steps_per_epoch
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))
    if cfg.schedule == "step":
        try:
            marks = [float(m) for m in cfg.milestones.split(",") if m.strip()]
        except ValueError as e:
            raise UserError(f"--milestones {cfg.milestones}: expected fractions like 0.5,0.75") from e
        return 0.1 ** sum(t >= m for m in marks)
    raise UserError(f"--schedule {cfg.schedule}: expected constant, step, cosine or onecycle")


def load_training_data(cfg: TrainConfig, progress: bool) -> DataSplits:
    """The run's data, after checking the batch size and epochs against it."""
    data = load_data(cfg.data, val_split=cfg.val_split, seed=cfg.seed, progress=progress,
                     in_memory=cfg.in_memory)
    if cfg.workers < 0:
        raise UserError(f"--workers {cfg.workers}: expected 0 or more worker processes")
    if cfg.batch_size < 1 or cfg.epochs < 1:
        raise UserError(f"--batch-size and --epochs must be positive (got {cfg.batch_size}, "
                        f"{cfg.epochs})")
    if cfg.batch_size > len(data.train):
        raise UserError(f"--batch-size {cfg.batch_size} is larger than the training set "
                        f"({len(data.train)} images)")
    return data


# ------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, str]:
    """Join torchrun's process group (gloo on CPU, NCCL on GPU) when launched by torchrun,
    even with one process (so the DDP path runs the same way at every scale)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return Dist(), device_name
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local)
        device_name = f"cuda:{local}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local), device_name


# ------------------------------------------------------------------------------ helpers
def normalizer(spec: dict, device: torch.device):
    mean = torch.tensor(spec["mean"], device=device).view(1, -1, 1, 1)
    std = torch.tensor(spec["std"], device=device).view(1, -1, 1, 1)
    return lambda x: (x - mean) / std


def split_output(out):
    """(logits, [aux logits]) from a model's output: a tensor, a tuple, or a namedtuple."""
    if isinstance(out, torch.Tensor):
        return out, []
    if hasattr(out, "logits"):
        return out.logits, [a for a in (getattr(out, "aux_logits", None) or []) if a is not None]
    return out[0], [a for a in out[1:] if a is not None]


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, norm, batch_size: int = 1024,
                   channels_last: bool = False, amp_dtype=None) -> torch.Tensor:
    """Logits (N, classes) of uint8 images (N, C, H, W) in eval mode, batched."""
    was = model.training
    model.eval()
    outs = []
    for i in range(0, len(images), batch_size):
        x = norm(images[i:i + batch_size].float().div_(255))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            outs.append(split_output(model(x))[0].float())
    model.train(was)
    return torch.cat(outs)


@torch.no_grad()
def predict_logits_stream(model: nn.Module, split, norm, device: torch.device,
                          batch_size: int = 1024, workers: int = 2, channels_last: bool = False,
                          amp_dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N', classes), labels (N',)) of a streaming split, decoded in batches by
    ``workers`` processes; N' < N when unreadable files were skipped (with a warning)."""
    idx = np.arange(len(split))
    outs, ys = [], []
    for xb, yb in split.batches([idx[i:i + batch_size] for i in range(0, len(idx), batch_size)],
                                workers, pin_memory=device.type == "cuda"):
        if len(yb):
            outs.append(predict_logits(model, xb.to(device, non_blocking=True), norm,
                                       batch_size, channels_last, amp_dtype))
            ys.append(yb.to(device, non_blocking=True))
    if not outs:
        raise TrainingError("none of the test images could be read")
    return torch.cat(outs), torch.cat(ys)


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int = 5) -> float | None:
    """Fraction of rows whose label is among the k largest logits (None if k >= classes)."""
    if logits.shape[1] <= k:
        return None
    return (logits.topk(k, 1).indices == y[:, None]).any(1).float().mean().item()


def new_loop_state() -> dict:
    """The training loop's position, saved in every checkpoint (both engines): the epoch and
    step reached, the epoch's running loss/accuracy sums (so a resumed epoch reports what an
    uninterrupted one would), best-epoch tracking and the time spent so far."""
    return {"epoch": 0, "step_in_epoch": 0, "loss_sum": 0.0, "correct": 0, "seen": 0,
            "best_acc": -1.0, "best_epoch": 0, "elapsed": 0.0, "since_best": 0}


def _rng_state() -> dict:
    import random

    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1],
          "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


class _StopFlag:
    """SIGINT/SIGTERM set a flag the loop checks after each step: the step in progress
    finishes, a checkpoint is written, then the run exits. A second Ctrl-C aborts at once."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self._old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


# ------------------------------------------------------------------------------ the loop
def train(cfg: TrainConfig | None = None, resume: str | Path | None = None, **overrides) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns the final summary (also ``final.json``).

    ``resume``: a run directory; its config is reloaded (``overrides`` may extend
    ``epochs``) and training continues from its last checkpoint exactly.
    """
    run_path = None
    if resume is not None:
        run_path = Path(resume)
        base = RunDir(run_path, writer=False).load_config()
        cfg = make_config(base, **{k: v for k, v in overrides.items() if k in ("epochs",)})
        cfg.out = str(run_path)
    elif cfg is None:
        cfg = make_config(**overrides)
    if cfg.engine == "numpy":
        from cnnlab.scratch.train import train_numpy

        return train_numpy(cfg, resume=resume)
    if cfg.engine != "torch":
        raise UserError(f"--engine {cfg.engine}: expected torch or numpy")

    if Path(cfg.data).expanduser().exists():  # store an absolute path: eval works from anywhere
        cfg.data = str(Path(cfg.data).expanduser().resolve())
    dist, device_name = init_distributed(cfg.device)
    device = resolve_device(device_name)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = load_training_data(cfg, progress=dist.main and cfg.progress != "none")
    if cfg.batch_size % dist.world:
        raise UserError(f"--batch-size {cfg.batch_size} must divide by the {dist.world} processes")
    spec = input_spec(data, cfg.normalize, cfg.workers)
    classes = data.classes
    mkw = model_kwargs_for(cfg, spec, len(classes))
    torch.manual_seed(cfg.seed)
    model = get_model(cfg.model, **mkw).to(device)
    memfmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memfmt)
    amp_dtype = {"auto": torch.bfloat16 if device.type == "cuda" else None, "off": None,
                 "bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp, "bad")
    if amp_dtype == "bad":
        raise UserError(f"--amp {cfg.amp}: expected auto, bf16, fp16 or off")
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    opt = build_optimizer(cfg, model)
    aux_loss = getattr(model, "auxiliary_loss", None)
    if aux_loss is not None:
        model.aux_weight = cfg.aux_weight  # the paper's 0.3 by default

    def ce(logits, y):
        return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    from cnnlab.transforms import parse_augment

    # "auto" = the "standard" preset: shifts for digits (never flips: a mirrored 2 is not a
    # 2), crop + flip for colour images (see cnnlab.transforms.standard_spec)
    augment = parse_augment("standard" if cfg.augment == "auto" else cfg.augment)
    norm = normalizer(spec, device)

    path = run_path or cfg.out or RunDir.default_path(cfg.model, data.name)
    if torch.distributed.is_initialized():  # all processes use rank 0's folder
        import torch.distributed as tdist

        box = [str(path)]
        tdist.broadcast_object_list(box, src=0)
        path = box[0]
    run = RunDir(path, writer=dist.main, new=resume is None)
    cfg.out = str(run.path)
    # streaming splits (cnnlab.data.stream) are decoded batch by batch by worker processes
    stream_tr, stream_te = _streaming(data.train), _streaming(data.test)
    if not stream_tr:
        xtr = torch.from_numpy(data.train.images).to(device)
        ytr = torch.from_numpy(data.train.labels).to(device)
    if not stream_te:
        xte = torch.from_numpy(data.test.images).to(device)
        yte = torch.from_numpy(data.test.labels).to(device)
    n = len(data.train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs

    st = new_loop_state()
    if resume is not None:
        weights, meta, ts = load_resume(run)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        opt.load_state_dict(ts["optimizer"])
        scaler.load_state_dict(ts["scaler"])
        st.update(ts["loop"])
        run.truncate_metrics(st["epoch"])
    run.save_config(cfg.to_dict())
    net = model
    if torch.distributed.is_initialized():
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    meta_base = {"model": cfg.model, "model_kwargs": mkw, "classes": classes, "input": spec,
                 "engine": "torch", "data": data.name, "config": cfg.to_dict(),
                 "augment": augment.describe((1, *spec_shape(spec)))}
    tb = _tensorboard(run) if cfg.tensorboard and dist.main else None

    def save_last(epoch_done: int, step_in_epoch: int, metrics: dict | None = None):
        meta = {**meta_base, "epoch": epoch_done, "step": epoch_done * steps_per_epoch
                + step_in_epoch, "metrics": metrics or {}}
        state = {"optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                 "scheduler": {"step": meta["step"], "schedule": cfg.schedule},
                 "rng": _rng_state(), "loop": dict(st)}
        run.save("last", model.state_dict(), meta, state)

    bar_mode = cfg.progress if cfg.progress != "auto" else ("bar" if sys.stderr.isatty() else "lines")
    show = dist.main and bar_mode != "none"
    t_start = time.perf_counter() - st["elapsed"]
    last_row = {}
    with _StopFlag() as stop:
        for epoch in range(st["epoch"], cfg.epochs):
            model.train()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(
                cfg.seed * 1_000_003 + epoch))
            if stream_tr:  # the same per-step slices and shards as below, decoded ahead
                batches = iter(data.train.batches(
                    [perm[s * cfg.batch_size:(s + 1) * cfg.batch_size].tensor_split(
                        dist.world)[dist.rank].numpy()
                     for s in range(st["step_in_epoch"], steps_per_epoch)],
                    cfg.workers, pin_memory=device.type == "cuda"))
            else:
                perm = perm.to(device)
            t_epoch = time.perf_counter()
            seen_at_start = st["seen"]
            bar = None
            if show and bar_mode == "bar":
                from tqdm.auto import tqdm

                bar = tqdm(total=steps_per_epoch, initial=st["step_in_epoch"], leave=True,
                           desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", dynamic_ncols=True)
            loss_acc = torch.zeros((), device=device)
            correct_acc = torch.zeros((), device=device, dtype=torch.long)
            for s in range(st["step_in_epoch"], steps_per_epoch):
                gstep = epoch * steps_per_epoch + s
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                global_n = len(idx)
                idx = idx.tensor_split(dist.world)[dist.rank]
                seed_s = cfg.seed * 1_000_003 + 7919 * gstep + dist.rank
                # dropout draws depend on (seed, step) only; seeding just the device's
                # generator (torch.manual_seed also queues a CUDA seeding: ~0.1 ms a step)
                (torch.cuda.manual_seed if device.type == "cuda" else
                 torch.default_generator.manual_seed)(seed_s)
                gen = torch.Generator(device=device).manual_seed(seed_s)
                if stream_tr:
                    xb, y = next(batches)
                    xb, y = xb.to(device, non_blocking=True), y.to(device, non_blocking=True)
                    if not len(y):  # every file of this batch unreadable (warned): no step
                        st["step_in_epoch"] = s + 1
                        continue
                else:
                    xb, y = xtr[idx], ytr[idx]
                x = augment(xb.float().div_(255), generator=gen)
                x = norm(x).contiguous(memory_format=memfmt)
                lr = cfg.lr * lr_factor(cfg, gstep, total_steps, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = lr
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                    logits, aux = split_output(net(x))
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                    total = loss + sum(cfg.aux_weight * F.cross_entropy(
                        a, y, label_smoothing=cfg.label_smoothing) for a in aux)
                    if aux_loss is not None:  # GoogLeNet: auxiliary heads, training only
                        extra = aux_loss(y, criterion=ce)
                        total = total if extra is None else total + extra
                opt.zero_grad(set_to_none=True)
                if dist.world > 1:
                    # DDP averages gradients over processes; weighting each shard's mean loss
                    # by its share makes that the mean over the global batch even when the
                    # last batch does not split evenly: the same math as one process.
                    total = total * (len(y) * dist.world / global_n)
                scaler.scale(total).backward()
                if cfg.grad_clip:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
                loss_acc += loss.detach().float() * len(y)
                correct_acc += (logits.detach().argmax(1) == y).sum()
                st["seen"] += len(y)
                st["step_in_epoch"] = s + 1
                if device.type == "cpu" or s % 50 == 49 or s == steps_per_epoch - 1:
                    lval = loss_acc.item()
                    if not math.isfinite(lval):
                        if bar:
                            bar.close()
                        raise TrainingError(
                            f"loss became {lval} at epoch {epoch + 1}, step {gstep + 1} (lr "
                            f"{lr:.3g}); the last good checkpoint is kept in {run.checkpoints}. "
                            f"Try a lower --lr or --grad-clip.")
                    st["loss_sum"] += lval
                    st["correct"] += int(correct_acc.item())
                    loss_acc.zero_()
                    correct_acc.zero_()
                if bar and (s % 10 == 9 or s == steps_per_epoch - 1):
                    ips = (st["seen"] - seen_at_start) * dist.world / (time.perf_counter() - t_epoch)
                    bar.set_postfix(loss=f"{st['loss_sum'] / max(st['seen'], 1):.4f}",
                                    acc=f"{st['correct'] / max(st['seen'], 1):.2%}",
                                    img_s=f"{ips:,.0f}", refresh=False)
                if bar:
                    bar.update(1)
                if stop.signal is not None or (cfg.save_every and (gstep + 1) % cfg.save_every == 0):
                    if s + 1 < steps_per_epoch:  # at the epoch's end its own checkpoint follows
                        st["loss_sum"] += loss_acc.item()
                        st["correct"] += int(correct_acc.item())
                        loss_acc.zero_()
                        correct_acc.zero_()
                        st["elapsed"] = time.perf_counter() - t_start
                        if dist.main:
                            save_last(epoch, s + 1, last_row)
                    if stop.signal is not None:
                        if bar:
                            bar.close()
                        break
            if stop.signal is not None and st["step_in_epoch"] < steps_per_epoch:
                _say(dist, f"interrupted: checkpoint saved at epoch {epoch + 1}, step "
                           f"{st['step_in_epoch']}/{steps_per_epoch}; continue with "
                           f"cnnlab train --resume {run.path}")
                raise KeyboardInterrupt
            # ---- end of epoch: evaluate, log, checkpoint
            if stream_te:
                logits, yte = predict_logits_stream(
                    model, data.test, norm, device, workers=cfg.workers,
                    channels_last=cfg.channels_last, amp_dtype=amp_dtype)
            else:
                logits = predict_logits(model, xte, norm, channels_last=cfg.channels_last,
                                        amp_dtype=amp_dtype)
            test_loss = F.cross_entropy(logits, yte).item()
            test_acc = (logits.argmax(1) == yte).float().mean().item()
            test_top5 = topk_accuracy(logits, yte, 5)
            seconds = time.perf_counter() - t_start
            row = {"epoch": epoch + 1, "train_loss": st["loss_sum"] / max(st["seen"], 1),
                   "train_acc": st["correct"] / max(st["seen"], 1), "test_loss": test_loss,
                   "test_acc": test_acc, "test_top5": test_top5, "lr": lr,
                   "seconds": round(seconds, 3)}
            last_row = row
            improved = test_acc > st["best_acc"]
            if improved:
                st["best_acc"], st["best_epoch"], st["since_best"] = test_acc, epoch + 1, 0
            else:
                st["since_best"] += 1
            st.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, correct=0, seen=0,
                      elapsed=seconds)
            run.log_metrics(row)
            if tb is not None:
                for k, v in row.items():
                    if k != "epoch":
                        tb.add_scalar(k, v, epoch + 1)
                tb.flush()
            if dist.main:
                if improved:
                    run.save("best", model.state_dict(), {**meta_base, "epoch": epoch + 1,
                             "step": (epoch + 1) * steps_per_epoch, "metrics": row})
                save_last(epoch + 1, 0, row)
            ips = len(data.train) / (time.perf_counter() - t_epoch)
            line = (f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                    f"acc {row['train_acc']:.2%}  test loss {test_loss:.4f} acc {test_acc:.2%}  "
                    f"{ips:,.0f} img/s  {seconds:.1f}s")
            if bar:
                bar.set_postfix_str(f"loss={row['train_loss']:.4f} acc={row['train_acc']:.2%} "
                                    f"test_acc={test_acc:.2%} img/s={ips:,.0f}")
                bar.close()
            elif show:
                print(line, file=sys.stderr, flush=True)
            if stop.signal is not None:
                _say(dist, f"interrupted after epoch {epoch + 1}: checkpoint saved; continue "
                           f"with cnnlab train --resume {run.path}")
                raise KeyboardInterrupt
            if cfg.early_stop and st["since_best"] >= cfg.early_stop:
                _say(dist, f"early stop: no improvement for {cfg.early_stop} epochs")
                break
    summary = {"model": cfg.model, "data": data.name, "engine": "torch",
               "test_accuracy": last_row.get("test_acc"), "best_test_accuracy": st["best_acc"],
               "best_epoch": st["best_epoch"], "epochs": st["epoch"],
               "seconds": round(time.perf_counter() - t_start, 3), "run_dir": str(run.path),
               "device": str(device), "processes": dist.world,
               "backend": torch.distributed.get_backend() if torch.distributed.is_initialized()
               else None}
    run.finish(summary)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return summary


def spec_shape(spec: dict) -> tuple[int, int, int]:
    return (spec["channels"], *spec["size"])


def _tensorboard(run: RunDir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("--tensorboard: the tensorboard package is not installed; metrics go to "
              "metrics.csv and metrics.jsonl only (pip install tensorboard)", file=sys.stderr)
        return None
    return SummaryWriter(str(run.path / "tensorboard"))


def _say(dist: Dist, msg: str) -> None:
    if dist.main:
        print(msg, file=sys.stderr, flush=True)


def load_resume(run: RunDir):
    """(weights, meta, training state) of a run directory's last checkpoint."""
    from cnnlab.checkpoint import load_checkpoint

    last = run.checkpoints / "last.safetensors"
    if not last.exists():
        raise UserError(f"--resume {run.path}: no checkpoints/last.safetensors to resume from")
    return load_checkpoint(last, with_train_state=True)
