"""The training loop, the same for both engines: prepare, then per epoch train, evaluate on
the validation split, checkpoint, log; at the end, test the chosen checkpoint once.

Reproducibility by construction: every random choice of step ``s`` (the epoch's shuffle,
augmentation, dropout) comes from generators seeded by ``(seed, epoch)`` or ``(seed, step)``,
so a run resumed from a mid-epoch checkpoint replays exactly the batches and draws the
uninterrupted run would have made. Under ``torchrun`` only rank 0 logs and writes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.config import TrainConfig, make_config
from cnnlab.errors import TrainingError, UserError
from cnnlab.run import RunDir
from cnnlab.training import checkpointing as C
from cnnlab.training import finetune, log
from cnnlab.training.evaluation import metrics
from cnnlab.training.given import Given, given_data, given_module
from cnnlab.training.objectives import build_objective
from cnnlab.training.schedule import lr_factor
from cnnlab.training.setup import build_model, input_spec, load_training_data, model_kwargs_for
from cnnlab.training.usermodel import is_path, short_name

ENGINES = ("torch", "numpy")


def make_engine(cfg: TrainConfig):
    if cfg.engine == "torch":
        from cnnlab.training.engine_torch import TorchEngine

        return TorchEngine(cfg)
    if cfg.engine == "numpy":
        from cnnlab.training.engine_numpy import NumpyEngine

        return NumpyEngine(cfg)
    raise UserError(f"--engine {cfg.engine}: expected {' or '.join(ENGINES)}")


@dataclass
class Setup:
    """Everything the epochs need, made by :func:`prepare`."""

    cfg: TrainConfig
    engine: object
    data: object
    val: object
    run: RunDir
    objective: object
    augment: object
    meta: dict  # metadata of every checkpoint
    steps: int  # per epoch
    st: dict = field(default_factory=C.new_loop_state)
    best: dict | None = None  # weights of the best epoch so far (rank 0)
    frozen: set = field(default_factory=set)  # parameter names --freeze fixes
    lr: float = 0.0  # the last step's learning rate
    row: dict = field(default_factory=dict)  # the last epoch's metrics
    tb: object = None  # TensorBoard writer, if asked for
    t_start: float = 0.0
    on_epoch: object = None  # Given.on_epoch


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None,
          given: Given | None = None, **overrides) -> dict:
    """Train ``cfg.model`` on ``cfg.data``; returns the final summary (also ``final.json``).

    ``resume``: a run directory; its config is reloaded (``overrides`` may extend ``epochs``)
    and training continues from its last checkpoint exactly. A finished run is left as it
    is (the summary says ``already_finished``) unless ``epochs`` is larger.
    Options (keyword arguments or ``cfg``): every field of :class:`cnnlab.config.TrainConfig`.
    ``given``: a module instance, in-memory data, a callback (:func:`cnnlab.training.api.train`
    makes it from its arguments).
    """
    given = given or Given()
    if resume is not None:
        run = RunDir(resume, writer=False)
        cfg = make_config(C.resume_config(run.load_config(), overrides))
        cfg.out = str(run.path)
        _, _, ts = C.load_resume(run)
        if (done := C.finished_summary(run, ts["loop"], cfg.epochs)) is not None:
            return done
    elif cfg is None:
        cfg = make_config(**overrides)
    elif overrides:
        cfg = make_config(cfg.to_dict(), **overrides)
    finetune.check_finetune_config(cfg)
    if resume is None:
        check_before_run(cfg, given)
    if cfg.early_stop and not cfg.val_split:
        raise UserError(f"--early-stop {cfg.early_stop}: needs a validation split "
                        f"(--val-split > 0); the test set never picks the model")
    engine = make_engine(cfg)
    try:
        s = prepare(cfg, engine, resume, given)
        fit(s)
        return finish(s)
    finally:
        engine.close()


SCHEDULES = ("constant", "step", "cosine", "onecycle")
OPTIMIZERS = ("sgd", "adam", "adamw")


def check_before_run(cfg: TrainConfig, given: Given | None = None) -> None:
    """What can be checked from the config alone, before any data is read or any folder made:
    engine, model name, optimiser, schedule and milestones, augmentation spec, that the data
    exists. (Values, types and model kwargs were checked by make_config; the data's own
    problems, --freeze layer names and weights sources by :func:`prepare`, also before the
    run directory.)"""
    from cnnlab.data import _named_loaders
    from cnnlab.registry import model_info
    from cnnlab.transforms import parse_augment

    if cfg.engine not in ENGINES:
        raise UserError(f"--engine {cfg.engine}: expected {' or '.join(ENGINES)}")
    given = given or Given()
    if is_path(cfg.model):  # a user's class: given as an instance, or importable
        if given.module is None:
            from cnnlab.training.usermodel import import_class

            import_class(cfg.model, "--model")
    else:
        try:
            model_info(cfg.model)
        except ValueError as e:
            raise UserError(f"--model {cfg.model}: {e}") from e
    if cfg.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer {cfg.optimizer}: expected {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise UserError(f"--schedule {cfg.schedule}: expected {', '.join(SCHEDULES)}")
    if cfg.schedule == "step":
        lr_factor(cfg, 0, 1, 1)  # parses --milestones: a UserError naming it
    if cfg.augment != "auto":
        parse_augment(cfg.augment)
    if given.data is not None:
        return
    if cfg.data != "digits" and cfg.data not in _named_loaders() and not Path(
            cfg.data).expanduser().exists():
        raise UserError(f"--data {cfg.data}: no such file or folder (expected 'digits', a "
                        f"dataset name, an image-folder tree or a .tar.gz of one)")


def prepare(cfg: TrainConfig, engine, resume, given: Given | None = None) -> Setup:
    """Data, model, teacher, initial weights, objective, optimiser, run directory, position.

    Everything that can refuse the input (data, teacher, --init source, freeze names) runs
    before the run directory is created, so a refused run leaves nothing behind."""
    from cnnlab.transforms import parse_augment

    given = given or Given()
    main = engine.dist.main
    splits, fingerprint = given_data(cfg, given, resume, main)
    if splits is None and Path(cfg.data).expanduser().exists():  # absolute: eval works anywhere
        cfg.data = str(Path(cfg.data).expanduser().resolve())
    data, val = load_training_data(cfg, progress=cfg.progress if main else "none",
                                   splits=splits)
    if cfg.batch_size % engine.dist.world:
        raise UserError(f"--batch-size {cfg.batch_size} must divide by the {engine.dist.world} "
                        f"processes")
    for note in getattr(cfg, "recipe_notes", []):  # --pretrained's defaults, one line each
        log.say(main, note)
    normalize = cfg.normalize
    if normalize == "imagenet":  # ImageNet's mean/std (grey data: their channel means)
        from cnnlab.pretrained import normalize_text

        normalize = normalize_text(data.train.shape[0])
    spec = input_spec(data, normalize, cfg.workers)
    if cfg.input_size or cfg.resize != "bilinear" or data.read_size:  # how eval/predict reach it
        spec["resize"] = cfg.resize
    mkw = model_kwargs_for(cfg, spec, len(data.classes))
    module = given_module(cfg, given, mkw, main)
    build_model(engine, mkw, spec, cfg, module)  # too small: a UserError naming --input-size
    head = engine.head_keys()
    frozen = finetune.frozen_names(engine.model, cfg.freeze, head) if cfg.freeze else set()
    teacher = None
    if cfg.teacher:
        from cnnlab.training.teacher import load_teacher

        teacher = load_teacher(cfg.teacher, data.classes, engine.device)
    init = (_init_weights(cfg, engine, head, data.classes, main)
            if (cfg.init or cfg.pretrained) and not resume else None)
    engine.make_optimizer(head)
    engine.put_data(data, val)
    run = _open_run(cfg, engine, data.name, resume)
    # "auto" = the "standard" preset: shifts for digits (never flips: a mirrored 2 is not a
    # 2), crop + flip for colour images (see cnnlab.transforms.standard_spec)
    augment = parse_augment("standard" if cfg.augment == "auto" else cfg.augment)
    augment.size = tuple(spec["size"])  # training photos may be stored larger (rrc crops)
    meta = {"model": cfg.model, "model_kwargs": mkw, "classes": data.classes, "input": spec,
            "engine": engine.name, "data": data.name, "config": cfg.to_dict(),
            "augment": augment.describe((1, spec["channels"], *spec["size"]))}
    if fingerprint is not None:  # the arrays a resume must be given again
        meta["data_fingerprint"] = fingerprint
    if teacher is not None:
        meta["teacher"] = teacher.record()
    if init is not None:
        meta["init"] = {k: (len(v) if isinstance(v, list) else v)
                        for k, v in init.items()}  # lists of keys -> their counts
    if cfg.pretrained:  # the weight set, also on resume (the first run's record)
        from cnnlab.pretrained import record, weight_set

        meta["pretrained"] = record(weight_set(cfg.model, cfg.pretrained))
    s = Setup(cfg, engine, data, val, run, build_objective(cfg, engine.model, teacher), augment,
              meta, math.ceil(len(data.train) / cfg.batch_size), frozen=frozen,
              on_epoch=given.on_epoch)
    if resume is not None:
        _restore(s)
    run.save_config(cfg.to_dict())
    return s


def _init_weights(cfg, engine, head, classes, main) -> dict:
    make = finetune.init_from_pretrained if cfg.pretrained else finetune.init_weights
    load, rep, table = make(cfg, engine.arrays(), head, classes)
    engine.load_weights(load, strict=False)
    log.say(main, table)
    return rep


def _open_run(cfg: TrainConfig, engine, data_name: str, resume) -> RunDir:
    path = resume or cfg.out or RunDir.default_path(short_name(cfg.model), data_name.strip("<>"))
    if torch.distributed.is_initialized():  # all processes use rank 0's folder
        box = [str(path)]
        torch.distributed.broadcast_object_list(box, src=0)
        path = box[0]
    run = RunDir(path, writer=engine.dist.main, new=resume is None)
    cfg.out = str(run.path)
    return run


def _restore(s: Setup) -> None:
    """Weights, optimiser state and loop position of the run's last checkpoint (and, on rank
    0, the best epoch's weights: the test set is run on them at the end)."""
    weights, _, ts = C.load_resume(s.run)
    s.engine.load_weights(weights)
    s.engine.load_train_state(ts)
    s.st.update({k: v for k, v in ts["loop"].items() if k in s.st})
    s.st["stopped_early"] = False  # asked to go on: more epochs than before
    s.run.truncate_metrics(s.st["epoch"])
    best = s.run.checkpoints / "best.safetensors"
    if s.engine.dist.main and s.st["best_epoch"] and best.exists():
        from cnnlab.checkpoint import load_checkpoint

        s.best = load_checkpoint(best)[0]


