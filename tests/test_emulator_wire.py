"""Tests for ocr_async.emulator.wire: envelopes, result objects and request bodies, as bytes.

No socket here: the handlers' tests (test_emulator_handlers.py) send the
same bytes over loopback.
"""

from __future__ import annotations

import json

import pytest

from ocr_async.emulator import RESULT_MESSAGES, make_png
from ocr_async.emulator.wire import build_result, envelope, image_url, multipart_field
from ocr_async.protocol import NO_TEXT_CODE, RESULT_CODES


@pytest.mark.parametrize(
    ("size", "resolution"),
    [
        ((1280, 720), "normal"),
        ((720, 1280), "normal"),
        ((1279, 720), "low"),
        ((1280, 719), "low"),
        ((64, 32), "low"),
        (None, "low"),
    ],
)
def test_resolution_is_low_under_1280x720(size: tuple[int, int] | None, resolution: str) -> None:
    assert build_result("png", [["x"]], size, cropping=False)["resolution"] == resolution


@pytest.mark.parametrize(
    ("size", "slices"),
    [
        ((100, 100), 1),
        ((250, 100), 1),  # exactly 1:2.5
        ((251, 100), 2),
        ((1000, 250), 2),
        ((2000, 200), 4),
        ((200, 2000), 4),
        (None, 1),
    ],
)
def test_slices_images_follow_the_aspect_ratio(size: tuple[int, int] | None, slices: int) -> None:
    result = build_result("jpg", [["x"]], size, cropping=True)
    assert result["slicesImages"] == slices
    assert "slicesImages" not in build_result("jpg", [["x"]], size, cropping=False)


def test_multipart_field_parsing() -> None:
    png = make_png("x")
    body = (
        b"preamble to ignore\r\n"
        b"--b-1\r\n"
        b"\r\n"  # a part without headers
        b"anonymous\r\n"
        b"--b-1\r\n"
        b'Content-Disposition: form-data; name="note"\r\n\r\n'
        b"hello\r\n"
        b"--b-1\r\n"
        b'content-disposition: form-data; name="image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--b-1--\r\n"
    )
    content_type = 'multipart/form-data; boundary="b-1"'
    assert multipart_field(body, content_type, "image") == png
    assert multipart_field(body, content_type, "note") == b"hello"
    assert multipart_field(body, content_type, "missing") is None
    assert multipart_field(body, "multipart/form-data; boundary=other", "image") is None
    assert multipart_field(body[:-40], content_type, "image") is None


def test_every_message_is_for_a_code_the_client_knows() -> None:
    assert set(RESULT_MESSAGES) - {0, NO_TEXT_CODE} <= set(RESULT_CODES)
    # Verbatim from the API guide's common error table.
    assert RESULT_MESSAGES[-1] == "Unknown error."
    assert RESULT_MESSAGES[4000005] == "Required headers is missing."
    assert RESULT_MESSAGES[4000006] == (
        "Api call limit exceeded, If you need to adjust the limit, please contact customer service."
    )
    assert RESULT_MESSAGES[4131000] == (
        "Request size is larger than permissible limit. the permissible limit is 5mb."
    )


def test_envelopes_are_compact_utf8_json_with_the_documented_message() -> None:
    assert envelope(4000006) == json.dumps(
        {
            "header": {
                "isSuccessful": False,
                "resultCode": 4000006,
                "resultMessage": RESULT_MESSAGES[4000006],
            }
        },
        separators=(",", ":"),
    ).encode("utf-8")
    success = envelope(0, {"text": "안녕"})
    assert json.loads(success) == {
        "header": {"isSuccessful": True, "resultCode": 0, "resultMessage": "SUCCESS"},
        "result": {"text": "안녕"},
    }
    assert "안녕".encode() in success  # raw, not \\u-escaped
    # A code the emulator has no wording for takes the client's name, or a fallback.
    assert json.loads(envelope(5005001))["header"]["resultMessage"] == RESULT_CODES[5005001][0]
    assert json.loads(envelope(123))["header"]["resultMessage"] == "Unknown error."


@pytest.mark.parametrize(
    ("body", "url"),
    [
        pytest.param(
            b'{"imageUrl": " http://127.0.0.1/a.png "}', "http://127.0.0.1/a.png", id="ok"
        ),
        pytest.param(b"not json", None, id="not-json"),
        pytest.param(b'["imageUrl"]', None, id="not-an-object"),
        pytest.param(b"{}", None, id="no-url"),
        pytest.param(b'{"imageUrl": 7}', None, id="not-a-string"),
        pytest.param(b'{"imageUrl": "  "}', None, id="blank"),
    ],
)
def test_image_url_of_a_json_body(body: bytes, url: str | None) -> None:
    assert image_url(body) == url
