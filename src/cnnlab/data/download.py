"""Resumable, checksummed downloads with urllib only.

``download(url, dest, md5)`` streams into ``dest + ".part"``; an interrupted download keeps
the part file and the next call continues from its size with an HTTP ``Range`` header (a
server that ignores it answers 200 and the file starts over). The finished file is checked
against its published md5 and only then renamed to ``dest`` (atomic on one filesystem), so
``dest`` existing means a complete, verified file. A mismatch deletes the part file.

Network failures raise :class:`OfflineError` (a ``UserError``); :func:`fetch` turns them into
one message listing every file still missing, where to put it and where it comes from.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from cnnlab import __version__
from cnnlab.errors import UserError

CHUNK = 1 << 16
TIMEOUT = 30.0  # seconds without a byte before giving up


class Resource(NamedTuple):
    """A file to fetch: from ``url`` to ``path``, with its published md5 (hex)."""

    url: str
    path: Path
    md5: str | None = None


class OfflineError(UserError):
    """The network could not be reached (or dropped): the caller knows which files to list."""


def md5_file(path: Path | str, chunk: int = 1 << 22) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _open(url: str, start: int, timeout: float):
    headers = {"User-Agent": f"cnnlab/{__version__}"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(url: str, dest: Path | str, md5: str | None = None, progress: bool = True,
             timeout: float = TIMEOUT) -> Path:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part``), verify ``md5``, rename; return ``dest``.

    An existing ``dest`` is returned as is. Raises OfflineError when the server cannot be
    reached or the connection drops (the part file is kept for the next try), UserError on an
    HTTP error or a checksum mismatch (the part file is deleted: it cannot be trusted).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing past our size: the part file may be complete
            return _finish(part, dest, url, md5)
        raise UserError(f"{url}: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise OfflineError(f"{url}: {getattr(e, 'reason', e)}") from e
    with resp:
        if start and resp.status != 206:  # the server ignored Range: start over
            start = 0
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(part, "ab" if start else "wb") as f, tqdm(
                total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                desc=dest.name, disable=not progress, leave=False) as bar:
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise OfflineError(f"{url}: connection lost after {f.tell()} bytes ({e}); "
                                       f"run again to resume from {part}") from e
                if not block:
                    break
                f.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise OfflineError(f"{url}: connection closed after {part.stat().st_size} of {total} "
                           f"bytes; run again to resume from {part}")
    return _finish(part, dest, url, md5)


def _finish(part: Path, dest: Path, url: str, md5: str | None) -> Path:
    """Verify the part file against ``md5`` and rename it to ``dest``."""
    if md5 is not None and (got := md5_file(part)) != md5.lower():
        part.unlink(missing_ok=True)
        raise UserError(f"{url}: checksum mismatch for {dest.name} (md5 {got}, expected {md5}); "
                        f"the download was deleted, run again to retry")
    os.replace(part, dest)
    return dest


def fetch(resources: list[Resource], what: str, progress: bool = True,
          hint: str = "") -> None:
    """Download every missing resource; offline, one UserError listing where each file goes.

    ``what`` starts the message (e.g. ``"--data mnist"``); ``hint`` is appended to it.
    """
    for i, r in enumerate(resources):
        try:
            download(r.url, r.path, r.md5, progress=progress)
        except OfflineError as e:
            todo = "; ".join(f"{m.path} from {m.url}" for m in resources[i:]
                             if not Path(m.path).exists())
            raise UserError(f"{what}: could not download ({e}). Offline? Put the files in place "
                            f"by hand: {todo}{hint}") from e
