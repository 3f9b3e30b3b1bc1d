"""The ``cnnlab`` command line: each subcommand parses its flags, then calls one library
function. Bad input prints one line and exits with code 2 (``--debug`` shows the traceback)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from cnnlab import __version__
from cnnlab.errors import UserError

EXAMPLES = {
    "train": """
        cnnlab train                                     # LeNet-5 on the built-in digits
        cnnlab train --data ../shared/datasets/mnist.tar.gz --epochs 2
        cnnlab train --model resnet20 --data cifar10 --epochs 30 --augment crop:4,flip
        cnnlab train --engine numpy                      # the from-scratch NumPy engine
        cnnlab train --config my.yaml --lr 0.1           # YAML defaults, flags override
        cnnlab train --resume runs/lenet5-digits-20261122-104500
        cnnlab train --nproc 2 --device cpu              # 2 processes (torchrun, gloo)""",
    "eval": """
        cnnlab eval runs/lenet5-digits-20261122-104500
        cnnlab eval runs/.../checkpoints/best.safetensors --data ../shared/datasets/mnist.tar.gz
        cnnlab eval RUN_DIR --data big-image-folder/ --in-memory no --workers 4""",
    "predict": """
        cnnlab predict runs/lenet5-mnist-.../checkpoints/best.safetensors seven.png
        cnnlab predict RUN_DIR a.png b.jpg --topk 5 --json""",
    "models": """
        cnnlab models
        cnnlab models --json""",
    "summary": """
        cnnlab summary alexnet --input 3x227x227
        cnnlab summary resnet18 --input 3x32x32 --num-classes 10 --small-input
        cnnlab summary lenet5 --engine numpy --json""",
    "explain": """
        cnnlab explain conv
        cnnlab explain padding
        cnnlab explain conv --input "1 1 1 0 0; 0 1 1 1 0; 0 0 1 1 1; 0 0 1 1 0; 0 1 1 0 0" \\
                            --kernel "1 0 1; 0 1 0; 1 0 1" --stride 2 --padding 1""",
    "augment-preview": """
        cnnlab augment-preview --out grid.png
        cnnlab augment-preview --data ../shared/datasets/cifar10.tar.gz --augment crop:4,flip,jitter:0.4 --out grid.png""",
}

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


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def _sub(subs, name, help_, description=None):
    return subs.add_parser(name, help=help_, description=description or help_,
                           formatter_class=_formatter,
                           epilog="examples:" + textwrap.dedent(EXAMPLES[name]))


def build_parser() -> argparse.ArgumentParser:
    from cnnlab.config import FIELDS, TrainConfig

    p = argparse.ArgumentParser(
        prog="cnnlab", formatter_class=_formatter,
        description="cnnlab: convolutional neural networks for image classification — learn "
                    "the mechanics, train and inspect real classifiers.",
        epilog="Run `cnnlab COMMAND --help` for a command's options and examples.")
    p.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subs = p.add_subparsers(dest="command", metavar="COMMAND")

    t = _sub(subs, "train", "train a model (default: LeNet-5 on the built-in digits)")
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
            t.add_argument(flag, type=_json_dict, default=None, help=h)
        else:
            typ = {"int": int, "float": float, "str": str}.get(
                type(default).__name__, float if name in ("val_split", "grad_clip") else
                int if name == "threads" else str)
            t.add_argument(flag, type=typ, default=None, help=h)

    e = _sub(subs, "eval", "test accuracy, per-class accuracy and confusion matrix of a checkpoint")
    e.add_argument("checkpoint", help="checkpoint .safetensors, its .json, or a run directory")
    e.add_argument("--data", help="dataset to test on (default: the one it was trained on)")
    e.add_argument("--val-split", type=float, help="held-out fraction for data without test/")
    e.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    e.add_argument("--in-memory", default="auto", metavar="{auto,yes,no}",
                   help="image folders / .tar.gz: yes (decode the images into memory), no "
                        "(stream batches from disk), or auto (stream when the decoded training "
                        "set exceeds CNNLAB_MEMORY_BUDGET_GB, as `cnnlab train` does; default)")
    e.add_argument("--workers", type=int, default=2,
                   help="processes decoding batches when streaming (0: in this process; "
                        "default: 2)")
    e.add_argument("--json", action="store_true", help="print JSON")

    pr = _sub(subs, "predict", "top-k classes with probabilities for image files")
    pr.add_argument("checkpoint", help="checkpoint .safetensors, its .json, or a run directory")
    pr.add_argument("images", nargs="+", help="PNG/JPEG/BMP files, any size, gray or colour")
    pr.add_argument("--topk", type=int, default=3, help="how many classes to show (default: 3)")
    pr.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    pr.add_argument("--json", action="store_true", help="print JSON")

    m = _sub(subs, "models", "table of every registered model: parameters, input, paper, year")
    m.add_argument("--json", action="store_true", help="print JSON")

    s = _sub(subs, "summary", "per-layer shapes, parameters, MACs and receptive fields")
    s.add_argument("model", help="registered model name")
    s.add_argument("--input", help="input size CxHxW (default: the model's own)")
    s.add_argument("--num-classes", type=int, help="number of classes (default: the model's)")
    s.add_argument("--engine", default="torch", help="torch or numpy (default: torch)")
    s.add_argument("--small-input", action="store_true",
                   help="build the model's small-input variant (for 28-64 px inputs)")
    s.add_argument("--depth", type=int, help="show modules down to this depth as one row each")
    s.add_argument("--json", action="store_true", help="print JSON")

    x = _sub(subs, "explain", "worked examples of CNN mechanics, computed step by step")
    x.add_argument("topic", help="conv, stride, padding, pooling, stochastic-pooling, rgb-conv, "
                                 "params or output-size")
    x.add_argument("--input", help='your own input matrix, rows separated by ";"')
    x.add_argument("--kernel", help='your own kernel matrix, rows separated by ";"')
    x.add_argument("--stride", type=int, default=None, help="stride (default: the topic's)")
    x.add_argument("--padding", type=int, default=None, help="zero padding (default: the topic's)")

    a = _sub(subs, "augment-preview", "write a grid of augmented training samples to look at")
    a.add_argument("--data", default="digits", help="dataset (default: digits)")
    a.add_argument("--augment", default="auto", help="augmentation spec (default: auto)")
    a.add_argument("--n", type=int, default=32, help="number of samples (default: 32)")
    a.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    a.add_argument("--out", default="augment-preview.png", help="output PNG")
    return p


