"""A self-contained HTML page for reviewing a JSONL run: ``ocr-async report``.

One HTML file with inline CSS and JavaScript and images embedded as
``data:`` URIs, so it opens from ``file://`` or as an e-mail attachment with
no network. Per record it shows the image with the word boxes drawn over it
(an inline SVG in the image's own pixel coordinates), the recognized text
beside it with each word's confidence on hover, and, for a failure, the error.
Failures come first. A few lines of vanilla JavaScript filter by status and
by confidence; the filter state lives in the URL fragment
(``review.html#status=failed&conf=0.90``) so a filtered view can be shared.

Streaming: the JSONL is read one line at a time and each record's HTML is
written at once to one of two spool files (failures, successes), so memory
holds one record and one image whatever the size of the run. The summary,
known only at the end, is written first into the final file, then the two
spools are copied after it, and the result replaces ``html_path`` in one
step. The page and the spools have no name while they are written (on
Linux; see :mod:`ocr_async.pipeline.atomicfile`), so no failure and no kill leaves a
temporary file behind. Only a
regular file is read: ``/dev/zero`` or a pipe is refused rather than read
forever.

Safety: every string taken from the JSONL is HTML-escaped, only ``http`` and
``https`` sources become links (never fetched), only regular files that are
PNG or JPEG by their first bytes are embedded, and a Content-Security-Policy
allows nothing but the page's own script and style (by hash) and ``data:``
images, so even an escaping bug could not run injected script or load
anything from outside.

The package: :mod:`.writer` reads the JSONL and writes the page
(:func:`write_report`), :mod:`.summary` counts (:class:`ReportSummary`),
:mod:`.images` embeds the images and :mod:`.render` writes the HTML, from
``page.html``, ``page.css`` and ``page.js`` beside it (package data, read
with :mod:`importlib.resources`).
"""

from ocr_async.outputs.report.render import record_html
from ocr_async.outputs.report.summary import MAX_RECORD_BYTES, ReportSummary
from ocr_async.outputs.report.writer import (
    DEFAULT_LOW_CONFIDENCE,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_TOTAL_IMAGE_BYTES,
    write_report,
)

__all__ = [
    "DEFAULT_LOW_CONFIDENCE",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_TOTAL_IMAGE_BYTES",
    "MAX_RECORD_BYTES",
    "ReportSummary",
    "record_html",
    "write_report",
]
