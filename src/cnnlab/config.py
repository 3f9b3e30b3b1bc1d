"""Training configuration: one dataclass, defaults from a YAML file, overrides from flags.

The resolved config is saved as ``config.yaml`` in every run directory and inside every
checkpoint, so a run can be reproduced or resumed from its folder alone.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
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
    val_split: float = 0.1  # fraction of the training set held out for model selection (best
    # checkpoint, early stopping); 0: train on everything, select nothing (keep the last)
    test_split: float | None = None  # fraction held out for testing when the data has
    # no test/ folder (a single <class>/* tree)
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
    # fine-tuning (cnnlab.training.finetune)
    init: str | None = None  # start from: a cnnlab checkpoint/run, a torchvision .pth, a .safetensors
    freeze: str | None = None  # "backbone" (all but the head) or "until:LAYER" (up to LAYER)
    unfreeze_at: int = 0  # epoch (1-based) from which frozen layers train too (0: never)
    lr_backbone: float = 1.0  # learning-rate factor for the pretrained (non-head) layers
    pretrained: str | None = None  # torchvision ImageNet weight set of `model` ("default" or
    # a name like "IMAGENET1K_V1"; saved resolved); sets fine-tuning defaults (PRETRAINED_RECIPE)
    # knowledge distillation (cnnlab.training.objectives.Distillation; Hinton et al. 2015)
    teacher: str | None = None  # a checkpoint or run directory of either engine
    kd_temperature: float = 4.0  # softmax temperature T of both teacher and student
    kd_alpha: float = 0.9  # weight of the soft (teacher) term; 1 - alpha on the labels
    # data pipeline
    augment: str = "auto"  # "auto", "none", or a spec like "crop:4,flip,jitter:0.4"
    normalize: str = "auto"  # "auto" = per-channel mean/std of the training set; "none";
    # or given as MEAN/STD on the 0..1 scale, e.g. "0.4914,0.4822,0.4465/0.247,0.243,0.261"
    input_size: str | None = None  # "HxW" in pixels, e.g. "64x64": every image (train, test,
    # eval, predict) brought to it by `resize`; None: the data's own size
    resize: str = "auto"  # how to reach input_size: "bilinear" (stretch), "pad" (shrink
    # to fit keeping the aspect ratio, then centre on black) or "crop" (shorter side to 256/224
    # of the size, then the centre: ImageNet's); "auto": "crop" for photos read at an
    # ImageNet-size model's native size, else "bilinear" (resolved and saved with the run)
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
    early_stop: int = 0  # stop after N epochs without a lower validation loss (0: never)
    tensorboard: bool = False
    progress: str = "auto"  # auto (bars on a terminal, lines otherwise) | bar | lines | none

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


# names other tools use for a cnnlab key: "did you mean" names these even when they look
# nothing alike (difflib finds learning_rate closest to warmup_epochs, not lr)
KEY_ALIASES = {"learning_rate": "lr", "learningrate": "lr", "base_lr": "lr", "max_lr": "lr",
               "num_epochs": "epochs", "n_epochs": "epochs", "max_epochs": "epochs",
               "bs": "batch_size", "wd": "weight_decay", "arch": "model",
               "architecture": "model", "dataset": "data", "optim": "optimizer",
               "scheduler": "schedule", "lr_schedule": "schedule", "lr_scheduler": "schedule",
               "augmentation": "augment", "augmentations": "augment", "num_workers": "workers",
               "weights": "pretrained", "output_dir": "out", "patience": "early_stop"}


def check_keys(d: dict, where: str) -> None:
    for k in d:
        if not isinstance(k, str):  # YAML `1: x` or `null: x`
            raise UserError(f"{where}: config key {k!r} ({type(k).__name__}): expected a "
                            f"name such as lr or epochs")
        if k not in FIELDS:
            norm = k.lower().replace("-", "_")
            alias = KEY_ALIASES.get(norm) or (norm if norm in FIELDS else None)
            close = ([alias] if alias else []) + [
                c for c in difflib.get_close_matches(norm, list(FIELDS), n=3) if c != alias]
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"{where}: unknown config key {k!r}{hint}")


MAX_CONFIG_BYTES = 1 << 20  # a config is a few hundred bytes; refuse anything past 1 MB
MAX_STR = 4096  # characters in one string value
MAX_KWARGS = 64  # entries in model_kwargs


class _AliasError(yaml.YAMLError):
    pass


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases (``*name``: a "billion laughs" expands them
    exponentially once the config is copied) and reads ``1e-3`` as a float (YAML 1.1, and so
    PyYAML, needs a dot: ``1.0e-3``)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            ev = self.peek_event()
            raise _AliasError(f"line {ev.start_mark.line + 1}: alias *{ev.anchor} is not "
                              f"allowed (YAML anchors and aliases are refused in a cnnlab "
                              f"config: write the values out)")
        return super().compose_node(parent, index)


_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def load_yaml(path: str | Path, what: str = "--config") -> dict:
    """A YAML config file -> dict of checked config values (:func:`check_config`).

    ``what`` starts error messages (``--config``; ``--resume`` for a run's config.yaml).
    Refused, each with one line naming the file: unreadable or binary files, files over
    1 MB, invalid YAML, aliases, tags such as ``!!python/object`` (never constructed:
    ``yaml.safe_load`` knows only plain types), unknown keys, wrong types, out-of-range
    values.
    """
    p = Path(path)
    where = f"{what} {p}"
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise UserError(f"{where}: {p.stat().st_size:,} bytes is too large for a config "
                            f"file (expected at most {MAX_CONFIG_BYTES:,})")
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"{where}: cannot read ({e.strerror})") from e
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not a text file (byte {e.start} is not UTF-8); expected "
                        f"YAML config keys") from e
    try:
        d = yaml.load(text, Loader=_ConfigLoader) or {}
    except _AliasError as e:
        raise UserError(f"{where}: {e}") from e
    except yaml.constructor.ConstructorError as e:
        if " for the tag " not in (getattr(e, "problem", "") or ""):  # e.g. unhashable key
            raise UserError(f"{where}: not valid YAML ({str(e).splitlines()[0]})") from e
        tag = e.problem.split(" for the tag ")[-1].strip("'")
        line = f"line {e.problem_mark.line + 1}: " if getattr(e, "problem_mark", None) else ""
        raise UserError(f"{where}: {line}tag {tag.replace('tag:yaml.org,2002:', '!!')} is not "
                        f"allowed (plain YAML values only: numbers, strings, booleans, lists, "
                        f"mappings)") from e
    except (yaml.YAMLError, RecursionError) as e:
        first = str(e).splitlines()[0] if str(e) else "nested too deeply"
        raise UserError(f"{where}: not valid YAML ({first})") from e
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a mapping of config keys, got {type(d).__name__}")
    if what == "--resume" and "test_split" not in d:  # a run from before validation splits:
        # its val_split was the test fraction (as training.checkpointing.resume_config reads it)
        d["test_split"], d["val_split"] = d.get("val_split"), 0.0
    check_keys(d, where)
    return ConfigDict(check_config(d, where), source=where)


class ConfigDict(dict):
    """A config file's checked values, remembering the file (``source``) for messages about
    checks that need the whole config (model_kwargs against the model's builder)."""

    def __init__(self, d: dict, source: str):
        super().__init__(d)
        self.source = source


def make_config(base: dict | None = None, **overrides) -> TrainConfig:
    """TrainConfig from ``base`` (e.g. a YAML file's contents) updated by non-None overrides.

    Every value is checked (:func:`check_config`): type, then range (:data:`RANGES`).
    """
    d = dict(base or {})
    d.update({k: v for k, v in overrides.items() if v is not None})
    check_keys(d, "config")
    d = check_config(d, "config")
    notes = pretrained_recipe(d) if d.get("pretrained") else []
    if d.get("model_kwargs") and ":" not in str(d.get("model", "")):  # against the builder's
        # signature: a typo is an error (a user's module:Class: checked when it is built)
        from cnnlab.registry import check_model_kwargs

        where = ("--model-kwargs" if overrides.get("model_kwargs") is not None
                 else f"{getattr(base, 'source', 'config')}: model_kwargs")
        d["model_kwargs"] = check_model_kwargs(d.get("model", FIELDS["model"].default),
                                               d["model_kwargs"], d.get("engine", "torch"), where)
    cfg = TrainConfig(**d)
    cfg.recipe_notes = notes  # not a field: printed once by the training loop (rank 0)
    return cfg


# -- --pretrained: fine-tuning's defaults, each overridable by an explicit value -----------
# fastai's fine_tune (Howard & Gugger 2020): one epoch with the pretrained body frozen (the
# new head learns first, so its random gradients never reach the pretrained features), then
# everything, the body at half the rate (fastai halves base_lr on unfreezing and spreads the
# body's rates down to base_lr/200 over layer groups; cnnlab has one factor). Inputs as the
# weights were trained: 224x224 crops (random-resized for training), ImageNet mean/std.
PRETRAINED_RECIPE = {
    "normalize": ("imagenet", "ImageNet mean/std, as the weights were trained"),
    "input_size": ("224x224", "the weights' training size"),
    "resize": ("crop", "shorter side to 256, then the centre 224, as torchvision evaluates"),
    "augment": ("rrc,flip", "random-resized crops and flips, as ImageNet training"),
    "freeze": ("backbone", "epoch 1 trains the new head only, as fastai's freeze_epochs=1"),
    "unfreeze_at": (2, "then every layer trains"),
    "lr_backbone": (0.5, "the pretrained layers at half the learning rate"),
}


def pretrained_recipe(d: dict) -> list[str]:
    """Fill ``d`` (explicit config values, checked) with :data:`PRETRAINED_RECIPE` where it
    gives no value, resolve ``d["pretrained"]`` to a weight-set name, and return one line
    per default applied. A model without published weights, or ``init`` as well: UserError."""
    from cnnlab.pretrained import weight_set  # torch-free

    model = d.get("model", FIELDS["model"].default)
    d["pretrained"] = weight_set(model, d["pretrained"]).name
    if d.get("init"):
        raise UserError(f"--pretrained {d['pretrained']} and --init {d['init']}: give one "
                        f"source of initial weights")
    epochs = d.get("epochs", FIELDS["epochs"].default)
    notes, given = [], set(d)
    for k, (v, why) in PRETRAINED_RECIPE.items():
        if k in given or (k in ("freeze", "unfreeze_at") and (epochs < 2 or "freeze" in given)):
            continue  # given; or one epoch only: no warm-up epoch to give the head
        d[k] = v
        notes.append(f"--pretrained: --{k.replace('_', '-')} {v} ({why}; pass "
                     f"--{k.replace('_', '-')} to change it)")
    return notes


# -- value checks: one table of ranges, used by the CLI at parse time and by make_config ---

# name: (low, high, low_inclusive, high_inclusive); NaN and infinities are always refused
RANGES = {
    "epochs": (1, 1_000_000, True, True),
    "batch_size": (1, 1 << 20, True, True),
    "lr": (0.0, 1e3, False, True),
    "momentum": (0.0, 1.0, True, True),
    "weight_decay": (0.0, 1.0, True, True),
    "warmup_epochs": (0.0, 1e6, True, True),
    "label_smoothing": (0.0, 1.0, True, False),
    "grad_clip": (0.0, 1e12, False, True),
    "aux_weight": (0.0, 1e3, True, True),
    "val_split": (0.0, 1.0, True, False),
    "test_split": (0.0, 1.0, False, False),
    "unfreeze_at": (0, 1_000_000, True, True),
    "lr_backbone": (0.0, 1e3, True, True),
    "kd_temperature": (0.0, 1e3, False, True),
    "kd_alpha": (0.0, 1.0, True, True),
    "workers": (0, 256, True, True),
    "threads": (1, 1024, True, True),
    "seed": (0, 2 ** 63 - 1, True, True),
    "save_every": (0, 10 ** 12, True, True),
    "early_stop": (0, 1_000_000, True, True),
    # command-line arguments that are not config keys
    "nproc": (1, 1024, True, True),  # cnnlab train --nproc
    "num_classes": (1, 1_000_000, True, True),  # cnnlab summary --num-classes
    "depth": (0, 1000, True, True),  # cnnlab summary --depth
    "stride": (1, 16, True, True),  # cnnlab explain: worked examples on small matrices
    "padding": (0, 16, True, True),
    "input_side": (1, 4096, True, True),  # each side of input_size "HxW" (--input-size)
}

# -- option help: one sentence per TrainConfig field, read by `cnnlab train --help` and by
# the signature of cnnlab.train (help(cnnlab.train)); beside the ranges below
HELP = {
    "model": "registered model name (see `cnnlab models`), or a torch.nn.Module class as "
             "package.module:Class (built as Class(**model_kwargs))",
    "data": "digits (built in), mnist, fashion-mnist, cifar10, cifar100, an image-folder tree "
            "or a .tar.gz of one",
    "engine": "torch, or numpy for the from-scratch engine (cnnlab.scratch)",
    "model_kwargs": "extra model constructor arguments as JSON, e.g. '{\"activation\": \"tanh\"}'",
    "val_split": "fraction of the training images held out as a validation set that picks "
                 "the best checkpoint (lowest validation loss) and drives --early-stop; 0 "
                 "trains on all of them and keeps the last epoch",
    "test_split": "fraction held out for testing when the data has no test/ folder",
    "epochs": "number of epochs",
    "batch_size": "global batch size (split across processes under torchrun)",
    "optimizer": "sgd, adam or adamw",
    "lr": "peak learning rate",
    "momentum": "SGD momentum",
    "nesterov": "Nesterov momentum for SGD",
    "weight_decay": "L2 weight decay (not on biases and norm weights unless --decay-norm-and-bias)",
    "decay_norm_and_bias": "apply weight decay to biases and norm weights too",
    "schedule": "learning-rate schedule: constant, step, cosine or onecycle",
    "warmup_epochs": "linear warm-up epochs (constant, step, cosine)",
    "milestones": "schedule step: decay x0.1 at these fractions of training",
    "label_smoothing": "label smoothing of the cross-entropy target",
    "grad_clip": "clip the global gradient norm to this value",
    "aux_weight": "weight of auxiliary-classifier losses (GoogLeNet)",
    "init": "start from these weights: a cnnlab checkpoint or run directory, a torchvision "
            "state dict (.pth, ResNet/VGG) or a .safetensors file; the head is replaced "
            "when the class count differs",
    "freeze": "backbone (train the head only: a linear probe) or until:LAYER (freeze the "
              "layers up to and including LAYER); frozen batch-norm statistics stay fixed",
    "unfreeze_at": "epoch (1-based) from which the frozen layers train too (0: never)",
    "lr_backbone": "learning-rate factor for the non-head layers (e.g. 0.1 when fine-tuning)",
    "pretrained": "start from torchvision's ImageNet weights for --model (resnet18-152, "
                  "vgg11-19[_bn]): --pretrained for the default set, --pretrained NAME for "
                  "another (e.g. IMAGENET1K_V1); also sets fine-tuning defaults, each printed",
    "teacher": "distil from this checkpoint or run directory (either engine; it sees the "
               "same augmented batch through its own input spec)",
    "kd_temperature": "distillation temperature T (> 0; Hinton et al. used 20 on MNIST)",
    "kd_alpha": "weight of the teacher term, in [0, 1]; 1 - alpha goes to the labels",
    "augment": "auto, none, or a list like crop:4,flip,jitter:0.4 (see cnnlab.transforms)",
    "normalize": "auto (per-channel mean/std of the training set), none, imagenet "
                 "(ImageNet's mean/std), or MEAN/STD given per channel on the 0..1 scale, "
                 "e.g. 0.49,0.48,0.45/0.25,0.24,0.26",
    "input_size": "train (and later eval/predict) at this size, HxW in pixels, e.g. 64x64: "
                  "every image is resized or padded to it (--resize); recorded in the "
                  "checkpoint (default: the data's own size when all images share one "
                  "small size; else, for photos and mixed sizes, the model's native size)",
    "resize": "how images reach the input size: bilinear (stretch), pad (shrink to fit "
              "keeping the aspect ratio, then centre on black), crop (shorter side to "
              "256/224 of the size, then the centre: ImageNet's) or auto (crop for photos "
              "at an ImageNet-size model's native size, else bilinear)",
    "in_memory": "image folders / .tar.gz: yes (decode all into memory), no (stream batches "
                 "from disk with --workers processes), or auto (stream when the decoded "
                 "training set exceeds CNNLAB_MEMORY_BUDGET_GB, default 25%% of RAM)",
    "workers": "processes decoding batches when streaming (0: in the training process)",
    "device": "auto, cpu, cuda or cuda:N",
    "amp": "mixed precision: auto (bf16 on GPU, off on CPU), bf16, fp16 or off",
    "channels_last": "use the channels_last memory format (faster convolutions)",
    "compile": "torch.compile the model",
    "threads": "number of CPU threads for torch (default: 1 for models under 1M parameters, "
               "which lose little to one thread and much to a busy core; torch's choice above)",
    "seed": "random seed (one seed sets shuffling, augmentation, dropout and init)",
    "out": "run directory (default runs/<model>-<data>-<timestamp>)",
    "save_every": "also checkpoint every N steps (0: every epoch only)",
    "early_stop": "stop after N epochs without a lower validation loss (0: never)",
    "tensorboard": "also log to TensorBoard (if installed)",
    "progress": "auto (bars on a terminal, lines otherwise), bar, lines or none",
}



def run_test_split(cfg: dict) -> float | None:
    """A saved run's test fraction: ``test_split`` since validation splits came in; configs
    written before called it ``val_split``."""
    return cfg["test_split"] if "test_split" in cfg else cfg.get("val_split")


def parse_input_size(text, flag: str = "--input-size") -> tuple[int, int]:
    """``"64x64"`` (or ``"64"``, square) -> (64, 64); else a UserError naming ``flag``, the
    value and the expected form (each side within ``RANGES["input_side"]``)."""
    parts = str(text).lower().split("x")
    try:
        h, w = (int(parts[0]),) * 2 if len(parts) == 1 else (int(parts[0]), int(parts[1]))
        ok = len(parts) <= 2 and all(RANGES["input_side"][0] <= v <= RANGES["input_side"][1]
                                     for v in (h, w))
    except ValueError:
        ok = False
    if not ok:
        lo, hi = RANGES["input_side"][:2]
        raise UserError(f"{flag} {text}: expected HxW in pixels, e.g. 64x64, each side "
                        f"{lo} to {hi:,}")
    return h, w


def _num(v) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def range_text(name: str) -> str:
    """The allowed range of ``name`` as people write it: ``0 <= x < 1``, ``x > 0``, ..."""
    lo, hi, lo_in, hi_in = RANGES[name]
    if hi >= 1e12:  # no upper bound worth stating
        return f"{name} {'>=' if lo_in else '>'} {_num(lo)}"
    return f"{_num(lo)} {'<=' if lo_in else '<'} {name} {'<=' if hi_in else '<'} {_num(hi)}"


def check_range(name: str, value, flag: str | None = None):
    """``value`` if it lies in ``RANGES[name]`` and is finite; else a UserError naming the
    argument (``flag``, default ``--name``), the value and the allowed range."""
    if name not in RANGES or value is None:
        return value
    lo, hi, lo_in, hi_in = RANGES[name]
    ok = (math.isfinite(value) and (value >= lo if lo_in else value > lo)
          and (value <= hi if hi_in else value < hi))
    if not ok:
        flag = flag or "--" + name.replace("_", "-")
        raise UserError(f"{flag} {value}: out of range (expected {range_text(name)})")
    return value


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string",
               "bool": "true or false", "dict": "a mapping (e.g. {activation: tanh})"}


def _expected(kinds: list[str]) -> str:
    text = " or ".join(_TYPE_NAMES.get(k, k) for k in kinds if k != "None")
    return text + (" or null" if "None" in kinds else "")


def _found(v) -> str:
    shown = repr(v)
    return f"{type(v).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _fits(v, kind: str) -> bool:
    if kind == "None":
        return v is None
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str) and len(v) <= MAX_STR
    if kind == "dict":
        return isinstance(v, dict)
    return True  # a type this check does not know: left to the code that uses it


