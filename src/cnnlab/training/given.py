"""What ``cnnlab.train`` is handed beside the config (:class:`Given`), made ready for the
loop: in-memory data as splits with their fingerprint (checked on resume), a module instance
checked against the run's class, and the one-line notes training on them prints."""

from __future__ import annotations

from dataclasses import dataclass

from cnnlab.config import TrainConfig
from cnnlab.errors import UserError
from cnnlab.run import RunDir
from cnnlab.training import checkpointing as C
from cnnlab.training import log


@dataclass
class Given:
    """What ``cnnlab.train`` was handed beside the config: a module instance (trained in
    place), in-memory data and its class names, a per-epoch callback (rank 0)."""

    module: object = None  # a torch.nn.Module; cfg.model is its "module:Class"
    data: object = None  # arrays or a dataset object (cnnlab.data.memory); cfg.data is NAME
    classes: list | None = None
    on_epoch: object = None  # callable(row: dict), after each epoch's row is logged


def given_data(cfg: TrainConfig, given: Given, resume, main: bool):
    """(DataSplits of in-memory data or None, its fingerprint or None); on resume, checks the
    arrays are those the run trained on (a run directory keeps no copy)."""
    from cnnlab.data import memory

    if given.data is None:
        if cfg.data == memory.NAME:
            raise UserError(f"--resume {resume}: the run trained on in-memory arrays, which its "
                            f"directory does not keep; pass the same arrays again: "
                            f"cnnlab.train(resume=..., data=(x_train, y_train), ...)")
        return None, None
    if resume is not None and cfg.data != memory.NAME:
        raise UserError(f"--resume {resume}: the run trained on --data {cfg.data}, not on "
                        f"in-memory arrays; resume it without data=")
    splits, frac = memory.as_splits(given.data, given.classes, cfg.test_split, cfg.seed)
    if frac is not None:
        cfg.test_split = frac  # saved: a resume holds out the same test images
    fp = memory.fingerprint(splits)
    if resume is not None:
        had = C.load_resume(RunDir(resume, writer=False))[1].get("data_fingerprint")
        if had is not None and had != fp:
            raise UserError(f"--resume {resume}: data: these arrays differ from the run's "
                            f"(train {fp['train']['shape']} vs {had['train']['shape']}, sample "
                            f"hashes {fp['train']['sha256']} vs {had['train']['sha256']}); pass "
                            f"the arrays it trained on")
    elif main:
        log.say(main, f"data: in-memory arrays ({len(splits.train)} training, "
                      f"{len(splits.test)} test images); the run directory keeps no copy: "
                      f"cnnlab eval/viz cannot reload them unless saved, and a resume needs "
                      f"the same arrays passed again")
    return splits, fp


def given_module(cfg: TrainConfig, given: Given, mkw: dict, main: bool):
    """The instance to train (or None: the engine builds cfg.model); says, once, when
    ``cnnlab.load_model`` could not rebuild its class from the run alone."""
    from cnnlab.training import usermodel

    if given.module is None:
        return None
    usermodel.check_instance(given.module, cfg.model)
    if main and (why := usermodel.rebuild_problem(given.module, cfg.model, mkw)):
        name = type(given.module).__name__
        log.say(main, f"model {cfg.model}: {why}. The run trains and saves its weights, but "
                      f"cnnlab.load_model (and eval, viz, serve, a resume) will need the class: "
                      f"cnnlab.load_model(run, model={name}(...))")
    return given.module
