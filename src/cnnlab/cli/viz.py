"""`cnnlab viz KIND`: pictures of what a CNN computes and learned (cnnlab.viz.pictures),
each a PNG at --out plus --json with the numbers behind it."""

from __future__ import annotations

import json

from cnnlab.cli.common import add_command
from cnnlab.errors import UserError

EXAMPLES = {
    "viz": """
        cnnlab viz kernel flower --kernel edge --padding 1
        cnnlab viz gradcam runs/lenet5-mnist --n 6 --methods gradcam,saliency,occlusion
        cnnlab viz embed runs/lenet5-mnist --n 2000 --json""",
    "kernel": """
        cnnlab viz kernel china --kernel red
        cnnlab viz kernel flower --kernel sobel-x --out sobel.png
        cnnlab viz kernel my-photo.jpg --kernel "1 0 1; 0 1 0; 1 0 1" --stride 2 --padding 1""",
    "filters": """
        cnnlab viz filters runs/lenet5-digits
        cnnlab viz filters RUN_DIR --layer features.3""",
    "activations": """
        cnnlab viz activations runs/lenet5-mnist --index 7
        cnnlab viz activations RUN_DIR seven.png --layers features.0,features.3 --channels 16""",
    "top-patches": """
        cnnlab viz top-patches runs/lenet5-mnist --layer features.3 --channels 0,1,2,3
        cnnlab viz top-patches RUN_DIR --images 5000 --n 10""",
    "gradcam": """
        cnnlab viz gradcam runs/lenet5-mnist --n 6
        cnnlab viz gradcam RUN_DIR cat.png dog.png --class cat,dog --layer layer2
        cnnlab viz gradcam RUN_DIR --n 3 --class 7
        cnnlab viz gradcam RUN_DIR --methods gradcam,gradcam++,guided-gradcam,saliency,integrated-gradients,occlusion""",
    "templates": """
        cnnlab viz templates runs/linear-cifar10""",
    "embed": """
        cnnlab viz embed runs/lenet5-mnist --n 2000
        cnnlab viz embed RUN_DIR --method pca --no-pixels --thumbnails""",
    "retrieve": """
        cnnlab viz retrieve runs/lenet5-mnist --k 10
        cnnlab viz retrieve RUN_DIR --queries 6 --gallery 60000
        cnnlab viz retrieve RUN_DIR my.jpg other.png        # your own images as queries""",
    "curves": """
        cnnlab viz curves runs/lenet5-digits-20261122-134459
        cnnlab viz curves runs/a runs/b --out compare.png""",
    "confusion": """
        cnnlab viz confusion runs/lenet5-mnist""",
    "mistakes": """
        cnnlab viz mistakes runs/lenet5-mnist --n 24""",
}

HELP = {
    "kernel": "a hand-made kernel (red, edge, sobel-x, ...) on a photo, with the NumPy engine",
    "filters": "the learned filters of a conv layer as a grid",
    "activations": "the activation maps of every stage for one image",
    "top-patches": "the dataset patches that excite each channel of a layer most",
    "gradcam": "Grad-CAM (and Grad-CAM++, guided Grad-CAM, saliency, integrated gradients, "
               "occlusion) over images",
    "templates": "a linear classifier's class templates (its weight rows as images)",
    "embed": "a 2-D map (t-SNE/PCA/UMAP) of test images by CNN features beside raw pixels",
    "retrieve": "nearest training images by CNN features vs pixel L2; precision@k",
    "curves": "loss and accuracy per epoch of one or several run directories",
    "confusion": "the confusion matrix on the test set as a heatmap",
    "mistakes": "the most confident wrong predictions",
}


def _ints(text: str | None, flag: str):
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{flag} {text}: expected comma-separated integers like 0,1,2") from None


def _names(text: str | None):
    return None if text is None else [v.strip() for v in text.split(",") if v.strip()]


def _common(p, kind: str, data: bool = True) -> None:
    p.add_argument("--out", default=f"viz-{kind}.png", help=f"PNG to write (default: "
                                                          f"viz-{kind}.png)")
    p.add_argument("--json", action="store_true", help="print the numbers behind the picture "
                                                       "as JSON")
    if data:
        p.add_argument("--data", help="dataset (default: the one the checkpoint was trained on)")
        p.add_argument("--seed", type=int, default=0, help="which images are drawn (default 0)")


def register(subs) -> None:
    v = add_command(subs, "viz", "pictures of what a CNN sees and learned (PNG + --json)",
                    EXAMPLES["viz"], lambda a: (v.print_help(), 0)[1])
    kinds = v.add_subparsers(dest="kind", metavar="KIND")
    _register_looking(kinds)
    _register_learned(kinds)


CK = "checkpoint .safetensors, its .json, or a run directory"