# ------------------------------------------------------------------------------ the epochs
def fit(s: Setup) -> None:
    cfg, st = s.cfg, s.st
    prog = log.Progress(cfg.progress, s.engine.dist.main, cfg.epochs,
                        "  [numpy]" if s.engine.name == "numpy" else "")
    s.tb = log.tensorboard(s.run, cfg.tensorboard and s.engine.dist.main)
    s.t_start = time.perf_counter() - st["elapsed"]
    with log.StopFlag() as stop:
        for epoch in range(st["epoch"], cfg.epochs):
            _set_frozen(s, epoch)
            finished = train_epoch(s, epoch, prog, stop)
            if not finished:
                _say_interrupted(s, f"interrupted: checkpoint saved at epoch {epoch + 1}, step "
                                    f"{st['step_in_epoch']}/{s.steps}")
            end_epoch(s, epoch, prog)
            if stop.signal is not None:
                _say_interrupted(s, f"interrupted after epoch {epoch + 1}: checkpoint saved")
            if cfg.early_stop and st["since_best"] >= cfg.early_stop:
                st["stopped_early"] = True
                log.say(s.engine.dist.main, f"early stop: no validation improvement for "
                                            f"{cfg.early_stop} epochs")
                _save_last(s, epoch + 1, 0)
                break


