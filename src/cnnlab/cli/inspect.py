"""`cnnlab eval`, `predict`, `models`, `summary` and `explain`: look at checkpoints and models."""

from __future__ import annotations

import argparse
import json
import sys

from cnnlab.cli.common import add_command, ranged
from cnnlab.errors import UserError

EXAMPLES = {
    "eval": """
        cnnlab eval runs/lenet5-digits-20261122-104500
        cnnlab eval runs/.../checkpoints/best.safetensors --data ../shared/datasets/mnist.tar.gz
        cnnlab eval RUN_DIR --data big-image-folder/ --in-memory no --workers 4""",
    "predict": """
        cnnlab predict runs/lenet5-mnist-.../checkpoints/best.safetensors seven.png
        cnnlab predict RUN_DIR a.png b.jpg --topk 5 --json
        cnnlab predict RUN_DIR photos/ --csv predictions.csv      # a folder, recursively
        cnnlab predict lenet5.onnx photos/          # exported model: onnxruntime, no torch
        cnnlab predict other.onnx x.png --classes cat,dog --input 3x64x64
        cnnlab predict --model resnet50 --pretrained photo.jpg      # ImageNet classes""",
    "models": """
        cnnlab models
        cnnlab models --json
        cnnlab models --pretrained                      # ImageNet weight sets""",
    "summary": """
        cnnlab summary alexnet --input 3x227x227
        cnnlab summary resnet18 --input 3x32x32 --num-classes 10 --small-input
        cnnlab summary lenet5 --engine numpy --json
        cnnlab summary --model resnet50 --pretrained     # + its ImageNet weight set""",
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
    e.add_argument("--test-split", type=float, dest="test_split",
                   help="fraction held out for testing when the data has no test/ folder "
                        "(default: the run's --test-split)")
    # the old name of --test-split (before validation splits came in), accepted silently
    e.add_argument("--val-split", type=float, dest="test_split", help=argparse.SUPPRESS)
    e.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    e.add_argument("--in-memory", default="auto", metavar="{auto,yes,no}",
                   help="image folders / .tar.gz: yes (decode the images into memory), no "
                        "(stream batches from disk), or auto (stream when the decoded training "
                        "set exceeds CNNLAB_MEMORY_BUDGET_GB, as `cnnlab train` does; default)")
    e.add_argument("--workers", type=int, default=2,
                   help="processes decoding batches when streaming (0: in this process; "
                        "default: 2)")
    e.add_argument("--json", action="store_true", help="print JSON")

    pr = add_command(subs, "predict", "top-k classes with probabilities for image files and "
                     "folders", EXAMPLES["predict"], cmd_predict)
    pr.add_argument("checkpoint", nargs="?",
                    help="checkpoint .safetensors, its .json, a run directory, or an "
                         "exported .onnx model (run without torch); with --model and "
                         "--pretrained, the first image")
    pr.add_argument("images", nargs="*", help="PNG/JPEG/BMP files, any size, gray or colour, "
                                              "or folders (searched recursively)")
    _add_pretrained_args(pr, "predict with torchvision's ImageNet weights of this model "
                             "(no run directory)")
    pr.add_argument("--topk", type=int, default=3, help="how many classes to show (default: 3)")
    pr.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    pr.add_argument("--runtime", default="auto", metavar="{auto,torch,onnx}",
                    help="for a checkpoint: onnx runs its `cnnlab export` beside it (best.onnx "
                         "for best.safetensors) with onnxruntime, without torch; auto does so "
                         "when that export is up to date (the faster, measured), else torch")
    pr.add_argument("--csv", metavar="FILE", help="also write the results as CSV: image, then "
                                                   "class and probability per rank")
    pr.add_argument("--workers", type=int, help="processes decoding images (default: "
                                                "2+ for 2,000 images or more, else 0)")
    pr.add_argument("--classes", help="an .onnx model without cnnlab metadata: class names, "
                                      "comma-separated or a file with one per line")
    pr.add_argument("--input", help="an .onnx model without cnnlab metadata: input CxHxW "
                                    "(pixels scaled to 0-1) or a JSON input spec")
    pr.add_argument("--timing", action="store_true",
                    help="print the time spent decoding, in the model and writing (stderr)")
    pr.add_argument("--json", action="store_true", help="print JSON")

    m = add_command(subs, "models",
                    "table of every registered model: parameters, input, paper, year",
                    EXAMPLES["models"], cmd_models)
    m.add_argument("--json", action="store_true", help="print JSON")
    m.add_argument("--pretrained", action="store_true",
                   help="list the ImageNet weight sets (torchvision's) instead: URL file, "
                        "reported top-1/top-5, evaluation resize/crop")

    s = add_command(subs, "summary", "per-layer shapes, parameters, MACs and receptive fields",
                    EXAMPLES["summary"], cmd_summary)
    s.add_argument("model", nargs="?", help="registered model name")
    _add_pretrained_args(s, "the model (same as the positional name)", dest="model_name")
    s.add_argument("--input", help="input size CxHxW (default: the model's own)")
    s.add_argument("--num-classes", type=ranged("num_classes", int),
                   help="number of classes (default: the model's)")
    s.add_argument("--engine", default="torch", help="torch or numpy (default: torch)")
    s.add_argument("--small-input", action="store_true",
                   help="build the model's small-input variant (for 28-64 px inputs)")
    s.add_argument("--depth", type=ranged("depth", int),
                   help="show modules down to this depth as one row each")
    s.add_argument("--json", action="store_true", help="print JSON")

    x = add_command(subs, "explain", "worked examples of CNN mechanics, computed step by step",
                    EXAMPLES["explain"], cmd_explain)
    x.add_argument("topic", help="conv, stride, padding, pooling, stochastic-pooling, rgb-conv, "
                                 "params or output-size")
    x.add_argument("--input", help='your own input matrix, rows separated by ";"')
    x.add_argument("--kernel", help='your own kernel matrix, rows separated by ";"')
    x.add_argument("--stride", type=ranged("stride", int), default=None,
                   help="stride, 1 to 16 (default: the topic's)")
    x.add_argument("--padding", type=ranged("padding", int), default=None,
                   help="zero padding, 0 to 16 (default: the topic's)")


def cmd_eval(args) -> int:
    from cnnlab.inference import evaluate

    r = evaluate(args.checkpoint, data=args.data, device=args.device, test_split=args.test_split,
                 in_memory=args.in_memory, workers=args.workers)
    print(json.dumps(r.to_dict(), indent=2) if args.json else r.format())
    return 0


def cmd_predict(args) -> int:
    """An .onnx model goes to the torch-free predictor before anything imports torch."""
    import time
    import warnings

    if args.topk < 1:
        raise UserError(f"--topk {args.topk}: expected a positive integer")
    if not (args.model or args.pretrained):  # there, the positionals are all images
        _check_order(args.checkpoint or "", args.images)
    if not args.images and not (args.model or args.pretrained):
        raise UserError(f"predict {args.checkpoint or ''}: expected a checkpoint (or --model "
                        f"NAME --pretrained), then one or more images")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers {args.workers}: expected 0 or more worker processes")
    timings: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from cnnlab.deploy import onnx_predict as O

        onnx_model = args.checkpoint if str(args.checkpoint).endswith(".onnx") else None
        if args.model or args.pretrained:  # ImageNet weights, no checkpoint
            onnx_model, results = None, _pretrained_results(args)
        elif onnx_model is None:
            if args.classes or args.input:
                raise UserError(f"--classes/--input: only for an .onnx model without cnnlab "
                                f"metadata; {args.checkpoint} is a checkpoint, which has both")
            onnx_model = O.onnx_for_checkpoint(args.checkpoint, args.runtime, args.device)
        if onnx_model is not None:
            results = O.predict_onnx(onnx_model, args.images, args.topk,
                                     O.parse_classes(args.classes) if args.classes else None,
                                     O.parse_input(args.input) if args.input else None,
                                     args.workers, timings=timings)
        elif not (args.model or args.pretrained):
            from cnnlab.inference import predict

            results = predict(args.checkpoint, args.images, topk=args.topk, device=args.device,
                              workers=args.workers, timings=timings, runtime="torch")
    for w in caught:
        print(f"cnnlab predict: warning: {w.message}", file=sys.stderr)
    from cnnlab.preprocess import SkippedImagesWarning

    skipped = any(issubclass(w.category, SkippedImagesWarning) for w in caught)
    t0 = time.perf_counter()
    if args.csv:
        _write_csv(args.csv, results, args.topk)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(f"{r['image']}: " + "  ".join(f"{t['class']} {t['probability']:.1%}"
                                                      for t in r["top"]) for r in results))
    if args.timing:
        timings["output"] = time.perf_counter() - t0
        print("timing: " + ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in timings.items()), file=sys.stderr)
    return 1 if skipped else 0  # 1: some images were unreadable (listed), the rest done


