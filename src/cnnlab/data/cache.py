"""What ``$CNNLAB_CACHE`` (default ``~/.cache/cnnlab``) holds, and cleaning it.

Four kinds of entries, one folder each (sizes on disk, as ``du`` counts them):
- ``datasets/<name>/``: canonical datasets as downloaded (md5-checked): MNIST's four
  ``.gz`` files, ``cifar-10-binary.tar.gz`` and its extracted folder;
- ``extracted/<sha>-v2/``: ``.tar.gz`` image folders extracted once, keyed by the archive's
  sha256, holding a ``.complete`` marker naming the archive (MNIST's 70,000 PNGs take
  273 MiB, CIFAR-10's 60,000 take 234 MiB: mostly one 4 KiB block per small file);
- ``arrays/<key>.npz``: decoded uint8 images with labels, class names, and the files skipped
  as unreadable (MNIST 53 MiB, CIFAR-10 176 MiB);
- ``splits/<key>.npz``: remembered stratified split indices (a few KiB).

Everything but ``datasets/`` is rebuilt on demand from its source, so ``clean`` removes
those by default; downloads go only with ``everything=True``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.data.archive import VERIFIED, remove_stale_tmp
from cnnlab.errors import UserError
from cnnlab.utils import cache_dir

KINDS = ("datasets", "extracted", "arrays", "splits")
REBUILT = ("extracted", "arrays", "splits")  # what `clean` removes by default


@dataclass
class CacheEntry:
    kind: str  # one of KINDS
    path: Path
    bytes: int  # disk space taken (allocated blocks, as `du` counts)
    modified: float  # seconds since the epoch
    source: str = ""  # where it came from, when recorded

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": str(self.path), "bytes": self.bytes,
                "modified": self.modified, "source": self.source}


def _disk(st) -> int:
    # space taken on disk, as `du` counts it: 70,000 MNIST PNGs of ~240 bytes take ~4 KB each
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


def _size(p: Path) -> int:
    if p.is_file():
        return _disk(p.stat())
    return sum(_disk(f.stat()) for f in p.rglob("*") if f.is_file() and not f.is_symlink())


def _source(kind: str, p: Path, archives: dict) -> str:
    """What an entry was made from: the archive of an extraction, the dataset and split of
    decoded arrays (image folders' arrays are keyed by a hash of the listing only)."""
    if kind == "extracted":
        if (p / VERIFIED).is_file():
            return (p / VERIFIED).read_text(errors="replace").strip()
        return "unverified (an older cnnlab's extraction; `cnnlab cache clean` removes it)"
    if kind == "datasets":
        return p.name
    if kind == "arrays" and "-" in p.stem:
        head, split = p.stem.split("-")[:2]
        return f"{archives.get(head, head)} ({split})"
    if kind == "arrays":  # an image folder's arrays are keyed by a hash: the file says
        try:
            with np.load(p, allow_pickle=False) as z:  # reads only the zip directory
                return str(z["source"]) if "source" in z.files else ""
        except (OSError, ValueError, KeyError):
            return ""
    return ""


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """Every entry of the cache, by kind then name (sizes on disk, in bytes)."""
    root = Path(root) if root is not None else cache_dir()
    out, archives = [], {}
    for kind in KINDS:
        folder = root / kind
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            out.append(CacheEntry(kind, p, _size(p), p.stat().st_mtime,
                                  _source(kind, p, archives)))
            if kind == "extracted" and (p / VERIFIED).is_file():
                archives[p.name.split("-")[0]] = Path(out[-1].source).name
    return out


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_entries(entries: list[CacheEntry], root: Path) -> str:
    """The table of ``cnnlab cache``: kind, size, age, entry, source; then the total."""
    if not entries:
        return f"{root}: empty"
    now = time.time()
    rows = [(e.kind, human_bytes(e.bytes), f"{(now - e.modified) / 86400:.0f} d",
             str(e.path.relative_to(root)), e.source) for e in entries]
    w = [max(len(r[i]) for r in rows + [("kind", "size", "age", "entry", "")]) for i in range(4)]
    lines = [f"{'kind':<{w[0]}}  {'size':>{w[1]}}  {'age':>{w[2]}}  {'entry':<{w[3]}}  source"]
    lines += [f"{k:<{w[0]}}  {s:>{w[1]}}  {a:>{w[2]}}  {n:<{w[3]}}  {src}".rstrip()
              for k, s, a, n, src in rows]
    total = sum(e.bytes for e in entries)
    lines.append(f"total {human_bytes(total)} in {len(entries)} entries under {root}")
    return "\n".join(lines)


def clean_cache(kinds=REBUILT, everything: bool = False, dry_run: bool = False,
                root: Path | None = None) -> list[CacheEntry]:
    """Remove the cache entries of ``kinds`` (all kinds when ``everything``); return them.

    Leftover temporary folders of killed extractions are removed as well.
    """
    root = Path(root) if root is not None else cache_dir()
    kinds = KINDS if everything else tuple(kinds)
    if bad := [k for k in kinds if k not in KINDS]:
        raise UserError(f"cnnlab cache clean {bad[0]}: unknown kind (expected one of "
                        f"{', '.join(KINDS)})")
    removed = [e for e in cache_entries(root) if e.kind in kinds]
    if dry_run:
        return removed
    for e in removed:
        if e.path.is_dir() and not e.path.is_symlink():
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            e.path.unlink(missing_ok=True)
    for kind in KINDS:
        remove_stale_tmp(root / kind)
    return removed