def _register_looking(kinds) -> None:
    """Kinds about one image at a time: kernel, filters, activations, top-patches, gradcam."""
    ck = CK
    p = add_command(kinds, "kernel", HELP["kernel"], EXAMPLES["kernel"], _run("kernel"))
    p.add_argument("image", nargs="?", default="china",
                   help="china or flower (scikit-learn's photos; default china) or a file")
    p.add_argument("--kernel", default="edge", help="red, green, blue, edge, sobel-x, sobel-y, "
                   "blur, sharpen, identity, or a matrix \"1 0 1; 0 1 0; 1 0 1\" (default edge)")
    p.add_argument("--stride", type=int, default=1)
    p.add_argument("--padding", type=int, default=0)
    _common(p, "kernel", data=False)

    p = add_command(kinds, "filters", HELP["filters"], EXAMPLES["filters"], _run("filters"))
    _checkpoint_or_pretrained(p)
    p.add_argument("--layer", help="a conv layer (default: the first)")
    p.add_argument("--n", type=int, default=64, help="at most this many filters (default 64)")
    _common(p, "filters", data=False)

    p = add_command(kinds, "activations", HELP["activations"], EXAMPLES["activations"],
                    _run("activations"))
    _checkpoint_or_pretrained(p)
    p.add_argument("image", nargs="?", help="an image file (default: a test image, --index)")
    p.add_argument("--index", type=int, default=0, help="test image index (default 0)")
    p.add_argument("--layers", help="comma-separated layer names (default: every stage)")
    p.add_argument("--channels", type=int, default=8, help="maps shown per layer (default 8)")
    _common(p, "activations")

    p = add_command(kinds, "top-patches", HELP["top-patches"], EXAMPLES["top-patches"],
                    _run("top-patches"))
    p.add_argument("checkpoint", help=ck)
    p.add_argument("--layer", help="layer (default: the Grad-CAM layer, the last conv)")
    p.add_argument("--channels", help="comma-separated channels (default 0..7)")
    p.add_argument("--n", type=int, default=8, help="patches per channel (default 8)")
    p.add_argument("--images", type=int, help="test images searched (default 2000, or all when "
                                              "the test set is smaller)")
    _common(p, "top-patches")

    p = add_command(kinds, "gradcam", HELP["gradcam"], EXAMPLES["gradcam"], _run("gradcam"))
    _checkpoint_or_pretrained(p)
    p.add_argument("images", nargs="*", help="image files (default: --n test images)")
    p.add_argument("--n", type=int, help="test images when no file is given (default 6, or all "
                                         "when the test set is smaller)")
    p.add_argument("--class", dest="target", metavar="CLASS",
                   help="class name or index to explain, for every image, or a comma list with "
                        "one per image, like cat,dog (default: each image's predicted class)")
    p.add_argument("--layer", help="Grad-CAM layer (default: the last spatial layer)")
    p.add_argument("--methods", default="gradcam", help="comma-separated: gradcam, gradcam++, "
                   "guided-gradcam, saliency, integrated-gradients, occlusion (default gradcam)")
    _common(p, "gradcam")


def _checkpoint_or_pretrained(p) -> None:
    """The checkpoint, or ``--model NAME --pretrained [WEIGHTS]`` (ImageNet weights; then
    every positional is an image file)."""
    p.add_argument("checkpoint", nargs="?", help=CK + " (or --model NAME --pretrained)")
    p.add_argument("--model", metavar="NAME", help="a zoo model with ImageNet weights, with "
                                                   "--pretrained (see `cnnlab models "
                                                   "--pretrained`)")
    p.add_argument("--pretrained", nargs="?", const="default", metavar="WEIGHTS",
                   help="torchvision's ImageNet weights of --model: the default set or WEIGHTS")


def _pretrained_ref(a) -> None:
    """``--model NAME --pretrained`` -> ``a.checkpoint = "pretrained:NAME[:WEIGHTS]"``; the
    positional read as a checkpoint is then the first image."""
    if not (getattr(a, "model", None) or getattr(a, "pretrained", None)):
        if a.checkpoint is None:
            raise UserError("expected a checkpoint or run directory (or --model NAME "
                            "--pretrained)")
        return
    if not (a.model and a.pretrained):
        raise UserError(f"--model {a.model} --pretrained {a.pretrained}: give both (e.g. "
                        f"--model resnet18 --pretrained)")
    from pathlib import Path

    first = [a.checkpoint] if a.checkpoint else []
    if Path(a.pretrained).exists() or "." in a.pretrained:  # `--pretrained photo.jpg`: an
        first, a.pretrained = [a.pretrained, *first], "default"  # image, the default set
    if hasattr(a, "images"):
        a.images, first = first + list(a.images or []), []
    elif hasattr(a, "image") and first:
        a.image, first = first[0], []
    if first:
        raise UserError(f"{first[0]}: with --model {a.model} --pretrained no checkpoint is "
                        f"given")
    weights = "" if a.pretrained == "default" else f":{a.pretrained}"
    a.checkpoint = f"pretrained:{a.model}{weights}"


