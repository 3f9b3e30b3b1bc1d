"""`cnnlab export` and `cnnlab bench`: ship a trained model and measure how fast it runs."""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.cli.common import add_command
from cnnlab.errors import UserError

EXAMPLES = {
    "export": """
        cnnlab export runs/lenet5-mnist-.../checkpoints/best.safetensors       # -> best.onnx
        cnnlab export RUN_DIR --format onnx --out lenet5.onnx --dynamic-batch
        cnnlab export RUN_DIR --format pt2 --out lenet5.pt2 --force
        cnnlab predict lenet5.onnx digits/            # onnxruntime only, torch never loaded
        cnnlab export --model resnet50 --pretrained --out resnet50.onnx   # ImageNet weights""",
    "bench": """
        cnnlab bench lenet5                           # a zoo model with random weights
        cnnlab bench RUN_DIR --batch 1,32,256 --runtime torch,compile,onnx
        cnnlab bench resnet18 --input 3x224x224 --batch 1,32 --threads 2 --json""",
}


def positive_int(text: str) -> int:
    """argparse type: a positive integer (argparse names the argument in its error)."""
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return v


def int_list(text: str) -> list[int]:
    """argparse type: positive integers separated by commas."""
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers separated "
                                         f"by commas, e.g. 1,32,256")
    return vals


def register(subs) -> None:
    e = add_command(subs, "export", "export a checkpoint to ONNX or a torch.export .pt2 program, "
                    "checked against torch", EXAMPLES["export"], cmd_export)
    e.add_argument("checkpoint", nargs="?",
                   help="checkpoint .safetensors, its .json, or a run directory")
    e.add_argument("--model", metavar="NAME", help="with --pretrained: export this zoo model "
                                                   "with torchvision's ImageNet weights")
    e.add_argument("--pretrained", nargs="?", const="default", metavar="SET",
                   help="the ImageNet weight set of --model (default: its default set)")
    e.add_argument("--format", default="onnx", help="onnx or pt2 (default: onnx)")
    e.add_argument("--out", help="output file (default: beside the checkpoint, best.onnx "
                                 "for best.safetensors; MODEL-SET.onnx for --pretrained)")
    e.add_argument("--opset", type=positive_int,
                   help="ONNX opset version (default: the exporter's, 20)")
    e.add_argument("--dynamic-batch", action="store_true",
                   help="accept any batch size (default: batches of exactly 1 image)")
    e.add_argument("--force", action="store_true", help="overwrite an existing output file")
    e.add_argument("--json", action="store_true", help="print JSON")

    b = add_command(subs, "bench", "inference latency (p50/p99) and throughput per batch size "
                    "and runtime", EXAMPLES["bench"], cmd_bench)
    b.add_argument("model", help="checkpoint, run directory, .onnx file or registered model name")
    b.add_argument("--batch", type=int_list, default=[1, 32, 256],
                   help="batch sizes, comma-separated (default: 1,32,256)")
    b.add_argument("--runtime", default="torch,compile,onnx",
                   help="runtimes, comma-separated: torch (eager), compile (torch.compile), "
                        "onnx (onnxruntime) (default: all three)")
    b.add_argument("--threads", type=positive_int,
                   help="CPU threads for every runtime (default: each runtime's own)")
    b.add_argument("--input", help="input size CxHxW for a model name (default: the model's "
                                   "own; 32x32 or smaller builds its small-input variant)")
    b.add_argument("--seconds", type=float, default=1.0,
                   help="time spent measuring each case (default: 1)")
    b.add_argument("--json", action="store_true", help="print JSON")


def cmd_export(args) -> int:
    from cnnlab.deploy.export import export_checkpoint

    if args.model or args.pretrained:
        r = _export_pretrained(args)
    elif not args.checkpoint:
        raise UserError("export: expected a checkpoint or run directory (or --model NAME "
                        "--pretrained)")
    else:
        r = export_checkpoint(args.checkpoint, fmt=args.format, out=args.out, opset=args.opset,
                              dynamic_batch=args.dynamic_batch, force=args.force)
    if args.json:
        d = {**r.__dict__, "path": str(r.path)}
        print(json.dumps(d, indent=2))
    else:
        print(r.format_line())
    return 0


def _export_pretrained(args):
    """``export --model NAME --pretrained [SET]``: weights + ImageNet input spec (resize
    "crop") and class names in the file's metadata."""
    from pathlib import Path

    from cnnlab.deploy.export import check_export_args, export_model
    from cnnlab.pretrained import load, meta, weight_set

    if not (args.model and args.pretrained) or args.checkpoint:
        raise UserError(f"export --model {args.model} --pretrained {args.pretrained}: give "
                        f"both, and no checkpoint (e.g. export --model resnet50 --pretrained)")
    ws = weight_set(args.model, args.pretrained)
    out = args.out or f"{ws.model}-{ws.name.lower()}.{args.format}"
    check_export_args(args.format, Path(out), args.opset, args.force)  # before the download
    return export_model(load(ws.model, ws.name)[0], meta(ws.model, ws.name), out, args.format,
                        args.opset, args.dynamic_batch, args.force)


def cmd_bench(args) -> int:
    from cnnlab.deploy.bench import bench

    if not 0 < args.seconds <= 600:
        raise UserError(f"--seconds {args.seconds}: expected a duration in (0, 600]")
    runtimes = [r.strip() for r in args.runtime.split(",") if r.strip()]
    report = bench(args.model, batches=args.batch, runtimes=runtimes, threads=args.threads,
                   input_size=args.input, seconds=args.seconds,
                   say=lambda m: print(f"cnnlab bench: {m}", file=sys.stderr, flush=True))
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.format())
    return 0
