"""What every command module shares: the help formatter, subparser creation with examples,
and argument types that fail at parse time with the argument's name and the allowed range."""

from __future__ import annotations

import argparse
import json
import textwrap


def formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(subs, name: str, help_: str, examples: str, func, description: str | None = None):
    """A subcommand `name` whose parsed arguments are handed to `func(args) -> exit code`."""
    p = subs.add_parser(name, help=help_, description=description or help_,
                        formatter_class=formatter,
                        epilog="examples:" + textwrap.dedent(examples))
    p.set_defaults(func=func)
    return p


def json_dict(s: str) -> dict:
    try:
        d = json.loads(s)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}") from e
    if not isinstance(d, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}")
    return d
