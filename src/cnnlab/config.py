"""Training configuration: one dataclass, defaults from a YAML file, overrides from flags.

The resolved config is saved as ``config.yaml`` in every run directory and inside every
checkpoint, so a run can be reproduced or resumed from its folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cnnlab.errors import UserError


@dataclass
class TrainConfig:
    # what
    model: str = "lenet5"
    data: str = "digits"  # "digits", a canonical name (mnist, cifar10, ...), a folder or .tar.gz
    engine: str = "torch"  # "torch" or "numpy" (cnnlab.scratch)
    model_kwargs: dict = field(default_factory=dict)  # extra constructor arguments
    val_split: float | None = None  # held-out fraction when the data has no test/ folder
    # how long
    epochs: int = 30
    batch_size: int = 64  # global batch (split over processes under torchrun)
    # optimiser
    optimizer: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.05  # peak learning rate
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    decay_norm_and_bias: bool = False  # weight decay on biases and norm weights too
    schedule: str = "onecycle"  # constant | step | cosine | onecycle
    warmup_epochs: float = 0.0  # linear warm-up (cosine/step/constant); onecycle has its own
    milestones: str = "0.5,0.75"  # schedule=step: x0.1 at these fractions of training (the
    # ResNet paper's 32k and 48k of 64k iterations)
    label_smoothing: float = 0.0
    grad_clip: float | None = None  # max global grad norm
    aux_weight: float = 0.3  # GoogLeNet's auxiliary-classifier loss weight
    # data pipeline
    augment: str = "auto"  # "auto", "none", or a spec like "crop:4,flip,jitter:0.4"
    normalize: str = "auto"  # "auto" = per-channel mean/std of the training set; "none";
    # or given as MEAN/STD on the 0..1 scale, e.g. "0.4914,0.4822,0.4465/0.247,0.243,0.261"
    in_memory: str = "auto"  # image folders: "yes" decode all into memory, "no" stream from
    # disk, "auto" stream when decoded > CNNLAB_MEMORY_BUDGET_GB (default 25% of RAM)
    workers: int = 2  # decoding processes when streaming (0: decode in the training process)
    # speed
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on GPU, off on CPU) | bf16 | fp16 | off
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None  # torch CPU threads (default: torch's choice)
    # bookkeeping
    seed: int = 0
    out: str | None = None  # run directory (default runs/<model>-<data>-<timestamp>)
    save_every: int = 0  # also checkpoint every N steps (0: once per epoch)
    early_stop: int = 0  # stop after N epochs without test-accuracy improvement (0: never)
    tensorboard: bool = False
    progress: str = "auto"  # auto (bars on a terminal, lines otherwise) | bar | lines | none

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def check_keys(d: dict, where: str) -> None:
    for k in d:
        if k not in FIELDS:
            close = difflib.get_close_matches(k, list(FIELDS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{where}: unknown config key {k!r}{hint}")


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text()) or {}
    except OSError as e:
        raise UserError(f"--config {p}: cannot read ({e.strerror})") from e
    except yaml.YAMLError as e:
        raise UserError(f"--config {p}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(d, dict):
        raise UserError(f"--config {p}: expected a mapping of config keys, got {type(d).__name__}")
    check_keys(d, f"--config {p}")
    return d


def make_config(base: dict | None = None, **overrides) -> TrainConfig:
    """TrainConfig from ``base`` (e.g. a YAML file's contents) updated by non-None overrides."""
    d = dict(base or {})
    d.update({k: v for k, v in overrides.items() if v is not None})
    check_keys(d, "config")
    return TrainConfig(**d)
