"""MkDocs hooks for the cnnlab site (mkdocs.yml: ``hooks:``).

- ``reference/cli.md`` is generated from the argparse parsers at every build
  (tools/docs_cli.py), never stored.
- Each tutorial page ``tutorials/NN-*.md`` is the executed form of its Jupytext source
  ``tutorials/src/NN-*.md`` (tools/docs_tutorials.py). The build refuses a page whose source
  changed since it was executed (the page records the source's sha256): run
  ``make docs`` (or ``python tools/docs_tutorials.py``) to execute it again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import docs_cli  # noqa: E402
import docs_tutorials  # noqa: E402


def on_files(files, config):
    files.append(File.generated(config, "reference/cli.md", content=docs_cli.cli_markdown()))
    stale = docs_tutorials.stale()
    if stale:
        raise PluginError("tutorial page(s) older than their source: "
                          + ", ".join(str(p.relative_to(docs_tutorials.ROOT)) for p in stale)
                          + " (run `python tools/docs_tutorials.py` or `make docs`)")
    return files