def _add_pretrained_args(p, model_help: str, dest: str = "model") -> None:
    p.add_argument("--model", dest=dest, metavar="NAME", help=model_help)
    p.add_argument("--pretrained", nargs="?", const="default", metavar="NAME",
                   help="torchvision's ImageNet weights of --model: the default set, or NAME "
                        "(e.g. IMAGENET1K_V1; see `cnnlab models --pretrained`)")


def pretrained_args(args, images: list | None = None) -> tuple[str, str | None, list]:
    """(model, weight-set name, images) of ``--model NAME --pretrained [SET]``. ``--pretrained
    photo.jpg`` reads as the default set and an image: a set name (IMAGENET1K_V1, or
    resnet50.IMAGENET1K_V1) is no existing file and has no dot but after the model name."""
    from pathlib import Path

    if not args.model or not args.pretrained:
        raise UserError(f"--model {args.model} --pretrained {args.pretrained}: give both (e.g. "
                        f"--model resnet50 --pretrained)")
    weights, images = args.pretrained, [i for i in (images or []) if i is not None]
    if Path(weights).exists() or "." in weights.removeprefix(args.model + "."):
        images, weights = [weights, *images], "default"
    return args.model, weights, images


def _pretrained_results(args) -> list[dict]:
    from cnnlab.pretrained import predict

    model, weights, images = pretrained_args(args, [args.checkpoint, *args.images])
    if not images:
        raise UserError("predict --model --pretrained: expected one or more images")
    return predict(model, images, weights, topk=args.topk, device=args.device,
                   workers=args.workers)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm")


