"""Manifests: one row per input, each with the caller's own ``id`` and metadata.

A manifest is JSON Lines (one object a line) or CSV with a header row. Each
row names one input by ``path`` (a file, relative to the current directory,
as on the command line) or by ``url`` (exactly one of the two), and gives it
an ``id``. Every other field is the row's ``metadata``, handed back untouched
in its record: with JSON types kept from JSONL, as strings from CSV. In CSV
an empty ``path`` or ``url`` cell means the column does not apply to that
row; in JSONL so does ``null`` or ``""``.

Ids are strings. A JSONL id may also be a JSON integer, and is then taken as
its decimal text (``17`` and ``"17"`` are one id), since integer keys are what
databases export; a fraction, a boolean or an object is refused.

The format comes from the name's extension (``.jsonl``, ``.ndjson``,
``.csv``), else from the content: JSONL when the first non-blank line begins
with ``{``, CSV otherwise. :attr:`ManifestReader.format_reason` says which.

Each row becomes one :class:`~ocr_async.models.SourceItem` carrying its
``id`` and ``metadata``; a path is spelled as on the command line
(:func:`~ocr_async.inputs.tidy_path`: ``./a.png`` is ``a.png``). A bad row
(no id, an empty one, both or neither of ``path``/``url``, not JSON, not
CSV, not UTF-8, too long) becomes one item with its ``error`` and nothing
to send (:func:`bad_row`), named by its place, ``rows.jsonl:17`` (the line
it starts on), and reading goes on. What makes the whole manifest unreadable raises
:class:`ManifestError` instead: a CSV header without ``id`` or without
``path``/``url``, or a line with no end in sight.

Duplicate ids are not this module's business: the batch sends an id once,
keyed by :attr:`~ocr_async.models.SourceItem.key`.

Memory is bounded whatever the input: bytes are parsed as they arrive (see
:meth:`ManifestReader.feed`), one line at a time, and a line may hold at
most ``max_line_bytes``. A longer one is one problem and is skipped to its
end; a line with no end within ``max_skip_bytes`` more (``/dev/zero``)
raises :class:`ManifestError` rather than reading forever. A byte-order mark
and CRLF line ends are accepted.
"""

from __future__ import annotations

import csv
import enum
import json
import os
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from typing import Any, Final

from ocr_async.errors import SourceError
from ocr_async.inputs import display_path, is_url, tidy_path
from ocr_async.models import ImageFile, ImageUrl, SourceItem

# Private, reused rather than copied: reading a file or stdin in chunks,
# without waiting for a pipe to fill one (the refactor makes it public).
from ocr_async.pipeline.sources import _read_chunks

__all__ = [
    "BAD_ROW_CODE",
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_SKIP_BYTES",
    "ManifestError",
    "ManifestFormat",
    "ManifestReader",
    "bad_row",
    "entry_from_fields",
    "iter_manifest",
]

#: The error code of a bad row's record.
BAD_ROW_CODE: Final = "bad_manifest_row"
#: The longest line (a JSONL row, or a CSV row with its quoted line breaks).
DEFAULT_MAX_LINE_BYTES: Final = 1024 * 1024
#: How far past that limit a line's end is looked for before giving up.
DEFAULT_MAX_SKIP_BYTES: Final = 64 * 1024 * 1024

#: The fields that name an input; every other one is metadata.
_RESERVED: Final = frozenset({"id", "path", "url"})
_BOM: Final = b"\xef\xbb\xbf"
_EXTENSIONS: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


class ManifestFormat(enum.StrEnum):
    """The two manifest formats."""

    JSONL = "jsonl"
    CSV = "csv"


class ManifestError(ValueError):
    """The manifest cannot be read on: a bad CSV header, or a line that never ends."""


def bad_row(
    where: str, message: str, *, id: str | None = None, metadata: Mapping[str, Any] | None = None
) -> SourceItem:
    """The item of a bad row: named by its place, carrying its error and nothing to send.

    ``where`` (``NAME:LINE``) is its record's ``source``; ``id`` and
    ``metadata`` are the row's when it had them, so its record carries them.
    The error is local and retryable: once the row is fixed,
    ``--resume --retry-failed`` takes it (a row still bad gets its error
    record again, and nothing is sent).
    """
    error = SourceError(BAD_ROW_CODE, f"{where}: {message}")
    error.retryable = True
    return SourceItem(where, None, id=id, metadata=metadata, error=error)


