"""Errors a user can act on.

`UserError` is raised for bad input (a missing path, a corrupt image, a checkpoint from
something else). The CLI prints its message on one line and exits with code 2; `--debug`
shows the traceback. It subclasses `ValueError` so library callers can catch either.
"""


class UserError(ValueError):
    """Bad input from the user: one clear line naming the argument/path and what was expected."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""