def _register_learned(kinds) -> None:
    """Kinds about a model over a dataset: templates, embed, retrieve, curves, confusion,
    mistakes."""
    ck = CK
    p = add_command(kinds, "templates", HELP["templates"], EXAMPLES["templates"],
                    _run("templates"))
    p.add_argument("checkpoint", help=ck + " (the linear model or an MLP)")
    _common(p, "templates")

    p = add_command(kinds, "embed", HELP["embed"], EXAMPLES["embed"], _run("embed"))
    p.add_argument("checkpoint", help=ck)
    p.add_argument("--method", default="tsne", help="tsne (default: openTSNE, else "
                   "scikit-learn), tsne-sklearn, pca or umap")
    p.add_argument("--n", type=int, help="test images (default 2000, or all when the test set "
                                         "is smaller)")
    p.add_argument("--layer", help="feature layer (default: the input of the classifier head)")
    p.add_argument("--pixels", action="store_true", default=True,
                   help="draw the raw-pixel map beside it (default)")
    p.add_argument("--no-pixels", dest="pixels", action="store_false")
    p.add_argument("--thumbnails", action="store_true", help="draw some images at their points")
    p.add_argument("--k", type=int, default=5, help="k of the k-NN accuracy (default 5)")
    _common(p, "embed")

    p = add_command(kinds, "retrieve", HELP["retrieve"], EXAMPLES["retrieve"], _run("retrieve"))
    p.add_argument("checkpoint", help=ck)
    p.add_argument("images", nargs="*", help="your own query images (default: --queries test "
                                             "images)")
    p.add_argument("--k", type=int, help="neighbours (default 10, or the gallery size)")
    p.add_argument("--queries", type=int, help="test images drawn as queries (default 4, or all "
                                               "when fewer)")
    p.add_argument("--gallery", type=int,
                   help="training images searched (default 10000, or all when fewer)")
    p.add_argument("--layer", help="feature layer (default: the input of the classifier head)")
    _common(p, "retrieve")

    p = add_command(kinds, "curves", HELP["curves"], EXAMPLES["curves"], _run("curves"))
    p.add_argument("runs", nargs="+", help="run directories (metrics.csv)")
    _common(p, "curves", data=False)

    for kind in ("confusion", "mistakes"):
        p = add_command(kinds, kind, HELP[kind], EXAMPLES[kind], _run(kind))
        p.add_argument("checkpoint", help=ck)
        if kind == "mistakes":
            p.add_argument("--n", type=int, default=16, help="mistakes shown (default 16)")
        _common(p, kind)


def _kwargs(kind: str, a) -> dict:
    """The library call's arguments from the parsed flags."""
    if kind == "kernel":
        return dict(image=a.image, kernel=a.kernel, stride=a.stride, padding=a.padding)
    if kind == "filters":
        return dict(checkpoint=a.checkpoint, layer=a.layer, n=a.n)
    if kind == "curves":
        return dict(run_dirs=a.runs)
    kw = dict(checkpoint=a.checkpoint, data=a.data)
    if kind == "activations":
        kw.update(image=a.image, index=a.index, layers=_names(a.layers), channels=a.channels)
    elif kind == "top-patches":
        kw.update(layer=a.layer, channels=_ints(a.channels, "--channels"), n=a.n,
                  images=a.images, seed=a.seed)
    elif kind == "gradcam":
        kw.update(images=a.images, n=a.n, target=a.target, layer=a.layer,
                  methods=_names(a.methods), seed=a.seed)
    elif kind == "embed":
        kw.update(method=a.method, n=a.n, layer=a.layer, pixels=a.pixels,
                  thumbnails=a.thumbnails, k=a.k, seed=a.seed)
    elif kind == "retrieve":
        kw.update(images=a.images, k=a.k, queries=a.queries, gallery=a.gallery, layer=a.layer,
                  seed=a.seed)
    elif kind == "mistakes":
        kw.update(n=a.n)
    return kw


def _run(kind: str):
    def cmd(args) -> int:
        from cnnlab.viz import pictures

        if kind in ("filters", "activations", "gradcam"):
            _pretrained_ref(args)
        r = getattr(pictures, kind.replace("-", "_"))(**_kwargs(kind, args), out=args.out)
        print(json.dumps(r, indent=1, default=_jsonable) if args.json else f"wrote {r['out']}")
        return 0
    return cmd


def _jsonable(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot write {type(o).__name__} as JSON")
