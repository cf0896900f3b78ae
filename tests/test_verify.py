"""verify: every expected input has exactly one record; the missing, duplicated, failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ocr_async.emulator import make_png
from ocr_async.models import (
    Endpoint,
    ErrorInfo,
    OcrResult,
    Payload,
    Recognition,
    Record,
    SourceItem,
)
from ocr_async.outputs.jsonl import JsonlSink, encode_record
from ocr_async.pipeline.batch import run_batch
from ocr_async.pipeline.manifest import ManifestReader, iter_manifest
from ocr_async.pipeline.resume import NotAnOutputError, record_identity
from ocr_async.pipeline.sources import iter_inputs
from ocr_async.pipeline.verify import (
    Finding,
    FindingKind,
    Verdict,
    Verification,
    verify_output,
)


class Page:
    def __init__(self, page: int, pages: int) -> None:
        self.page, self.pages = page, pages

    def to_json(self) -> dict[str, Any]:
        return {"converted_from": "tiff", "page": self.page, "pages": self.pages}


def ok(source: str, **fields: Any) -> Record:
    return Record(source, True, Endpoint.GENERAL, 1, 1.0, "t", {}, None, **fields)


def failed(source: str, *, retryable: bool = False, code: int | str = 4000003) -> Record:
    error = ErrorInfo(code, "INVALID_FILE_TYPE", local=True, retryable=retryable)
    return Record(source, False, Endpoint.GENERAL, 0, 0.0, None, None, error)


def write(path: Path, *records: Record, tail: bytes = b"") -> str:
    path.write_bytes(b"".join(encode_record(record) for record in records) + tail)
    return str(path)


def check(output: str, expected: list[str], **options: Any) -> tuple[Any, list[Finding]]:
    findings: list[Finding] = []
    report = verify_output(output, expected, on_finding=findings.append, **options)
    return report, findings


def test_a_complete_output_with_all_ok(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png"), ok("b.png"), ok("https://h/c.png"))
    report, findings = check(out, ["a.png", "https://h/c.png", "b.png"])
    assert findings == []
    assert report.verdict is Verdict.COMPLETE
    assert (report.expected, report.records, report.ok) == (3, 3, 3)


def test_failures_are_listed_with_code_and_whether_retry_failed_takes_them(
    tmp_path: Path,
) -> None:
    out = write(
        tmp_path / "out.jsonl",
        ok("a.png"),
        failed("b.png"),
        failed("c.png", retryable=True, code="timeout"),
    )
    report, findings = check(out, ["a.png", "b.png", "c.png"])
    assert report.verdict is Verdict.COMPLETE_WITH_FAILURES
    assert (report.failed, report.failed_retryable) == (2, 1)
    assert findings == [
        Finding(FindingKind.FAILED, "b.png", 2, 4000003, "INVALID_FILE_TYPE", False),
        Finding(FindingKind.FAILED, "c.png", 3, "timeout", "INVALID_FILE_TYPE", True),
    ]


def test_an_incomplete_output_names_what_is_missing(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("b.png"))
    report, findings = check(out, ["a.png", "b.png", "c.png"])
    assert report.verdict is Verdict.MISMATCH
    assert report.missing == 2
    assert findings == [
        Finding(FindingKind.MISSING, "a.png"),
        Finding(FindingKind.MISSING, "c.png"),
    ]


def test_a_duplicated_identity_is_named_once_and_every_extra_record_counted(
    tmp_path: Path,
) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png"), ok("b.png"), failed("a.png"), ok("a.png"))
    report, findings = check(out, ["a.png", "b.png"])
    assert report.verdict is Verdict.MISMATCH
    assert (report.duplicated, report.extra_records, report.failed) == (1, 2, 1)
    assert [(f.kind, f.identity, f.line) for f in findings] == [
        (FindingKind.DUPLICATED, "a.png", 3),
        (FindingKind.FAILED, "a.png", 3),
    ]


def test_records_nobody_expected_are_unexpected(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png"), ok("other/x.png"))
    report, findings = check(out, ["a.png"])
    assert report.verdict is Verdict.MISMATCH
    assert findings == [Finding(FindingKind.UNEXPECTED, "other/x.png", 2)]


def test_inputs_given_twice_are_expected_once(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png"))
    report, findings = check(out, ["a.png", "a.png"])
    assert findings == []
    assert (report.expected, report.expected_repeats, report.verdict) == (1, 1, Verdict.COMPLETE)


# --- by id -------------------------------------------------------------------------------


def test_by_id_a_re_signed_url_is_still_its_row(tmp_path: Path) -> None:
    # The same rows, run twice: the second run's URLs carry new signatures.
    out = write(
        tmp_path / "out.jsonl",
        ok("https://h/a.png?sig=NEW", id="doc-a", metadata={}),
        ok("scans/b.png", id="doc-b", metadata={"k": 1}),
    )
    report, findings = check(out, ["doc-a", "doc-b"], by_id=True)
    assert (findings, report.verdict) == ([], Verdict.COMPLETE)
    # By source the same output proves nothing about the rows.
    report, _ = check(out, ["doc-a", "doc-b"])
    assert (report.missing, report.unexpected) == (2, 2)


def test_by_id_a_duplicated_id_with_two_sources_is_found(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png", id="1"), ok("b.png", id="1"))
    report, findings = check(out, ["1"], by_id=True)
    assert findings == [Finding(FindingKind.DUPLICATED, "1", 2)]
    assert report.verdict is Verdict.MISMATCH


def test_by_id_a_bad_row_without_id_is_known_by_its_place(tmp_path: Path) -> None:
    problem = failed("rows.jsonl:2", code="bad_manifest_row")
    out = write(tmp_path / "out.jsonl", ok("a.png", id="a"), problem)
    report, findings = check(out, ["a", "rows.jsonl:2"], by_id=True)
    assert report.verdict is Verdict.COMPLETE_WITH_FAILURES
    assert [(f.kind, f.identity) for f in findings] == [(FindingKind.FAILED, "rows.jsonl:2")]


# --- pages ---------------------------------------------------------------------------------


def test_pages_stand_for_their_file_and_are_checked_for_duplicates(tmp_path: Path) -> None:
    pages = [ok(f"scan.tiff#page={n}", transform=Page(n, 2)) for n in (1, 2)]
    out = write(tmp_path / "out.jsonl", *pages, ok("a.png"))
    assert check(out, ["scan.tiff", "a.png"])[1] == []
    out = write(tmp_path / "twice.jsonl", *pages, pages[1])
    assert check(out, ["scan.tiff"])[1] == [Finding(FindingKind.DUPLICATED, "scan.tiff#page=2", 3)]


def test_a_name_that_only_looks_like_a_page_is_not_one(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("x.png#page=2"))
    report, _ = check(out, ["x.png"])
    assert (report.missing, report.unexpected) == (1, 1)


def test_pages_by_id_carry_the_rows_id(tmp_path: Path) -> None:
    pages = [ok(f"scan.tiff#page={n}", transform=Page(n, 2), id="doc") for n in (1, 2)]
    out = write(tmp_path / "out.jsonl", *pages)
    assert check(out, ["doc"], by_id=True)[1] == []
    assert record_identity(pages[1].to_json(), by_id=True) == ("doc#page=2", "doc")
    assert record_identity(pages[1].to_json(), by_id=False) == ("scan.tiff#page=2", "scan.tiff")


# --- the file ------------------------------------------------------------------------------


def test_a_torn_last_line_is_counted_and_its_input_is_missing(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png"), tail=b'{"source":"b.png","ok":tr')
    report, findings = check(out, ["a.png", "b.png"])
    assert report.torn == 1
    assert findings == [Finding(FindingKind.MISSING, "b.png")]
    assert (tmp_path / "out.jsonl").read_bytes().endswith(b"tr")  # verify changes nothing


@pytest.mark.parametrize(
    ("content", "why"),
    [
        pytest.param(b"# notes\n", "line 1 is not a JSON object", id="text"),
        pytest.param(encode_record(ok("a.png")) + b"\n", "line 2 is blank", id="blank-line"),
        pytest.param(b'{"a": 1}\n', "line 1 is a JSON object without the record keys", id="json"),
        pytest.param(b"\x89PNG" + bytes(70_000), "line 1 is not a JSON object", id="no-newline"),
        pytest.param(b'{"other": 1}', "line 1 is not a record, and it has no line end", id="tail"),
    ],
)
def test_a_file_that_is_not_an_output_is_refused(tmp_path: Path, content: bytes, why: str) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(content)
    with pytest.raises(NotAnOutputError, match=f"^{path} is not an ocr-async output: {why}"):
        verify_output(str(path), ["a.png"])


def test_a_missing_output_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        verify_output(str(tmp_path / "none.jsonl"), [])


def test_the_steps_run_in_order(tmp_path: Path) -> None:
    out = write(tmp_path / "out.jsonl", ok("a.png"))
    verification = Verification(out)
    with pytest.raises(RuntimeError, match="in order"):
        verification.expect("a.png")
    verification.read_output(print)
    verification.read_unexpected(print)  # expecting nothing is allowed
    with pytest.raises(RuntimeError, match="in order"):
        verification.expect("a.png")
    assert verification.report.unexpected == 1


# --- a real run, then verify -------------------------------------------------------------


class _Client:
    """Recognizes whatever the pre-check stage lets through."""

    async def send(self, payload: Payload) -> Recognition:
        return Recognition(OcrResult((), {}), payload.endpoint, 1, 1.0)


async def test_a_folder_run_verifies_against_the_same_inputs(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    (scans / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.jpg"):
        (scans / name).write_bytes(make_png(name))
    for name in ("bad.png", "notes.txt"):  # bad.png is no PNG: refused by the pre-check
        (scans / name).write_bytes(b"x")
    out = tmp_path / "out.jsonl"
    async with JsonlSink(str(out)) as sink:
        await run_batch(_Client(), iter_inputs([str(scans)]), sink, concurrency=2)
    verification = Verification(str(out))
    findings: list[Finding] = []
    verification.read_output(findings.append)
    async for item in iter_inputs([str(scans)]):
        if (finding := verification.expect(item.source)) is not None:
            findings.append(finding)
    verification.read_unexpected(findings.append)
    assert [(f.kind, f.identity) for f in findings] == [(FindingKind.FAILED, f"{scans}/bad.png")]
    assert verification.report.verdict is Verdict.COMPLETE_WITH_FAILURES
    assert verification.report.expected == 3


async def test_a_manifest_run_verifies_by_id_read_from_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the rows' paths are relative
    (tmp_path / "b.png").write_bytes(make_png("b"))
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text(
        '{"id": "a", "url": "https://h/a.png?sig=1"}\n{"path": "x.png"}\n'
        '{"id": "b", "path": "b.png", "k": 2}\n{"id": "c", "path": "c.png"}\n'
    )

    async def items() -> AsyncIterator[SourceItem]:
        async for entry in iter_manifest(ManifestReader(str(manifest))):
            if entry.id != "c":  # c: dropped on purpose
                yield entry

    out = tmp_path / "out.jsonl"
    async with JsonlSink(str(out)) as sink:
        await run_batch(_Client(), items(), sink, concurrency=2)
    verification = Verification(str(out), by_id=True)
    findings: list[Finding] = []
    verification.read_output(findings.append)
    async for entry in iter_manifest(ManifestReader(str(manifest))):
        if (finding := verification.expect(entry.identity)) is not None:
            findings.append(finding)
    verification.read_unexpected(findings.append)
    # The bad row has its failed record, named by its place.
    assert [(f.kind, f.identity) for f in findings] == [
        (FindingKind.FAILED, f"{manifest}:2"),
        (FindingKind.MISSING, "c"),
    ]
    assert verification.report.verdict is Verdict.MISMATCH
