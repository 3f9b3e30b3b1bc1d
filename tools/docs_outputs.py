"""Regenerate the marked output blocks in README.md and docs/**/*.md by running their commands.

A block is::

    <!-- cnnlab-output: cnnlab summary lenet5 -->
    ```text
    $ cnnlab summary lenet5
    ...what the command printed...
    ```
    <!-- /cnnlab-output -->

Nothing between the markers is typed by hand: ``python tools/docs_outputs.py`` (``make
docs-outputs``) runs each command and rewrites the block; ``--check`` compares instead and
exits 1 listing the blocks that differ (tests/test_docs.py does this for every fast block).

Options go in brackets after ``cnnlab-output``: ``<!-- cnnlab-output[slow]: CMD -->`` marks a
block that takes too long for the tests (a full training run, a lab experiment): it is
regenerated only by ``make docs-outputs`` and checked only for its form. ``[hidden]`` runs the
command (to prepare files for later blocks) but keeps the block empty of output, and
``[no-echo]`` leaves out the ``$ CMD`` line.

Commands of one file run in order, in one fresh temporary folder (so a later block can
read the run directory an earlier one wrote), through ``bash -o pipefail`` with the venv's
``cnnlab`` first on PATH. Parts that change from run to run (timings, throughput, dates,
temporary paths) are normalised by :data:`VOLATILE` before comparing; the committed text
keeps the values of the run that wrote it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(
    r"<!-- cnnlab-output(?:\[(?P<opts>[a-z, -]*)\])?: (?P<cmd>.+?) -->\n"
    r"(?P<body>.*?)"
    r"<!-- /cnnlab-output -->",
    re.S,
)
OPTIONS = {"slow", "hidden", "no-echo"}
TIMEOUT_S = 300  # one command; slow blocks included

# (pattern, replacement): what differs between two honest runs of the same command.
VOLATILE = [
    (re.compile(r"\b\d{8}-\d{6}\b"), "<stamp>"),                       # run-dir stamps
    (re.compile(r"(/tmp|/var/folders)/[^\s'\"),]*"), "<tmp>"),          # temporary paths
    (re.compile(r"\b\d[\d,]*(\.\d+)? ?img/s\b"), "<N> img/s"),          # throughput
    (re.compile(r"\b\d+(\.\d+)? ?(s|ms|min)\b"), "<T>"),                # durations
    (re.compile(r"\(\d+(\.\d+)? ?s\)"), "(<T>)"),
    (re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?\S*"), "<date>"),
    (re.compile(r'("seconds": )\d+(\.\d+)?'), r"\1<T>"),                   # final.json
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),  # hashes of files that hold timings
    # a "still working" note printed only when a command is slow (cnnlab.cli.common.slow_note)
    (re.compile(r"^cnnlab [\w-]+: [^\n]*\.\.\.\n", re.M), ""),
]


@dataclass
class Block:
    path: Path
    start: int  # offset of the opening marker
    end: int
    cmd: str
    opts: set[str]
    body: str

    @property
    def where(self) -> str:
        line = self.path.read_text()[: self.start].count("\n") + 1
        return f"{_rel(self.path)}:{line}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def find_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in BLOCK.finditer(text):
        opts = {o.strip() for o in (m["opts"] or "").split(",") if o.strip()}
        unknown = opts - OPTIONS
        if unknown:
            raise ValueError(f"{path}: unknown cnnlab-output option(s) {sorted(unknown)}; "
                             f"expected some of {sorted(OPTIONS)}")
        out.append(Block(path, m.start(), m.end(), m["cmd"].strip(), opts, m["body"]))
    return out


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e.update(COLUMNS="100", PYTHONHASHSEED="0", CNNLAB_PROGRESS="lines", TQDM_DISABLE="1")
    return e


def run(cmd: str, cwd: Path) -> str:
    """What ``cmd`` prints (stdout and stderr interleaved), trailing spaces stripped."""
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, env=env(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=TIMEOUT_S)
    text = "\n".join(line.rstrip() for line in p.stdout.rstrip("\n").splitlines())
    if p.returncode not in (0, 2):  # exit 2 is a documented user error: show it
        raise RuntimeError(f"`{cmd}` exited {p.returncode}:\n{text[-2000:]}")
    return text


def render(block: Block, output: str) -> str:
    if "hidden" in block.opts:
        return ""
    echo = "" if "no-echo" in block.opts else f"$ {block.cmd}\n"
    return f"```text\n{echo}{output}\n```\n"


def normalise(text: str) -> str:
    for pat, rep in VOLATILE:
        text = pat.sub(rep, text)
    return text


def fresh_bodies(path: Path, include_slow: bool, cwd: Path) -> list[tuple[Block, str | None]]:
    """Each block of ``path`` with its freshly rendered body (None: slow, not rerun)."""
    out = []
    for b in find_blocks(path):
        if "slow" in b.opts and not include_slow:
            out.append((b, None))
            continue
        out.append((b, render(b, run(b.cmd, cwd))))
    return out


def update(path: Path, include_slow: bool) -> int:
    with tempfile.TemporaryDirectory(prefix="cnnlab-docs-") as tmp:
        pairs = fresh_bodies(path, include_slow, Path(tmp))
    text = path.read_text()
    changed = 0
    for b, body in reversed(pairs):  # from the end: earlier offsets stay valid
        if body is None or body == b.body:
            continue
        opening = text[b.start:b.end].split("\n", 1)[0] + "\n"
        text = text[:b.start] + opening + body + "<!-- /cnnlab-output -->" + text[b.end:]
        changed += 1
    if changed:
        path.write_text(text)
    return changed


def check(path: Path) -> list[str]:
    """Differences between the committed fast blocks of ``path`` and fresh runs."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-docs-") as tmp:
        for b, body in fresh_bodies(path, False, Path(tmp)):
            if body is None:
                if not b.body.startswith("```text\n") and "hidden" not in b.opts:
                    problems.append(f"{b.where}: slow block `{b.cmd}` has no ```text output")
                continue
            if normalise(body) != normalise(b.body):
                problems.append(f"{b.where}: `{b.cmd}` prints something else now:\n"
                                + diff(b.body, body))
    return problems


def diff(old: str, new: str) -> str:
    import difflib

    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                        "committed", "fresh", n=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="default: README.md and docs/**/*.md")
    ap.add_argument("--check", action="store_true", help="compare, do not write (exit 1)")
    ap.add_argument("--slow", action="store_true", help="also rerun blocks marked [slow]")
    a = ap.parse_args(argv)
    files = [p.resolve() for p in a.files] or documents()
    files = [p for p in files if find_blocks(p)]
    if a.check:
        problems = [msg for p in files for msg in check(p)]
        print("\n".join(problems) or f"{len(files)} file(s) up to date")
        return 1 if problems else 0
    for p in files:
        n = update(p, a.slow)
        print(f"{_rel(p)}: {n} block(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