def _set_frozen(s: Setup, epoch: int) -> None:
    """Frozen layers until epoch ``unfreeze_at`` (1-based); a function of the epoch alone,
    so a resumed run freezes what the uninterrupted one did."""
    frozen = s.frozen if not (s.cfg.unfreeze_at and epoch + 1 >= s.cfg.unfreeze_at) else set()
    if frozen != s.engine.frozen or epoch == s.st["epoch"]:
        if s.engine.frozen and not frozen:
            log.say(s.engine.dist.main, f"epoch {epoch + 1}: unfreezing {len(s.engine.frozen)} "
                                        f"parameter tensors")
        s.engine.set_frozen(frozen)


def _say_interrupted(s: Setup, what: str):
    log.say(s.engine.dist.main, f"{what}; continue with cnnlab train --resume {s.run.path}")
    raise KeyboardInterrupt


def train_epoch(s: Setup, epoch: int, prog, stop) -> bool:
    """The epoch's remaining steps; False when a signal stopped it mid-epoch (saved)."""
    cfg, st, eng = s.cfg, s.st, s.engine
    eng.train_mode()
    perm = torch.randperm(len(s.data.train), generator=torch.Generator().manual_seed(
        cfg.seed * 1_000_003 + epoch))
    total_steps = s.steps * cfg.epochs
    prog.start_epoch(epoch, s.steps, st["step_in_epoch"])
    seen0, acc = st["seen"], [0.0, 0]
    for s_i, (xb, y, global_n) in enumerate(eng.epoch_batches(perm, st["step_in_epoch"], s.steps),
                                            start=st["step_in_epoch"]):
        gstep = epoch * s.steps + s_i
        if len(y):  # a streamed batch whose files were all unreadable (warned): no step
            s.lr = cfg.lr * lr_factor(cfg, gstep, total_steps, s.steps)
            loss, correct = eng.step(xb, y, cfg.seed * 1_000_003 + 7919 * gstep, s.lr, global_n,
                                     s.objective, s.augment)
            acc[0], acc[1] = acc[0] + loss, acc[1] + correct
            st["seen"] += len(y)
        st["step_in_epoch"] = s_i + 1
        if s_i % eng.sync_every == eng.sync_every - 1 or s_i == s.steps - 1:
            _sync(s, acc, epoch, gstep, prog)
        prog.step(s_i, s.steps, st, (st["seen"] - seen0) * eng.dist.world)
        if stop.signal is not None or (cfg.save_every and (gstep + 1) % cfg.save_every == 0):
            if s_i + 1 < s.steps:  # at the epoch's end its own checkpoint follows
                _sync(s, acc, epoch, gstep, prog)
                st["elapsed"] = time.perf_counter() - s.t_start
                _save_last(s, epoch, s_i + 1)
            if stop.signal is not None:
                prog.close()
                return s_i + 1 >= s.steps
    return True


