"""`cnnlab train` and `cnnlab augment-preview`."""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.common import add_command, json_dict, ranged

TRAIN_EXAMPLES = """
    cnnlab train                                     # LeNet-5 on the built-in digits
    cnnlab train --data ../shared/datasets/mnist.tar.gz --epochs 2
    cnnlab train --model resnet20 --data cifar10 --epochs 30 --augment crop:4,flip
    cnnlab train --engine numpy                      # the from-scratch NumPy engine
    cnnlab train --config my.yaml --lr 0.1           # YAML defaults, flags override
    cnnlab train --resume runs/lenet5-digits-20261122-104500
    cnnlab train --data digits --init runs/mnist-run --freeze backbone     # linear probe
    cnnlab train --init resnet18.pth --lr-backbone 0.1 --data my-photos/   # fine-tune
    cnnlab train --model mlp --teacher runs/big-run --kd-temperature 20   # distil
    cnnlab train --nproc 2 --device cpu              # 2 processes (torchrun, gloo)"""

PREVIEW_EXAMPLES = """
    cnnlab augment-preview --out grid.png
    cnnlab augment-preview --data ../shared/datasets/cifar10.tar.gz --augment crop:4,flip,jitter:0.4 --out grid.png"""

TRAIN_HELP = {
    "model": "registered model name (see `cnnlab models`)",
    "data": "digits (built in), mnist, fashion-mnist, cifar10, cifar100, an image-folder tree "
            "or a .tar.gz of one",
    "engine": "torch, or numpy for the from-scratch engine (cnnlab.scratch)",
    "model_kwargs": "extra model constructor arguments as JSON, e.g. '{\"activation\": \"tanh\"}'",
    "val_split": "fraction of the training images held out as a validation set that picks "
                 "the best checkpoint and drives --early-stop; 0 trains on all of them and "
                 "keeps the last epoch",
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
    "teacher": "distil from this checkpoint or run directory (either engine; it sees the "
               "same augmented batch through its own input spec)",
    "kd_temperature": "distillation temperature T (> 0; Hinton et al. used 20 on MNIST)",
    "kd_alpha": "weight of the teacher term, in [0, 1]; 1 - alpha goes to the labels",
    "augment": "auto, none, or a list like crop:4,flip,jitter:0.4 (see cnnlab.transforms)",
    "normalize": "auto (per-channel mean/std of the training set), none, or MEAN/STD given "
                 "per channel on the 0..1 scale, e.g. 0.49,0.48,0.45/0.25,0.24,0.26",
    "input_size": "train (and later eval/predict) at this size, HxW in pixels, e.g. 64x64: "
                  "every image is resized or padded to it (--resize); recorded in the "
                  "checkpoint (default: the data's own size)",
    "resize": "how images reach --input-size: bilinear (stretch) or pad (shrink to fit "
              "keeping the aspect ratio, then centre on black)",
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
    "early_stop": "stop after N epochs without validation-accuracy improvement (0: never)",
    "tensorboard": "also log to TensorBoard (if installed)",
    "progress": "auto (bars on a terminal, lines otherwise), bar, lines or none",
}


def register(subs) -> None:
    from cnnlab.config import FIELDS, RANGES, TrainConfig

    t = add_command(subs, "train", "train a model (default: LeNet-5 on the built-in digits)",
                    TRAIN_EXAMPLES, cmd_train)
    t.add_argument("--config", help="YAML file of config keys (flags override it)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--nproc", type=ranged("nproc", int),
                   help="launch N processes with torchrun (data parallel)")
    defaults = TrainConfig()
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        h = TRAIN_HELP[name]  # says its own default when it is not a plain value (--out)
        h = h if "(default" in h else f"{h} (default: {default})"
        if isinstance(default, bool):
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=h)
        elif name == "model_kwargs":
            t.add_argument(flag, type=json_dict, default=None, help=h)
        else:
            typ = {"int": int, "float": float, "str": str}.get(
                type(default).__name__, float if name in ("test_split", "grad_clip") else
                int if name == "threads" else str)
            if name in RANGES:  # checked at parse time: name, value, allowed range
                typ = ranged(name, typ)
            if name == "input_size":  # "HxW", checked at parse time
                t.add_argument(flag, type=_input_size_arg, default=None, metavar="HxW", help=h)
                continue
            if name == "resize":
                t.add_argument(flag, choices=("bilinear", "pad"), default=None, help=h)
                continue
            t.add_argument(flag, type=typ, default=None, help=h)

    a = add_command(subs, "augment-preview",
                    "write a grid of augmented training samples to look at",
                    PREVIEW_EXAMPLES, cmd_augment_preview)
    a.add_argument("--data", default="digits", help="dataset (default: digits)")
    a.add_argument("--augment", default="auto", help="augmentation spec (default: auto)")
    a.add_argument("--n", type=int, default=32, help="number of samples (default: 32)")
    a.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    a.add_argument("--out", default="augment-preview.png", help="output PNG")


def _input_size_arg(text: str) -> str:
    """``--input-size HxW``, checked at parse time (:func:`cnnlab.config.parse_input_size`)."""
    from cnnlab.config import parse_input_size
    from cnnlab.errors import UserError

    try:
        h, w = parse_input_size(text)
    except UserError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix(f"--input-size {text}: ")
                                          .replace("expected", f"{text!r}: expected", 1)) from None
    return f"{h}x{w}"


_input_size_arg.__name__ = "HxW"


