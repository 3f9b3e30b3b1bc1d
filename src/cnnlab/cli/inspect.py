"""`cnnlab eval`, `predict`, `models`, `summary` and `explain`: look at checkpoints and models."""

from __future__ import annotations

import json

from cnnlab.cli.common import add_command
from cnnlab.errors import UserError

EXAMPLES = {
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
}


def register(subs) -> None:
    e = add_command(subs, "eval",
                    "test accuracy, per-class accuracy and confusion matrix of a checkpoint",
                    EXAMPLES["eval"], cmd_eval)
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

    pr = add_command(subs, "predict", "top-k classes with probabilities for image files",
                     EXAMPLES["predict"], cmd_predict)
    pr.add_argument("checkpoint", help="checkpoint .safetensors, its .json, or a run directory")
    pr.add_argument("images", nargs="+", help="PNG/JPEG/BMP files, any size, gray or colour")
    pr.add_argument("--topk", type=int, default=3, help="how many classes to show (default: 3)")
    pr.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    pr.add_argument("--json", action="store_true", help="print JSON")

    m = add_command(subs, "models",
                    "table of every registered model: parameters, input, paper, year",
                    EXAMPLES["models"], cmd_models)
    m.add_argument("--json", action="store_true", help="print JSON")

    s = add_command(subs, "summary", "per-layer shapes, parameters, MACs and receptive fields",
                    EXAMPLES["summary"], cmd_summary)
    s.add_argument("model", help="registered model name")
    s.add_argument("--input", help="input size CxHxW (default: the model's own)")
    s.add_argument("--num-classes", type=int, help="number of classes (default: the model's)")
    s.add_argument("--engine", default="torch", help="torch or numpy (default: torch)")
    s.add_argument("--small-input", action="store_true",
                   help="build the model's small-input variant (for 28-64 px inputs)")
    s.add_argument("--depth", type=int, help="show modules down to this depth as one row each")
    s.add_argument("--json", action="store_true", help="print JSON")

    x = add_command(subs, "explain", "worked examples of CNN mechanics, computed step by step",
                    EXAMPLES["explain"], cmd_explain)
    x.add_argument("topic", help="conv, stride, padding, pooling, stochastic-pooling, rgb-conv, "
                                 "params or output-size")
    x.add_argument("--input", help='your own input matrix, rows separated by ";"')
    x.add_argument("--kernel", help='your own kernel matrix, rows separated by ";"')
    x.add_argument("--stride", type=int, default=None, help="stride (default: the topic's)")
    x.add_argument("--padding", type=int, default=None, help="zero padding (default: the topic's)")


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
