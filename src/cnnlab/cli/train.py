"""`cnnlab train` and `cnnlab augment-preview`."""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.common import add_command, json_dict

TRAIN_EXAMPLES = """
    cnnlab train                                     # LeNet-5 on the built-in digits
    cnnlab train --data ../shared/datasets/mnist.tar.gz --epochs 2
    cnnlab train --model resnet20 --data cifar10 --epochs 30 --augment crop:4,flip
    cnnlab train --engine numpy                      # the from-scratch NumPy engine
    cnnlab train --config my.yaml --lr 0.1           # YAML defaults, flags override
    cnnlab train --resume runs/lenet5-digits-20261122-104500
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
    "val_split": "fraction held out for testing when the data has no test/ folder",
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
    "augment": "auto, none, or a list like crop:4,flip,jitter:0.4 (see cnnlab.transforms)",
    "normalize": "auto (per-channel mean/std of the training set), none, or MEAN/STD given "
                 "per channel on the 0..1 scale, e.g. 0.49,0.48,0.45/0.25,0.24,0.26",
    "in_memory": "image folders / .tar.gz: yes (decode all into memory), no (stream batches "
                 "from disk with --workers processes), or auto (stream when the decoded "
                 "training set exceeds CNNLAB_MEMORY_BUDGET_GB, default 25%% of RAM)",
    "workers": "processes decoding batches when streaming (0: in the training process)",
    "device": "auto, cpu, cuda or cuda:N",
    "amp": "mixed precision: auto (bf16 on GPU, off on CPU), bf16, fp16 or off",
    "channels_last": "use the channels_last memory format (faster convolutions)",
    "compile": "torch.compile the model",
    "threads": "number of CPU threads for torch",
    "seed": "random seed (one seed sets shuffling, augmentation, dropout and init)",
    "out": "run directory (default runs/<model>-<data>-<timestamp>)",
    "save_every": "also checkpoint every N steps (0: every epoch only)",
    "early_stop": "stop after N epochs without test-accuracy improvement (0: never)",
    "tensorboard": "also log to TensorBoard (if installed)",
    "progress": "auto (bars on a terminal, lines otherwise), bar, lines or none",
}


def register(subs) -> None:
    from cnnlab.config import FIELDS, TrainConfig

    t = add_command(subs, "train", "train a model (default: LeNet-5 on the built-in digits)",
                    TRAIN_EXAMPLES, cmd_train)
    t.add_argument("--config", help="YAML file of config keys (flags override it)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    t.add_argument("--nproc", type=int, help="launch N processes with torchrun (data parallel)")
    defaults = TrainConfig()
    for name, f in FIELDS.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        h = f"{TRAIN_HELP[name]} (default: {default})"
        if isinstance(default, bool):
            t.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=h)
        elif name == "model_kwargs":
            t.add_argument(flag, type=json_dict, default=None, help=h)
        else:
            typ = {"int": int, "float": float, "str": str}.get(
                type(default).__name__, float if name in ("val_split", "grad_clip") else
                int if name == "threads" else str)
            t.add_argument(flag, type=typ, default=None, help=h)

    a = add_command(subs, "augment-preview",
                    "write a grid of augmented training samples to look at",
                    PREVIEW_EXAMPLES, cmd_augment_preview)
    a.add_argument("--data", default="digits", help="dataset (default: digits)")
    a.add_argument("--augment", default="auto", help="augmentation spec (default: auto)")
    a.add_argument("--n", type=int, default=32, help="number of samples (default: 32)")
    a.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    a.add_argument("--out", default="augment-preview.png", help="output PNG")


def cmd_train(args) -> int:
    from cnnlab.config import FIELDS, load_yaml, make_config
    from cnnlab.train import train

    overrides = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    if args.nproc and args.nproc > 1:
        return _launch_torchrun(args.nproc, overrides)
    if args.resume:
        summary = train(resume=args.resume, **overrides)
    else:
        base = load_yaml(args.config) if args.config else {}
        summary = train(make_config(base, **overrides))
    if summary.get("processes", 1) == 1 or _rank() == 0:
        print(f"test accuracy {summary['test_accuracy']:.2%} after {summary['epochs']} epochs "
              f"({summary['seconds']:.1f} s) · run directory {summary['run_dir']}")
    return 0


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
    return subprocess.call(cmd, env=os.environ.copy())


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