def _sync(s: Setup, acc: list, epoch: int, gstep: int, prog) -> None:
    """Fold the running sums into the loop state; stop on a non-finite loss."""
    loss = float(acc[0])
    if not math.isfinite(loss):
        prog.close()
        last = s.run.checkpoints / "last.safetensors"
        kept = (f"the last good checkpoint is kept in {s.run.checkpoints}" if last.exists() else
                "no checkpoint had been written yet")
        raise TrainingError(f"loss became {loss} at epoch {epoch + 1}, step {gstep + 1} (lr "
                            f"{s.lr:.3g}); {kept}. Try a lower --lr or --grad-clip.")
    s.st["loss_sum"] += loss
    s.st["correct"] += int(acc[1])
    acc[0], acc[1] = 0.0, 0


def end_epoch(s: Setup, epoch: int, prog) -> None:
    """Evaluate on the validation split (the test split with --val-split 0, where nothing is
    selected), log the row, write ``last`` and, when the validation loss improved, ``best``."""
    st = s.st
    key, split = ("val", s.val) if s.val is not None else ("test", s.data.test)
    logits, y = s.engine.predict(key, split)
    seconds = time.perf_counter() - s.t_start
    row = {"epoch": epoch + 1, "train_loss": st["loss_sum"] / max(st["seen"], 1),
           "train_acc": st["correct"] / max(st["seen"], 1), **metrics(logits, y, key),
           "lr": s.lr, "seconds": round(seconds, 3)}
    s.row = row
    # the best epoch has the lowest validation loss (Keras's default monitor): on a small
    # validation split accuracy moves in steps of one image and ties or peaks early (the
    # digits' 144 images hit 100% at epoch 20 of 30, a model that tests 2 points worse)
    best_loss = st.get("best_loss")
    improved = key == "val" and (best_loss is None or row["val_loss"] < best_loss)
    if improved:
        st.update(best_acc=row["val_acc"], best_loss=row["val_loss"], best_epoch=epoch + 1,
                  since_best=0)
    else:
        st["since_best"] += 1
    st.update(epoch=epoch + 1, step_in_epoch=0, loss_sum=0.0, correct=0, seen=0, elapsed=seconds)
    log.log_row(s.run, s.tb, row)
    if s.engine.dist.main and improved:
        weights = s.engine.weights()
        s.best = {k: v.detach().cpu().numpy().copy() if hasattr(v, "detach") else np.array(v)
                  for k, v in weights.items()}
        s.run.save("best", weights, {**s.meta, "epoch": epoch + 1,
                                     "step": (epoch + 1) * s.steps, "metrics": row})
    _save_last(s, epoch + 1, 0)
    prog.end_epoch(row, len(s.data.train))
    if s.on_epoch is not None and s.engine.dist.main:  # after the checkpoint: it may stop here
        s.on_epoch(dict(row))


