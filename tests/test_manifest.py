"""Manifests: rows with ids and metadata, every bad row one problem, memory bounded."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import ListSink

from ocr_async.emulator import make_png
from ocr_async.errors import SourceError
from ocr_async.models import (
    ImageFile,
    ImageUrl,
    OcrResult,
    Payload,
    Recognition,
    SourceItem,
)
from ocr_async.pipeline.batch import run_batch
from ocr_async.pipeline.manifest import (
    BAD_ROW_CODE,
    ManifestError,
    ManifestFormat,
    ManifestReader,
    entry_from_fields,
    iter_manifest,
)


def parse(text: str | bytes, name: str = "rows.jsonl", **options: Any) -> list[SourceItem]:
    data = text.encode() if isinstance(text, str) else text
    return list(ManifestReader(name, **options).parse([data]))


def only(entries: list[SourceItem]) -> SourceItem:
    assert len(entries) == 1, entries
    return entries[0]


def problem(entries: list[SourceItem], index: int = 0) -> SourceItem:
    """A bad row: an item with its error and nothing to send."""
    entry = entries[index]
    assert entry.error is not None, entry
    assert entry.image is None, entry
    return entry


def why(entry: SourceItem) -> str:
    """A bad row's message, without the place its error names first."""
    assert entry.error is not None
    assert entry.error.message.startswith(f"{entry.source}: ")
    return entry.error.message.removeprefix(f"{entry.source}: ")


def item(entries: list[SourceItem], index: int = 0) -> SourceItem:
    """A good row: an item with an id and something to send."""
    entry = entries[index]
    assert entry.error is None, entry
    assert entry.image is not None, entry
    assert entry.id is not None, entry
    return entry


def view(entry: SourceItem) -> tuple[object, ...]:
    """An entry as comparable values (errors compare by identity)."""
    error = entry.error and (entry.error.code, entry.error.message, entry.error.retryable)
    return (entry.source, entry.image, entry.id, entry.metadata, error)


def kinds(entries: list[SourceItem]) -> list[str]:
    return ["bad" if entry.error is not None else "row" for entry in entries]


# --- good rows ------------------------------------------------------------------------


def test_jsonl_rows_keep_every_other_field_with_its_type() -> None:
    entries = parse(
        '{"id": "doc-1", "path": "scans/a.png", "customer": "acme", "pages": 3, '
        '"price": 1.5, "urgent": true, "due": null, "tags": ["x", {"y": 1}]}\n'
        '{"url": "https://h/b.png?sig=1", "id": "doc-2"}\n'
    )
    first, second = item(entries, 0), item(entries, 1)
    assert first.id == "doc-1"
    assert first.source == "scans/a.png"
    assert first.image == ImageFile("scans/a.png")
    assert first.metadata == {
        "customer": "acme",
        "pages": 3,
        "price": 1.5,
        "urgent": True,
        "due": None,
        "tags": ["x", {"y": 1}],
    }
    assert list(first.metadata) == ["customer", "pages", "price", "urgent", "due", "tags"]
    assert second.source == "https://h/b.png?sig=1"
    assert second.image == ImageUrl("https://h/b.png?sig=1")
    assert second.metadata == {}
    assert (first.identity, second.identity) == ("doc-1", "doc-2")
    assert (first.key, second.key) == ("\0doc-1", "\0doc-2")


@pytest.mark.parametrize(
    ("given", "identity"),
    [
        pytest.param("17", "17", id="integer"),
        pytest.param("-3", "-3", id="negative"),
        pytest.param("123456789012345678901234567890", "123456789012345678901234567890", id="big"),
        pytest.param('"17"', "17", id="string-same-id"),
        pytest.param('" a b "', " a b ", id="spaces-kept"),
    ],
)
def test_a_jsonl_integer_id_is_its_decimal_text(given: str, identity: str) -> None:
    assert item(parse(f'{{"id": {given}, "path": "a.png"}}')).id == identity