class ManifestReader:
    """Turns the bytes of one manifest into entries, as they arrive (no I/O).

    ``name`` is the manifest's path, or ``-`` for stdin; it names the rows
    (``rows.csv:17``, ``stdin:17``) and, by its extension, may give the
    format. Pass ``format`` to decide it yourself. Feed chunks of any size
    to :meth:`feed`, then call :meth:`finish` once; or use :meth:`parse`.
    """

    def __init__(
        self,
        name: str = "-",
        *,
        format: ManifestFormat | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_skip_bytes: int = DEFAULT_MAX_SKIP_BYTES,
    ) -> None:
        if max_line_bytes < 1 or max_skip_bytes < 0:
            raise ValueError("max_line_bytes must be positive and max_skip_bytes not negative")
        self.name = name
        self.label = "stdin" if name == "-" else display_path(name)
        #: The format, once known: at once from ``format`` or the extension,
        #: else from the first non-blank line.
        self.format = format
        #: Why :attr:`format` is what it is, for a message.
        self.format_reason = "as asked" if format is not None else ""
        extension = os.path.splitext(name)[1].lower()
        if format is None and extension in _EXTENSIONS:
            self.format = ManifestFormat(_EXTENSIONS[extension])
            self.format_reason = f"from its extension {extension}"
        self.max_line_bytes = max_line_bytes
        self.max_skip_bytes = max_skip_bytes
        #: Good rows and bad rows so far.
        self.rows = 0
        self.problems = 0
        self._pending = bytearray()
        self._lines = 0  # complete lines taken from _pending
        self._skipping: int | None = None  # bytes skipped of an over-long line
        self._failure: ManifestError | None = None
        self._finished = False
        self._header: list[str] | None = None
        # A CSV row in the making: its lines, its first line, its size.
        self._csv_lines: list[str] = []
        self._csv_start = 0
        self._csv_size = 0

    def describe(self) -> str:
        """The format, and why, in words: ``rows.txt: CSV (from its content: ...)``."""
        shown = "not known yet" if self.format is None else self.format.value.upper()
        return f"{self.label}: {shown} ({self.format_reason or 'no row yet'})"

    def parse(self, chunks: Iterable[bytes]) -> Iterator[SourceItem]:
        """Every entry of the manifest made of ``chunks``: :meth:`feed` each, then finish."""
        for chunk in chunks:
            yield from self.feed(chunk)
        yield from self.finish()

    def feed(self, data: bytes) -> list[SourceItem]:
        """The entries completed by ``data``, the next bytes of the manifest.

        Raises :class:`ManifestError` when the manifest cannot be read on;
        entries finished before that were returned by earlier calls.
        """
        if self._failure is not None:
            raise self._failure
        if self._finished:
            raise RuntimeError("the manifest was already finished")
        entries: list[SourceItem] = []
        pending = self._pending
        pending += data
        start = 0
        while start < len(pending):
            if self._skipping is not None:
                start = self._skip(start)
                continue
            end = pending.find(b"\n", start)
            if end < 0:
                if len(pending) - start > self.max_line_bytes:
                    entries += self._too_long(self._lines + 1)
                    self._skipping = len(pending) - start
                    start = len(pending)
                break
            self._lines += 1
            if end + 1 - start > self.max_line_bytes + 1:  # the newline is not counted
                entries += self._too_long(self._lines)
            else:
                entries += self._line(bytes(pending[start : end + 1]), self._lines)
            start = end + 1
        del pending[:start]
        return entries

    def finish(self) -> list[SourceItem]:
        """The entries of the last line, which may have no newline; call once, at the end."""
        if self._failure is not None:
            raise self._failure
        if self._finished:
            return []
        self._finished = True
        entries: list[SourceItem] = []
        if self._pending and self._skipping is None:
            self._lines += 1
            entries += self._line(bytes(self._pending), self._lines)
        self._pending.clear()
        if self._csv_lines:
            # A quoted field still open at the end: what is there is the row.
            entries += self._csv_row(final=True)
        if self.format is None:
            self.format_reason = "empty: no row"
        return entries

    # -- lines -------------------------------------------------------------------

    def _skip(self, start: int) -> int:
        # Discards the rest of an over-long line, up to a budget: /dev/zero
        # has no line end, and must not be read forever.
        assert self._skipping is not None
        end = self._pending.find(b"\n", start)
        stop = len(self._pending) if end < 0 else end + 1
        self._skipping += stop - start
        if self._skipping > self.max_line_bytes + self.max_skip_bytes:
            self._failure = ManifestError(
                f"{self.label}:{self._lines + 1}: no line end within "
                f"{self.max_line_bytes + self.max_skip_bytes} bytes; the rest of the manifest "
                "was not read"
            )
            self._pending.clear()
            return 0
        if end >= 0:
            self._lines += 1
            self._skipping = None
        return stop

    def _too_long(self, number: int) -> list[SourceItem]:
        if self._header is None and self.format is not ManifestFormat.JSONL:
            # The first line of a CSV, or a line before anything told the format.
            raise ManifestError(
                f"{self.label}:{number}: longer than {self.max_line_bytes} bytes before any "
                "row: not a manifest?"
            )
        entries = self._csv_flush_as_problem() if self._csv_lines else []
        entries.append(
            self._problem(number, f"line longer than {self.max_line_bytes} bytes: skipped")
        )
        return entries

    def _line(self, raw: bytes, number: int) -> list[SourceItem]:
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self._undecodable(number, exc)
        if self.format is None:
            if not text.strip():
                return []
            json_like = text.lstrip().startswith("{")
            self.format = ManifestFormat.JSONL if json_like else ManifestFormat.CSV
            self.format_reason = (
                f"from its content: line {number} "
                f"{'begins' if json_like else 'does not begin'} with '{{'"
            )
        if self.format is ManifestFormat.JSONL:
            return self._jsonl_row(text, number)
        return self._csv_line(text, number, len(raw))

    def _undecodable(self, number: int, exc: UnicodeDecodeError) -> list[SourceItem]:
        why = f"not valid UTF-8 (byte {exc.start + 1} of the line)"
        if self._header is None and self.format is not ManifestFormat.JSONL:
            # A binary file would give a problem per "line": refuse it whole.
            raise ManifestError(f"{self.label}:{number}: {why} before any row: not a manifest?")
        entries = self._csv_flush_as_problem() if self._csv_lines else []
        entries.append(self._problem(number, why))
        return entries

    # -- JSONL ---------------------------------------------------------------------

    def _jsonl_row(self, text: str, number: int) -> list[SourceItem]:
        if not text.strip():
            return []
        try:
            value = json.loads(
                text.rstrip("\r\n"),
                object_pairs_hook=_unique_keys,
                parse_constant=_refuse_constant,
                parse_float=_finite_float,
            )
        except RecursionError:
            return [self._problem(number, "not valid JSON: nested too deeply")]
        except json.JSONDecodeError as exc:
            return [self._problem(number, f"not valid JSON: {exc.msg} at column {exc.colno}")]
        except ValueError as exc:  # from the hooks below
            return [self._problem(number, f"not valid JSON: {exc}")]
        if not isinstance(value, dict):
            return [self._problem(number, f"not a JSON object but {_json_type(value)}")]
        return [self._row(number, value)]

    # -- CSV -----------------------------------------------------------------------

    def _csv_line(self, text: str, number: int, size: int) -> list[SourceItem]:
        if not self._csv_lines:
            if not text.strip():
                return []  # a blank line between rows
            self._csv_start = number
        elif '"' not in text:
            # Inside a quoted field only a quote can end it: no need to parse.
            self._csv_lines.append(text)
            self._csv_size += size
            return self._csv_check_size()
        self._csv_lines.append(text)
        self._csv_size += size
        return self._csv_row(final=False)

    def _csv_check_size(self) -> list[SourceItem]:
        if self._csv_size <= self.max_line_bytes:
            return []
        return self._csv_flush_as_problem(
            f"a quoted field still open after {self.max_line_bytes} bytes: "
            "the row and the lines it took were skipped"
        )

    def _csv_flush_as_problem(
        self, why: str = "a quoted field never closed: the row was skipped"
    ) -> list[SourceItem]:
        start = self._csv_start
        self._csv_lines, self._csv_size = [], 0
        if self._header is None:
            raise ManifestError(f"{self.label}:{start}: the CSV header: {why}")
        return [self._problem(start, why)]

    def _csv_row(self, *, final: bool) -> list[SourceItem]:
        fields, complete = _parse_csv_record("".join(self._csv_lines))
        if not complete:
            if not final:
                return self._csv_check_size()
            return self._csv_flush_as_problem("a quoted field is never closed: the row was skipped")
        number = self._csv_start
        self._csv_lines, self._csv_size = [], 0
        if isinstance(fields, str):
            if self._header is None:
                raise ManifestError(f"{self.label}:{number}: the CSV header is not CSV: {fields}")
            return [self._problem(number, f"not valid CSV: {fields}")]
        if self._header is None:
            self._header = self._check_header(fields, number)
            return []
        if len(fields) != len(self._header):
            return [
                self._problem(
                    number, f"{len(fields)} fields where the header has {len(self._header)}"
                )
            ]
        return [self._row(number, dict(zip(self._header, fields, strict=True)))]

    def _check_header(self, names: list[str], number: int) -> list[str]:
        where = f"{self.label}:{number}: the CSV header {names!r}"
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ManifestError(f"{where} repeats {', '.join(map(repr, repeated))}")
        if "id" not in names:
            raise ManifestError(f"{where} has no 'id' column")
        if "path" not in names and "url" not in names:
            raise ManifestError(f"{where} has neither a 'path' nor a 'url' column")
        return names

    # -- rows ----------------------------------------------------------------------

    def _problem(self, number: int, message: str) -> SourceItem:
        # A line that gave no fields: no id, no metadata to carry.
        self.problems += 1
        return bad_row(f"{self.label}:{number}", message)

    def _row(self, number: int, fields: Mapping[str, Any]) -> SourceItem:
        entry = entry_from_fields(fields, f"{self.label}:{number}")
        if entry.error is None:
            self.rows += 1
        else:
            self.problems += 1
        return entry


