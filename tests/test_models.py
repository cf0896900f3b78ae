"""Tests for ocr_async.models: the values that flow through the pipeline."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ocr_async.models import (
    BoundingBox,
    Endpoint,
    ErrorInfo,
    ImageBytes,
    ImageFile,
    ImageUrl,
    Line,
    OcrResult,
    Recognition,
    Record,
    Word,
)

BOX = BoundingBox(1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 1.0, 4.0)
HELLO = Word("hello", 0.99, BOX)
WORLD = Word("world", 0.5, None)
KO = Word("안녕", None, None)


def result_of(*lines: tuple[Word, ...], **kwargs: Any) -> OcrResult:
    return OcrResult(lines=tuple(Line(words) for words in lines), raw={}, **kwargs)


# --- Endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "value", "suffix"),
    [
        pytest.param(Endpoint.GENERAL, "general", "/general", id="general"),
        pytest.param(Endpoint.CROPPING, "cropping", "/general/cropping", id="cropping"),
    ],
)
def test_endpoint(endpoint: Endpoint, value: str, suffix: str) -> None:
    assert endpoint.value == value
    assert str(endpoint) == value
    assert f"{endpoint}" == value
    assert endpoint == value
    assert Endpoint(value) is endpoint
    assert endpoint.path_suffix == suffix


def test_endpoint_members() -> None:
    assert list(Endpoint) == [Endpoint.GENERAL, Endpoint.CROPPING]
    with pytest.raises(ValueError, match="'general/cropping' is not a valid Endpoint"):
        Endpoint("general/cropping")


# --- Line / OcrResult / Recognition ------------------------------------------------


@pytest.mark.parametrize(
    ("words", "text"),
    [
        pytest.param((), "", id="empty"),
        pytest.param((HELLO,), "hello", id="one"),
        pytest.param((HELLO, WORLD), "hello world", id="two"),
        pytest.param((HELLO, KO, WORLD), "hello 안녕 world", id="non-ascii"),
        pytest.param((Word("", None, None), HELLO), " hello", id="empty-word-kept"),
    ],
)
def test_line_text(words: tuple[Word, ...], text: str) -> None:
    assert Line(words).text == text


@pytest.mark.parametrize(
    ("lines", "text", "values"),
    [
        pytest.param((), "", [], id="no-lines"),
        pytest.param(((HELLO, WORLD),), "hello world", ["hello", "world"], id="one-line"),
        pytest.param(
            ((HELLO,), (KO, WORLD)), "hello\n안녕 world", ["hello", "안녕", "world"], id="two-lines"
        ),
        pytest.param(
            ((HELLO,), (), (WORLD,)), "hello\n\nworld", ["hello", "world"], id="empty-line-kept"
        ),
    ],
)
def test_ocr_result_text_and_words(
    lines: tuple[tuple[Word, ...], ...], text: str, values: list[str]
) -> None:
    result = result_of(*lines)
    assert result.text == text
    assert isinstance(result.words, tuple)
    assert [w.value for w in result.words] == values


def test_ocr_result_defaults() -> None:
    result = OcrResult(lines=(), raw={"fileType": "png"})
    assert result.file_type is None
    assert result.slices_images is None
    assert result.no_text is False
    assert result.raw == {"fileType": "png"}


def test_words_keep_their_identity_and_boxes() -> None:
    result = result_of((HELLO, WORLD), (KO,))
    assert result.words == (HELLO, WORLD, KO)
    assert result.words[0].box is BOX


def test_recognition_text_is_the_result_text() -> None:
    rec = Recognition(
        result=result_of((HELLO,), (WORLD,)),
        endpoint=Endpoint.CROPPING,
        attempts=2,
        elapsed_ms=12.5,
    )
    assert rec.text == "hello\nworld"


# --- ErrorInfo / Record --------------------------------------------------------------


def test_error_info_to_json() -> None:
    info = ErrorInfo(code=4000003, message="INVALID_FILE_TYPE", local=True, retryable=False)
    data = info.to_json()
    assert list(data) == ["code", "message", "local", "retryable"]
    assert data == {
        "code": 4000003,
        "message": "INVALID_FILE_TYPE",
        "local": True,
        "retryable": False,
    }
    text = ErrorInfo("http_502", "HTTP 502", local=False, retryable=True).to_json()
    assert text["code"] == "http_502"


SUCCESS_RECORD = Record(
    source="scans/영수증.png",
    ok=True,
    endpoint=Endpoint.GENERAL,
    attempts=1,
    elapsed_ms=123.456,
    text="hello\nworld",
    result={"fileType": "png", "listOfInferTexts": []},
    error=None,
)
FAILURE_RECORD = Record(
    source="https://example.com/a.png",
    ok=False,
    endpoint=Endpoint.CROPPING,
    attempts=3,
    elapsed_ms=2000.04,
    text=None,
    result=None,
    error=ErrorInfo(
        code=5000503, message="API_TEMPORARILY_UNAVAILABLE", local=False, retryable=True
    ),
)


def test_record_to_json_key_order() -> None:
    keys = [
        "source", "ok", "endpoint", "attempts", "elapsed_ms", "text", "result", "error", "transform"
    ]  # fmt: skip
    assert list(SUCCESS_RECORD.to_json()) == keys
    assert list(FAILURE_RECORD.to_json()) == keys


def test_success_record_to_json_exact_line() -> None:
    data = SUCCESS_RECORD.to_json()
    assert type(data["endpoint"]) is str
    assert json.dumps(data, ensure_ascii=False) == (
        '{"source": "scans/영수증.png", "ok": true, "endpoint": "general", "attempts": 1, '
        '"elapsed_ms": 123.5, "text": "hello\\nworld", '
        '"result": {"fileType": "png", "listOfInferTexts": []}, "error": null, "transform": null}'
    )


def test_the_parsed_result_rides_along_but_is_not_written() -> None:
    parsed = OcrResult(lines=(), raw=SUCCESS_RECORD.result or {})
    carried = dataclasses.replace(SUCCESS_RECORD, parsed=parsed)
    assert carried.parsed is parsed
    assert carried.to_json() == SUCCESS_RECORD.to_json()
    assert carried == SUCCESS_RECORD  # not part of the record's identity
    assert "parsed" not in repr(carried)


def test_failure_record_to_json_exact_line() -> None:
    data = FAILURE_RECORD.to_json()
    assert type(data["endpoint"]) is str
    assert json.dumps(data, ensure_ascii=False) == (
        '{"source": "https://example.com/a.png", "ok": false, "endpoint": "cropping", '
        '"attempts": 3, "elapsed_ms": 2000.0, "text": null, "result": null, '
        '"error": {"code": 5000503, "message": "API_TEMPORARILY_UNAVAILABLE", '
        '"local": false, "retryable": true}, "transform": null}'
    )


@pytest.mark.parametrize(
    ("elapsed_ms", "shown"),
    [
        pytest.param(0.0, 0.0, id="zero"),
        pytest.param(0.04, 0.0, id="rounds-down-to-zero"),
        pytest.param(12.34, 12.3, id="down"),
        pytest.param(12.36, 12.4, id="up"),
        pytest.param(7.0, 7.0, id="whole"),
        pytest.param(1500, 1500.0, id="int"),
        pytest.param(86399999.99, 86400000.0, id="large"),
    ],
)
def test_record_elapsed_ms_rounded_to_a_tenth(elapsed_ms: float, shown: float) -> None:
    data = dataclasses.replace(SUCCESS_RECORD, elapsed_ms=elapsed_ms).to_json()
    assert data["elapsed_ms"] == shown


# --- inputs -----------------------------------------------------------------------------


def test_image_bytes_repr_hides_data() -> None:
    image = ImageBytes(b"\x89PNG secret pixels", name="scan.png")
    assert repr(image) == "ImageBytes(name='scan.png')"
    assert "secret" not in repr(image)
    assert str(image) == "scan.png"
    default = ImageBytes(b"\xff\xd8\xff")
    assert default.name == "image"
    assert str(default) == "image"
    assert repr(default) == "ImageBytes(name='image')"


@pytest.mark.parametrize(
    ("image", "text"),
    [
        pytest.param(ImageFile("scans/a.png"), "scans/a.png", id="file-str"),
        pytest.param(ImageFile(PurePosixPath("scans/b.jpg")), "scans/b.jpg", id="file-path"),
        pytest.param(ImageFile(Path("영수증.png")), "영수증.png", id="file-non-ascii"),
        pytest.param(
            ImageUrl("https://example.com/a.png?x=1"), "https://example.com/a.png?x=1", id="url"
        ),
        pytest.param(ImageBytes(b"..", name="clipboard"), "clipboard", id="bytes"),
    ],
)
def test_str_of_inputs(image: ImageFile | ImageUrl | ImageBytes, text: str) -> None:
    assert str(image) == text


# --- frozen, slotted -----------------------------------------------------------------------

FROZEN = [
    pytest.param(BOX, "x1", 9.0, id="BoundingBox"),
    pytest.param(HELLO, "value", "bye", id="Word"),
    pytest.param(Line((HELLO,)), "words", (), id="Line"),
    pytest.param(result_of((HELLO,)), "no_text", True, id="OcrResult"),
    pytest.param(
        Recognition(result_of(), Endpoint.GENERAL, 1, 1.0), "attempts", 2, id="Recognition"
    ),
    pytest.param(ErrorInfo(1, "m", local=False, retryable=False), "code", 2, id="ErrorInfo"),
    pytest.param(SUCCESS_RECORD, "ok", False, id="Record"),
    pytest.param(ImageFile("a.png"), "path", "b.png", id="ImageFile"),
    pytest.param(ImageBytes(b"x"), "data", b"y", id="ImageBytes"),
    pytest.param(ImageUrl("https://e.com/a.png"), "url", "https://e.com/b.png", id="ImageUrl"),
]


@pytest.mark.parametrize(("obj", "attribute", "value"), FROZEN)
def test_frozen(obj: object, attribute: str, value: object) -> None:
    before = getattr(obj, attribute)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attribute, value)
    assert getattr(obj, attribute) == before
    new_attribute = "not_a_field"
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError, TypeError)):
        setattr(obj, new_attribute, 1)
    assert not hasattr(obj, "__dict__")  # slots


def test_a_result_read_lazily_is_the_same_value() -> None:
    built: list[object] = []

    def read_lines(raw: Any) -> tuple[Line, ...]:
        built.append(raw)
        return (Line((HELLO, WORLD)),)

    lazy = OcrResult.from_raw({"k": 1}, read_lines, lambda raw: "hello world", file_type="png")
    assert lazy.text == "hello world"
    assert built == []  # the text alone builds no word
    eager = OcrResult((Line((HELLO, WORLD)),), {"k": 1}, file_type="png")
    assert lazy == eager
    assert lazy.lines is lazy.lines  # built once
    assert built == [{"k": 1}]
    assert copy.deepcopy(lazy) == eager
    assert pickle.loads(pickle.dumps(lazy)) == eager
    assert repr(lazy) == repr(eager)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lazy.raw = {}


def test_values_compare_and_hash_by_content() -> None:
    assert Word("a", 0.5, BOX) == Word("a", 0.5, BoundingBox(1, 2, 3, 2, 3, 4, 1, 4))
    assert hash(Line((HELLO, WORLD))) == hash(Line((HELLO, WORLD)))
    assert Line((HELLO,)) != Line((WORLD,))
    assert len({ImageUrl("https://e.com/a"), ImageUrl("https://e.com/a")}) == 1


def test_record_carries_a_transform_through_its_to_json() -> None:
    class Shrunk:
        def to_json(self) -> dict[str, object]:
            return {"shrunk": {"from_bytes": 8, "to_bytes": 4}}

    record = Record(
        "a.tiff#page=2", True, Endpoint.GENERAL, 1, 1.0, "t", {}, None, transform=Shrunk()
    )
    assert record.to_json()["transform"] == {"shrunk": {"from_bytes": 8, "to_bytes": 4}}


# --- Record.id / Record.metadata ---------------------------------------------------


def test_record_writes_id_after_source_and_metadata_last_only_when_set() -> None:
    metadata = {"customer": "acme", "pages": 3, "tags": ["a", "b"], "due": None}
    record = dataclasses.replace(SUCCESS_RECORD, id="doc-17", metadata=metadata)
    data = record.to_json()
    assert list(data) == [
        "source", "id", "ok", "endpoint", "attempts", "elapsed_ms", "text", "result", "error",
        "transform", "metadata",
    ]  # fmt: skip
    assert data["id"] == "doc-17"
    assert data["metadata"] == metadata
    # Written untouched: the very mapping, types kept.
    assert data["metadata"] is metadata
    assert data["source"] == SUCCESS_RECORD.source
    # Without them, not a key more: the exact line of before.
    assert "id" not in SUCCESS_RECORD.to_json()
    assert "metadata" not in SUCCESS_RECORD.to_json()


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        pytest.param({"id": "a"}, {"id"}, id="id-only"),
        pytest.param({"metadata": {}}, {"metadata"}, id="empty-metadata-is-written"),
        pytest.param({"id": "a", "metadata": {}}, {"id", "metadata"}, id="both"),
    ],
)
def test_record_id_and_metadata_are_each_written_when_not_none(
    fields: dict[str, Any], keys: set[str]
) -> None:
    data = dataclasses.replace(FAILURE_RECORD, **fields).to_json()
    assert set(data) - set(FAILURE_RECORD.to_json()) == keys
    assert next(iter(data)) == "source"