def _save_last(s: Setup, epoch_done: int, step_in_epoch: int) -> None:
    if not s.engine.dist.main:
        return
    step = epoch_done * s.steps + step_in_epoch
    s.run.save("last", s.engine.weights(), {**s.meta, "epoch": epoch_done, "step": step,
                                            "metrics": s.row},
               s.engine.train_state(step, s.st))


# ------------------------------------------------------------------------------- the end
def finish(s: Setup) -> dict:
    """Test the chosen checkpoint once (best on validation, or the last epoch with
    --val-split 0) and write ``final.json``."""
    st, eng = s.st, s.engine
    chosen = "best" if s.val is not None and st["best_epoch"] else "last"
    checkpoint = ({"name": "best", "epoch": st["best_epoch"], "selected_on": "validation loss"}
                  if chosen == "best" else
                  {"name": "last", "epoch": st["epoch"], "selected_on": "none (the last epoch)"})
    summary = {"model": s.cfg.model, "data": s.data.name, "engine": eng.name,
               "test_accuracy": None, "test_top5": None, "test_loss": None,
               "checkpoint": checkpoint,
               "val_accuracy": st["best_acc"] if chosen == "best" else None,
               "val_images": len(s.val) if s.val is not None else 0,
               "epochs": st["epoch"], "stopped_early": st["stopped_early"],
               "seconds": round(time.perf_counter() - s.t_start, 3), "run_dir": str(s.run.path),
               "device": eng.describe_device(), "processes": eng.dist.world,
               "threads": eng.threads, "backend": torch.distributed.get_backend()
               if torch.distributed.is_initialized() else None}
    if eng.dist.main:
        if chosen == "best" and s.best is not None:
            eng.load_weights(s.best)
        m = metrics(*eng.predict("test", s.data.test), "test")
        summary.update(test_accuracy=m["test_acc"], test_top5=m["test_top5"],
                       test_loss=m["test_loss"])
    for k in ("teacher", "init", "pretrained"):
        if k in s.meta:
            summary[k] = s.meta[k]
    s.run.finish(summary)
    return summary
