"""The NumPy engine's training loop, behind ``cnnlab train --engine numpy``.

Everything around the arithmetic is the torch trainer's (:mod:`cnnlab.train`): the same
config, data, normalisation, augmentation, shuffling (the same ``(seed, epoch)``
permutation), learning-rate schedule, run directory, metrics and checkpoint format. Only
the forward/backward/update runs in :mod:`cnnlab.scratch`. Checkpoints hold torch's keys,
so a NumPy-trained LeNet-5 loads into the torch model and vice versa.

Interrupts and resume work as in the torch trainer: SIGINT/SIGTERM (Ctrl-C) let the step in
progress finish, then a ``last`` checkpoint holding the mid-epoch position (epoch, step,
running loss/accuracy sums, optimizer state) is written and the run exits; ``save_every``
writes the same checkpoint every N steps. Since every random draw of step ``s`` is derived
from ``(seed, epoch)`` or ``(seed, step)``, ``--resume`` ends with the same weights, bit for
bit, as an uninterrupted run.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cnnlab import train as T
from cnnlab.config import TrainConfig
from cnnlab.errors import UserError
from cnnlab.registry import get_model, model_info
from cnnlab.run import RunDir
from cnnlab.scratch import functional as F
from cnnlab.scratch import nn, optim


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> optim.Optimizer:
    """Same groups as the torch trainer: weight decay on weights only (unless configured)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if cfg.decay_norm_and_bias or p.data.ndim > 1 else no_decay).append(p)
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    if cfg.optimizer == "sgd":
        return optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                         nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return optim.Adam(groups, lr=cfg.lr)
    raise UserError(f"--optimizer {cfg.optimizer}: the numpy engine supports sgd and adam")


def predict_logits(model: nn.Module, images: np.ndarray, mean, std,
                   batch_size: int = 1000) -> np.ndarray:
    """Logits ``(N, classes)`` of uint8 ``images (N, C, H, W)`` in eval mode, batched."""
    was = model.training
    model.eval()
    out = [model(normalize(images[i:i + batch_size], mean, std))
           for i in range(0, len(images), batch_size)]
    model.train(was)
    return np.concatenate(out)


