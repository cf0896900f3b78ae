"""The command line: ``ocr-async run | serve | demo | report``.

One module per command (:mod:`~ocr_async.cli.run`, :mod:`~ocr_async.cli.serve`,
:mod:`~ocr_async.cli.demo`, :mod:`~ocr_async.cli.report`), the grammar of
all of them in :mod:`~ocr_async.cli.parsing`, and :func:`main`, which runs
one and maps what it raised to the exit code, once
(:mod:`~ocr_async.cli.exits`). Records go to the output; progress, log
lines and the summary go to stderr.
"""

from ocr_async.cli.exits import CannotProceedError, CommandError, ExitCode, UsageError
from ocr_async.cli.main import main
from ocr_async.cli.parsing import MAX_BODY_BYTES, MAX_CONCURRENCY, build_parser

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONCURRENCY",
    "CannotProceedError",
    "CommandError",
    "ExitCode",
    "UsageError",
    "build_parser",
    "main",
]
