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
    cnnlab train --model resnet18 --pretrained --data my-photos/ --epochs 5  # from ImageNet
    cnnlab train --model resnet50 --pretrained IMAGENET1K_V1 --data my-photos/
    cnnlab train --model mlp --teacher runs/big-run --kd-temperature 20   # distil
    cnnlab train --nproc 2 --device cpu              # 2 processes (torchrun, gloo)"""

PREVIEW_EXAMPLES = """
    cnnlab augment-preview --out grid.png
    cnnlab augment-preview --data ../shared/datasets/cifar10.tar.gz --augment crop:4,flip,jitter:0.4 --out grid.png"""



def register(subs) -> None:
    from cnnlab.config import FIELDS, HELP, RANGES, TrainConfig
    from cnnlab.preprocess import RESIZE_POLICIES

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
        h = HELP[name]  # says its own default when it is not a plain value (--out)
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
                t.add_argument(flag, choices=("auto", *RESIZE_POLICIES), default=None, help=h)
                continue
            if name == "pretrained":  # --pretrained alone: the model's default weight set
                t.add_argument(flag, nargs="?", const="default", default=None, metavar="NAME",
                               help=h)
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
    from cnnlab.training.api import train

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
    model arguments), then what :func:`cnnlab.training.loop.check_before_run` checks (model
    name, schedule, augmentation, that the data exists)."""
    from pathlib import Path

    from cnnlab.config import load_yaml, make_config
    from cnnlab.training.loop import check_before_run

    if args.resume:
        from cnnlab.run import RunDir

        base = RunDir(Path(args.resume), writer=False).load_config()
        cfg = make_config(base, **{k: v for k, v in overrides.items() if k == "epochs"})
    else:
        cfg = make_config(load_yaml(args.config) if args.config else {}, **overrides)
    check_before_run(cfg)


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
