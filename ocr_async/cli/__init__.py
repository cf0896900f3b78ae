"""The command line: ``ocr-async run | verify | serve | demo | report``.

One module per command (:mod:`~ocr_async.cli.run`, :mod:`~ocr_async.cli.verify`,
:mod:`~ocr_async.cli.serve`, :mod:`~ocr_async.cli.demo`,
:mod:`~ocr_async.cli.report`), the grammar of
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
from ocr_async.cli.logs import configure_logging, json_logging, notice
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = parse(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    configure_logging(getattr(args, "verbose", False), getattr(args, "log_format", "text"))
    try:
        return int(_dispatch(args))
    except CommandError as exc:
        return _fail(exc.prefix, str(exc), exc.exit_code)
    except ConfigurationError as exc:
        return _fail("ocr-async", str(exc), ExitCode.USAGE)
    except KeyboardInterrupt:
        return _fail("ocr-async", "interrupted", ExitCode.INTERRUPTED)


def _fail(prefix: str, message: str, code: ExitCode) -> int:
    # One line on stderr: as text, or with --log-format json as JSON too.
    if json_logging():
        notice(message, event="exit", level=logging.ERROR, exit_code=int(code))
    else:
        print(f"{prefix}: {message}", file=sys.stderr)
    return code


def _dispatch(args: argparse.Namespace) -> ExitCode:
    # Imported when chosen: `ocr-async run` never loads the emulator, and
    # `serve` never loads the pipeline.
    if args.command == "run":
        from ocr_async.cli.run import run_command

        return asyncio.run(run_command(args))
    if args.command == "verify":
        from ocr_async.cli.verify import verify_command

        return asyncio.run(verify_command(args))
    if args.command == "report":
        from ocr_async.cli.report import report_command

        return report_command(args)
    if args.command == "serve":
        from ocr_async.cli.serve import serve_command

        return asyncio.run(serve_command(args))
    from ocr_async.cli.demo import demo_command

    return asyncio.run(demo_command(args))
