"""Moved to :mod:`ocr_async.outputs.report`; this name stays only until the CLI imports from there.

Delete this module once ``ocr-async report`` imports
``ocr_async.outputs.report.write_report`` (the CLI is being rebuilt
elsewhere, and the two changes meet at merge).
"""

from ocr_async.outputs.report import (
    DEFAULT_LOW_CONFIDENCE,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_TOTAL_IMAGE_BYTES,
    MAX_RECORD_BYTES,
    ReportSummary,
    write_report,
)

__all__ = [
    "DEFAULT_LOW_CONFIDENCE",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_TOTAL_IMAGE_BYTES",
    "MAX_RECORD_BYTES",
    "ReportSummary",
    "write_report",
]
