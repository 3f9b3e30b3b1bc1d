"""What every command module shares: the help formatter, subparser creation with examples,
and argument types that fail at parse time with the argument's name and the allowed range."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import textwrap
import threading


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line (``cnnlab train: error: argument --lr: ...``)
    instead of the whole usage block first; ``--help`` still shows it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def ranged(name: str, kind=float, flag: str | None = None):
    """An argparse ``type`` parsing ``kind`` and checking ``cnnlab.config.RANGES[name]`` (the
    one table of allowed ranges, also used for YAML configs): ``--lr nan`` fails at parse
    time with the argument, the value and the range."""

    def parse(text: str):
        from cnnlab.config import check_range, range_text
        from cnnlab.errors import UserError

        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        try:
            return check_range(name, value, flag)
        except UserError:
            raise argparse.ArgumentTypeError(
                f"{text} is out of range (expected {range_text(name)})") from None

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(subs, name: str, help_: str, examples: str, func, description: str | None = None):
    """A subcommand `name` whose parsed arguments are handed to `func(args) -> exit code`."""
    p = subs.add_parser(name, help=help_, description=description or help_,
                        formatter_class=formatter,
                        epilog="examples:" + textwrap.dedent(examples))
    p.set_defaults(func=func)
    # also after the command (`cnnlab train ... --debug`); SUPPRESS keeps `cnnlab --debug train`
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show full tracebacks on errors (also accepted before the command)")
    return p


def one_line_warnings(command: str) -> None:
    """Print every Python warning as ``cnnlab COMMAND: warning: MESSAGE`` on one line (not
    Python's two lines with the file, line number and source line of the warning).

    Replaces ``warnings.formatwarning`` (not ``showwarning``), so code that records
    warnings (``warnings.catch_warnings(record=True)``, ``pytest.warns``) still sees them.
    """
    import warnings

    def fmt(message, category, filename, lineno, line=None):
        return f"cnnlab {command}: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = fmt


@contextlib.contextmanager
def slow_note(command: str, message: str, after: float = 2.0):
    """Say ``cnnlab COMMAND: MESSAGE`` on stderr if the block still runs after ``after``
    seconds: a quick command stays quiet, a slow one is never silent to a person watching.
    Only on a terminal: how long a step takes must not change what a log or a pipe holds."""

    def note():
        if sys.stderr.isatty():
            print(f"cnnlab {command}: {message}", file=sys.stderr, flush=True)

    t = threading.Timer(after, note)
    t.daemon = True
    t.start()
    try:
        yield
    finally:
        t.cancel()


def json_dict(s: str) -> dict:
    try:
        d = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}") from e
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}")
    return d
