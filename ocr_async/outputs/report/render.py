"""The review page's HTML: each record, the head with the totals, the tail.

The page's fixed parts are package files beside this module: ``page.html``
(the page around the records, a :class:`string.Template`), ``page.css`` and
``page.js``, inlined so that the page stays one self-contained file. Every
string taken from a record is HTML-escaped here (:func:`_e`), and the
Content-Security-Policy allows nothing but this style and this script, by
their hashes, and ``data:`` images: even an escaping bug could not run
injected script or load anything from outside.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Final

from ocr_async.models import BoundingBox, OcrResult, Word
from ocr_async.outputs.report.images import Image
from ocr_async.outputs.report.summary import (
    NOT_EMBEDDED,
    ReportSummary,
    code_text,
    error_of,
    line_list,
    oversized_text,
    skipped_text,
)
from ocr_async.protocol import RESULT_CODES

__all__ = ["as_text", "head_html", "record_html", "tail_html"]


def _resource(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# Inside their tags on lines of their own, as the page has always had them:
# the hashes below are of exactly this text.
_STYLE: Final = "\n" + _resource("page.css")
_SCRIPT: Final = "\n" + _resource("page.js")
_HEAD, _TAIL = (string.Template(part) for part in _resource("page.html").split("$records\n"))


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Nothing but this page's own script and style (by hash) and data: images:
# no network, and an injected <script> would not run.
_CSP: Final = (
    "default-src 'none'; img-src data:; "
    f"style-src {_csp_hash(_STYLE)}; script-src {_csp_hash(_SCRIPT)}; "
    "base-uri 'none'; form-action 'none'"
)


def as_text(value: Any) -> str:
    """A record's value as text: a string as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _code_label(code: str) -> str:
    """``"4000003 INVALID_FILE_TYPE"`` for a documented code, else the code."""
    try:
        known = RESULT_CODES.get(int(code))
    except ValueError:
        known = None
    return f"{code} {known[0]}" if known else code


def _e(value: Any) -> str:
    """HTML-escaped text, quotes included, for content and attribute values."""
    return html.escape(as_text(value), quote=True)


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
    image: Image, words: Sequence[tuple[str, Word]], low_confidence: float
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
    error = error_of(document)
    if not error:
        return ['<div class="error"><p>Failed, with no error details in the record.</p></div>']
    code = code_text(error.get("code"))
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


def record_html(
    number: int,
    document: Mapping[str, Any],
    ok: bool,
    result: OcrResult | None,
    image: Image,
    low_confidence: float,
) -> str:
    """One record's ``<article>``: its image with the word boxes, its text or its error.

    ``number`` is the record's line in the JSONL, ``document`` the record as
    read, ``result`` its parsed ``result`` (None when it has none) and
    ``image`` what :class:`~.images.ImageLoader` made of its source. The
    page takes the words from ``result`` and the details shown (file type,
    resolution, slices) from ``result.raw``, so a caller that already holds
    the parsed result passes it on instead of parsing the record again.
    """
    source = as_text(document.get("source"))
    lines: list[list[tuple[str, Word]]] | None = None
    raw: Mapping[str, Any] = {}
    if result is not None:
        raw = result.raw
        # The key pairs a word's span with its box for the hover highlight.
        lines = [
            [(f"{i}-{j}", word) for j, word in enumerate(line.words)]
            for i, line in enumerate(result.lines)
        ]
    words = [pair for line in lines or () for pair in line]
    confs = [word.conf for _, word in words if word.conf is not None]
    low = min(confs) if confs else None
    mean = sum(confs) / len(confs) if confs else None

    meta = [as_text(document.get("endpoint", "?"))]
    attempts = document.get("attempts")
    if isinstance(attempts, int):
        meta.append(f"{attempts} attempt" + ("" if attempts == 1 else "s"))
    elapsed = document.get("elapsed_ms")
    if isinstance(elapsed, int | float) and not isinstance(elapsed, bool):
        meta.append(f"{elapsed:.0f} ms")
    if "fileType" in raw:
        meta.append(as_text(raw["fileType"]))
    if "resolution" in raw:
        meta.append(f"{as_text(raw['resolution'])} resolution")
    if "slicesImages" in raw:
        meta.append(f"{as_text(raw['slicesImages'])} slices")
    if words:
        meta.append(f"{len(words)} word" + ("" if len(words) == 1 else "s"))
    if low is not None and mean is not None:
        meta.append(f"conf min {low:.3f}, mean {mean:.3f}")

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


def head_html(
    jsonl_name: str, summary: ReportSummary, max_image_bytes: int, low_confidence: float
) -> str:
    """The page up to its records: the totals, the failures by code, the filters."""
    failed = summary.failed.total()
    title = f"OCR review: {jsonl_name}"
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
            f'<p class="warn" id="skipped">Skipped {skipped_text(summary.skipped_lines)} '
            f"(torn or not JSON): "
            f"{_e(line_list(summary.skipped_line_numbers, summary.skipped_lines))}.</p>"
        )
    if summary.oversized_lines:
        oversized = oversized_text(
            summary.oversized_lines, summary.oversized_line_numbers, summary.record_limit
        )
        notes.append(f'<p class="warn" id="oversized">{_e(oversized.capitalize())}.</p>')
    images = f"Images: {summary.images_embedded} embedded"
    if summary.images_not_embedded:
        reasons = []
        for reason, count in sorted(summary.images_not_embedded.items()):
            text = (
                f"over the {max_image_bytes}-byte per-image limit"
                if reason == "too_large"
                else NOT_EMBEDDED.get(reason, reason)
            )
            reasons.append(f"{text} ({count})")
        images += "; not embedded: " + ", ".join(reasons)
    notes.append(f'<p class="note" id="images">{_e(images)}.</p>')
    total = summary.records
    return _HEAD.substitute(
        csp=_e(_CSP),
        title=_e(title),
        style=_STYLE,
        file_name=_e(jsonl_name),
        total=total,
        ok=summary.ok,
        failed=failed,
        skipped=summary.skipped_lines,
        codes=codes,
        notes="".join(notes),
        low_confidence=f"{low_confidence:.2f}",
    )


def tail_html() -> str:
    """The page after its records: the script, and the end."""
    return _TAIL.substitute(script=_SCRIPT)