def entry_from_fields(fields: Mapping[str, Any], where: str) -> SourceItem:
    """One row's entry from its fields, ``where`` naming it: the rules of a manifest row.

    For rows that do not come from a file (``recognize_many`` given
    mappings, say): the same id, ``path``/``url`` and metadata rules.
    """
    metadata = {key: value for key, value in fields.items() if key not in _RESERVED}
    identity, why = _identity(fields)
    if identity is None:
        return bad_row(where, why, metadata=metadata)
    path, url = fields.get("path"), fields.get("url")
    path = None if path == "" else path
    url = None if url == "" else url
    named = f"the row with id {identity!r}"
    for key, value in (("path", path), ("url", url)):
        if value is not None and not isinstance(value, str):
            why = f"{named}: {key} is {_json_type(value)}, not a string"
            return bad_row(where, why, id=identity, metadata=metadata)
    if path is not None and url is not None:
        why = f"{named} has both a path and a url: give one"
    elif path is None and url is None:
        why = f"{named} has neither a path nor a url"
    elif url is not None and not is_url(url):
        why = f"{named}: url {url!r} is not a URL (no '://')"
    elif path is not None and "\0" in path:
        # open() would raise ValueError, not an OSError the reader reports.
        why = f"{named}: the path holds a NUL character"
    elif url is not None:
        return SourceItem(url, ImageUrl(url), id=identity, metadata=metadata)
    else:
        assert path is not None
        # Spelled as a path on the command line is (inputs.tidy_path), so
        # verify and run name it alike; the file opened is the same.
        return SourceItem(
            tidy_path(display_path(path)), ImageFile(path), id=identity, metadata=metadata
        )
    return bad_row(where, why, id=identity, metadata=metadata)


