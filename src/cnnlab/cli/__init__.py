"""The ``cnnlab`` command line: each subcommand parses its flags, then calls one library
function. Bad input prints one line and exits with code 2 (``--debug`` shows the traceback).

Commands live in one small module per group (``cnnlab.cli.train``, ``cnnlab.cli.inspect``,
...); each module's ``register(subs)`` adds its subcommands, binding each to its function.
Modules import their libraries inside the command functions, so ``cnnlab --help`` and the
torch-free commands never import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cnnlab import __version__
from cnnlab.cli.common import Parser, formatter, one_line_warnings
from cnnlab.errors import TrainingError, UserError

# Order of the groups in `cnnlab --help`.
COMMAND_MODULES = (
    "cnnlab.cli.train",
    "cnnlab.cli.inspect",
    "cnnlab.cli.cache",
    "cnnlab.cli.lab",
    "cnnlab.cli.serve",
    "cnnlab.cli.deploy",
    "cnnlab.cli.viz",
)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(  # subcommands inherit its class: usage errors print one line
        prog="cnnlab", formatter_class=formatter,
        description="cnnlab: convolutional neural networks for image classification — learn "
                    "the mechanics, train and inspect real classifiers.",
        epilog="Run `cnnlab COMMAND --help` for a command's options and examples.")
    p.add_argument("--version", action="version", version=f"cnnlab {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subs = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subs)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    one_line_warnings(args.command)
    try:
        return args.func(args)
    except BrokenPipeError:  # `cnnlab models | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UserError as e:
        if args.debug:
            raise
        print(f"cnnlab {args.command}: error: {_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        log = sys.modules.get("cnnlab.training.log")
        if log is None or not log.interruption_reported():  # the trainer says where it stopped
            print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - one line for the user, --debug for the traceback
        if args.debug:
            raise
        if isinstance(e, TrainingError):
            print(f"cnnlab {args.command}: {e}", file=sys.stderr)
            return 1
        if isinstance(e, ModuleNotFoundError) and e.name:  # a minimal (torch-free) install
            print(f"cnnlab {args.command}: error: needs the package {e.name!r}, which is not "
                  f"installed (pip install \"cnnlab[full]\" installs everything)", file=sys.stderr)
            return 2
        if isinstance(e, ValueError):  # library argument errors (unknown model, bad shapes)
            print(f"cnnlab {args.command}: error: {_message(e)}", file=sys.stderr)
            return 2
        print(f"cnnlab {args.command}: unexpected {type(e).__name__}: {e} "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 1


def _message(e: Exception) -> str:
    """An error's one line, made shorter or more helpful for a terminal:

    - an unknown model's message lists close matches, then every registered name: the list
      gives way to a pointer to `cnnlab models`;
    - a ``--data`` path that does not exist gets the names in its folder that match it
      ignoring case, or nearly (``MNIST.tar.gz`` -> ``mnist.tar.gz``)."""
    import re

    msg = str(e)
    head, sep, tail = msg.partition(" Known models: ")
    if sep and "Did you mean" in head:
        msg = f"{head} (`cnnlab models` lists all {tail.count(',') + 1})"
    m = re.match(r"--data (.+?): no such file or folder", msg)
    if m and "did you mean" not in msg.lower():
        from cnnlab.utils import close_paths

        if close := close_paths(m.group(1)):
            msg += f"; did you mean {' or '.join(close)}?"
    return msg