def test_csv_rows_give_strings_and_keep_empty_cells_as_metadata() -> None:
    entries = parse(
        "id,path,url,customer,note\n"
        "1,scans/a.png,,acme,\n"
        '2,,https://h/b.png,"Smith, J.","said ""hi"""\n',
        name="rows.csv",
    )
    first, second = item(entries, 0), item(entries, 1)
    assert (first.id, first.source, first.image) == ("1", "scans/a.png", ImageFile("scans/a.png"))
    assert first.metadata == {"customer": "acme", "note": ""}
    assert second.image == ImageUrl("https://h/b.png")
    assert second.metadata == {"customer": "Smith, J.", "note": 'said "hi"'}


def test_a_csv_row_may_span_lines_and_is_named_by_its_first() -> None:
    entries = parse(
        'id,path,note\r\na,a.png,"two\r\nlines, one ""quote"""\r\nb,b.png,x\r\n', name="r.csv"
    )
    first, second = item(entries, 0), item(entries, 1)
    assert first.metadata == {"note": 'two\r\nlines, one "quote"'}
    assert second.id == "b"


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv"])
def test_a_byte_order_mark_crlf_blank_lines_and_no_final_newline_are_fine(name: str) -> None:
    body = (
        '\r\n{"id": "a", "path": "a.png"}\r\n\r\n   \r\n{"id": "b", "path": "b.png"}'
        if name.endswith(".jsonl")
        else "\r\nid,path\r\n\r\na,a.png\r\n   \r\nb,b.png"
    )
    entries = parse(b"\xef\xbb\xbf" + body.encode(), name=name)
    assert [item(entries, n).id for n in range(2)] == ["a", "b"]
    assert item(entries, 0).source == "a.png"  # no \r, no BOM left in any value
    assert len(entries) == 2


# --- the format ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "expected", "reason"),
    [
        pytest.param("m.jsonl", "", "jsonl", "from its extension .jsonl", id="jsonl"),
        pytest.param("m.NDJSON", "", "jsonl", "from its extension .ndjson", id="ndjson-any-case"),
        pytest.param("m.csv", "", "csv", "from its extension .csv", id="csv"),
        pytest.param(
            "-",
            '\n  {"id": "a", "path": "a.png"}\n',
            "jsonl",
            "from its content: line 2 begins with '{'",
            id="stdin-jsonl",
        ),
        pytest.param(
            "rows.txt",
            "id,path\na,a.png\n",
            "csv",
            "from its content: line 1 does not begin with '{'",
            id="txt-csv",
        ),
    ],
)
def test_the_format_comes_from_the_extension_else_the_content(
    name: str, content: str, expected: str, reason: str
) -> None:
    reader = ManifestReader(name)
    entries = list(reader.parse([content.encode()]))
    assert reader.format == ManifestFormat(expected)
    assert reader.format_reason == reason
    assert reader.describe() == f"{'stdin' if name == '-' else name}: {expected.upper()} ({reason})"
    assert all(entry.error is None for entry in entries)


def test_a_format_asked_for_wins_over_the_extension() -> None:
    reader = ManifestReader("rows.csv", format=ManifestFormat.JSONL)
    assert item(list(reader.parse([b'{"id": "a", "path": "a.png"}\n']))).id == "a"
    assert reader.format_reason == "as asked"


def test_an_empty_manifest_has_no_rows_and_says_so() -> None:
    reader = ManifestReader("-")
    assert list(reader.parse([b"\n\n"])) == []
    assert reader.format is None
    assert reader.describe() == "stdin: not known yet (empty: no row)"


# --- bad rows ----------------------------------------------------------------------

GOOD = '{"id": "next", "path": "next.png"}'