def _is_model(path: str) -> bool:
    """A run directory, a checkpoint or an exported model: what comes first."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        return (p / "checkpoints").is_dir() or (p / "final.json").exists() or (
            p / "config.yaml").exists()
    return p.suffix in (".safetensors", ".onnx") or p.name.endswith(".safetensors.json")


def _check_order(checkpoint: str, images: list[str]) -> None:
    """`cnnlab predict IMG RUN` (swapped) says so, instead of "RUN: folder has no images"."""
    from pathlib import Path

    first_is_image = Path(checkpoint).suffix.lower() in IMAGE_SUFFIXES and Path(
        checkpoint).is_file()
    models = [i for i in images if _is_model(i)]
    if models and not _is_model(checkpoint):
        what = "an image" if first_is_image else "not a checkpoint"
        raise UserError(f"{models[0]} is a run directory or checkpoint, given where images go, "
                        f"and {checkpoint} is {what}: the checkpoint comes first (cnnlab "
                        f"predict {models[0]} {checkpoint})")
    if models:
        raise UserError(f"{models[0]} is a run directory or checkpoint, given where images go "
                        f"(cnnlab predict CHECKPOINT IMAGE...: one checkpoint, then images)")
    if first_is_image:
        raise UserError(f"{checkpoint} is an image: the checkpoint or run directory comes "
                        f"first (cnnlab predict RUN_DIR {checkpoint} ...)")


def _write_csv(path: str, results: list[dict], k: int) -> None:
    """``image,class_1,probability_1,...,class_k,probability_k``, one row per image."""
    import csv
    import io

    from cnnlab.utils import atomic_write

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    k = max((len(r["top"]) for r in results), default=k)
    w.writerow(["image"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("class", "probability")])
    for r in results:
        w.writerow([r["image"]] + [v for t in r["top"] for v in (t["class"],
                                                                 f"{t['probability']:.6f}")])
    try:
        with atomic_write(path, "w") as f:
            f.write(buf.getvalue())
    except OSError as e:
        raise UserError(f"--csv {path}: cannot write ({e.strerror or e})") from e


def cmd_models(args) -> int:
    if args.pretrained:  # the weight table: no model is built
        from cnnlab import pretrained as PT

        print(json.dumps([{**PT.record(w), "resize": w.resize, "crop": w.crop}
                          for w in PT.WEIGHTS], indent=2) if args.json else PT.format_table())
        return 0
    from cnnlab.cli.common import slow_note

    with slow_note("models", "counting the parameters of every registered model..."):
        from cnnlab.analysis import format_models_table, models_table

        rows = models_table()
    print(json.dumps(rows, indent=2) if args.json else format_models_table(rows))
    return 0


def cmd_summary(args) -> int:
    from cnnlab.analysis import parse_input_size, summary

    ws, args.model = None, args.model or args.model_name
    if not args.model:
        raise UserError("summary: expected a model name (see `cnnlab models`)")
    if args.pretrained:  # the architecture only: nothing is downloaded
        from cnnlab.pretrained import weight_set

        ws = weight_set(args.model, args.pretrained)

    size = parse_input_size(args.input) if args.input else None
    kw = {}
    if args.small_input:  # a model already built for small inputs: a no-op, said so
        from cnnlab.registry import check_model_kwargs

        kw = check_model_kwargs(args.model, {"small_input": True}, args.engine, "--small-input")
    s = summary(args.model, input_size=size, num_classes=args.num_classes, engine=args.engine,
                depth=args.depth, **kw)
    if args.json:
        print(json.dumps({**s.to_dict(), **({"pretrained": _ws_record(ws)} if ws else {})},
                         indent=2))
    else:
        print(s.format_table())
        if ws:
            print(f"pretrained: {ws.key} ({ws.file}), ImageNet-1K top-1 {ws.top1:.2f}%, top-5 "
                  f"{ws.top5:.2f}% (torchvision); input 3x{ws.crop}x{ws.crop}, ImageNet "
                  f"mean/std, resize \"crop\"")
    return 0


def _ws_record(ws) -> dict:
    from cnnlab.pretrained import record

    return record(ws)


def cmd_explain(args) -> int:
    from cnnlab.scratch.explain import explain

    kw = {k: getattr(args, k) for k in ("input", "kernel", "stride", "padding")
          if getattr(args, k) is not None}
    print(explain(args.topic, **kw))
    return 0