async def iter_manifest(reader: ManifestReader) -> AsyncGenerator[SourceItem, None]:
    """Every entry of the manifest ``reader.name`` names (``-``: stdin), as it is read.

    Read in chunks, off the event loop; rows from a pipe come out as soon as
    their line is complete. Raises ``OSError`` when the file cannot be read
    and :class:`ManifestError` when it cannot be read on, after the entries
    before the fault.
    """
    async for chunk in _read_chunks(reader.name):
        for entry in reader.feed(chunk):
            yield entry
    for entry in reader.finish():
        yield entry


def _identity(fields: Mapping[str, Any]) -> tuple[str, str] | tuple[None, str]:
    if "id" not in fields or fields["id"] is None:
        return None, "the row has no id"
    value = fields["id"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None, f"the id is {_json_type(value)}: give a string or an integer"
    identity = str(value)
    if not identity.strip():
        return None, "the id is empty"
    return identity, ""


def _parse_csv_record(text: str) -> tuple[list[str] | str, bool]:
    """One CSV record from ``text``: (fields or why not, whether it is complete).

    Incomplete means a quoted field is still open at the end of ``text``:
    the reader asked for another line. Seen by the reader's own pull, not
    by counting quotes, which a quote inside an unquoted field would fool.
    """
    asked_for_more = False

    def lines() -> Iterator[str]:
        nonlocal asked_for_more
        yield text
        asked_for_more = True

    try:
        fields = next(csv.reader(lines(), strict=True), [])
    except csv.Error as exc:
        return str(exc), not asked_for_more
    return fields, not asked_for_more


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Last-one-wins would pick one of two ids, or of two paths, silently.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key!r} appears twice in one object")
        document[key] = value
    return document


def _refuse_constant(name: str) -> float:
    # NaN and Infinity are not JSON: a record carrying them would not be either.
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is too large for a JSON number that can be written back")
    return value


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