@pytest.mark.parametrize(
    ("line", "message", "identity"),
    [
        pytest.param('{"path": "a.png", "k": 1}', "the row has no id", None, id="no-id"),
        pytest.param('{"id": null, "path": "a.png"}', "the row has no id", None, id="null-id"),
        pytest.param('{"id": "", "path": "a.png"}', "the id is empty", None, id="empty-id"),
        pytest.param('{"id": "  ", "path": "a.png"}', "the id is empty", None, id="blank-id"),
        pytest.param(
            '{"id": 1.5, "path": "a.png"}',
            "the id is a number (1.5): give a string or an integer",
            None,
            id="fraction-id",
        ),
        pytest.param(
            '{"id": true, "path": "a.png"}',
            "the id is a boolean: give a string or an integer",
            None,
            id="boolean-id",
        ),
        pytest.param(
            '{"id": {"n": 1}, "path": "a.png"}',
            "the id is an object: give a string or an integer",
            None,
            id="object-id",
        ),
        pytest.param(
            '{"id": "a", "path": "a.png", "url": "https://h/a.png"}',
            "the row with id 'a' has both a path and a url: give one",
            "a",
            id="both",
        ),
        pytest.param(
            '{"id": "a", "k": 1}',
            "the row with id 'a' has neither a path nor a url",
            "a",
            id="none",
        ),
        pytest.param(
            '{"id": "a", "path": "", "url": null}',
            "the row with id 'a' has neither a path nor a url",
            "a",
            id="empty-and-null",
        ),
        pytest.param(
            '{"id": "a", "path": 7}',
            "the row with id 'a': path is a number (7), not a string",
            "a",
            id="path-not-string",
        ),
        pytest.param(
            '{"id": "a", "url": "h/a.png"}',
            "the row with id 'a': url 'h/a.png' is not a URL (no '://')",
            "a",
            id="url-not-url",
        ),
        pytest.param(
            '{"id": "a", "path": "a\\u0000.png"}',
            "the row with id 'a': the path holds a NUL character",
            "a",
            id="nul-in-path",
        ),
        pytest.param(
            '{"id": "a", "path": ',
            "not valid JSON: Expecting value at column 21",
            None,
            id="torn-json",
        ),
        pytest.param('["a", "a.png"]', "not a JSON object but an array", None, id="array"),
        pytest.param('"a.png"', "not a JSON object but a string", None, id="string"),
        pytest.param(
            '{"id": "a", "path": "a.png", "score": NaN}',
            "not valid JSON: NaN is not a JSON value",
            None,
            id="nan",
        ),
        pytest.param(
            '{"id": "a", "path": "a.png", "score": 1e400}',
            "not valid JSON: 1e400 is too large for a JSON number that can be written back",
            None,
            id="infinite-number",
        ),
        pytest.param(
            '{"id": "a", "path": "a.png", "id": "b"}',
            "not valid JSON: the key 'id' appears twice in one object",
            None,
            id="repeated-key",
        ),
        pytest.param(
            '{"id": "a", "path": "a.png", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "not valid JSON: nested too deeply",
            None,
            id="deep",
        ),
    ],
)
def test_each_bad_jsonl_row_is_one_problem_named_by_its_line_and_reading_goes_on(
    line: str, message: str, identity: str | None
) -> None:
    entries = parse(f"{GOOD}\n{line}\n{GOOD.replace('next', 'last')}\n")
    assert len(entries) == 3
    bad = problem(entries, 1)
    assert bad.source == "rows.jsonl:2"
    assert why(bad) == message
    assert bad.id == identity
    assert bad.identity == (identity or "rows.jsonl:2")
    assert bad.key == ("rows.jsonl:2" if identity is None else f"\0{identity}")
    assert [item(entries, n).id for n in (0, 2)] == ["next", "last"]


def test_a_bad_row_with_an_id_keeps_its_metadata() -> None:
    bad = problem(parse('{"id": "a", "customer": "acme", "n": [1]}'))
    assert bad.metadata == {"customer": "acme", "n": [1]}


def test_a_problem_is_a_local_error_that_retry_failed_takes_once_the_row_is_fixed() -> None:
    bad = problem(parse('{"path": "a.png"}\n'))
    error = bad.error
    assert isinstance(error, SourceError)
    assert (error.code, error.local, error.retryable) == (BAD_ROW_CODE, True, True)
    assert error.message == "rows.jsonl:1: the row has no id"


