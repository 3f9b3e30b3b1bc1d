"""Progress of long, otherwise silent work (extracting an archive, decoding images).

One helper for every data step, with the modes of ``cnnlab train --progress``:
- ``"bar"``: a tqdm bar on stderr (redrawn in place with ``\\r``);
- ``"lines"``: plain lines on stderr, for logs and pipes (no ``\\r``): one at each 10% of
  the work at most every 2 s, and one at the end; work done within 1 s prints nothing;
- ``"none"``: nothing.
``"auto"`` (or ``True``) is a bar when stderr is a terminal and lines otherwise; ``False`` or
``None`` is ``"none"``.
"""

from __future__ import annotations

import sys
import time

from cnnlab.errors import UserError

MODES = ("auto", "bar", "lines", "none")
LINE_EVERY = 2.0  # seconds between two progress lines
QUIET_BELOW = 1.0  # work shorter than this prints no line at all


def resolve_mode(progress) -> str:
    """``True``/``"auto"`` -> "bar" on a terminal else "lines"; ``False``/``None`` -> "none"."""
    if progress is None or progress is False:
        return "none"
    if progress is True or progress == "auto":
        return "bar" if sys.stderr.isatty() else "lines"
    if progress not in MODES:
        raise UserError(f"--progress {progress}: expected one of {', '.join(MODES)}")
    return progress


def _amount(n: float, unit: str) -> str:
    if unit == "B":
        return f"{n / 2 ** 20:.1f} MiB"
    return f"{int(n):,} {unit}"


class Progress:
    """``with Progress(total, "extracting mnist.tar.gz", mode, unit="B") as p: p.update(n)``."""

    def __init__(self, total: int | None, desc: str, mode="auto", unit: str = "img"):
        self.total, self.desc, self.unit = total, desc, unit
        self.mode = resolve_mode(mode)
        self.n, self.t0, self._next_pct = 0, time.monotonic(), 10
        self._last, self._printed = self.t0, False
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            scale = unit == "B"
            self._bar = tqdm(total=total, desc=desc, unit=unit, unit_scale=scale,
                             unit_divisor=1024 if scale else 1000, leave=False, file=sys.stderr)

    def update(self, n: int) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines" and self.total:
            pct, now = 100 * self.n // self.total, time.monotonic()
            if self._next_pct <= pct < 100 and now - self._last >= LINE_EVERY:
                print(f"{self.desc}: {pct}% ({_amount(self.n, self.unit)} of "
                      f"{_amount(self.total, self.unit)}{self._rate(now)})", file=sys.stderr,
                      flush=True)
                self._next_pct, self._last, self._printed = pct // 10 * 10 + 10, now, True

    def _rate(self, now: float) -> str:
        """``", 160 img/s, 7 s left"`` (images only: a byte rate is in the MiB already)."""
        if self.unit == "B" or now <= self.t0:
            return ""
        rate = self.n / (now - self.t0)
        left = (self.total - self.n) / rate if rate > 0 else 0
        return f", {rate:,.0f} {self.unit}/s, {left:,.0f} s left"

    def close(self, ok: bool = True) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and ok and (
                self._printed or time.monotonic() - self.t0 >= QUIET_BELOW):
            dt = time.monotonic() - self.t0
            rate = f", {self.n / dt:,.0f} {self.unit}/s" if self.unit != "B" and dt > 0 else ""
            print(f"{self.desc}: done, {_amount(self.n, self.unit)} in {dt:.1f} s{rate}",
                  file=sys.stderr, flush=True)
            self.mode = "none"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(ok=exc_type is None)
