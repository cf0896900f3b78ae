"""Writing the review page: the JSONL read line by line, the page in one step.

The JSONL is read one line at a time and each record's HTML is written at
once to one of two spool files (failures, successes), so memory holds one
record and one image whatever the size of the run. The summary, known only
at the end, is written first into the final file, then the two spools are
copied after it, and the result replaces ``html_path`` in one step. The
page and the spools have no name while they are written (on Linux; see
:mod:`ocr_async.pipeline.atomicfile`), so no failure and no kill leaves a temporary
file behind. Only a regular file is read: ``/dev/zero`` or a pipe is
refused rather than read forever.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Final

from ocr_async.outputs.report.images import ImageLoader
from ocr_async.outputs.report.render import as_text, head_html, record_html, tail_html
from ocr_async.outputs.report.summary import MAX_RECORD_BYTES, ReportSummary, code_text, error_of
from ocr_async.pipeline.atomicfile import AtomicFile
from ocr_async.protocol import DEFAULT_MAX_BYTES, decode_json, parse_result

__all__ = [
    "DEFAULT_LOW_CONFIDENCE",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_TOTAL_IMAGE_BYTES",
    "write_report",
]

#: Larger image files are linked by name, not embedded. The API's own
#: request limit: every file the API could have read is embeddable.
DEFAULT_MAX_IMAGE_BYTES: Final = DEFAULT_MAX_BYTES
#: Once this many image bytes are embedded, further images are not: past a
#: few hundred MB a browser struggles to open one HTML file.
DEFAULT_MAX_TOTAL_IMAGE_BYTES: Final = 256 * 1024 * 1024
#: Words with a confidence below this are highlighted.
DEFAULT_LOW_CONFIDENCE: Final = 0.8

# A line is judged on its first chunk: one that does not begin as a JSON
# object does is passed over chunk by chunk, never held whole.
_CHUNK: Final = 1024 * 1024
# Skipped line numbers kept for the page; the count is always exact.
_KEPT_LINE_NUMBERS: Final = 20


def write_report(
    jsonl_path: Path,
    html_path: Path,
    *,
    embed_images: bool = True,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_total_image_bytes: int | None = DEFAULT_MAX_TOTAL_IMAGE_BYTES,
    low_confidence: float = DEFAULT_LOW_CONFIDENCE,
    base_dir: Path | None = None,
    max_record_bytes: int = MAX_RECORD_BYTES,
) -> ReportSummary:
    """Write a review page for the records in ``jsonl_path`` to ``html_path``.

    Synchronous on purpose: it reads local files and formats text, with
    nothing to wait on concurrently; from async code call it through
    ``asyncio.to_thread``. ``html_path`` is replaced in one step (a page is
    never left half written). Relative sources are resolved against
    ``base_dir`` (default: the current directory, as during the run).

    Raises ``OSError`` when ``jsonl_path`` cannot be read (or is not a
    regular file: a device or a pipe might never end) or ``html_path`` not
    written, ``ValueError`` when both name the same file. A bad line in the
    JSONL is never an error: it is skipped and counted, and a line over
    ``max_record_bytes`` is counted apart, as too long rather than torn.
    """
    if max_image_bytes < 0:
        raise ValueError("max_image_bytes must not be negative")
    if html_path.exists() and html_path.resolve() == jsonl_path.resolve():
        raise ValueError(f"the report would replace its own input: {html_path}")
    summary = ReportSummary(record_limit=max_record_bytes)
    images = ImageLoader(
        enabled=embed_images,
        max_bytes=max_image_bytes,
        budget=max_total_image_bytes,
        base_dir=base_dir,
        summary=summary,
    )
    # O_NONBLOCK: opening a pipe with no writer would wait forever.
    descriptor = os.open(jsonl_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as source:
        # A device or a pipe may never end (report /dev/zero): only a file.
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(
                f"cannot read {jsonl_path}: not a regular file (a device, pipe or socket); "
                "save the records to a file first"
            )
        with AtomicFile(html_path, encoding="utf-8", errors="backslashreplace") as page:
            _write_page(
                page.file, html_path.parent, source, jsonl_path, summary, images, low_confidence
            )
            page.commit()
    summary.html_bytes = html_path.stat().st_size
    return summary


def _write_page(
    final: IO[str],
    folder: Path,
    source: IO[bytes],
    jsonl_path: Path,
    summary: ReportSummary,
    images: ImageLoader,
    low_confidence: float,
) -> None:
    with _spool(folder) as failures, _spool(folder) as successes:
        for number, document in _read_lines(source, summary.record_limit):
            if document is _OVERSIZED:
                summary.oversized_lines += 1
                if len(summary.oversized_line_numbers) < _KEPT_LINE_NUMBERS:
                    summary.oversized_line_numbers.append(number)
                continue
            if document is None:
                summary.skipped_lines += 1
                if len(summary.skipped_line_numbers) < _KEPT_LINE_NUMBERS:
                    summary.skipped_line_numbers.append(number)
                continue
            ok = document.get("ok") is True
            if ok:
                summary.ok += 1
            else:
                summary.failed[code_text(error_of(document).get("code"))] += 1
            html_text = _render_record(number, document, ok, images, low_confidence)
            (successes if ok else failures).write(html_text)
        final.write(head_html(jsonl_path.name, summary, images.max_bytes, low_confidence))
        _copy_section(final, failures, "failed", "Failed", summary.failed.total())
        _copy_section(final, successes, "ok", "OK", summary.ok)
        final.write(tail_html())


def _render_record(
    number: int,
    document: Mapping[str, Any],
    ok: bool,
    images: ImageLoader,
    low_confidence: float,
) -> str:
    raw_result = document.get("result")
    result = parse_result(raw_result) if isinstance(raw_result, Mapping) else None
    image = images.load(as_text(document.get("source")))
    return record_html(number, document, ok, result, image, low_confidence)


def _copy_section(out: IO[str], spool: IO[str], key: str, title: str, count: int) -> None:
    if not count:
        return
    out.write(f'<section class="group" id="group-{key}">\n<h2>{title} ({count})</h2>\n')
    spool.seek(0)
    shutil.copyfileobj(spool, out)
    out.write("</section>\n")


# --- reading ------------------------------------------------------------------


def _spool(folder: Path) -> IO[str]:
    # Next to the output, not in /tmp: a run's page can be larger than a
    # tmpfs, and the output's disk is the one known to have room. Unnamed
    # (or unlinked at once), so a spool never outlives the process either.
    return tempfile.TemporaryFile(
        "w+", encoding="utf-8", errors="backslashreplace", dir=folder, prefix=".ocr-report-"
    )


_OVERSIZED: Final[dict[str, Any]] = {}


def _skip_line(source: IO[bytes]) -> None:
    while (rest := source.readline(_CHUNK)) and not rest.endswith(b"\n"):
        pass


def _read_lines(source: IO[bytes], limit: int) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(1-based line number, record object or None when the line is not one).

    A line over ``limit`` bytes comes as :data:`_OVERSIZED`.
    """
    number = 0
    while line := source.readline(_CHUNK):
        number += 1
        if not line.endswith(b"\n"):
            if not line.lstrip().startswith(b"{"):
                _skip_line(source)  # no record: passed over, never held whole
                yield number, None
                continue
            line += source.readline(limit + 1 - len(line))
            if len(line) > limit:
                _skip_line(source)
                yield number, _OVERSIZED
                continue
        if not line.strip():
            continue  # a blank line is no record and no damage either
        try:
            document = decode_json(line)
        except ValueError:
            yield number, None  # torn (a run killed mid-write) or not JSON
            continue
        # A record is an object naming its source; anything else is no record.
        is_record = isinstance(document, dict) and "source" in document and "ok" in document
        yield number, document if is_record else None