def test_invalid_utf8_in_a_jsonl_row_is_one_problem() -> None:
    entries = parse(GOOD.encode() + b'\n{"id": "\xff"}\n' + GOOD.encode() + b"\n")
    assert why(problem(entries, 1)) == "not valid UTF-8 (byte 9 of the line)"
    assert len(entries) == 3


@pytest.mark.parametrize(
    ("line", "message", "identity"),
    [
        pytest.param("c.png,x", "2 fields where the header has 3", None, id="too-few"),
        pytest.param("c,c.png,x,y", "4 fields where the header has 3", None, id="too-many"),
        pytest.param(",c.png,x", "the id is empty", None, id="no-id"),
        pytest.param("c,,x", "the row with id 'c' has neither a path nor a url", "c", id="none"),
        pytest.param('c,"c.png"x,x', "not valid CSV: ',' expected after '\"'", None, id="quoting"),
    ],
)
def test_each_bad_csv_row_is_one_problem_named_by_its_line(
    line: str, message: str, identity: str | None
) -> None:
    entries = parse(f"id,path,note\na,a.png,1\n{line}\nb,b.png,2\n", name="r.csv")
    assert len(entries) == 3
    bad = problem(entries, 1)
    assert (bad.source, why(bad), bad.id) == ("r.csv:3", message, identity)
    assert [item(entries, n).id for n in (0, 2)] == ["a", "b"]


def test_a_csv_with_both_columns_wants_exactly_one_filled() -> None:
    entries = parse("id,path,url\na,a.png,https://h/a.png\nb,,\n", name="r.csv")
    assert [why(problem(entries, n)) for n in (0, 1)] == [
        "the row with id 'a' has both a path and a url: give one",
        "the row with id 'b' has neither a path nor a url",
    ]


def test_a_quote_never_closed_is_one_problem_at_the_end() -> None:
    entries = parse('id,path,note\na,a.png,"open\nb,b.png,x\n', name="r.csv")
    assert (problem(entries).source, why(problem(entries))) == (
        "r.csv:2",
        "a quoted field is never closed: the row was skipped",
    )
    assert len(entries) == 1


def test_a_stray_quote_costs_the_rows_it_swallows_up_to_the_limit_then_reading_goes_on() -> None:
    rows = "".join(f"b{n},b{n}.png,x\n" for n in range(20))
    entries = parse(f'id,path,note\na,a.png,"open\n{rows}', name="r.csv", max_line_bytes=100)
    bad = problem(entries)
    assert bad.source == "r.csv:2"
    assert why(bad) == (
        "a quoted field still open after 100 bytes: the row and the lines it took were skipped"
    )
    # The open field took lines while under 100 bytes: its own 14 and 8 rows
    # of 12 (b0 to b7). The rest are rows again.
    assert [entry.identity for entry in entries[1:]] == [f"b{n}" for n in range(8, 20)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("path,note\na.png,x\n", "has no 'id' column", id="no-id"),
        pytest.param("id,note\na,x\n", "has neither a 'path' nor a 'url' column", id="no-input"),
        pytest.param("id,path,x,x\n", "repeats 'x'", id="repeated"),
        pytest.param(" id,path\na,a.png\n", "has no 'id' column", id="spaced-name"),
    ],
)
def test_a_bad_csv_header_stops_the_manifest_at_once(content: str, message: str) -> None:
    with pytest.raises(ManifestError, match=f"^r.csv:1: the CSV header .*{message}"):
        parse(content, name="r.csv")


def test_a_binary_file_is_refused_whole_not_a_problem_per_line() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
    with pytest.raises(ManifestError, match=r"^scan.png:1: not valid UTF-8 .* not a manifest\?"):
        parse(png, name="scan.png")


# --- long lines, /dev/zero, chunks --------------------------------------------------


