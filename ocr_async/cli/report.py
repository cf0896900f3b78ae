"""``ocr-async report``: the review page of a JSONL output."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from ocr_async.cli.exits import CannotProceedError, ExitCode, UsageError

__all__ = ["report_command"]


def report_command(args: argparse.Namespace) -> ExitCode:
    """Write the review page; exit 0, or raise what stops it."""
    from ocr_async.outputs.report import write_report

    if args.html is None:
        raise UsageError("no page to write: pass --html REVIEW.html")
    if os.path.exists(args.html) and not args.overwrite:
        raise UsageError(f"{args.html} already exists: pass --overwrite to replace it")
    unreadable = _records_unreadable(args.jsonl)
    if unreadable is not None:
        raise CannotProceedError(f"cannot read {args.jsonl}: {unreadable}")
    try:
        summary = write_report(Path(args.jsonl), Path(args.html), embed_images=not args.no_images)
    except OSError as exc:
        reading = exc.filename is not None and os.fspath(exc.filename) == args.jsonl
        what = f"read {args.jsonl}" if reading else f"write the report to {args.html}"
        raise CannotProceedError(f"cannot {what}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CannotProceedError(f"cannot write the report: {exc}") from None
    print(summary.describe(), file=sys.stderr)
    print(f"review page written to {args.html}", file=sys.stderr)
    return ExitCode.OK


#: How much of a report's input is looked at before reading it whole.
_SNIFF_BYTES = 4096


def _records_unreadable(path: str) -> str | None:
    """Why ``path`` cannot be records of ``ocr-async run``, or None when it may be.

    Looks at the first bytes only: a record line is a JSON object, so any
    other first character (a PNG, a README, /dev/zero) is not JSON Lines.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "it is a folder; give the .jsonl file that ocr-async run wrote"
    if not stat.S_ISREG(mode):
        # Never opened: a FIFO with no writer would block open() itself.
        return "not a regular file (a device, pipe or socket); save the records to a file first"
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        return exc.strerror or str(exc)
    start = head.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf")[:1]
    if start not in (b"", b"{"):
        return (
            "it is not JSON Lines (its first line is not a JSON object); "
            "give the .jsonl file that ocr-async run wrote"
        )
    return None
