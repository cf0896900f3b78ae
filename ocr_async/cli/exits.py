"""Exit codes, and the errors that carry them up to :func:`ocr_async.cli.main`.

The exit status is a stable interface (the README and the user guide list
it). A command that cannot go on raises a :class:`CommandError`; ``main``
prints its one line and returns its code, the one place an error becomes
an exit code. A command that ran returns the :class:`ExitCode` of how the
run went.
"""

from __future__ import annotations

import enum

__all__ = ["CannotProceedError", "CommandError", "ExitCode", "UsageError"]


class ExitCode(enum.IntEnum):
    """What the process exit status means."""

    #: Every input ended as a successful record.
    OK = 0
    #: The run finished, but some inputs failed; each has its error record.
    SOME_FAILED = 1
    #: Bad usage: a wrong flag, a missing setting, an output that exists.
    USAGE = 2
    #: The run could not proceed: credentials refused, output unwritable.
    CANNOT_PROCEED = 3
    #: ``verify``: the output is not one record per input (missing, duplicated, unexpected).
    MISMATCH = 4
    #: Interrupted by Ctrl-C.
    INTERRUPTED = 130


class CommandError(Exception):
    """A command cannot go on: its message for stderr, and the exit code it means.

    Raised anywhere below :func:`main`, which prints ``PREFIX: MESSAGE`` and
    returns :attr:`exit_code`: the one place an error becomes an exit code.
    """

    exit_code: ExitCode = ExitCode.CANNOT_PROCEED

    def __init__(self, message: str, *, prefix: str = "ocr-async") -> None:
        super().__init__(message)
        self.prefix = prefix


class UsageError(CommandError):
    """A mistake in how the command was called; exit code 2."""

    exit_code = ExitCode.USAGE


class CannotProceedError(CommandError):
    """The command could not proceed (credentials refused, output unwritable); exit code 3."""

    exit_code = ExitCode.CANNOT_PROCEED
