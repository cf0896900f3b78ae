"""What the command line says on stderr: log lines, notices, the summary; text or JSON.

Everything a command tells the user goes through the ``ocr_async`` logger,
so that ``--log-format json`` makes all of stderr one JSON object a line
(:class:`~ocr_async.outputs.jsonlog.JsonFormatter`), fields included:

* :func:`notice`: a line the user should see whatever ``--verbose`` says
  (resuming, a stop request, a note), shown as ``ocr-async: ...``;
* :func:`summary`: the closing lines (the run's summary, the rate, a dry
  run's plan), shown bare, and in JSON with their figures as fields.

Log lines of the modules (``-v``: retries, skipped files) keep their level.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Final

from ocr_async.outputs.jsonlog import JsonFormatter

__all__ = ["configure_logging", "notice", "summary"]

log = logging.getLogger("ocr_async")
# Shown whatever --verbose says: their own level, INFO, is what counts (the
# parent's level does not filter what a child hands to the parent's handler).
_NOTICE: Final = logging.getLogger("ocr_async.notice")
_SUMMARY: Final = logging.getLogger("ocr_async.summary")
_NOTICE.setLevel(logging.INFO)
_SUMMARY.setLevel(logging.INFO)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, as print() does."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


class _TextFormatter(logging.Formatter):
    """``ocr-async: MESSAGE``; the summary's lines bare, as they always were."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message if record.name == _SUMMARY.name else f"ocr-async: {message}"


def configure_logging(verbose: bool, log_format: str = "text") -> None:
    """Send the package's log to stderr, as text or JSON; once per process, per call."""
    handler = next((h for h in log.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:  # main() may be called many times in one process (tests)
        handler = _StderrHandler()
        log.addHandler(handler)
    handler.setFormatter(JsonFormatter() if log_format == "json" else _TextFormatter())
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)


def json_logging() -> bool:
    """Whether stderr is JSON now (``--log-format json``)."""
    return any(
        isinstance(h, _StderrHandler) and isinstance(h.formatter, JsonFormatter)
        for h in log.handlers
    )


def notice(message: str, *, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """A line the user sees on stderr: ``ocr-async: MESSAGE``, or JSON with ``fields``."""
    _NOTICE.log(level, "%s", message, extra={"event": event, **fields})


def summary(message: str, *, event: str, **fields: Any) -> None:
    """Closing lines on stderr, bare; in JSON with ``fields`` (the figures) beside them."""
    _SUMMARY.info("%s", message, extra={"event": event, **fields})
