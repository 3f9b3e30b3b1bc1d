"""Photo ingest: cnnlab reading a folder of phone photos for a 224x224 model, beside the
usual PyTorch recipe, in the same run; and the peak memory of ``cnnlab train`` on it.

    python benchmarks/bench_photos.py --make /tmp/photos2000      # ~2,000 12 MP JPEGs, once
    python benchmarks/bench_photos.py --data /tmp/photos2000 [--baseline-n 400] [--repeats 3]

Measured, each in a fresh process (its peak memory is the whole process tree's, sampled
every 50 ms with psutil: the PSS of the main process and its decoding workers summed, or the
main process's RSS when larger; PSS counts the pages a forked worker shares with its parent
once, where summed RSS would count torch's libraries once per process):

1. **cnnlab, first read**: ``cnnlab.data.load_data(FOLDER, default_size=(224, 224),
   resize="crop")`` with an empty cache: headers sampled, every photo decoded in worker
   processes straight to 224x224 (reduced-scale JPEG decoding, EXIF orientation, shorter
   side to 256, centre 224), stacked, written to the cache. Images/s and peak RSS.
2. **cnnlab, later**: the same call with the cache warm (what a later run reads at its
   start), and one pass over the held uint8 arrays in batches of 64 as float tensors (what
   every later epoch reads). Images/s of each.
3. **The PyTorch recipe**: a ``torch.utils.data.Dataset`` that opens each file with Pillow,
   applies EXIF, resizes the shorter side to 256 and centre-crops 224 (torchvision's
   ``ImageFolder`` + ``Resize(256)`` + ``CenterCrop(224)``, written with Pillow since
   torchvision cannot be imported here) in a ``DataLoader(num_workers=2, batch_size=64)``;
   every epoch decodes again, so one epoch over ``--baseline-n`` images gives its rate.
4. ``cnnlab train --data FOLDER --epochs 1`` with its defaults (LeNet-5: photos read at its
   native 32x32): wall time and peak RSS of the process tree (the memory goal: < 1.5 GB).

Ratios are cnnlab's images/s over the recipe's, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def tree_memory(proc: psutil.Process) -> tuple[int, int]:
    """(PSS summed over the process tree, RSS of the main process), bytes. PSS, not RSS: a
    forked worker shares the parent's pages (torch's libraries, hundreds of MB), which RSS
    would count once per process."""
    pss = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            pss += p.memory_full_info().pss
        except psutil.Error:
            pass
    return pss, proc.memory_info().rss


def run_measured(cmd: list[str], env: dict) -> tuple[float, int, str]:
    """(wall s, peak memory of the process tree in bytes: the larger of its summed PSS and
    its main process's RSS, stdout) of ``cmd``."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc, peak = psutil.Process(p.pid), 0
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()), daemon=True)
    reader.start()
    while p.poll() is None:
        try:
            peak = max(peak, *tree_memory(proc))
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    err = p.stderr.read()
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-2000:]}")
    return time.perf_counter() - t0, peak, "".join(out)


CNNLAB_READ = """
import sys, time, json, numpy as np, torch
from cnnlab.data import load_data
t = time.perf_counter()
d = load_data(sys.argv[1], default_size=(224, 224), resize="crop", progress="none")
read = time.perf_counter() - t
n = len(d.train) + len(d.test)
t = time.perf_counter()
for x in (d.train.images, d.test.images):
    for i in range(0, len(x), 64):
        torch.from_numpy(x[i:i + 64]).float().div_(255).sum()
epoch = time.perf_counter() - t
print(json.dumps({"n": n, "read_s": read, "pass_s": epoch, "shape": list(d.train.shape)}))
"""

TORCH_RECIPE = """
import sys, time, json, torch
from pathlib import Path
from PIL import Image, ImageOps
EXTS = {".jpg", ".jpeg", ".png"}
class Folder(torch.utils.data.Dataset):  # ImageFolder + Resize(256) + CenterCrop(224)
    def __init__(self, root, n):
        root = Path(root) / "train"
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.items = [(f, i) for i, c in enumerate(classes)
                      for f in sorted((root / c).iterdir()) if f.suffix.lower() in EXTS]
        step = max(1, len(self.items) // n)
        self.items = self.items[::step][:n]
    def __len__(self):
        return len(self.items)
    def __getitem__(self, i):
        f, y = self.items[i]
        with Image.open(f) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
        s = 256 / min(im.size)
        im = im.resize((max(256, round(im.width * s)), max(256, round(im.height * s))),
                       Image.BILINEAR)
        l, t = (im.width - 224) // 2, (im.height - 224) // 2
        im = im.crop((l, t, l + 224, t + 224))
        x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(224, 224, 3)
        return x.permute(2, 0, 1).float().div(255), y
ds = Folder(sys.argv[1], int(sys.argv[2]))
dl = torch.utils.data.DataLoader(ds, batch_size=64, num_workers=2)
t = time.perf_counter()
n = sum(len(x) for x, _ in dl)
print(json.dumps({"n": n, "epoch_s": time.perf_counter() - t}))
"""


