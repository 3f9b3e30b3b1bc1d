"""Regenerate the README's `cnnlab viz` pictures (docs/viz/*.png) with the real commands.

    python benchmarks/make_viz_pictures.py --digits RUN --mnist RUN --mnist-linear RUN \
        --cifar RUN --cifar-linear RUN

Run directories come from `cnnlab train` (the README section lists the exact commands used:
digits default; MNIST LeNet-5 2 epochs; MNIST/CIFAR-10 linear; CIFAR-10 ResNet-20). Each
command is printed before it runs; `--only kernel,gradcam` runs some of them.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "viz"


def commands(a) -> list[tuple[str, list[str]]]:
    o = lambda name: ["--out", str(OUT / name)]  # noqa: E731
    return [
        ("kernel", ["kernel", "china", "--kernel", "red", *o("kernel-red.png")]),
        ("kernel", ["kernel", "flower", "--kernel", "edge", "--padding", "1",
                    *o("kernel-edge.png")]),
        ("filters", ["filters", a.mnist, *o("filters-mnist.png")]),
        ("activations", ["activations", a.mnist, "--index", "4000", *o("activations.png")]),
        ("top-patches", ["top-patches", a.mnist, "--layer", "features.3", "--images", "5000",
                         *o("top-patches.png")]),
        ("gradcam", ["gradcam", a.cifar, "--n", "4", "--seed", "3", "--methods",
                     "gradcam,gradcam++,guided-gradcam,saliency,integrated-gradients,occlusion",
                     *o("gradcam.png")]),
        ("templates", ["templates", a.cifar_linear, *o("templates-cifar10.png")]),
        ("templates", ["templates", a.mnist_linear, *o("templates-mnist.png")]),
        ("embed", ["embed", a.mnist, "--n", "2000", *o("embed-mnist.png")]),
        ("retrieve", ["retrieve", a.cifar, "--k", "8", "--queries", "3", "--seed", "1",
                      *o("retrieve-cifar10.png")]),
        ("curves", ["curves", a.digits, *o("curves.png")]),
        ("confusion", ["confusion", a.mnist, *o("confusion.png")]),
        ("mistakes", ["mistakes", a.mnist, "--n", "16", *o("mistakes.png")]),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("digits", "mnist", "mnist-linear", "cifar", "cifar-linear"):
        p.add_argument(f"--{name}", required=True, help="run directory or checkpoint")
    p.add_argument("--only", help="comma-separated kinds to regenerate")
    a = p.parse_args()
    only = set(a.only.split(",")) if a.only else None
    OUT.mkdir(parents=True, exist_ok=True)
    cnnlab = [sys.executable, "-m", "cnnlab", "viz"]
    for kind, args in commands(a):
        if only and kind not in only:
            continue
        print("$ cnnlab viz " + " ".join(shlex.quote(s) for s in args), flush=True)
        subprocess.run([*cnnlab, *args], check=True, cwd=ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
