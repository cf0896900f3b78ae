"""What the review page counted, and how those counts read.

:class:`ReportSummary` is filled while the records are read
(:mod:`.writer`) and shown twice: on stderr by :meth:`ReportSummary.describe`
and at the top of the page (:mod:`.render`), with the same wording from
here. Also the two ways a record's failure is read, for the count and the
page alike.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ocr_async.wording import outcome_lines

__all__ = [
    "MAX_RECORD_BYTES",
    "NOT_EMBEDDED",
    "ReportSummary",
    "code_text",
    "error_of",
    "line_list",
    "oversized_text",
    "skipped_text",
]

#: A record longer than this is skipped, and counted as too long (not as
#: torn): far beyond any record a run writes, and a page holding it would
#: not open in a browser anyway. Bounds memory on a huge file with no line end.
MAX_RECORD_BYTES: Final = 1024 * 1024 * 1024

#: The page text, by reason an image is not embedded.
NOT_EMBEDDED: Final[Mapping[str, str]] = {
    "url": "URL source, linked not fetched",
    "missing": "file not found",
    "too_large": "over the per-image size limit",
    "not_image": "not a PNG or JPEG file",
    "budget": "over the page's total image budget",
    "unreadable": "file unreadable",
    "disabled": "embedding turned off",
    "no_source": "no source named",
}


@dataclass(slots=True)
class ReportSummary:
    """What :func:`~ocr_async.outputs.report.write_report` found and wrote."""

    ok: int = 0
    #: Failed records by error code (as text: ``"4000003"``, ``"timeout"``).
    failed: Counter[str] = field(default_factory=Counter)
    #: JSONL lines that were not a record: torn, not JSON, not an object.
    skipped_lines: int = 0
    #: The first few of those, 1-based.
    skipped_line_numbers: list[int] = field(default_factory=list)
    #: Lines over ``record_limit``, skipped unparsed (not counted above).
    oversized_lines: int = 0
    #: The first few of those, 1-based.
    oversized_line_numbers: list[int] = field(default_factory=list)
    images_embedded: int = 0
    #: Records whose image is not in the page, by reason (see ``describe``).
    images_not_embedded: Counter[str] = field(default_factory=Counter)
    #: Size of the HTML file written.
    html_bytes: int = 0
    #: The longest line read as a record, in bytes (:data:`MAX_RECORD_BYTES`).
    record_limit: int = MAX_RECORD_BYTES

    @property
    def records(self) -> int:
        """Records in the page."""
        return self.ok + self.failed.total()

    def describe(self) -> str:
        """A few human lines for stderr."""
        lines = outcome_lines(
            self.ok,
            self.failed,
            f"{self.images_embedded} images embedded",
            f"{self.html_bytes} bytes of HTML",
        )
        if self.images_not_embedded:
            lines.append(
                "images not embedded: "
                + ", ".join(
                    f"{NOT_EMBEDDED.get(reason, reason)} ({n})"
                    for reason, n in sorted(self.images_not_embedded.items())
                )
            )
        if self.skipped_lines:
            lines.append(
                f"skipped {skipped_text(self.skipped_lines)} (torn or not JSON): "
                f"{line_list(self.skipped_line_numbers, self.skipped_lines)}"
            )
        if self.oversized_lines:
            lines.append(
                oversized_text(self.oversized_lines, self.oversized_line_numbers, self.record_limit)
            )
        return "\n".join(lines)


def error_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """A record's ``error`` object, or an empty one when it has none (or a wrong one)."""
    error = document.get("error")
    return error if isinstance(error, Mapping) else {}


def code_text(code: Any) -> str:
    """An error code as the page counts it: ``"4000003"``, ``"timeout"``, ``"unknown"``."""
    if code is None:
        return "unknown"
    return code if isinstance(code, str) else json.dumps(code)


def skipped_text(count: int) -> str:
    """``1 line that is not a record``, ``2 lines that are not records``."""
    return (
        f"{count} line that is not a record"
        if count == 1
        else f"{count} lines that are not records"
    )


def oversized_text(count: int, numbers: Sequence[int], limit: int) -> str:
    """The line saying that ``count`` lines were over the ``limit`` (in bytes)."""
    return (
        f"skipped {count} {'line' if count == 1 else 'lines'} over the "
        f"{limit // (1024 * 1024)} MiB record limit (too large to show; "
        f"not checked, not necessarily torn): {line_list(numbers, count)}"
    )


def line_list(numbers: Sequence[int], total: int) -> str:
    """``lines 3, 7 and 12 more``: the line numbers kept, and how many were not."""
    more = f" and {total - len(numbers)} more" if total > len(numbers) else ""
    return f"line{'' if total == 1 else 's'} {', '.join(map(str, numbers))}{more}"
