"""`cnnlab serve`: the web explorer for checkpoints, in the browser."""

from __future__ import annotations

from cnnlab.cli.common import add_command

EXAMPLES = """
    cnnlab serve runs/lenet5-digits-20261122-134459
    cnnlab serve --runs runs                      # every run directory under runs/
    cnnlab serve RUN_A RUN_B/checkpoints/last.safetensors --port 8080 --open
    cnnlab serve RUN_A RUN_B --compare            # both side by side on one image
    cnnlab serve --model resnet18 --pretrained       # ImageNet weights (downloaded once)"""


def register(subs) -> None:
    s = add_command(subs, "serve",
                    "web explorer: every layer of your model for one image, in the browser",
                    EXAMPLES, cmd_serve,
                    description="Serve a page (and its JSON API) showing a checkpoint's summary, "
                                "curves, prediction, activation maps, Grad-CAM and the detail of "
                                "any unit, for an uploaded, drawn or test image. "
                                "Binds 127.0.0.1 (this machine only) unless --host says "
                                "otherwise.")
    s.add_argument("checkpoints", nargs="*", metavar="CHECKPOINT_OR_RUN",
                   help="checkpoints (.safetensors or .json) or run directories to serve")
    s.add_argument("--runs", metavar="DIR",
                   help="also serve every run directory under DIR (default when no checkpoint "
                        "is given: ./runs)")
    s.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="serve zoo model NAME with ImageNet weights (with --pretrained; "
                        "repeatable; see `cnnlab models`)")
    s.add_argument("--pretrained", nargs="?", const="default", metavar="WEIGHTS",
                   help="the weight set for --model (default: torchvision's default set)")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; another "
                        "address exposes the models, with a warning)")
    s.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    s.add_argument("--max-upload-mb", type=float, default=10,
                   help="largest accepted upload in MiB (default: 10; larger ones get 413)")
    s.add_argument("--max-pixels", type=float, default=16,
                   help="largest accepted upload in megapixels, read from the header before "
                        "decoding (default: 16, a 12 MP phone photo fits; an explorer needs a "
                        "few hundred pixels a side, and each decoded megapixel costs 3-4 MB)")
    s.add_argument("--open", action="store_true", help="open the page in a web browser")
    s.add_argument("--compare", action="store_true",
                   help="open the page on its Compare tab: two served models side by side on "
                        "one image (predictions, Grad-CAM, first-layer filters); needs two or "
                        "more models")
    s.add_argument("--replicas", type=int,
                   help="model copies per checkpoint serving requests in parallel (default: "
                        "the CPU cores, at most 4)")
    s.add_argument("--threads", type=int, default=1,
                   help="torch threads per request (default: 1; one image is a small job)")


def cmd_serve(args) -> int:
    from pathlib import Path

    from cnnlab.errors import UserError
    from cnnlab.serve import serve

    if args.model and not args.pretrained:
        raise UserError(f"--model {args.model[0]}: add --pretrained (a model without weights "
                        f"has nothing to show; serve a checkpoint of your own instead)")
    if args.pretrained and not args.model:
        raise UserError("--pretrained: name the model with --model NAME (see `cnnlab models`)")
    weights = None if args.pretrained in (None, "default") else args.pretrained
    runs = args.runs if args.runs or args.checkpoints or args.model else "runs"
    if runs == "runs" and not args.runs and not Path(runs).is_dir():
        raise UserError("nothing to serve: name checkpoints or run directories, or --runs DIR "
                        "(there is no ./runs here)")
    serve(args.checkpoints, runs, host=args.host, port=args.port,
          max_upload_mb=args.max_upload_mb, open_browser=args.open, replicas=args.replicas,
          threads=args.threads, max_pixels=_megapixels(args.max_pixels),
          pretrained=[(m, weights) for m in args.model], compare=args.compare)
    return 0


def _megapixels(mp: float) -> int:
    from cnnlab.errors import UserError

    if not mp > 0:
        raise UserError(f"--max-pixels {mp}: expected a positive number of megapixels")
    return int(mp * 1_000_000)