def cmd_train(args) -> int:
    from cnnlab.config import FIELDS, load_yaml, make_config
    from cnnlab.train import train

    overrides = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    if args.nproc and args.nproc > 1:
        _check_before_launch(args, overrides)  # a user error: one line, exit 2, no processes
        return _launch_torchrun(args.nproc, overrides)
    if args.resume:
        summary = train(resume=args.resume, **overrides)
    else:
        base = load_yaml(args.config) if args.config else {}
        _fresh_out(base, args.config, overrides)
        summary = train(make_config(base, **overrides))
    if summary.get("processes", 1) == 1 or _rank() == 0:
        print(_summary_line(summary))
    return 0


def _fresh_out(base: dict, config: str | None, overrides: dict) -> None:
    """A run's saved config.yaml names that run's folder in ``out``: reusing the config
    without --out starts a new run directory instead of colliding with the old one."""
    from pathlib import Path

    out = base.get("out")
    if config and "out" not in overrides and out and (Path(out) / "config.yaml").exists():
        print(f"--config {config}: its out ({out}) already holds a run; writing a new run "
              f"directory (pass --out to choose it)", file=sys.stderr)
        base["out"] = None


def _summary_line(summary: dict) -> str:
    n = summary["epochs"]
    epochs = f"{n} epoch{'s' if n != 1 else ''}"
    ck = summary.get("checkpoint") or {}
    which = f" (checkpoint {ck['name']}, epoch {ck['epoch']})" if ck else ""
    if summary.get("already_finished"):
        how = ("early stopping ended it" if summary.get("stopped_early") else
               f"pass --epochs N larger than {n} to train on")
        return (f"run {summary['run_dir']} already finished {epochs}; nothing to do ({how}) "
                f"· test accuracy {summary['test_accuracy']:.2%}{which}")
    return (f"test accuracy {summary['test_accuracy']:.2%}{which} after {epochs} "
            f"({summary['seconds']:.1f} s) · run directory {summary['run_dir']}")


def _rank() -> int:
    import os

    return int(os.environ.get("RANK", "0"))


def _launch_torchrun(nproc: int, overrides: dict) -> int:
    """Re-run this command under torchrun with N processes (one run directory for all)."""
    import os
    import subprocess

    from cnnlab.run import RunDir

    argv = [a for a in sys.argv[1:]]
    i = argv.index("--nproc") if "--nproc" in argv else None
    if i is not None:
        del argv[i:i + 2]
    else:
        argv = [a for a in argv if not a.startswith("--nproc=")]
    if "out" not in overrides:
        argv += ["--out", str(RunDir.default_path(overrides.get("model", "lenet5"),
                                                  _data_name(overrides.get("data", "digits"))))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "cnnlab", *argv]
    print("launching: " + " ".join(cmd[2:]), file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=os.environ.copy(), stderr=subprocess.PIPE, text=True,
                            errors="replace", bufsize=1)
    try:
        failed = _relay_stderr(proc.stderr)
    finally:
        rc = proc.wait()
    return 2 if failed and rc else rc


def _relay_stderr(stream) -> bool:
    """Forward the processes' stderr, with an error printed once: every rank prints the
    same ``cnnlab train: error: ...`` line, and torchrun follows it with its own report (a
    ChildFailedError traceback per rank, "terminate called ..."); only the first error
    line is kept. Returns whether a rank reported a user error."""
    failed, seen = False, set()
    for line in stream:
        if line.startswith("cnnlab ") and ": error: " in line:
            if line not in seen:
                sys.stderr.write(line)
                sys.stderr.flush()
            seen.add(line)
            failed = True
        elif not failed and line.strip() and "OMP_NUM_THREADS" not in line and not (
                line.startswith("*****")):  # torchrun's banner about OMP_NUM_THREADS
            sys.stderr.write(line)  # progress, warnings, metrics: as the processes wrote them
            sys.stderr.flush()
    return failed


def _check_before_launch(args, overrides: dict) -> None:
    """What can be checked before starting processes: the config (file, types, ranges,
    model arguments), the model name, and that the data exists."""
    from pathlib import Path

    from cnnlab.config import load_yaml, make_config
    from cnnlab.errors import UserError
    from cnnlab.registry import model_info

    if args.resume:
        from cnnlab.run import RunDir

        base = RunDir(Path(args.resume), writer=False).load_config()
        cfg = make_config(base, **{k: v for k, v in overrides.items() if k == "epochs"})
    else:
        cfg = make_config(load_yaml(args.config) if args.config else {}, **overrides)
    try:
        model_info(cfg.model)
    except ValueError as e:
        raise UserError(f"--model {cfg.model}: {e}") from e
    from cnnlab.data import _named_loaders

    if cfg.data != "digits" and cfg.data not in _named_loaders() and not Path(
            cfg.data).expanduser().exists():
        raise UserError(f"--data {cfg.data}: no such file or folder (expected 'digits', a "
                        f"dataset name, an image-folder tree or a .tar.gz of one)")


def _data_name(spec: str) -> str:
    from pathlib import Path

    return Path(spec).name.split(".")[0] or "data"


def cmd_augment_preview(args) -> int:
    from cnnlab.data import load_data
    from cnnlab.transforms import preview

    # a folder too big for memory streams: only the n sampled images are decoded
    data = load_data(args.data, in_memory="auto")
    augment = "standard" if args.augment == "auto" else args.augment  # as `cnnlab train`
    path = preview(data, augment, n=args.n, seed=args.seed, out=args.out)
    print(f"wrote {path}")
    return 0