def _json_dict(s: str) -> dict:
    try:
        d = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}") from e
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}")
    return d


# ------------------------------------------------------------------------------ commands
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


def cmd_eval(args) -> int:
    from cnnlab.inference import evaluate

    r = evaluate(args.checkpoint, data=args.data, device=args.device, val_split=args.val_split,
                 in_memory=args.in_memory, workers=args.workers)
    print(json.dumps(r.to_dict(), indent=2) if args.json else r.format())
    return 0


def cmd_predict(args) -> int:
    from cnnlab.inference import predict

    if args.topk < 1:
        raise UserError(f"--topk {args.topk}: expected a positive integer")
    results = predict(args.checkpoint, args.images, topk=args.topk, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    for r in results:
        tops = "  ".join(f"{t['class']} {t['probability']:.1%}" for t in r["top"])
        print(f"{r['image']}: {tops}")
    return 0


def cmd_models(args) -> int:
    from cnnlab.analysis import format_models_table, models_table

    rows = models_table()
    print(json.dumps(rows, indent=2) if args.json else format_models_table(rows))
    return 0


def cmd_summary(args) -> int:
    from cnnlab.analysis import parse_input_size, summary

    size = parse_input_size(args.input) if args.input else None
    kw = {"small_input": True} if args.small_input else {}
    s = summary(args.model, input_size=size, num_classes=args.num_classes, engine=args.engine,
                depth=args.depth, **kw)
    print(json.dumps(s.to_dict(), indent=2) if args.json else s.format_table())
    return 0


def cmd_explain(args) -> int:
    from cnnlab.scratch.explain import explain

    kw = {k: getattr(args, k) for k in ("input", "kernel", "stride", "padding")
          if getattr(args, k) is not None}
    print(explain(args.topic, **kw))
    return 0


def cmd_augment_preview(args) -> int:
    from cnnlab.data import load_data
    from cnnlab.transforms import preview

    # a folder too big for memory streams: only the n sampled images are decoded
    data = load_data(args.data, in_memory="auto")
    augment = "standard" if args.augment == "auto" else args.augment  # as `cnnlab train`
    path = preview(data, augment, n=args.n, seed=args.seed, out=args.out)
    print(f"wrote {path}")
    return 0


COMMANDS = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "models": cmd_models,
            "summary": cmd_summary, "explain": cmd_explain, "augment-preview": cmd_augment_preview}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except BrokenPipeError:  # `cnnlab models | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as e:
        if args.debug:
            raise
        print(f"cnnlab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, --debug for the traceback
        from cnnlab.train import TrainingError

        if args.debug:
            raise
        if isinstance(e, TrainingError):
            print(f"cnnlab {args.command}: {e}", file=sys.stderr)
            return 1
        if isinstance(e, ValueError):  # library argument errors (unknown model, bad shapes)
            print(f"cnnlab {args.command}: error: {e}", file=sys.stderr)
            return 2
        print(f"cnnlab {args.command}: unexpected {type(e).__name__}: {e} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 1
