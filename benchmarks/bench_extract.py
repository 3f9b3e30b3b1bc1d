"""What verifying an archive costs: cnnlab's extraction (one streamed pass, the tar's end and
the gzip CRC checked) against plain ``tarfile.open(..., "r:*").extractall`` (no checks), on
the same archive, alternated, in one process.

    python benchmarks/bench_extract.py                        # a synthetic 5,000-PNG archive
    python benchmarks/bench_extract.py ../shared/datasets/mnist.tar.gz --repeats 3

Prints the median wall and CPU seconds of each and the ratio verified / plain.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.archive import extract_verified


def synthetic(root: Path, n: int = 5000) -> Path:
    """``n`` 28x28 gray PNGs in 10 class folders, as a .tar.gz (MNIST-like)."""
    rng = np.random.default_rng(0)
    src = root / "synthetic"
    for i in range(n):
        p = src / "train" / str(i % 10) / f"{i}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(p)
    out = root / "synthetic.tar.gz"
    with tarfile.open(out, "w:gz") as tf:
        tf.add(src, arcname="synthetic")
    shutil.rmtree(src)
    return out


def plain(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:*") as tf:
        tf.extractall(dest, filter="data")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive", nargs="?", help="a .tar.gz (default: a synthetic one)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        archive = Path(args.archive) if args.archive else synthetic(tmp)
        times = {"plain": [], "verified": []}
        for rep in range(args.repeats):
            for kind, fn in (("plain", plain), ("verified", lambda a, d: extract_verified(
                    a, d, progress="none"))):
                dest = tmp / f"{kind}{rep}"
                w, c = time.perf_counter(), time.process_time()
                fn(archive, dest)
                times[kind].append((time.perf_counter() - w, time.process_time() - c))
                shutil.rmtree(dest)
        med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v))
               for k, v in times.items()}
        for k, (w, c) in med.items():
            print(f"{k:>8}: wall {w:6.2f} s  cpu {c:6.2f} s  (median of {args.repeats})")
        print(f"verified / plain: wall {med['verified'][0] / med['plain'][0]:.2f}x, "
              f"cpu {med['verified'][1] / med['plain'][1]:.2f}x  ({archive.name})")


if __name__ == "__main__":
    main()