def test_a_line_over_the_limit_is_one_problem_and_the_rest_is_read() -> None:
    long_row = '{"id": "big", "path": "a.png", "blob": "' + "x" * 5000 + '"}'
    entries = parse(f"{GOOD}\n{long_row}\n{GOOD}\n", max_line_bytes=1000)
    assert kinds(entries) == ["row", "bad", "row"]
    assert problem(entries, 1).source == "rows.jsonl:2"
    assert why(problem(entries, 1)) == "line longer than 1000 bytes: skipped"


def test_a_line_exactly_at_the_limit_is_read() -> None:
    row = '{"id": "a", "path": "a.png"}'
    assert only(parse(row + "\r\n", max_line_bytes=len(row) + 1)).error is None


async def test_dev_zero_is_one_problem_then_an_error_not_a_hang() -> None:
    reader = ManifestReader(
        "/dev/zero", format=ManifestFormat.JSONL, max_line_bytes=1024, max_skip_bytes=256 * 1024
    )
    entries: list[SourceItem] = []

    async def read_all() -> None:
        async for entry in iter_manifest(reader):
            entries.append(entry)

    with pytest.raises(ManifestError, match=r"^/dev/zero:1: no line end within 263168 bytes"):
        await read_all()
    assert [problem(entries).source] == ["/dev/zero:1"]


async def test_dev_zero_before_the_format_is_known_is_refused_at_once() -> None:
    with pytest.raises(ManifestError, match=r"^/dev/zero:1: longer than 1024 bytes before any"):
        async for _ in iter_manifest(ManifestReader("/dev/zero", max_line_bytes=1024)):
            pass


SAMPLE = (
    b"\xef\xbb\xbf"
    + "\r\n".join(
        [
            "id,path,url,note",
            "1,a.png,,plain",
            '2,,https://h/b.png,"multi\nline, ""quoted"""',
            "3,c.png",
            "4,영수증.png,,한글",
            "x" * 300,
            "5,e.png,,last",
        ]
    ).encode()
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 100_000])
def test_any_chunking_gives_the_same_entries(size: int) -> None:
    whole = list(ManifestReader("r.csv", max_line_bytes=200).parse([SAMPLE]))
    chunks = [SAMPLE[n : n + size] for n in range(0, len(SAMPLE), size)]
    chunked = list(ManifestReader("r.csv", max_line_bytes=200).parse(chunks))
    assert [view(entry) for entry in chunked] == [view(entry) for entry in whole]
    assert [entry.identity for entry in whole] == ["1", "2", "r.csv:5", "4", "r.csv:7", "5"]
    assert kinds(whole) == ["row", "row", "bad", "row", "bad", "row"]
    assert item(whole, 3).metadata == {"note": "한글"}


def test_the_reader_counts_rows_and_problems() -> None:
    reader = ManifestReader("r.csv", max_line_bytes=200)
    list(reader.parse([SAMPLE]))
    assert (reader.rows, reader.problems) == (4, 2)


def test_duplicate_ids_are_passed_on_for_the_batch_to_send_once() -> None:
    # Like duplicate inputs today, they are the batch's to count and skip:
    # keyed by identity there, so resume and duplicates share one set.
    entries = parse('{"id": "a", "path": "a.png"}\n{"id": "a", "path": "b.png"}\n')
    assert [item(entries, n).identity for n in (0, 1)] == ["a", "a"]


# --- reading from files and pipes ----------------------------------------------------


async def collect(reader: ManifestReader) -> list[SourceItem]:
    return [entry async for entry in iter_manifest(reader)]


async def test_a_manifest_file_is_read_in_chunks(tmp_path: Path) -> None:
    rows = [{"id": str(n), "path": f"scans/{n}.png", "n": n} for n in range(3000)]
    path = tmp_path / "rows.ndjson"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    entries = await collect(ManifestReader(str(path)))
    assert [(item(entries, n).id, item(entries, n).metadata) for n in range(3000)] == [
        (row["id"], {"n": row["n"]}) for row in rows
    ]