def _check_kwargs(d: dict, where: str) -> None:
    """model_kwargs: at most 64 string keys; values plain scalars or short lists of them."""
    scalar = (bool, int, float, str, type(None))
    if len(d) > MAX_KWARGS:
        raise UserError(f"{where}: model_kwargs has {len(d)} entries (expected at most "
                        f"{MAX_KWARGS})")
    for k, v in d.items():
        ok = isinstance(k, str) and (isinstance(v, scalar) or (
            isinstance(v, list) and len(v) <= 64 and all(isinstance(x, scalar) for x in v)))
        if not ok or (isinstance(v, str) and len(v) > MAX_STR):
            raise UserError(f"{where}: model_kwargs.{k}: found {_found(v)}, expected a number, "
                            f"string, boolean, null or a short list of them")


def check_config(d: dict, where: str = "config") -> dict:
    """Check each value of ``d`` against its TrainConfig field's type and :data:`RANGES`.

    Returns ``d`` with ints given for float fields made floats. Raises UserError on the
    first bad value: ``WHERE: KEY: found TYPE VALUE, expected WHAT``.
    """
    out = dict(d)
    for k, v in d.items():
        if k not in FIELDS:
            continue
        kinds = [t.strip() for t in str(FIELDS[k].type).split("|")]
        if not any(_fits(v, kind) for kind in kinds):
            raise UserError(f"{where}: {k}: found {_found(v)}, expected {_expected(kinds)}")
        if k == "model_kwargs":
            _check_kwargs(v, where)
        if k == "input_size" and v is not None:
            parse_input_size(v, f"{where}: input_size")
        from cnnlab.preprocess import RESIZE_POLICIES  # torch-free

        if k == "resize" and v not in ("auto", *RESIZE_POLICIES):
            raise UserError(f"{where}: resize: found {v!r}, expected one of auto, "
                            f"{', '.join(RESIZE_POLICIES)}")
        if "float" in kinds and isinstance(v, int) and not isinstance(v, bool):
            out[k] = v = float(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k in RANGES:
            try:
                check_range(k, v)
            except UserError:
                raise UserError(f"{where}: {k}: found {v}, expected {range_text(k)}") from None
    return out
