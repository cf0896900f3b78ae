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
Linux; see :mod:`ocr_async.atomicfile`), so no failure and no kill leaves a
temporary file behind. Only a
regular file is read: ``/dev/zero`` or a pipe is refused rather than read
forever.

Safety: every string taken from the JSONL is HTML-escaped, only ``http`` and
``https`` sources become links (never fetched), only regular files that are
PNG or JPEG by their first bytes are embedded, and a Content-Security-Policy
allows nothing but the page's own script and style (by hash) and ``data:``
images, so even an escaping bug could not run injected script or load
anything from outside.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit

from ocr_async.imaging import image_size
from ocr_async.inputs import is_url, source_path
from ocr_async.models import BoundingBox, Word
from ocr_async.pipeline.atomicfile import AtomicFile
from ocr_async.protocol import (
    DEFAULT_MAX_BYTES,
    RESULT_CODES,
    decode_json,
    parse_result,
    sniff_image_type,
)

__all__ = [
    "DEFAULT_LOW_CONFIDENCE",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_TOTAL_IMAGE_BYTES",
    "MAX_RECORD_BYTES",
    "ReportSummary",
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

#: A record longer than this is skipped, and counted as too long (not as
#: torn): far beyond any record a run writes, and a page holding it would
#: not open in a browser anyway. Bounds memory on a huge file with no line end.
MAX_RECORD_BYTES: Final = 1024 * 1024 * 1024
# A line is judged on its first chunk: one that does not begin as a JSON
# object does is passed over chunk by chunk, never held whole.
_CHUNK: Final = 1024 * 1024
# Skipped line numbers kept for the page; the count is always exact.
_KEPT_LINE_NUMBERS: Final = 20
_MIME: Final[Mapping[str, str]] = {"png": "image/png", "jpg": "image/jpeg"}
# The page text, by reason an image is not embedded.
_NOT_EMBEDDED: Final[Mapping[str, str]] = {
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
    """What :func:`write_report` found and wrote."""

    ok: int = 0
    #: Failed records by error code (as text: ``"4000003"``, ``"timeout"``).
    failed: Counter[str] = field(default_factory=Counter)
    #: JSONL lines that were not a record: torn, not JSON, not an object.
    skipped_lines: int = 0
    #: The first few of those, 1-based.
    skipped_line_numbers: list[int] = field(default_factory=list)
    #: Lines over :data:`MAX_RECORD_BYTES`, skipped unparsed (not counted above).
    oversized_lines: int = 0
    #: The first few of those, 1-based.
    oversized_line_numbers: list[int] = field(default_factory=list)
    images_embedded: int = 0
    #: Records whose image is not in the page, by reason (see ``describe``).
    images_not_embedded: Counter[str] = field(default_factory=Counter)
    #: Size of the HTML file written.
    html_bytes: int = 0

    @property
    def records(self) -> int:
        """Records in the page."""
        return self.ok + self.failed.total()

    def describe(self) -> str:
        """A few human lines for stderr."""
        failed = self.failed.total()
        lines = [
            f"{self.records} records: {self.ok} ok, {failed} failed; "
            f"{self.images_embedded} images embedded; {self.html_bytes} bytes of HTML"
        ]
        if failed:
            by_code = ", ".join(f"{code} x{n}" for code, n in sorted(self.failed.items()))
            lines.append(f"failed by code: {by_code}")
        if self.images_not_embedded:
            lines.append(
                "images not embedded: "
                + ", ".join(
                    f"{_NOT_EMBEDDED.get(reason, reason)} ({n})"
                    for reason, n in sorted(self.images_not_embedded.items())
                )
            )
        if self.skipped_lines:
            lines.append(
                f"skipped {_skipped_text(self.skipped_lines)} (torn or not JSON): "
                f"{_line_list(self.skipped_line_numbers, self.skipped_lines)}"
            )
        if self.oversized_lines:
            lines.append(_oversized_text(self.oversized_lines, self.oversized_line_numbers))
        return "\n".join(lines)


def write_report(
    jsonl_path: Path,
    html_path: Path,
    *,
    embed_images: bool = True,
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_total_image_bytes: int | None = DEFAULT_MAX_TOTAL_IMAGE_BYTES,
    low_confidence: float = DEFAULT_LOW_CONFIDENCE,
    base_dir: Path | None = None,
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
    :data:`MAX_RECORD_BYTES` is counted apart, as too long rather than torn.
    """
    if max_image_bytes < 0:
        raise ValueError("max_image_bytes must not be negative")
    if html_path.exists() and html_path.resolve() == jsonl_path.resolve():
        raise ValueError(f"the report would replace its own input: {html_path}")
    summary = ReportSummary()
    images = _ImageLoader(
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
    images: _ImageLoader,
    low_confidence: float,
) -> None:
    with _spool(folder) as failures, _spool(folder) as successes:
        for number, document in _read_lines(source):
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
                summary.failed[_code_text(_error_of(document).get("code"))] += 1
            html_text = _render_record(number, document, ok, images, low_confidence)
            (successes if ok else failures).write(html_text)
        final.write(_render_head(jsonl_path, summary, images.max_bytes, low_confidence))
        _copy_section(final, failures, "failed", "Failed", summary.failed.total())
        _copy_section(final, successes, "ok", "OK", summary.ok)
        final.write(_render_tail())


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


def _read_lines(source: IO[bytes]) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(1-based line number, record object or None when the line is not one).

    A line over :data:`MAX_RECORD_BYTES` comes as :data:`_OVERSIZED`.
    """
    number = 0
    while line := source.readline(_CHUNK):
        number += 1
        if not line.endswith(b"\n"):
            if not line.lstrip().startswith(b"{"):
                _skip_line(source)  # no record: passed over, never held whole
                yield number, None
                continue
            line += source.readline(MAX_RECORD_BYTES + 1 - len(line))
            if len(line) > MAX_RECORD_BYTES:
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


def _error_of(document: Mapping[str, Any]) -> Mapping[str, Any]:
    error = document.get("error")
    return error if isinstance(error, Mapping) else {}


def _code_text(code: Any) -> str:
    if code is None:
        return "unknown"
    return code if isinstance(code, str) else json.dumps(code)


def _code_label(code: str) -> str:
    """``"4000003 INVALID_FILE_TYPE"`` for a documented code, else the code."""
    try:
        known = RESULT_CODES.get(int(code))
    except ValueError:
        known = None
    return f"{code} {known[0]}" if known else code


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _skipped_text(count: int) -> str:
    return (
        f"{count} line that is not a record"
        if count == 1
        else f"{count} lines that are not records"
    )


def _oversized_text(count: int, numbers: Sequence[int]) -> str:
    return (
        f"skipped {count} {'line' if count == 1 else 'lines'} over the "
        f"{MAX_RECORD_BYTES // (1024 * 1024)} MiB record limit (too large to show; "
        f"not checked, not necessarily torn): {_line_list(numbers, count)}"
    )


def _line_list(numbers: Sequence[int], total: int) -> str:
    more = f" and {total - len(numbers)} more" if total > len(numbers) else ""
    return f"line{'' if total == 1 else 's'} {', '.join(map(str, numbers))}{more}"


# --- images -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Image:
    """An embedded image, or why there is none."""

    data_uri: str | None = None
    size: tuple[int, int] | None = None
    #: Shown under the (missing) image; None when embedded.
    note: str | None = None
    #: For an http(s) source: the link to show instead.
    url: str | None = None


@dataclass(slots=True)
class _ImageLoader:
    enabled: bool
    max_bytes: int
    budget: int | None
    base_dir: Path | None
    summary: ReportSummary
    embedded_bytes: int = 0

    def load(self, source: str) -> _Image:
        if is_url(source):
            self.summary.images_not_embedded["url"] += 1
            scheme = urlsplit(source).scheme.lower() if source.isprintable() else ""
            # Only web URLs become links: "javascript://%0a..." also has "://".
            link = source if scheme in ("http", "https") else None
            return _Image(url=link, note=None if link else "URL source: not fetched")
        if not source:
            return self._skip("no_source", "no source file")
        if not self.enabled:
            return self._skip("disabled", "image not embedded")
        path = Path(source_path(source))  # undo the \\ and \xNN escapes of odd names
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return self._read(path)

    def _skip(self, reason: str, note: str) -> _Image:
        self.summary.images_not_embedded[reason] += 1
        return _Image(note=note)

    def _read(self, path: Path) -> _Image:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                # A FIFO or device would block or never end: never opened.
                return self._skip("not_image", "not a regular file: not shown")
            if info.st_size > self.max_bytes:
                return self._skip(
                    "too_large",
                    f"image not embedded: {info.st_size} bytes, over the "
                    f"{self.max_bytes}-byte limit",
                )
            if self.budget is not None and self.embedded_bytes + info.st_size > self.budget:
                return self._skip(
                    "budget", f"image not embedded: the page's {self.budget}-byte budget is used up"
                )
            with path.open("rb") as handle:
                # read(n) allocates n bytes up front: ask for what stat promised.
                data = handle.read(info.st_size + 1)
        except FileNotFoundError:
            return self._skip("missing", "image file not found")
        except OSError as exc:
            return self._skip("unreadable", f"image unreadable: {exc.strerror or exc}")
        except ValueError:  # a NUL or a lone surrogate: no such file can exist
            return self._skip("missing", "image file not found")
        if len(data) > info.st_size:
            return self._skip("unreadable", "image unreadable: the file changed while read")
        kind = sniff_image_type(data)
        if kind is None:
            return self._skip("not_image", "not a PNG or JPEG: not shown")
        self.embedded_bytes += len(data)
        self.summary.images_embedded += 1
        encoded = base64.b64encode(data).decode("ascii")
        return _Image(data_uri=f"data:{_MIME[kind]};base64,{encoded}", size=image_size(data))


# --- rendering ----------------------------------------------------------------


def _e(value: Any) -> str:
    """HTML-escaped text, quotes included, for content and attribute values."""
    return html.escape(_as_text(value), quote=True)


def _num(value: float) -> str:
    """A coordinate as short SVG-friendly text: 12, 50.5."""
    return str(int(value)) if value.is_integer() else repr(value)


def _conf_text(conf: float | None) -> str:
    return "n/a" if conf is None else f"{conf:.4g}"


def _word_attrs(word: Word, low_confidence: float) -> tuple[str, str]:
    """(class, title) for a word's span and its box."""
    low = word.conf is not None and word.conf < low_confidence
    return ("w low" if low else "w"), f"{word.value} \u2014 conf {_conf_text(word.conf)}"


def _box_points(box: BoundingBox) -> str:
    corners = ((box.x1, box.y1), (box.x2, box.y2), (box.x3, box.y3), (box.x4, box.y4))
    return " ".join(f"{_num(x)},{_num(y)}" for x, y in corners)


def _render_figure(
    image: _Image, words: Sequence[tuple[str, Word]], low_confidence: float
) -> list[str]:
    boxes = [(key, word, word.box) for key, word in words if word.box is not None]
    out: list[str] = []
    size = image.size
    note = image.note
    if size is None and boxes:
        # No image size: draw the boxes on a blank sheet as large as they reach.
        size = (
            math.ceil(max(max(b.x1, b.x2, b.x3, b.x4) for _, _, b in boxes)) + 10,
            math.ceil(max(max(b.y1, b.y2, b.y3, b.y4) for _, _, b in boxes)) + 10,
        )
        if image.data_uri is not None:
            note = "image size unknown: boxes may not line up"
    if image.data_uri is not None or size is not None:
        width, height = size if size is not None else (0, 0)
        kind = "stage" if image.data_uri is not None else "stage sheet"
        out.append(f'<div class="{kind}">')
        if image.data_uri is not None:
            dims = f' width="{width}" height="{height}"' if size is not None else ""
            out.append(f'<img alt="" decoding="async" loading="lazy"{dims} src="{image.data_uri}">')
        if size is not None:
            sheet = "" if image.data_uri is not None else f' width="{width}" height="{height}"'
            out.append(
                f'<svg class="boxes" viewBox="0 0 {width} {height}"{sheet} '
                'preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
            )
            for key, word, box in boxes:
                css, title = _word_attrs(word, low_confidence)
                out.append(
                    f'<polygon class="{css}" data-w="{key}" points="{_box_points(box)}">'
                    f"<title>{_e(title)}</title></polygon>"
                )
            out.append("</svg>")
        out.append("</div>")
    if image.url is not None:
        out.append(
            f'<p class="note"><a href="{_e(image.url)}" rel="noopener noreferrer" '
            f'target="_blank">open the image URL</a> (not fetched)</p>'
        )
    if note is not None:
        out.append(f'<p class="note">{_e(note)}</p>')
    return out


def _render_text(
    text: Any, lines: Sequence[Sequence[tuple[str, Word]]] | None, low_confidence: float
) -> list[str]:
    if lines is None:
        return [f'<pre class="plain">{_e(text)}</pre>'] if isinstance(text, str) else []
    if not any(lines):
        return ['<p class="muted">No text found in this image.</p>']
    out: list[str] = []
    for line in lines:
        spans = []
        for key, word in line:
            css, title = _word_attrs(word, low_confidence)
            spans.append(
                f'<span class="{css}" data-w="{key}" title="{_e(title)}">{_e(word.value)}</span>'
            )
        out.append(f'<p class="line">{" ".join(spans)}</p>')
    return out


def _render_error(document: Mapping[str, Any]) -> list[str]:
    error = _error_of(document)
    if not error:
        return ['<div class="error"><p>Failed, with no error details in the record.</p></div>']
    code = _code_text(error.get("code"))
    local = error.get("local") is True
    retryable = error.get("retryable") is True
    where = (
        '<span class="tag local">local: never sent</span>'
        if local
        else '<span class="tag remote">sent to the API</span>'
    )
    retry = '<span class="tag">retryable</span>' if retryable else ""
    return [
        '<div class="error">',
        f'<p class="code"><b>{_e(_code_label(code))}</b> {where} {retry}</p>',
        f'<p class="message">{_e(error.get("message", ""))}</p>',
        "</div>",
    ]


def _render_record(
    number: int,
    document: Mapping[str, Any],
    ok: bool,
    images: _ImageLoader,
    low_confidence: float,
) -> str:
    source = _as_text(document.get("source"))
    raw_result = document.get("result")
    lines: list[list[tuple[str, Word]]] | None = None
    result: Mapping[str, Any] = {}
    if isinstance(raw_result, Mapping):
        result = raw_result
        parsed = parse_result(raw_result)
        # The key pairs a word's span with its box for the hover highlight.
        lines = [
            [(f"{i}-{j}", word) for j, word in enumerate(line.words)]
            for i, line in enumerate(parsed.lines)
        ]
    words = [pair for line in lines or () for pair in line]
    confs = [word.conf for _, word in words if word.conf is not None]
    low = min(confs) if confs else None
    mean = sum(confs) / len(confs) if confs else None

    meta = [_as_text(document.get("endpoint", "?"))]
    attempts = document.get("attempts")
    if isinstance(attempts, int):
        meta.append(f"{attempts} attempt" + ("" if attempts == 1 else "s"))
    elapsed = document.get("elapsed_ms")
    if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
        meta.append(f"{elapsed:.0f} ms")
    if "fileType" in result:
        meta.append(_as_text(result["fileType"]))
    if "resolution" in result:
        meta.append(f"{_as_text(result['resolution'])} resolution")
    if "slicesImages" in result:
        meta.append(f"{_as_text(result['slicesImages'])} slices")
    if words:
        meta.append(f"{len(words)} word" + ("" if len(words) == 1 else "s"))
    if low is not None and mean is not None:
        meta.append(f"conf min {low:.3f}, mean {mean:.3f}")

    image = images.load(source)
    status = "ok" if ok else "failed"
    name = (
        f'<a href="{_e(image.url)}" rel="noopener noreferrer" target="_blank">{_e(source)}</a>'
        if image.url is not None
        else _e(source)
    )
    parts = [
        f'<article class="rec {status}" id="r{number}" data-status="{status}" '
        f'data-minconf="{"" if low is None else repr(low)}">',
        '<header class="rec-head">',
        f'<span class="badge {status}">{"OK" if ok else "FAILED"}</span>',
        f'<h3 class="src">{name}</h3>',
        f'<span class="meta">{_e(" · ".join(meta))} · line {number}</span>',
        "</header>",
        '<div class="rec-body"><div class="figure">',
        *_render_figure(image, words, low_confidence),
        '</div><div class="text">',
        *([] if ok else _render_error(document)),
        *_render_text(document.get("text"), lines, low_confidence),
        "</div></div></article>\n",
    ]
    return "\n".join(parts)


def _render_head(
    jsonl_path: Path, summary: ReportSummary, max_image_bytes: int, low_confidence: float
) -> str:
    failed = summary.failed.total()
    title = f"OCR review: {jsonl_path.name}"
    rows = []
    for code, count in sorted(summary.failed.items(), key=lambda item: (-item[1], item[0])):
        rows.append(f"<tr><td>{_e(_code_label(code))}</td><td>{count}</td></tr>")
    codes = (
        '<table class="codes"><thead><tr><th>failed by code</th><th>records</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else ""
    )
    notes = []
    if summary.skipped_lines:
        notes.append(
            f'<p class="warn" id="skipped">Skipped {_skipped_text(summary.skipped_lines)} '
            f"(torn or not JSON): "
            f"{_e(_line_list(summary.skipped_line_numbers, summary.skipped_lines))}.</p>"
        )
    if summary.oversized_lines:
        oversized = _oversized_text(summary.oversized_lines, summary.oversized_line_numbers)
        notes.append(f'<p class="warn" id="oversized">{_e(oversized.capitalize())}.</p>')
    images = f"Images: {summary.images_embedded} embedded"
    if summary.images_not_embedded:
        reasons = []
        for reason, count in sorted(summary.images_not_embedded.items()):
            text = (
                f"over the {max_image_bytes}-byte per-image limit"
                if reason == "too_large"
                else _NOT_EMBEDDED.get(reason, reason)
            )
            reasons.append(f"{text} ({count})")
        images += "; not embedded: " + ", ".join(reasons)
    notes.append(f'<p class="note" id="images">{_e(images)}.</p>')
    total = summary.records
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header class="top">
<h1>OCR review <span class="file">{_e(jsonl_path.name)}</span></h1>
<dl class="totals">
<div><dt>records</dt><dd id="total">{total}</dd></div>
<div class="ok"><dt>ok</dt><dd id="total-ok">{summary.ok}</dd></div>
<div class="failed"><dt>failed</dt><dd id="total-failed">{failed}</dd></div>
<div><dt>skipped lines</dt><dd id="total-skipped">{summary.skipped_lines}</dd></div>
</dl>
{codes}
{"".join(notes)}
<p class="legend">Boxes and words <span class="w">like this</span> were recognized; \
<span class="w low">like this</span> below {low_confidence:.2f} confidence. \
Hover a word or box for its confidence.</p>
</header>
<form class="filters" id="filters">
<label>status <select id="f-status">
<option value="all">all</option><option value="failed">failed</option><option value="ok">ok</option>
</select></label>
<label title="Show successful records whose lowest word confidence is at most this value; \
failures and records without words are not affected.">lowest word confidence \u2264
<input type="range" id="f-conf" min="0" max="1" step="0.01" value="1">
<output id="f-conf-value">1.00</output></label>
<output id="shown">{total} of {total} shown</output>
<noscript>(filters need JavaScript)</noscript>
</form>
<main>
"""


def _copy_section(out: IO[str], spool: IO[str], key: str, title: str, count: int) -> None:
    if not count:
        return
    out.write(f'<section class="group" id="group-{key}">\n<h2>{title} ({count})</h2>\n')
    spool.seek(0)
    shutil.copyfileobj(spool, out)
    out.write("</section>\n")


def _render_tail() -> str:
    return f"</main>\n<script>{_JS}</script>\n</body>\n</html>\n"


_CSS: Final = """
:root { color-scheme: light; --ok: #1a7f37; --bad: #cf222e; --low: #bf8700; --line: #d0d7de; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: #1f2328; background: #f6f8fa; }
header.top { background: #fff; padding: 10px 20px 4px; }
h1 { margin: 0 0 6px; font-size: 20px; }
h1 .file { font-weight: normal; color: #59636e; font-size: 15px; margin-left: 6px; }
dl.totals { display: flex; gap: 18px; margin: 0 0 6px; }
dl.totals div { display: flex; gap: 6px; align-items: baseline; }
dl.totals dt { color: #59636e; } dl.totals dd { margin: 0; font-weight: 600; font-size: 16px; }
dl.totals .ok dd { color: var(--ok); } dl.totals .failed dd { color: var(--bad); }
table.codes { border-collapse: collapse; margin: 4px 0; font-size: 13px; }
table.codes td, table.codes th { border: 1px solid var(--line); padding: 2px 8px;
  text-align: left; }
.warn { color: #9a6700; background: #fff8c5; padding: 2px 8px; display: inline-block;
  margin: 4px 0; }
.note, .muted, .legend { color: #59636e; margin: 4px 0; }
form.filters { position: sticky; top: 0; z-index: 2; display: flex; gap: 18px; flex-wrap: wrap;
  align-items: center; margin: 0; padding: 6px 20px; background: #fff;
  border-bottom: 1px solid var(--line); }
#shown { font-weight: 600; }
main { padding: 8px 20px 40px; }
section.group > h2 { font-size: 16px; margin: 14px 0 8px; }
article.rec { background: #fff; border: 1px solid var(--line); border-left: 4px solid var(--ok);
  border-radius: 6px; margin: 0 0 12px; padding: 8px 12px; }
article.rec.failed { border-left-color: var(--bad); }
article.rec[hidden] { display: none; }
.rec-head { display: flex; gap: 10px; align-items: baseline; flex-wrap: wrap; }
.rec-head h3 { margin: 0; font-size: 14px; font-family: ui-monospace, monospace;
  word-break: break-all; }
.meta { color: #59636e; font-size: 12px; }
.badge { font-size: 11px; font-weight: 700; padding: 1px 6px; border-radius: 10px; color: #fff;
  background: var(--ok); }
.badge.failed { background: var(--bad); }
.rec-body { display: flex; gap: 16px; align-items: flex-start; margin-top: 6px; }
.figure { flex: 0 1 480px; min-width: 0; }
.text { flex: 1 1 0; min-width: 0; }
.stage { position: relative; display: inline-block; max-width: 100%; line-height: 0;
  border: 1px solid var(--line); background: #fff; }
.stage img { display: block; max-width: 100%; height: auto; }
.stage svg.boxes { position: absolute; inset: 0; width: 100%; height: 100%; overflow: visible; }
.stage.sheet { background: repeating-linear-gradient(45deg, #f6f8fa 0 8px, #eef1f4 8px 16px); }
.stage.sheet svg.boxes { position: static; display: block; max-width: 100%; height: auto; }
polygon.w { fill: rgba(9, 105, 218, .12); stroke: #0969da; stroke-width: 1.5;
  vector-effect: non-scaling-stroke; }
polygon.w.low { fill: rgba(191, 135, 0, .25); stroke: var(--low); stroke-width: 2; }
polygon.w.hot { fill: rgba(207, 34, 46, .3); stroke: var(--bad); }
p.line { margin: 0 0 2px; font-size: 15px; }
span.w { border-bottom: 2px solid rgba(9, 105, 218, .35); cursor: help; }
span.w.low { background: #fff8c5; border-bottom-color: var(--low); }
span.w.hot { background: #ffebe9; }
pre.plain { white-space: pre-wrap; margin: 0; }
.error { background: #ffebe9; border: 1px solid #ffcecb; border-radius: 6px; padding: 4px 10px;
  margin-bottom: 6px; }
.error p { margin: 2px 0; } .error .message { word-break: break-word; }
.tag { font-size: 11px; padding: 0 6px; border-radius: 8px; background: #eaeef2; margin-left: 4px; }
.tag.local { background: #ddf4ff; }
@media (max-width: 760px) { .rec-body { flex-direction: column; } }
"""

_JS: Final = """
(() => {
  "use strict";
  const records = Array.from(document.querySelectorAll("article.rec"));
  const sections = Array.from(document.querySelectorAll("section.group"));
  const status = document.getElementById("f-status");
  const conf = document.getElementById("f-conf");
  const confValue = document.getElementById("f-conf-value");
  const shown = document.getElementById("shown");
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const s = params.get("status");
    status.value = s === "ok" || s === "failed" ? s : "all";
    const c = Number.parseFloat(params.get("conf"));
    conf.value = c >= 0 && c <= 1 ? String(c) : "1";
  }
  function apply() {
    const s = status.value;
    const t = Number.parseFloat(conf.value);
    let count = 0;
    for (const r of records) {
      const m = r.dataset.minconf;
      const visible = (s === "all" || r.dataset.status === s) &&
        (m === "" || Number.parseFloat(m) <= t);
      r.hidden = !visible;
      if (visible) count += 1;
    }
    for (const section of sections) {
      section.hidden = !section.querySelector("article.rec:not([hidden])");
    }
    confValue.textContent = t.toFixed(2);
    shown.textContent = count + " of " + records.length + " shown";
    document.body.dataset.shown = String(count);
    document.body.dataset.ready = "1";
  }
  function changed() {
    const hash = "#status=" + status.value + "&conf=" + Number.parseFloat(conf.value).toFixed(2);
    try { history.replaceState(null, "", hash); } catch (e) { /* file:// may refuse */ }
    apply();
  }
  function hot(event, on) {
    const w = event.target.closest && event.target.closest("[data-w]");
    const rec = w && w.closest("article.rec");
    if (!rec) return;
    for (const el of rec.querySelectorAll('[data-w="' + w.dataset.w + '"]')) {
      el.classList.toggle("hot", on);
    }
  }
  status.addEventListener("change", changed);
  conf.addEventListener("input", changed);
  window.addEventListener("hashchange", () => { readHash(); apply(); });
  document.addEventListener("mouseover", (e) => hot(e, true));
  document.addEventListener("mouseout", (e) => hot(e, false));
  readHash();
  apply();
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Nothing but this page's own script and style (by hash) and data: images:
# no network, and an injected <script> would not run.
_CSP: Final = (
    "default-src 'none'; img-src data:; "
    f"style-src {_csp_hash(_CSS)}; script-src {_csp_hash(_JS)}; "
    "base-uri 'none'; form-action 'none'"
)
