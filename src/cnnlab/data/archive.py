"""Verified extraction of ``.tar.gz`` (``.tgz``, ``.tar``, ``.tar.bz2``, ``.tar.xz``) archives.

``tarfile`` alone is not enough: damaged compressed data part-way through an archive can
decode into a block ``tarfile`` takes for the end of the archive, and since it stops
reading there, the gzip CRC at the end of the stream is never checked; the images after the
damage silently vanish. So the archive is read once, as a stream, and after the last member:
- the rest of the decompressed stream must be zeros (tar's end-of-archive padding): a
  non-zero byte means ``tarfile`` stopped at a damaged header;
- the stream is read to its end, which makes ``gzip`` (``bz2``, ``lzma``) check its CRC
  and length.

Extraction goes to a temporary folder ``<dest>.tmp<pid>`` that is renamed to ``dest`` only
after both checks pass, so ``dest`` existing means a complete, verified extraction. A
refused, failed or interrupted (Ctrl-C) extraction removes its temporary folder; one left
by a killed process (whose pid no longer runs) is removed by the next extraction.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path

from cnnlab.data.progress import Progress
from cnnlab.errors import UserError

CHUNK = 1 << 20
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
VERIFIED = ".complete"  # marker inside every verified extraction (written last)
_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError)


class _Counting:
    """A read-only file wrapper that reports the bytes read (the compressed position)."""

    def __init__(self, f, progress: Progress):
        self.f, self.progress = f, progress

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.progress.update(len(b))
        return b

    def readable(self) -> bool:
        return True


def _decompressor(raw):
    """The decompressing stream over ``raw``, chosen by the magic bytes (not the suffix)."""
    magic = raw.f.peek(6)[:6] if hasattr(raw.f, "peek") else b""
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw)
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw  # plain .tar: nothing to check beyond the zero padding


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Remove ``*.tmp<pid>`` / ``.extract-<pid>`` folders in ``folder`` whose process is gone."""
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        tail = p.name.rsplit(".tmp", 1)[-1] if ".tmp" in p.name else (
            p.name.removeprefix(".extract-") if p.name.startswith(".extract-") else "")
        if tail.isdigit() and int(tail) != os.getpid() and not _pid_alive(int(tail)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _drain(stream, archive: Path) -> None:
    """Read ``stream`` to its end: zeros only (tar padding); EOF checks the CRC."""
    while block := stream.read(CHUNK):
        if block.count(0) != len(block):
            raise UserError(f"{archive}: not a readable .tar.gz archive (damaged part-way: "
                            f"the tar data stops at a damaged header); nothing was extracted, "
                            f"copy or download it again")


def _unreadable(archive: Path, e: Exception) -> UserError:
    reason = str(e).splitlines()[0].rstrip(":") if str(e) else type(e).__name__
    return UserError(f"{archive}: not a readable .tar.gz archive ({reason}); nothing was "
                     f"extracted, copy or download it again")


def extract_verified(archive: Path | str, dest: Path | str, progress="auto",
                     member: str | None = None) -> Path:
    """Extract ``archive`` into ``dest`` (complete and verified, or not at all); return ``dest``.

    ``member``: only this top folder of the archive becomes ``dest`` (CIFAR's
    ``cifar-10-batches-bin``); the archive is still read and verified whole. A ``dest``
    holding the ``.complete`` marker (written last, before the rename) is returned as is; one
    without it is an error (it is never deleted here). Raises UserError naming ``archive``
    when it is damaged, truncated, not an archive, or holds a member ``filter="data"``
    refuses (absolute paths, ``..``, links out of the folder, device files).
    """
    archive, dest = Path(archive), Path(dest)
    if (dest / VERIFIED).exists():
        return dest
    if dest.exists():  # never removed here: it may be someone's folder, or in use
        raise UserError(f"{dest}: exists but is not a verified extraction of {archive} (no "
                        f"{VERIFIED} marker); remove it to extract the archive again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(dest.parent)
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()  # an archive with no members still gives a (verified, empty) folder
        size = archive.stat().st_size
        with open(archive, "rb") as f, Progress(size, f"extracting {archive.name}", progress,
                                                unit="B") as bar:
            raw = _Counting(f, bar)
            stream = _decompressor(raw)
            with tarfile.open(fileobj=stream, mode="r|") as tf:
                # filter="data" refuses absolute paths, "..", links outside and device files.
                tf.extractall(tmp, filter="data")
            _drain(stream, archive)
        src = tmp / member if member else tmp
        if member and not src.is_dir():
            raise UserError(f"{archive}: the archive has no {member}/ folder")
        (src / VERIFIED).write_text(f"{archive.resolve()}\n")  # what `cnnlab cache` lists
        try:
            os.replace(src, dest)
        except OSError:
            if not (dest / VERIFIED).exists():
                raise
            # another process finished first: theirs is as good as ours
    except UserError:
        raise
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT):
            raise _unreadable(archive, e) from e
        raise UserError(f"{archive}: cannot extract into {dest.parent} ({e.strerror}); "
                        f"nothing was extracted") from e
    except _ERRORS as e:
        raise _unreadable(archive, e) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
