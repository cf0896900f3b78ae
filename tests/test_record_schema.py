"""docs/record.schema.json and Record.to_json() agree on the optional id, metadata and sha256."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ocr_async.models import Endpoint, ErrorInfo, Record

SCHEMA = json.loads(
    (Path(__file__).resolve().parent.parent / "docs" / "record.schema.json").read_text("utf-8")
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

OK = Record("scans/a.png", True, Endpoint.GENERAL, 1, 3.0, "hi", {"listOfInferTexts": []}, None)
FAILED = Record(
    "rows.jsonl:17",
    False,
    Endpoint.GENERAL,
    0,
    0.0,
    None,
    None,
    ErrorInfo("bad_manifest_row", "rows.jsonl:17: no id", local=True, retryable=False),
)


def test_a_record_without_id_still_validates() -> None:
    VALIDATOR.validate(OK.to_json())
    VALIDATOR.validate(FAILED.to_json())


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        pytest.param(OK, {"id": "doc-1", "metadata": {"n": 1, "x": [None, 2.5]}}, id="ok"),
        pytest.param(OK, {"id": "17", "metadata": {}}, id="empty-metadata"),
        pytest.param(FAILED, {"id": "doc-1", "metadata": {"customer": "acme"}}, id="failed"),
        pytest.param(FAILED, {}, id="bad-row-without-id"),
        pytest.param(OK, {"sha256": "0" * 64}, id="sha256"),
        pytest.param(OK, {"id": "d", "sha256": "ab" * 32, "metadata": {}}, id="all-three"),
    ],
)
def test_records_with_id_and_metadata_validate(record: Record, fields: dict[str, Any]) -> None:
    VALIDATOR.validate(dataclasses.replace(record, **fields).to_json())


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"id": ""}, id="empty-id"),
        pytest.param({"id": 17}, id="integer-id-not-text"),
        pytest.param({"id": None}, id="null-id"),
        pytest.param({"metadata": ["a"]}, id="metadata-not-object"),
        pytest.param({"metadata": None}, id="null-metadata"),
        pytest.param({"sha": "x"}, id="still-no-other-key"),
        pytest.param({"sha256": "AB" * 32}, id="sha256-upper-case"),
        pytest.param({"sha256": "0" * 63}, id="sha256-short"),
        pytest.param({"sha256": None}, id="sha256-null"),
    ],
)
def test_the_schema_refuses_a_wrong_id_or_metadata(change: dict[str, Any]) -> None:
    document = {**OK.to_json(), "id": "doc-1", "metadata": {}, **change}
    assert not VALIDATOR.is_valid(document)


def test_sha256_is_written_only_when_set_before_metadata() -> None:
    assert "sha256" not in OK.to_json()
    document = dataclasses.replace(OK, id="d", sha256="0" * 64, metadata={}).to_json()
    assert list(document)[-2:] == ["sha256", "metadata"]


def test_a_pdf_page_and_a_pdf_that_cannot_be_opened_validate() -> None:
    from ocr_async.imaging import Transform

    page = Transform(converted_from="pdf", page=3, pages=5, size=(2481, 3508), dpi=300,
                     notes=("rendered page 3/5 at 300 dpi as PNG",))  # fmt: skip
    record = dataclasses.replace(OK, source="book.pdf#page=3", transform=page)
    assert record.to_json()["transform"] == {
        "converted_from": "pdf",
        "page": 3,
        "pages": 5,
        "size": [2481, 3508],
        "dpi": 300,
        "note": "rendered page 3/5 at 300 dpi as PNG",
    }
    VALIDATOR.validate(record.to_json())
    error = ErrorInfo(
        "pdf_encrypted", "book.pdf: the PDF is encrypted", local=True, retryable=False
    )
    VALIDATOR.validate(dataclasses.replace(FAILED, source="book.pdf", error=error).to_json())