def measure(data: Path, baseline_n: int, repeats: int) -> dict:
    py = sys.executable
    rows: dict = {"first": [], "later": [], "recipe": [], "train": []}
    for r in range(repeats):
        cache = Path(tempfile.mkdtemp(prefix="cnnlab-bench-cache-"))
        env = {**os.environ, "CNNLAB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
        try:
            wall, peak, out = run_measured([py, "-c", CNNLAB_READ, str(data)], env)
            first = json.loads(out)
            rows["first"].append({"img_s": first["n"] / first["read_s"], "peak_mb": peak / 2**20,
                                  "n": first["n"], "shape": first["shape"]})
            wall, peak, out = run_measured([py, "-c", CNNLAB_READ, str(data)], env)
            later = json.loads(out)
            rows["later"].append({"img_s": later["n"] / later["pass_s"],
                                  "cache_img_s": later["n"] / later["read_s"],
                                  "peak_mb": peak / 2**20})
            wall, peak, out = run_measured([py, "-c", TORCH_RECIPE, str(data), str(baseline_n)],
                                           env)
            rec = json.loads(out)
            rows["recipe"].append({"img_s": rec["n"] / rec["epoch_s"], "peak_mb": peak / 2**20,
                                   "n": rec["n"]})
            if r == 0:  # cnnlab train with its defaults, from an empty cache
                shutil.rmtree(cache / "arrays", ignore_errors=True)
                runs = cache / "runs"
                wall, peak, _ = run_measured([py, "-m", "cnnlab", "train", "--data", str(data),
                                              "--epochs", "1", "--out", str(runs / "r"),
                                              "--progress", "none"], env)
                rows["train"].append({"wall_s": wall, "peak_mb": peak / 2**20})
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        print(json.dumps({k: v[-1] for k, v in rows.items() if v}), flush=True)
    return rows


def report(rows: dict) -> str:
    """Medians over the repeats; each ratio is the median of the repeats' own ratios (the
    recipe and cnnlab measured back to back in the same repeat)."""
    med = lambda k, f: statistics.median(r[f] for r in rows[k])  # noqa: E731
    rec = med("recipe", "img_s")
    ratio = lambda k, f: statistics.median(  # noqa: E731
        r[f] / q["img_s"] for r, q in zip(rows[k], rows["recipe"]))
    lines = [
        "| reader | images/s (median) | x the recipe | peak RSS (tree) |",
        "|---|---|---|---|",
        f"| PyTorch recipe (Pillow + EXIF + Resize(256) + CenterCrop(224), DataLoader 2 "
        f"workers), every epoch | {rec:.1f} | 1.0x | {med('recipe', 'peak_mb'):,.0f} MB |",
        f"| cnnlab, first read (decode + cache) | {med('first', 'img_s'):.1f} | "
        f"{ratio('first', 'img_s'):.1f}x | {med('first', 'peak_mb'):,.0f} MB |",
        f"| cnnlab, a later run's start (reading the cache) | {med('later', 'cache_img_s'):,.0f}"
        f" | {ratio('later', 'cache_img_s'):,.0f}x | {med('later', 'peak_mb'):,.0f} MB |",
        f"| cnnlab, later epochs (uint8 arrays in memory to float batches) | "
        f"{med('later', 'img_s'):,.0f} | {ratio('later', 'img_s'):,.0f}x | (same process) |",
    ]
    if rows["train"]:
        t = rows["train"][0]
        lines.append(f"\n`cnnlab train --data FOLDER --epochs 1` (defaults: LeNet-5, photos read "
                     f"at 32x32): {t['wall_s']:.0f} s, peak RSS {t['peak_mb']:,.0f} MB")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make", type=Path, help="write the photo folder here, then stop")
    ap.add_argument("--n", type=int, default=1000, help="training photos per class (--make)")
    ap.add_argument("--data", type=Path, help="the photo folder to read")
    ap.add_argument("--baseline-n", type=int, default=400, help="images the recipe reads")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    if a.make:
        from cnnlab.data.samples import make_photo_folder

        t = time.perf_counter()
        # 12-megapixel phone photos: landscape and portrait, a third of the portraits
        # stored sideways with EXIF orientation 6; 16 distinct pictures per class and size
        make_photo_folder(a.make, a.n, max(1, a.n // 20), sizes=((4032, 3024), (3024, 4032)),
                          distinct=16)
        print(f"wrote {a.make} in {time.perf_counter() - t:.0f} s")
        return
    print(report(measure(a.data, a.baseline_n, a.repeats)))


if __name__ == "__main__":
    main()