def normalize(images: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` -> float32 ``(x / 255 - mean) / std`` per channel."""
    return ((images.astype(np.float32) / 255 - mean) / std).astype(np.float32)


def _skip_first_input_grad(model: nn.Module) -> None:
    # The images need no gradient: the first conv/linear layer skips its dx (col2im). Only
    # when it is the first layer to run (children run in registration order): a layer before
    # it, such as the MLP's Flatten, would be handed None by the backward pass.
    first = next((m for _, m in model.named_modules() if not list(m.children())), None)
    if hasattr(first, "needs_input_grad"):
        first.needs_input_grad = False


def _augmented(images: np.ndarray, augment, seed_step: int, mean, std) -> np.ndarray:
    """uint8 ``(B, C, H, W)`` -> augmented, normalised float32 ``(B, C, H, W)`` for one step.

    Every draw of a step comes from ``seed_step`` (derived from the run's seed and the global
    step): augmentation from a torch generator, dropout/stochastic pooling from the engine's
    generator, reseeded here; so a resumed run replays the draws of an uninterrupted one.
    """
    nn.manual_seed(seed_step)
    x = augment(torch.from_numpy(images).float().div_(255),
                generator=torch.Generator().manual_seed(seed_step)).numpy()
    return ((x - mean) / std).astype(np.float32)


def _test_metrics(model: nn.Module, test, mean, std) -> tuple[float, float]:
    """(cross-entropy loss, accuracy) of ``model`` on an in-memory test split."""
    logits = predict_logits(model, test.images, mean, std)
    return (float(F.cross_entropy(logits.astype(np.float64), test.labels)),
            float((logits.argmax(1) == test.labels).mean()))


def train_numpy(cfg: TrainConfig, resume: str | Path | None = None) -> dict:
    """Train ``cfg.model`` with the NumPy engine; returns the summary (also ``final.json``).

    Called by :func:`cnnlab.train.train` when ``cfg.engine == "numpy"`` (its ``resume``
    handling has already reloaded ``cfg`` from the run directory).
    """
    # torch only augments small batches here; its thread pool spinning beside BLAS's
    # threads on the same cores made an MNIST epoch 1.8x slower (14.8 s vs 8.2 s, 2 cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_numpy(cfg, resume)
    finally:
        torch.set_num_threads(threads)


def _train_numpy(cfg: TrainConfig, resume: str | Path | None) -> dict:
    if "numpy" not in model_info(cfg.model).engines:
        raise UserError(f"--engine numpy: model {cfg.model!r} has no NumPy twin; available: "
                        f"{', '.join(n for n in _numpy_models())}")
    if cfg.save_every < 0:
        raise UserError(f"--save-every {cfg.save_every}: expected 0 (checkpoint every epoch "
                        f"only) or a positive number of steps")
    data = T.load_training_data(cfg, progress=cfg.progress != "none")
    if T._streaming(data.train) or T._streaming(data.test):
        raise UserError(f"--engine numpy: trains in memory only, but --data {cfg.data} is "
                        f"streamed from disk (--in-memory {cfg.in_memory}); pass --in-memory "
                        f"yes, or use --engine torch")
    spec = T.input_spec(data, cfg.normalize)
    mkw = T.model_kwargs_for(cfg, spec, len(data.classes))
    nn.manual_seed(cfg.seed)
    model = get_model(cfg.model, engine="numpy", **mkw)
    _skip_first_input_grad(model)
    opt = build_optimizer(cfg, model)
    from cnnlab.transforms import parse_augment

    augment = parse_augment("standard" if cfg.augment == "auto" else cfg.augment)  # as torch
    mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)

    run_path = Path(resume) if resume is not None else None
    run = RunDir(run_path or cfg.out or RunDir.default_path(cfg.model, data.name),
                 new=resume is None)
    cfg.out = str(run.path)
    n = len(data.train)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    st = T.new_loop_state()
    if resume is not None:
        weights, _, ts = T.load_resume(run)
        model.load_state_dict(weights)
        opt.load_state_dict(ts["optimizer"])
        st.update({k: v for k, v in ts["loop"].items() if k in st})
        run.truncate_metrics(st["epoch"])
    run.save_config(cfg.to_dict())
    meta_base = {"model": cfg.model, "model_kwargs": mkw, "classes": data.classes,
                 "input": spec, "engine": "numpy", "data": data.name, "config": cfg.to_dict(),
                 "augment": augment.describe((1, spec["channels"], *spec["size"]))}

    def save_last(epoch_done: int, step_in_epoch: int, metrics: dict) -> None:
        step = epoch_done * steps_per_epoch + step_in_epoch
        state = {"optimizer": opt.state_dict(), "loop": dict(st),
                 "scheduler": {"step": step, "schedule": cfg.schedule},
                 # every draw is derived from (seed, epoch) or (seed, step); stored all the same
                 "rng": {"scratch": nn.default_rng().bit_generator.state}}
        run.save("last", model.state_dict(), {**meta_base, "epoch": epoch_done, "step": step,
                                              "metrics": metrics}, state)

    crit = nn.CrossEntropyLoss()
    show = cfg.progress != "none"
    t_start = time.perf_counter() - st["elapsed"]
    row = {}
    with T._StopFlag() as stop:
        for epoch in range(st["epoch"], cfg.epochs):
            model.train()
            t_epoch = time.perf_counter()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(
                cfg.seed * 1_000_003 + epoch)).numpy()
            for s in range(st["step_in_epoch"], steps_per_epoch):
                gstep = epoch * steps_per_epoch + s
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                seed_s = cfg.seed * 1_000_003 + 7919 * gstep  # the torch trainer's step seed
                x = _augmented(data.train.images[idx], augment, seed_s, mean, std)
                y = data.train.labels[idx]
                lr = cfg.lr * T.lr_factor(cfg, gstep, total_steps, steps_per_epoch)
                for g in opt.param_groups:
                    g["lr"] = lr
                logits = model(x)
                loss = float(crit(logits, y))
                if not math.isfinite(loss):
                    raise T.TrainingError(
                        f"loss became {loss} at epoch {epoch + 1}, step {gstep + 1} (lr "
                        f"{lr:.3g}); the last good checkpoint is kept in {run.checkpoints}. "
                        f"Try a lower --lr.")
                opt.zero_grad()
                model.backward(crit.backward())
                opt.step()
                st["loss_sum"] += loss * len(y)
                st["correct"] += int((logits.argmax(1) == y).sum())
                st["seen"] += len(y)
                st["step_in_epoch"] = s + 1
                due = cfg.save_every and (gstep + 1) % cfg.save_every == 0
                if stop.signal is not None or due:
                    if s + 1 < steps_per_epoch:  # at the epoch's end its own checkpoint follows
                        st["elapsed"] = time.perf_counter() - t_start
                        save_last(epoch, s + 1, row)
                    if stop.signal is not None:
                        break
            if stop.signal is not None and st["step_in_epoch"] < steps_per_epoch:
                print(f"interrupted: checkpoint saved at epoch {epoch + 1}, step "
                      f"{st['step_in_epoch']}/{steps_per_epoch}; continue with "
                      f"cnnlab train --resume {run.path}", file=sys.stderr, flush=True)
                raise KeyboardInterrupt
            # ---- end of epoch: evaluate, log, checkpoint
            test_loss, test_acc = _test_metrics(model, data.test, mean, std)
            seconds = time.perf_counter() - t_start
            row = {"epoch": epoch + 1, "train_loss": st["loss_sum"] / max(st["seen"], 1),
                   "train_acc": st["correct"] / max(st["seen"], 1), "test_loss": test_loss,
                   "test_acc": test_acc, "lr": lr, "seconds": round(seconds, 3)}
            if test_acc > st["best_acc"]:
                st.update(best_acc=test_acc, best_epoch=epoch + 1, since_best=0)
                run.save("best", model.state_dict(), {**meta_base, "epoch": epoch + 1,
                                                      "step": (epoch + 1) * steps_per_epoch,
                                                      "metrics": row})
            else:
                st["since_best"] += 1
            st.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, correct=0, seen=0,
                      elapsed=seconds)
            run.log_metrics(row)
            save_last(epoch + 1, 0, row)
            if show:
                ips = n / (time.perf_counter() - t_epoch)
                print(f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f} acc "
                      f"{row['train_acc']:.2%}  test loss {test_loss:.4f} acc {test_acc:.2%}  "
                      f"{ips:,.0f} img/s  {seconds:.1f}s  [numpy]", file=sys.stderr, flush=True)
            if stop.signal is not None:
                print(f"interrupted after epoch {epoch + 1}: checkpoint saved; continue with "
                      f"cnnlab train --resume {run.path}", file=sys.stderr, flush=True)
                raise KeyboardInterrupt
            if cfg.early_stop and st["since_best"] >= cfg.early_stop:
                break
    summary = {"model": cfg.model, "data": data.name, "engine": "numpy",
               "test_accuracy": row.get("test_acc"), "best_test_accuracy": st["best_acc"],
               "best_epoch": st["best_epoch"], "epochs": st["epoch"],
               "seconds": round(time.perf_counter() - t_start, 3), "run_dir": str(run.path),
               "device": "cpu (numpy)", "processes": 1}
    run.finish(summary)
    return summary


def _numpy_models() -> list[str]:
    from cnnlab.registry import list_models

    return list_models(engine="numpy")
