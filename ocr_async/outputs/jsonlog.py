"""``--log-format json``: one strict JSON object per log line, for log collectors.

Each line holds ``time`` (UTC, ISO 8601 with milliseconds and ``Z``),
``level``, ``logger`` and ``message`` (arguments already merged), then every
``extra=`` field given to the logging call, then ``exception`` and ``stack``
when there is one. An extra whose name is taken by those keys is written as
``extra_<name>``.

Strict JSON whatever the values: ``NaN`` and infinities become the strings
``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, keys become strings, values
JSON cannot hold are written as their ``str()``, a container that contains
itself is cut with ``"<cycle>"``, and text that is not valid Unicode (a lone
surrogate from a mis-encoded file name) is written as ASCII escapes. A line
never breaks: newlines inside a message are escaped.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

__all__ = ["JsonFormatter"]

# What formatters add to a record; not fields of the call.
_FORMATTER_ATTRIBUTES: Final = frozenset({"message", "asctime"})


def _own_attributes(factory: Callable[..., logging.LogRecord]) -> frozenset[str]:
    # Every attribute a record gets without extra=: LogRecord's own (taskName
    # included where the Python has it) and what an installed record factory
    # adds to every record (OCRmyPDF adds pageno). The rest came from extra=.
    record = factory("", logging.INFO, "", 0, "", None, None)
    return frozenset(vars(record)) | _FORMATTER_ATTRIBUTES


class JsonFormatter(logging.Formatter):
    """Formats a log record as one line of strict JSON (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._factory: Callable[..., logging.LogRecord] | None = None
        self._own: frozenset[str] = frozenset()

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line, without the newline."""
        factory = logging.getLogRecordFactory()
        if factory is not self._factory:  # first use, or another factory installed since
            self._factory, self._own = factory, _own_attributes(factory)
        document: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._own:
                document[f"extra_{key}" if key in document else key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return _dumps(document)


def _utc(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(document: dict[str, Any]) -> str:
    try:
        line = json.dumps(document, ensure_ascii=False, allow_nan=False, default=str)
    except (ValueError, TypeError):
        # NaN, a key JSON cannot hold, a cycle: the slow path makes it strict.
        document = _strict(document, set())
        line = json.dumps(document, ensure_ascii=False, allow_nan=False, default=str)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(document, allow_nan=False, default=str)
    return line


def _strict(value: Any, containing: set[int]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict | list | tuple):
        if id(value) in containing:
            return "<cycle>"
        containing.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(key): _strict(item, containing) for key, item in value.items()}
            return [_strict(item, containing) for item in value]
        finally:
            containing.discard(id(value))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _key(key: Any) -> str:
    strict = _strict(key, set())
    return strict if isinstance(strict, str) else json.dumps(strict)
