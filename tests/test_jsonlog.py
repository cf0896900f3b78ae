"""--log-format json: one strict JSON object per line, whatever is logged."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocr_async.outputs.jsonlog import JsonFormatter


def strict_loads(line: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ocr_async.test_jsonlog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    # Another test's library may have left its record factory installed
    # (OCRmyPDF's adds pageno): each test here starts from the standard one.
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        yield logger, stream
    finally:
        logging.setLogRecordFactory(factory)
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [strict_loads(line) for line in text.splitlines()]


def test_one_object_per_line_with_time_level_logger_message(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.warning("%s: attempt %d failed\nsecond line", "scans/영수증.png", 2)
    logger.info("done")
    first, second = lines(stream)
    assert list(first) == ["time", "level", "logger", "message"]
    assert first["level"] == "WARNING"
    assert first["logger"] == "ocr_async.test_jsonlog"
    assert first["message"] == "scans/영수증.png: attempt 2 failed\nsecond line"
    assert "영수증" in stream.getvalue()  # readable, not escaped
    assert second["message"] == "done"


def test_the_time_is_utc_iso_8601_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, "f.py", 1, "m", None, None)
    record.created = 1_700_000_000.1234
    assert strict_loads(JsonFormatter().format(record))["time"] == "2023-11-14T22:13:20.123Z"


def test_extra_fields_follow_and_a_taken_name_gets_a_prefix(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info(
        "record written",
        extra={"source": "a.png", "attempts": 3, "codes": [4000006], "level": "mine"},
    )
    (line,) = lines(stream)
    assert line["source"] == "a.png"
    assert line["attempts"] == 3
    assert line["codes"] == [4000006]
    assert (line["level"], line["extra_level"]) == ("INFO", "mine")
    assert list(line)[4:] == ["source", "attempts", "codes", "extra_level"]


def test_values_json_cannot_hold_are_made_strict(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    cycle: list[Any] = [1]
    cycle.append(cycle)
    logger.info(
        "rate",
        extra={
            "rate": float("inf"),
            "low": float("-inf"),
            "ratio": float("nan"),
            "nested": {"x": [float("nan"), 1.5]},
            "path": Path("scans/a.png"),
            "by_key": {(1, 2): "tuple key", 3: "int key", None: "none"},
            "cycle": cycle,
        },
    )
    (line,) = lines(stream)
    assert (line["rate"], line["low"], line["ratio"]) == ("Infinity", "-Infinity", "NaN")
    assert line["nested"] == {"x": ["NaN", 1.5]}
    assert line["path"] == "scans/a.png"
    assert line["by_key"] == {"[1, 2]": "tuple key", "3": "int key", "null": "none"}
    assert line["cycle"] == [1, "<cycle>"]


def test_a_plain_object_takes_the_fast_path_as_its_str(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.info("x", extra={"path": Path("a.png"), "n": 1.5})
    (line,) = lines(stream)
    assert (line["path"], line["n"]) == ("a.png", 1.5)


def test_a_lone_surrogate_is_written_as_an_ascii_escape(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.warning("cannot read %s", "scans/\udcff.png")
    text = stream.getvalue()
    text.encode("utf-8")  # writable to any UTF-8 stream
    assert lines(stream)[0]["message"] == "cannot read scans/\udcff.png"
    assert "\\udcff" in text


def test_exceptions_and_stacks_are_fields(logged: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = logged
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("unexpected error on %s", "a.png")
    logger.info("here", stack_info=True)
    failure, stacked = lines(stream)
    assert failure["level"] == "ERROR"
    assert failure["exception"].startswith("Traceback (most recent call last):")
    assert failure["exception"].endswith("RuntimeError: boom")
    assert stacked["stack"].startswith("Stack (most recent call last):")


def test_what_a_record_factory_adds_to_every_record_is_not_an_extra(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    # OCRmyPDF installs a factory that gives every record a pageno.
    logger, stream = logged
    original = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        record.pageno = 3
        return record

    logging.setLogRecordFactory(factory)
    try:
        logger.info("with a factory", extra={"source": "a.png"})
    finally:
        logging.setLogRecordFactory(original)
    logger.info("without", extra={"pageno": 4})
    first, second = lines(stream)
    assert list(first) == ["time", "level", "logger", "message", "source"]
    assert second["pageno"] == 4  # given by the call: an extra again
