"""The command line: ``ocr-async run | serve | demo | report``.

One module per command (:mod:`~ocr_async.cli.run`, :mod:`~ocr_async.cli.serve`,
:mod:`~ocr_async.cli.demo`, :mod:`~ocr_async.cli.report`), the grammar of
all of them in :mod:`~ocr_async.cli.parsing`, and :func:`main`, which runs
one and maps what it raised to the exit code, once
(:mod:`~ocr_async.cli.exits`), here. Records go to the output; progress, log
lines and the summary go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from ocr_async.cli.exits import CannotProceedError, CommandError, ExitCode, UsageError
from ocr_async.cli.parsing import MAX_BODY_BYTES, MAX_CONCURRENCY, build_parser, parse
from ocr_async.errors import ConfigurationError

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

log = logging.getLogger("ocr_async")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, as print() does."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _configure_logging(verbose: bool) -> None:
    # Once per process, however often main() is called (tests call it a lot).
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ocr-async: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = parse(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    _configure_logging(getattr(args, "verbose", False))
    try:
        return int(_dispatch(args))
    except CommandError as exc:
        print(f"{exc.prefix}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigurationError as exc:
        print(f"ocr-async: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("ocr-async: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def _dispatch(args: argparse.Namespace) -> ExitCode:
    # Imported when chosen: `ocr-async run` never loads the emulator, and
    # `serve` never loads the pipeline.
    if args.command == "run":
        from ocr_async.cli.run import run_command

        return asyncio.run(run_command(args))
    if args.command == "report":
        from ocr_async.cli.report import report_command

        return report_command(args)
    if args.command == "serve":
        from ocr_async.cli.serve import serve_command

        return asyncio.run(serve_command(args))
    from ocr_async.cli.demo import demo_command

    return asyncio.run(demo_command(args))