async def test_a_missing_manifest_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await collect(ManifestReader(str(tmp_path / "nope.csv")))


@pytest.fixture
def stdin_pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.FileIO]:
    """Stdin becomes a pipe; the test writes to the returned end."""
    read_end, write_end = os.pipe()
    with open(read_end, "rb") as pipe_in, open(write_end, "wb", buffering=0) as pipe_out:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe_in))
        assert isinstance(pipe_out, io.FileIO)
        yield pipe_out


async def test_rows_from_a_pipe_come_out_as_their_line_completes(stdin_pipe: io.FileIO) -> None:
    entries = iter_manifest(ManifestReader("-"))
    stdin_pipe.write(b'{"id": "a", "url": "https://h/a.png"}\n{"id": "b"')
    # The first row arrives while the writer still holds the pipe open.
    first = await asyncio.wait_for(anext(entries), timeout=30)
    assert (first.id, first.source) == ("a", "https://h/a.png")
    stdin_pipe.write(b', "path": "b.png"}\n')
    stdin_pipe.close()
    rest = [entry async for entry in entries]
    assert [(entry.identity, entry.source) for entry in rest] == [("b", "b.png")]


# --- rows are inputs -------------------------------------------------------------------


class _EchoClient:
    async def send(self, payload: Payload) -> Recognition:
        return Recognition(OcrResult((), {"seen": payload.source}), payload.endpoint, 1, 1.0)


async def test_every_row_ends_as_one_record_with_its_id_and_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the rows' paths are relative; missing.png is missing
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.png").write_bytes(make_png("a"))
    entries = parse(
        '{"id": "a", "path": "./scans//a.png", "k": 1}\n{"id": "b", "url": "https://h/b.png"}\n'
        '{"id": "c", "path": "missing.png"}\n{"path": "x.png", "k": 2}\nnot json\n'
        '{"id": "b", "url": "https://h/b.png?re-signed"}\n'
    )

    async def items() -> AsyncIterator[SourceItem]:
        for entry in entries:
            yield entry

    sink = ListSink()
    skipped: list[tuple[str, str]] = []
    summary = await run_batch(
        _EchoClient(), items(), sink, concurrency=2, on_skip=lambda *s: skipped.append(s)
    )
    assert (summary.ok, summary.failed.total(), summary.duplicates) == (2, 3, 1)
    assert skipped == [("https://h/b.png?re-signed", "duplicate id 'b': already taken in this run")]
    got = {r.source: (r.id, r.ok, r.metadata, r.error and r.error.code) for r in sink.records}
    assert got == {
        "scans/a.png": ("a", True, {"k": 1}, None),  # the path tidied, as on a command line
        "https://h/b.png": ("b", True, {}, None),
        "missing.png": ("c", False, {}, "not_found"),
        "rows.jsonl:4": (None, False, {"k": 2}, BAD_ROW_CODE),
        "rows.jsonl:5": (None, False, None, BAD_ROW_CODE),
    }
    bad = next(r for r in sink.records if r.source == "rows.jsonl:4")
    assert bad.error is not None
    assert (bad.attempts, bad.error.local, bad.error.message) == (
        0,
        True,
        "rows.jsonl:4: the row has no id",
    )


def test_rows_from_mappings_follow_the_same_rules() -> None:
    # For recognize_many given dicts: no file, the same verdicts.
    good = entry_from_fields({"id": 7, "url": "https://h/a.png", "k": [1]}, "row 0")
    assert (good.id, good.source, good.metadata, good.error) == (
        "7",
        "https://h/a.png",
        {"k": [1]},
        None,
    )
    bad = entry_from_fields({"id": "x", "path": "a.png", "url": "https://h/a.png"}, "row 1")
    assert (bad.source, bad.id, why(bad)) == (
        "row 1",
        "x",
        "the row with id 'x' has both a path and a url: give one",
    )
