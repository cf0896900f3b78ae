"""Tests for ocr_async.protocol: result codes, pre-checks, requests, responses.

The expected values come from the API guide (``shared/spec/000_*.txt``, whose
sample answers are copied verbatim into ``tests/data/protocol/guide_*.json``)
and from API-FACTS.md, never from the module under test.
"""

from __future__ import annotations

import ast
import asyncio
import email
import email.policy
import json
import math
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader

import ocr_async.protocol
from ocr_async.errors import (
    ApiError,
    AuthError,
    HttpStatusError,
    ImageDownloadError,
    InvalidRequestError,
    InvalidTokenError,
    LocalCheckError,
    MalformedResponseError,
    OcrError,
    RateLimitedError,
    ServerFailureError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
    UnknownApiError,
)
from ocr_async.models import BoundingBox, Endpoint, Line, OcrResult, Word
from ocr_async.protocol import (
    AUTH_HEADER,
    BOUNDARY_LENGTH,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_BYTES,
    LEGACY_BASE_URL,
    NO_TEXT_CODE,
    RESULT_CODES,
    ImageType,
    PreparedRequest,
    assemble_file_request,
    assemble_url_request,
    build_file_request,
    build_url_request,
    check_body_size,
    check_image_bytes,
    check_image_url,
    decode_json,
    endpoint_url,
    error_for_code,
    multipart_size,
    new_boundary,
    parse_response,
    parse_result,
    parse_retry_after,
    sniff_image_type,
)

DATA = Path(__file__).parent / "data" / "protocol"
GUIDE_GENERAL = (DATA / "guide_general_success.json").read_bytes()
GUIDE_CROPPING = (DATA / "guide_cropping_success.json").read_bytes()
GUIDE_FAILURE = (DATA / "guide_failure.json").read_bytes()
REAL_SHAPE = (DATA / "real_shape_multiline.json").read_bytes()

TOKEN = "tok-S3CRET-6f1d2a9c"  # distinctive, so a leak is easy to spot
APPKEY = "AbCdEf0123456789"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64))
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00"
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 "
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"

# (code, resultKey, resultMessage as NHN documents it, class, retryable). Keys
# and messages: TOAST-DOCS/OCR ko/general-ocr-error-code.md and the seed guide;
# classes and "retry?" column: API-FACTS.md.
CODE_TABLE = [
    pytest.param(-1, "FAIL", "Unknown error.", ServerFailureError, True, id="-1"),
    pytest.param(400, "BAD_REQUEST", "Bad Request", InvalidRequestError, False, id="400"),
    pytest.param(401, "UNAUTHORIZED", "Unauthorized", AuthError, False, id="401"),
    pytest.param(403, "FORBIDDEN", "Forbidden", AuthError, False, id="403"),
    pytest.param(404, "NOT_FOUND", "Not Found", InvalidRequestError, False, id="404"),
    pytest.param(
        405, "METHOD_NOT_ALLOWED", "Method Not Allowed", InvalidRequestError, False, id="405"
    ),
    pytest.param(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "Unsupported Media Type",
        InvalidRequestError,
        False,
        id="415",
    ),
    pytest.param(
        4000001, "INVALID_PARAMETER", "Invalid parameter.", InvalidRequestError, False, id="4000001"
    ),
    pytest.param(
        4000002, "INVALID_FILE", "Invalid file.", InvalidRequestError, False, id="4000002"
    ),
    pytest.param(
        4000003, "INVALID_FILE_TYPE", "Invalid file type.", InvalidRequestError, False, id="4000003"
    ),
    pytest.param(
        4000004,
        "UPLOADED_FILE_IS_EMPTY",
        "Uploaded file is empty.",
        InvalidRequestError,
        False,
        id="4000004",
    ),
    pytest.param(
        4000005,
        "REQUIRED_HEADERS_MISSING",
        "Required headers is missing.",
        InvalidRequestError,
        False,
        id="4000005",
    ),
    pytest.param(
        4000006,
        "API_CALL_LIMIT_EXCEEDED",
        "Api call limit exceeded, If you need to adjust the limit, "
        "please contact customer service.",
        RateLimitedError,
        True,
        id="4000006",
    ),
    pytest.param(
        4000502,
        "GENERAL_OCR_IMAGE_SIZE_EXCEED",
        "Image size exceeded. Please check image URL.",
        InvalidRequestError,
        False,
        id="4000502",
    ),
    pytest.param(
        4000503,
        "GENERAL_OCR_IMAGE_DOWNLOAD_TIME_OUT",
        "Image download takes more than 20 seconds. Please check image URL.",
        ImageDownloadError,
        True,
        id="4000503",
    ),
    pytest.param(
        4000504,
        "GENERAL_OCR_IMAGE_DOWNLOAD_FAIL",
        "Image download fail. Please check image URL.",
        ImageDownloadError,
        True,
        id="4000504",
    ),
    pytest.param(
        4000505,
        "GENERAL_OCR_IMAGE_OUT_OF_RATIO",
        "Image out of ratio. Please check image.",
        InvalidRequestError,
        False,
        id="4000505",
    ),
    pytest.param(
        4010001,
        "INVALID_APPKEY_SECRETKEY",
        "Invalid appKey or secretKey.",
        AuthError,
        False,
        id="4010001",
    ),
    pytest.param(4010002, "INVALID_UUID", "Invalid uuid.", AuthError, False, id="4010002"),
    pytest.param(4010003, "NOT_ALLOWED_USER", "Not allowed user.", AuthError, False, id="4010003"),
    pytest.param(4010004, "INVALID_PROJECT", "Invalid project.", AuthError, False, id="4010004"),
    pytest.param(
        4010005, "UNAUTHORIZED_ROLE", "Unauthorized role.", AuthError, False, id="4010005"
    ),
    # Not retryable by itself: the client retries it once, after a new token.
    pytest.param(
        4010006, "INVALID_TOKEN", "Invalid token.", InvalidTokenError, False, id="4010006"
    ),
    pytest.param(
        4010007, "PERMISSION_DENIED", "Permission denied.", AuthError, False, id="4010007"
    ),
    pytest.param(
        4131000,
        "MAX_UPLOAD_SIZE_EXCEEDED",
        "Request size is larger than permissible limit. the permissible limit is 5mb.",
        InvalidRequestError,
        False,
        id="4131000",
    ),
    pytest.param(
        5000001, "INTERNAL_API_FAIL", "Internal Api fail.", ServerFailureError, True, id="5000001"
    ),
    pytest.param(
        5000002, "ERROR_PARSING_FAIL", "Error parsing fail.", ServerFailureError, True, id="5000002"
    ),
    pytest.param(
        5000003, "DATABASE_FAIL", "Database server error.", ServerFailureError, True, id="5000003"
    ),
    pytest.param(
        5000004,
        "RESOURCE_DELETE_FAIL",
        "All or some resource delete fail.",
        ServerFailureError,
        True,
        id="5000004",
    ),
    pytest.param(
        5000005, "FILE_READ_FAIL", "File read fail.", ServerFailureError, True, id="5000005"
    ),
    pytest.param(
        5000503,
        "API_TEMPORARILY_UNAVAILABLE",
        "The API you requested is temporarily unavailable. Please try again later.",
        TemporarilyUnavailableError,
        True,
        id="5000503",
    ),
    pytest.param(
        5005001,
        "OCR_GENERAL_API_FAIL",
        "General OCR Api fail.",
        ServerFailureError,
        True,
        id="5005001",
    ),
    pytest.param(
        5005002,
        "OCR_GENERAL_API_RETURN_EMPTY",
        "General OCR Api returned empty body.",
        ServerFailureError,
        True,
        id="5005002",
    ),
    pytest.param(
        5005003,
        "OCR_GENERAL_RECOGNITION_FAIL",
        "General OCR failed to recognize the image.",
        ServerFailureError,
        True,
        id="5005003",
    ),
]

DOCUMENTED_FAILURE_CODES = frozenset(
    {-1, 400, 401, 403, 404, 405, 415}
    | set(range(4000001, 4000007))
    | set(range(4000502, 4000506))
    | set(range(4010001, 4010008))
    | {4131000}
    | set(range(5000001, 5000006))
    | {5000503}
    | set(range(5005001, 5005004))
)


def envelope(code: Any, message: str = "", *, ok: Any = False, **extra: Any) -> bytes:
    """A JSON answer in the API's envelope."""
    document: dict[str, Any] = {
        "header": {"isSuccessful": ok, "resultCode": code, "resultMessage": message}
    }
    document.update(extra)
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def success(result: Any) -> bytes:
    return envelope(0, "SUCCESS", ok=True, result=result)


def box(*corners: float) -> dict[str, float]:
    return dict(zip(("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"), corners, strict=True))


def outcome(status: int, body: bytes) -> OcrResult | OcrError:
    """parse_response's answer; anything but an OcrError propagates and fails."""
    try:
        return parse_response(status, body)
    except OcrError as exc:
        return exc


# --- module hygiene -------------------------------------------------------------


def test_protocol_imports_no_io_modules() -> None:
    source = Path(ocr_async.protocol.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"aiohttp", "asyncio", "aiofiles", "socket", "requests"})


def test_constants() -> None:
    assert DEFAULT_BASE_URL == "https://api-ocr.nhncloudservice.com"
    assert LEGACY_BASE_URL == "https://ocr.api.nhncloudservice.com"
    assert AUTH_HEADER == "X-NHN-Authorization"
    assert DEFAULT_MAX_BYTES == 5 * 1024 * 1024
    assert NO_TEXT_CODE == 4000501


def test_guide_fixtures_hold_the_duplicated_key() -> None:
    # Guards the fixtures themselves: plain json.loads would lose stella/artois.
    for body in (GUIDE_GENERAL, GUIDE_CROPPING):
        assert body.count(b'"inferTexts"') == 2
        plain = json.loads(body)["result"]["listOfInferTexts"][0]["inferTexts"]
        assert plain == [{"value": "belgium", "conf": 0.99}]


# --- error_for_code -------------------------------------------------------------


@pytest.mark.parametrize(("code", "key", "message", "cls", "retryable"), CODE_TABLE)
def test_error_for_documented_code(
    code: int, key: str, message: str, cls: type[ApiError], retryable: bool
) -> None:
    err = error_for_code(code, message)
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.code == code
    assert err.local is False
    assert err.attempts == 0
    assert err.message == f"{key}: {message}"
    assert str(err) == f"[{code}] {key}: {message}"


@pytest.mark.parametrize(("code", "key", "message", "cls", "retryable"), CODE_TABLE)
def test_error_for_documented_code_without_message(
    code: int, key: str, message: str, cls: type[ApiError], retryable: bool
) -> None:
    err = error_for_code(code, "")
    assert type(err) is cls
    assert str(err) == f"[{code}] {key}"


def test_result_code_table_is_exactly_the_documented_failures() -> None:
    assert set(RESULT_CODES) == DOCUMENTED_FAILURE_CODES
    assert 0 not in RESULT_CODES
    assert NO_TEXT_CODE not in RESULT_CODES


def test_invalid_token_is_an_auth_error_that_is_not_retryable() -> None:
    err = error_for_code(4010006, "Invalid token.")
    assert isinstance(err, InvalidTokenError)
    assert isinstance(err, AuthError)
    assert err.retryable is False


@pytest.mark.parametrize(
    ("code", "cls", "retryable", "fallback"),
    [
        pytest.param(5000000, ServerFailureError, True, "server failure", id="5000000"),
        pytest.param(5000006, ServerFailureError, True, "server failure", id="5000006"),
        pytest.param(5000504, ServerFailureError, True, "server failure", id="5000504"),
        pytest.param(5005004, ServerFailureError, True, "server failure", id="5005004"),
        pytest.param(5999999, ServerFailureError, True, "server failure", id="5999999"),
        pytest.param(4010000, AuthError, False, "authorization failure", id="4010000"),
        pytest.param(4010008, AuthError, False, "authorization failure", id="4010008"),
        pytest.param(4019999, AuthError, False, "authorization failure", id="4019999"),
        pytest.param(4000000, InvalidRequestError, False, "invalid request", id="4000000"),
        pytest.param(4000007, InvalidRequestError, False, "invalid request", id="4000007"),
        pytest.param(4000506, InvalidRequestError, False, "invalid request", id="4000506"),
        pytest.param(4009999, InvalidRequestError, False, "invalid request", id="4009999"),
        pytest.param(4020000, InvalidRequestError, False, "invalid request", id="4020000"),
        pytest.param(4131001, InvalidRequestError, False, "invalid request", id="4131001"),
        pytest.param(4999999, InvalidRequestError, False, "invalid request", id="4999999"),
        pytest.param(3999999, UnknownApiError, False, "undocumented result code", id="3999999"),
        pytest.param(6000000, UnknownApiError, False, "undocumented result code", id="6000000"),
        pytest.param(-2, UnknownApiError, False, "undocumented result code", id="-2"),
        pytest.param(1, UnknownApiError, False, "undocumented result code", id="1"),
        pytest.param(402, UnknownApiError, False, "undocumented result code", id="402"),
        # HTTP-like codes in an envelope keep HTTP's meaning
        pytest.param(429, RateLimitedError, True, "too many requests", id="429"),
        pytest.param(500, ServerFailureError, True, "server failure", id="500"),
        pytest.param(503, ServerFailureError, True, "server failure", id="503"),
        pytest.param(600, UnknownApiError, False, "undocumented result code", id="600"),
        pytest.param(10**12, UnknownApiError, False, "undocumented result code", id="huge"),
    ],
)
def test_error_for_undocumented_code_by_family(
    code: int, cls: type[ApiError], retryable: bool, fallback: str
) -> None:
    err = error_for_code(code, "")
    assert type(err) is cls
    assert err.retryable is retryable
    assert err.code == code
    assert str(err) == f"[{code}] {fallback}"
    with_message = error_for_code(code, "Something new.")
    assert type(with_message) is cls
    assert str(with_message) == f"[{code}] Something new."


# --- sniff_image_type / check_image_bytes ----------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(PNG, "png", id="png"),
        pytest.param(b"\x89PNG\r\n\x1a\n", "png", id="png-magic-only"),
        pytest.param(JPEG, "jpg", id="jpeg-jfif"),
        pytest.param(b"\xff\xd8\xff\xe1\x00\x10Exif", "jpg", id="jpeg-exif"),
        pytest.param(b"\xff\xd8\xff", "jpg", id="jpeg-magic-only"),
        pytest.param(b"", None, id="empty"),
        pytest.param(b"\x89PNG\r\n\x1a", None, id="png-magic-short"),
        pytest.param(b"\x89PNG\n\x1a\n\x00", None, id="png-line-ending-mangled"),
        pytest.param(b"\xff\xd8", None, id="jpeg-magic-short"),
        pytest.param(GIF, None, id="gif"),
        pytest.param(WEBP, None, id="webp"),
        pytest.param(PDF, None, id="pdf"),
        pytest.param(b"BM\x36\x00\x0c\x00", None, id="bmp"),
        pytest.param(b"II*\x00\x08\x00", None, id="tiff"),
        pytest.param(b"hello, world", None, id="text"),
        pytest.param(b"  \x89PNG\r\n\x1a\n", None, id="png-magic-not-at-start"),
    ],
)
def test_sniff_image_type(data: bytes, expected: str | None) -> None:
    assert sniff_image_type(data) == expected


@pytest.mark.parametrize(
    ("data", "expected"), [pytest.param(PNG, "png", id="png"), pytest.param(JPEG, "jpg", id="jpg")]
)
def test_check_image_bytes_accepts(data: bytes, expected: str) -> None:
    assert check_image_bytes(data) == expected


# --- build_file_request ------------------------------------------------------------


def file_request(image: bytes = PNG, **overrides: Any) -> PreparedRequest:
    kwargs: dict[str, Any] = {
        "base_url": DEFAULT_BASE_URL,
        "appkey": APPKEY,
        "token": TOKEN,
        "endpoint": Endpoint.GENERAL,
        "image": image,
    }
    kwargs.update(overrides)
    return build_file_request(**kwargs)


def url_request(
    image_url: str = "https://example.com/example.jpg", **overrides: Any
) -> PreparedRequest:
    kwargs: dict[str, Any] = {
        "base_url": DEFAULT_BASE_URL,
        "appkey": APPKEY,
        "token": TOKEN,
        "endpoint": Endpoint.GENERAL,
        "image_url": image_url,
    }
    kwargs.update(overrides)
    return build_url_request(**kwargs)


@pytest.mark.parametrize(
    ("image", "filename", "content_type"),
    [
        pytest.param(PNG, "image.png", "image/png", id="png"),
        pytest.param(JPEG, "image.jpg", "image/jpeg", id="jpeg"),
    ],
)
def test_file_request_exact_bytes(image: bytes, filename: str, content_type: str) -> None:
    req = file_request(image, boundary="BOUNDARY-42")
    assert req.body == (
        b"--BOUNDARY-42\r\n"
        b'Content-Disposition: form-data; name="image"; filename="'
        + filename.encode()
        + b'"\r\nContent-Type: '
        + content_type.encode()
        + b"\r\n\r\n"
        + image
        + b"\r\n--BOUNDARY-42--\r\n"
    )
    assert dict(req.headers) == {
        "X-NHN-Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json",
        "Content-Type": "multipart/form-data; boundary=BOUNDARY-42",
    }
    assert req.url == f"https://api-ocr.nhncloudservice.com/v1.1/appkeys/{APPKEY}/general"


def test_file_request_default_boundary_is_random_and_valid() -> None:
    first, second = file_request(), file_request()
    boundaries = []
    for req in (first, second):
        match = re.fullmatch(r"multipart/form-data; boundary=(\S+)", req.headers["Content-Type"])
        assert match is not None
        boundary = match.group(1)
        assert re.fullmatch(r"ocr-async-[0-9a-f]{32}", boundary)
        assert len(boundary) <= 70  # RFC 2046
        assert req.body.startswith(f"--{boundary}\r\n".encode())
        assert req.body.endswith(f"\r\n--{boundary}--\r\n".encode())
        boundaries.append(boundary)
    assert boundaries[0] != boundaries[1]


def _parse_with_email(req: PreparedRequest) -> list[email.message.EmailMessage]:
    raw = b"Content-Type: " + req.headers["Content-Type"].encode() + b"\r\n\r\n" + req.body
    message = email.message_from_bytes(raw, policy=email.policy.HTTP)
    assert isinstance(message, email.message.EmailMessage)
    assert message.is_multipart()
    assert message.defects == []
    return list(message.iter_parts())  # type: ignore[arg-type]


# Image bytes that look like multipart framing must survive untouched.
TRICKY_PNG = (
    PNG + b"\r\n--not-the-boundary\r\n\r\nContent-Type: x\r\n" + bytes(range(256)) + b"\r\n"
)


@pytest.mark.parametrize(
    ("image", "filename", "content_type"),
    [
        pytest.param(PNG, "image.png", "image/png", id="png"),
        pytest.param(JPEG, "image.jpg", "image/jpeg", id="jpeg"),
        pytest.param(TRICKY_PNG, "image.png", "image/png", id="png-with-crlf-and-dashes"),
    ],
)
def test_file_request_parses_back_with_email(
    image: bytes, filename: str, content_type: str
) -> None:
    parts = _parse_with_email(file_request(image))
    assert len(parts) == 1
    part = parts[0]
    assert part.defects == []
    assert part.get_content_disposition() == "form-data"
    assert part.get_param("name", header="content-disposition") == "image"
    assert part.get_filename() == filename
    assert part.get_content_type() == content_type
    assert part.get_payload(decode=True) == image


@pytest.mark.parametrize(
    ("image", "filename", "content_type"),
    [
        pytest.param(PNG, "image.png", "image/png", id="png"),
        pytest.param(JPEG, "image.jpg", "image/jpeg", id="jpeg"),
        pytest.param(TRICKY_PNG, "image.png", "image/png", id="png-with-crlf-and-dashes"),
    ],
)
async def test_file_request_parses_back_with_aiohttp(
    image: bytes, filename: str, content_type: str
) -> None:
    req = file_request(image)
    loop = asyncio.get_running_loop()
    stream = StreamReader(BaseProtocol(loop), 2**16, loop=loop)
    stream.feed_data(req.body)
    stream.feed_eof()
    reader = aiohttp.MultipartReader(req.headers, stream)
    seen: list[tuple[str | None, str | None, str | None, bytes]] = []
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        seen.append((part.name, part.filename, part.headers.get("Content-Type"), await part.read()))
    assert seen == [("image", filename, content_type, image)]


URL_CASES = [
    pytest.param(
        DEFAULT_BASE_URL,
        "AbC123",
        Endpoint.GENERAL,
        "https://api-ocr.nhncloudservice.com/v1.1/appkeys/AbC123/general",
        id="general",
    ),
    pytest.param(
        DEFAULT_BASE_URL,
        "AbC123",
        Endpoint.CROPPING,
        "https://api-ocr.nhncloudservice.com/v1.1/appkeys/AbC123/general/cropping",
        id="cropping",
    ),
    pytest.param(
        DEFAULT_BASE_URL + "/",
        "AbC123",
        Endpoint.GENERAL,
        "https://api-ocr.nhncloudservice.com/v1.1/appkeys/AbC123/general",
        id="trailing-slash",
    ),
    pytest.param(
        DEFAULT_BASE_URL + "//",
        "AbC123",
        Endpoint.CROPPING,
        "https://api-ocr.nhncloudservice.com/v1.1/appkeys/AbC123/general/cropping",
        id="two-trailing-slashes",
    ),
    pytest.param(
        LEGACY_BASE_URL,
        "AbC123",
        Endpoint.GENERAL,
        "https://ocr.api.nhncloudservice.com/v1.1/appkeys/AbC123/general",
        id="legacy-host",
    ),
    pytest.param(
        "http://127.0.0.1:8765/proxy/",
        "AbC123",
        Endpoint.CROPPING,
        "http://127.0.0.1:8765/proxy/v1.1/appkeys/AbC123/general/cropping",
        id="emulator-with-path-prefix",
    ),
    pytest.param(
        DEFAULT_BASE_URL,
        "a/b c?d#e%f&g",
        Endpoint.GENERAL,
        "https://api-ocr.nhncloudservice.com/v1.1/appkeys/a%2Fb%20c%3Fd%23e%25f%26g/general",
        id="appkey-escaped",
    ),
    pytest.param(
        DEFAULT_BASE_URL,
        "키..",
        Endpoint.GENERAL,
        "https://api-ocr.nhncloudservice.com/v1.1/appkeys/%ED%82%A4../general",
        id="appkey-non-ascii",
    ),
]


@pytest.mark.parametrize(("base_url", "appkey", "endpoint", "expected"), URL_CASES)
def test_request_urls(base_url: str, appkey: str, endpoint: Endpoint, expected: str) -> None:
    assert endpoint_url(base_url, appkey, endpoint) == expected
    assert file_request(base_url=base_url, appkey=appkey, endpoint=endpoint).url == expected
    assert url_request(base_url=base_url, appkey=appkey, endpoint=endpoint).url == expected


@pytest.mark.parametrize(
    ("image", "code", "message_start"),
    [
        pytest.param(b"", 4000004, "[4000004] UPLOADED_FILE_IS_EMPTY", id="empty"),
        pytest.param(
            b"hello, world",
            4000003,
            "[4000003] INVALID_FILE_TYPE: not a JPEG or PNG by its first bytes "
            "(68 65 6c 6c 6f 2c 20 77)",
            id="text",
        ),
        pytest.param(
            GIF,
            4000003,
            "[4000003] INVALID_FILE_TYPE: not a JPEG or PNG by its first bytes "
            "(47 49 46 38 39 61 01 00)",
            id="gif",
        ),
        pytest.param(WEBP, 4000003, "[4000003] INVALID_FILE_TYPE", id="webp"),
        pytest.param(PDF, 4000003, "[4000003] INVALID_FILE_TYPE", id="pdf"),
        pytest.param(b"\x89PNG", 4000003, "[4000003] INVALID_FILE_TYPE", id="png-magic-cut"),
        pytest.param(b"\xff\xd8", 4000003, "[4000003] INVALID_FILE_TYPE", id="jpeg-magic-cut"),
        pytest.param(b"\x00", 4000003, "[4000003] INVALID_FILE_TYPE", id="one-nul"),
    ],
)
def test_file_request_pre_checks(image: bytes, code: int, message_start: str) -> None:
    with pytest.raises(LocalCheckError) as info:
        file_request(image)
    err = info.value
    assert err.code == code
    assert err.local is True
    assert err.retryable is False
    assert err.attempts == 0
    assert str(err).startswith(message_start)
    assert str(err).endswith("(not sent)")
    with pytest.raises(LocalCheckError) as direct:
        check_image_bytes(image)
    assert direct.value.code == code


def _framing_overhead(image: bytes) -> int:
    return len(file_request(image).body) - len(image)


@pytest.mark.parametrize(
    "kind_prefix", [pytest.param(PNG, id="png"), pytest.param(JPEG, id="jpeg")]
)
@pytest.mark.parametrize("limit", [pytest.param(1000, id="1000"), pytest.param(4096, id="4096")])
def test_size_limit_is_measured_on_the_whole_body(kind_prefix: bytes, limit: int) -> None:
    overhead = _framing_overhead(kind_prefix)
    assert overhead > 100  # the multipart head and tail are really counted
    at_limit = kind_prefix + b"\x00" * (limit - overhead - len(kind_prefix))
    req = file_request(at_limit, max_bytes=limit)
    assert len(req.body) == limit

    one_over = at_limit + b"\x00"
    with pytest.raises(LocalCheckError) as info:
        file_request(one_over, max_bytes=limit)
    err = info.value
    assert err.code == 4131000
    assert err.local is True
    assert err.retryable is False
    assert str(err) == (
        f"[4131000] MAX_UPLOAD_SIZE_EXCEEDED: request would be {limit + 1} bytes, "
        f"over the {limit}-byte limit (not sent)"
    )


def test_default_limit_counts_framing() -> None:
    overhead = _framing_overhead(PNG)
    fits = PNG + b"\x00" * (DEFAULT_MAX_BYTES - overhead - len(PNG))
    assert len(file_request(fits).body) == DEFAULT_MAX_BYTES
    # An image of exactly 5 MiB is refused: the request would be larger.
    exactly_5mib = PNG + b"\x00" * (DEFAULT_MAX_BYTES - len(PNG))
    with pytest.raises(LocalCheckError) as info:
        file_request(exactly_5mib)
    assert info.value.code == 4131000
    # The limit is settable (NHN now documents 20 MB).
    assert len(file_request(exactly_5mib, max_bytes=20 * 1024 * 1024).body) > DEFAULT_MAX_BYTES


def test_empty_is_reported_before_size() -> None:
    with pytest.raises(LocalCheckError) as info:
        file_request(b"", max_bytes=0)
    assert info.value.code == 4000004


# --- checking apart from assembling ---------------------------------------------------


def assembled(image: bytes, kind: ImageType, boundary: str) -> PreparedRequest:
    return assemble_file_request(
        base_url=DEFAULT_BASE_URL,
        appkey=APPKEY,
        token=TOKEN,
        endpoint=Endpoint.GENERAL,
        image=image,
        kind=kind,
        boundary=boundary,
    )


@pytest.mark.parametrize("image", [PNG, JPEG], ids=["png", "jpeg"])
def test_multipart_size_is_the_size_of_the_assembled_body(image: bytes) -> None:
    kind = check_image_bytes(image)
    for boundary in (new_boundary(), new_boundary()):
        assert len(boundary) == BOUNDARY_LENGTH
        assert len(assembled(image, kind, boundary).body) == multipart_size(kind, len(image))
    assert multipart_size("jpg", 0) == multipart_size("png", 0) + 1  # image/jpeg vs image/png


def test_check_body_size_allows_the_limit_and_refuses_a_byte_more() -> None:
    limit = multipart_size("png", len(PNG))
    check_body_size("png", len(PNG), limit)
    with pytest.raises(LocalCheckError) as raised:
        check_body_size("png", len(PNG), limit - 1)
    assert raised.value.code == 4131000


def test_assembling_checks_nothing() -> None:
    # The pre-check stage checked the payload; assembling only frames it.
    assert b'filename="image.png"' in assembled(b"", "png", new_boundary()).body
    url = assemble_url_request(
        base_url=DEFAULT_BASE_URL,
        appkey=APPKEY,
        token=TOKEN,
        endpoint=Endpoint.GENERAL,
        image_url="ftp://not-checked",
    )
    assert json.loads(url.body) == {"imageUrl": "ftp://not-checked"}


def test_build_file_request_is_the_checks_then_the_assembly() -> None:
    boundary = "ocr-async-" + "0" * 32
    checked = file_request(PNG, boundary=boundary)
    plain = assembled(PNG, "png", boundary)
    assert (checked.url, dict(checked.headers), checked.body) == (
        plain.url,
        dict(plain.headers),
        plain.body,
    )


# --- build_url_request / check_image_url ----------------------------------------


@pytest.mark.parametrize(
    "image_url",
    [
        pytest.param("https://example.com/example.jpg", id="guide-example"),
        pytest.param("http://example.com/a%20b.png?x=1&y=2#frag", id="query-and-fragment"),
        pytest.param("https://예시.kr/사진.png", id="non-ascii"),
        pytest.param('https://example.com/a"b\\c.png', id="json-escapes"),
    ],
)
def test_url_request(image_url: str) -> None:
    req = url_request(image_url, endpoint=Endpoint.CROPPING)
    assert json.loads(req.body) == {"imageUrl": image_url}
    assert req.url == f"https://api-ocr.nhncloudservice.com/v1.1/appkeys/{APPKEY}/general/cropping"
    assert dict(req.headers) == {
        "X-NHN-Authorization": f"Bearer {TOKEN}",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


def test_url_request_exact_body() -> None:
    assert url_request().body == b'{"imageUrl": "https://example.com/example.jpg"}'


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.com/a.png", id="http"),
        pytest.param("https://example.com/a.png", id="https"),
        pytest.param("HTTPS://EXAMPLE.COM/a.png", id="upper-case-scheme"),
        pytest.param("http://example.com:80/a.png", id="port-80"),
        pytest.param("https://example.com:443/a.png", id="port-443"),
        pytest.param("http://example.com:10000/a.png", id="port-10000"),
        pytest.param("http://example.com:11000/a.png", id="port-11000"),
        pytest.param("https://example.com:12000/a.png", id="port-12000"),
        pytest.param("http://example.com:0080/a.png", id="port-0080"),
        pytest.param("http://[2001:db8::1]:10000/a.png", id="ipv6-port"),
        pytest.param("http://203.0.113.7/a.png", id="ipv4"),
        pytest.param("https://user:pw@example.com/a.png", id="userinfo"),
        pytest.param("http://example.com", id="no-path"),
    ],
)
def test_check_image_url_accepts(url: str) -> None:
    assert check_image_url(url) is None  # type: ignore[func-returns-value]
    assert json.loads(url_request(url).body) == {"imageUrl": url}


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("ftp://example.com/a.png", id="ftp"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("data:image/png;base64,iVBORw0KGgo=", id="data"),
        pytest.param("mailto:someone@example.com", id="mailto"),
        pytest.param("example.com/a.png", id="no-scheme"),
        pytest.param("//example.com/a.png", id="scheme-relative"),
        pytest.param("", id="empty"),
        pytest.param("http:///a.png", id="no-host"),
        pytest.param("https://", id="scheme-only"),
        pytest.param("http://:80/a.png", id="port-without-host"),
        pytest.param("http://example.com:0/a.png", id="port-0"),
        pytest.param("http://example.com:79/a.png", id="port-79"),
        pytest.param("http://example.com:81/a.png", id="port-81"),
        pytest.param("http://example.com:8080/a.png", id="port-8080"),
        pytest.param("http://example.com:9999/a.png", id="port-9999"),
        pytest.param("http://example.com:12001/a.png", id="port-12001"),
        pytest.param("http://example.com:65535/a.png", id="port-65535"),
        pytest.param("http://h:99999/", id="port-out-of-range"),
        pytest.param("http://h:abc/", id="port-not-a-number"),
        pytest.param("http://h:-1/", id="port-negative"),
        pytest.param("http://h:+80/", id="port-with-sign"),
        pytest.param("http://[2001:db8::1/a.png", id="broken-ipv6"),
    ],
)
def test_check_image_url_refuses(url: str) -> None:
    for check in (lambda: check_image_url(url), lambda: url_request(url)):
        with pytest.raises(LocalCheckError) as info:
            check()
        err = info.value
        assert err.code == 4000001
        assert err.local is True
        assert err.retryable is False
        assert str(err).startswith("[4000001] INVALID_PARAMETER: ")
        assert str(err).endswith("(not sent)")
        assert TOKEN not in str(err)


# --- secrets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        pytest.param(lambda: file_request(PNG), "multipart/form-data", id="file"),
        pytest.param(
            lambda: file_request(JPEG, endpoint=Endpoint.CROPPING),
            "multipart/form-data",
            id="file-cropping",
        ),
        pytest.param(lambda: url_request(), "application/json", id="url"),
    ],
)
def test_prepared_request_never_shows_the_token(
    make: Callable[[], PreparedRequest], kind: str
) -> None:
    req = make()
    assert req.headers[AUTH_HEADER] == f"Bearer {TOKEN}"  # it is there...
    assert repr(req) == f"PreparedRequest(POST {req.url}, {kind}, {len(req.body)} bytes)"
    for shown in (repr(req), str(req), f"{req}", f"{req!r}", repr([req]), repr({"r": req})):
        assert TOKEN not in shown  # ...but never shown
        assert "Bearer" not in shown


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: file_request(b""), id="empty"),
        pytest.param(lambda: file_request(GIF), id="gif"),
        pytest.param(lambda: file_request(TOKEN.encode()), id="image-is-the-token"),
        pytest.param(lambda: file_request(PNG, max_bytes=10), id="too-big"),
        pytest.param(lambda: url_request("ftp://example.com/a.png"), id="ftp"),
        pytest.param(lambda: url_request("http://h:8080/a.png"), id="bad-port"),
        pytest.param(lambda: url_request("http://h:99999/a.png"), id="malformed-port"),
        pytest.param(lambda: url_request("http:///a.png"), id="no-host"),
    ],
)
def test_builder_errors_never_show_the_token(make: Callable[[], PreparedRequest]) -> None:
    with pytest.raises(LocalCheckError) as info:
        make()
    err = info.value
    for shown in (str(err), repr(err), err.message, repr(err.args)):
        assert TOKEN not in shown


# --- decode_json --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(b'{"a": [1], "a": [2, 3]}', {"a": [1, 2, 3]}, id="lists-concatenated"),
        pytest.param(
            b'{"a": ["x"], "a": [], "a": ["y", "z"]}', {"a": ["x", "y", "z"]}, id="three-lists"
        ),
        pytest.param(b'{"a": 1, "a": 2}', {"a": 2}, id="scalar-last-wins"),
        pytest.param(b'{"a": [1], "a": 2}', {"a": 2}, id="list-then-scalar"),
        pytest.param(b'{"a": 1, "a": [2]}', {"a": [2]}, id="scalar-then-list"),
        pytest.param(b'{"a": {"x": 1}, "a": {"y": 2}}', {"a": {"y": 2}}, id="objects-last-wins"),
        pytest.param(
            b'{"o": {"k": [1], "k": [2]}, "p": 0}', {"o": {"k": [1, 2]}, "p": 0}, id="nested"
        ),
        pytest.param(
            b'[{"k": ["a"], "k": ["b"]}, {"k": ["c"]}]',
            [{"k": ["a", "b"]}, {"k": ["c"]}],
            id="in-list",
        ),
        pytest.param(b'{"a": null, "a": [1]}', {"a": [1]}, id="null-then-list"),
        pytest.param(b'[1, 2.5, "s", true, null]', [1, 2.5, "s", True, None], id="plain-array"),
        pytest.param('{"한": ["글"]}'.encode(), {"한": ["글"]}, id="utf-8"),
    ],
)
def test_decode_json(body: bytes, expected: Any) -> None:
    assert decode_json(body) == expected


def test_decode_json_keeps_key_order() -> None:
    assert list(decode_json(b'{"z": [1], "a": 0, "z": [2], "m": 1}')) == ["z", "a", "m"]


def test_decode_json_merges_the_guide_sample_in_order() -> None:
    document = decode_json(GUIDE_GENERAL)
    words = document["result"]["listOfInferTexts"][0]["inferTexts"]
    assert words == [
        {"value": "stella", "conf": 0.99},
        {"value": "artois", "conf": 0.98},
        {"value": "belgium", "conf": 0.99},
    ]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="open-brace"),
        pytest.param(b"<html></html>", id="html"),
        pytest.param(b"\x80\x81", id="not-utf-8"),
    ],
)
def test_decode_json_raises_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the documented contract
        decode_json(body)


# --- parse_response: the guide's samples ----------------------------------------

STELLA_BOX = BoundingBox(32.0, 23.0, 65.0, 23.0, 65.0, 35.0, 32.0, 35.0)


@pytest.mark.parametrize(
    ("body", "slices"),
    [
        pytest.param(GUIDE_GENERAL, None, id="general"),
        pytest.param(GUIDE_CROPPING, 2, id="cropping"),
    ],
)
def test_guide_success_samples(body: bytes, slices: int | None) -> None:
    res = parse_response(200, body)
    assert res.no_text is False
    assert res.file_type == "png"
    assert res.slices_images == slices
    assert res.lines == (
        Line(
            (
                Word("stella", 0.99, STELLA_BOX),
                Word("artois", 0.98, None),
                Word("belgium", 0.99, None),
            )
        ),
    )
    assert res.text == "stella artois belgium"
    assert [w.value for w in res.words] == ["stella", "artois", "belgium"]
    box_ = res.words[0].box
    assert box_ is not None
    assert all(isinstance(getattr(box_, k), float) for k in ("x1", "y1", "x4", "y4"))
    # raw is the result object as received, groups merged, nothing dropped.
    expected_raw: dict[str, Any] = {
        "fileType": "png",
        "listOfInferTexts": [
            {
                "inferTexts": [
                    {"value": "stella", "conf": 0.99},
                    {"value": "artois", "conf": 0.98},
                    {"value": "belgium", "conf": 0.99},
                ]
            }
        ],
        "listOfBoundingBoxes": [{"boundingBoxes": [box(32, 23, 65, 23, 65, 35, 32, 35)]}],
    }
    if slices is not None:
        expected_raw["slicesImages"] = slices
    assert res.raw == expected_raw
    assert list(res.raw) == list(expected_raw)


def test_guide_failure_sample() -> None:
    with pytest.raises(ServerFailureError) as info:
        parse_response(200, GUIDE_FAILURE)
    err = info.value
    assert err.code == -1
    assert err.retryable is True
    assert err.local is False
    assert str(err) == "[-1] FAIL: Unknown error."


def test_real_shape_multiline_result() -> None:
    res = parse_response(200, REAL_SHAPE)
    assert res.text == "NHN Cloud\n일반 OCR 테스트\n2026-11-05"
    assert res.file_type == "jpg"
    assert res.slices_images is None
    assert res.no_text is False
    assert [[w.value for w in line.words] for line in res.lines] == [
        ["NHN", "Cloud"],
        ["일반", "OCR", "테스트"],
        ["2026-11-05"],
    ]
    assert [w.conf for w in res.words] == [0.9987, 0.9921, 0.97, 0.995, 0.88, 0.9]
    assert [w.box for w in res.words] == [
        BoundingBox(10, 12, 58, 12, 58, 30, 10, 30),
        BoundingBox(64, 12, 130, 12, 130, 30, 64, 30),
        BoundingBox(10, 40, 44, 40, 44, 61, 10, 61),
        BoundingBox(50.5, 40.25, 90, 40, 90, 61, 50.5, 61),
        BoundingBox(96, 39, 150, 41, 149, 62, 95, 60),
        BoundingBox(10, 70, 120, 70, 120, 88, 10, 88),
    ]
    assert res.raw["resolution"] == "normal"
    assert res.raw["futureField"] == {"nested": [1, 2, 3], "flag": True}
    assert list(res.raw) == [
        "fileType",
        "resolution",
        "listOfInferTexts",
        "listOfBoundingBoxes",
        "futureField",
    ]


# --- parse_result: tolerated shapes ------------------------------------------------

B1 = box(1, 2, 3, 4, 5, 6, 7, 8)
BB1 = BoundingBox(1, 2, 3, 4, 5, 6, 7, 8)


@pytest.mark.parametrize(
    ("result", "lines"),
    [
        pytest.param({}, [], id="empty-result"),
        pytest.param({"listOfInferTexts": []}, [], id="no-lines"),
        pytest.param({"listOfInferTexts": "oops"}, [], id="infer-texts-not-a-list"),
        pytest.param(
            {"listOfInferTexts": [{"inferTexts": [{"value": "a", "conf": 0.5}]}]},
            [[Word("a", 0.5, None)]],
            id="no-boxes-at-all",
        ),
        pytest.param(
            {
                "listOfInferTexts": [
                    {"inferTexts": [{"value": "a"}, {"value": "b"}]},
                    {"inferTexts": [{"value": "c"}]},
                ],
                "listOfBoundingBoxes": [{"boundingBoxes": [B1]}],
            },
            [[Word("a", None, BB1), Word("b", None, None)], [Word("c", None, None)]],
            id="fewer-boxes-than-words-and-lines",
        ),
        pytest.param(
            {
                "listOfInferTexts": [{"inferTexts": [{"value": "a"}]}],
                "listOfBoundingBoxes": [{"boundingBoxes": [B1, B1]}, {"boundingBoxes": [B1]}],
            },
            [[Word("a", None, BB1)]],
            id="more-boxes-than-words",
        ),
        pytest.param(
            {
                "listOfInferTexts": [
                    {"inferTexts": [{"value": "a"}]},
                    {"inferTexts": [{"value": "b"}]},
                ],
                "listOfBoundingBoxes": ["junk", {"boundingBoxes": [B1]}],
            },
            [[Word("a", None, None)], [Word("b", None, BB1)]],
            id="box-group-not-an-object",
        ),
        pytest.param(
            {
                "listOfInferTexts": [
                    {"inferTexts": [{"value": "a"}, {"value": "b"}, {"value": "c"}]}
                ],
                "listOfBoundingBoxes": [
                    {
                        "boundingBoxes": [
                            {"x1": 1, "y1": 2, "x2": 3, "y2": 4, "x3": 5, "y3": 6, "x4": 7},
                            {**B1, "x2": True},
                            {**B1, "y3": "12.5"},
                        ]
                    }
                ],
            },
            [
                [
                    Word("a", None, None),
                    Word("b", None, None),
                    Word("c", None, BoundingBox(1, 2, 3, 4, 5, 12.5, 7, 8)),
                ]
            ],
            id="box-missing-corner-bool-corner-string-corner",
        ),
        pytest.param(
            {
                "listOfInferTexts": [
                    {
                        "inferTexts": [
                            {"value": "a", "conf": "0.25"},
                            {"value": "b", "conf": True},
                            {"value": "c", "conf": "high"},
                            {"value": "d", "conf": 1},
                            {"value": "e", "conf": [0.5]},
                        ]
                    }
                ]
            },
            [
                [
                    Word("a", 0.25, None),
                    Word("b", None, None),
                    Word("c", None, None),
                    Word("d", 1.0, None),
                    Word("e", None, None),
                ]
            ],
            id="odd-confidences",
        ),
        pytest.param(
            {"listOfInferTexts": [{"inferTexts": ["plain", {"value": 42}, {"conf": 0.1}]}]},
            # a word without a value is no word, whatever else it carries
            [[Word("plain", None, None), Word("42", None, None)]],
            id="odd-words",
        ),
        pytest.param(
            {
                "listOfInferTexts": [
                    {"inferTexts": "oops"},
                    "junk",
                    {"inferTexts": [{"value": "x"}]},
                ]
            },
            [[], [], [Word("x", None, None)]],
            id="odd-groups-keep-line-positions",
        ),
    ],
)
def test_parse_result_tolerates_odd_shapes(result: dict[str, Any], lines: list[list[Word]]) -> None:
    text = "\n".join(" ".join(w.value for w in line) for line in lines)
    # The text read straight from the answer, before any word is built...
    assert parse_result(result).text == text
    res = parse_result(result)
    assert [list(line.words) for line in res.lines] == lines
    assert res.raw is result
    # ...is the text of the words.
    assert res.text == text
    assert res == OcrResult(tuple(Line(tuple(words)) for words in lines), result)


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        pytest.param("fileType", "jpg", "file_type", "jpg", id="file-type"),
        pytest.param("fileType", 5, "file_type", None, id="file-type-not-str"),
        pytest.param("slicesImages", 3, "slices_images", 3, id="slices"),
        pytest.param("slicesImages", True, "slices_images", None, id="slices-bool"),
        pytest.param("slicesImages", "2", "slices_images", None, id="slices-str"),
        pytest.param("slicesImages", 2.0, "slices_images", None, id="slices-float"),
    ],
)
def test_parse_result_scalar_fields(field: str, value: Any, attribute: str, expected: Any) -> None:
    res = parse_result({field: value})
    assert getattr(res, attribute) == expected
    assert res.raw == {field: value}


@pytest.mark.parametrize(
    "words",
    [
        pytest.param(
            [{"value": "a"}, {"value": None, "conf": 0.5}, {"value": "b"}], id="null-value"
        ),
        pytest.param([{"value": "a"}, None, {"value": "b"}], id="null-word"),
    ],
)
def test_null_word_does_not_become_the_text_none(words: list[Any]) -> None:
    res = parse_result({"listOfInferTexts": [{"inferTexts": words}]})
    values = [w.value for w in res.words]
    assert "None" not in values
    assert "a" in values
    assert "b" in values


# --- parse_response: no text, failures, envelope vs status ------------------------


@pytest.mark.parametrize(
    ("body", "file_type"),
    [
        pytest.param(
            envelope(4000501, "General OCR not found in the image."), None, id="no-result"
        ),
        pytest.param(
            envelope(
                4000501,
                "General OCR not found in the image.",
                result={"fileType": "png", "listOfInferTexts": [], "listOfBoundingBoxes": []},
            ),
            "png",
            id="empty-result",
        ),
        pytest.param(envelope("4000501"), None, id="code-as-string"),
        pytest.param(envelope(4000501, result=None), None, id="null-result"),
    ],
)
def test_no_text_is_a_result_not_an_error(body: bytes, file_type: str | None) -> None:
    res = parse_response(200, body)
    assert isinstance(res, OcrResult)
    assert res.no_text is True
    assert res.text == ""
    assert res.lines == ()
    assert res.words == ()
    assert res.file_type == file_type


@pytest.mark.parametrize(("code", "key", "message", "cls", "retryable"), CODE_TABLE)
def test_failure_envelopes_raise_mapped_errors(
    code: int, key: str, message: str, cls: type[ApiError], retryable: bool
) -> None:
    with pytest.raises(OcrError) as info:
        parse_response(200, envelope(code, message))
    err = info.value
    assert type(err) is cls
    assert err.code == code
    assert err.retryable is retryable
    assert err.local is False
    assert str(err) == f"[{code}] {key}: {message}"


@pytest.mark.parametrize(
    ("body", "cls", "code"),
    [
        pytest.param(envelope("4000006"), RateLimitedError, 4000006, id="rate-limit"),
        pytest.param(envelope(" 4010006 "), InvalidTokenError, 4010006, id="padded"),
        pytest.param(envelope("-1"), ServerFailureError, -1, id="minus-one"),
        pytest.param(envelope("5000503"), TemporarilyUnavailableError, 5000503, id="unavailable"),
        pytest.param(envelope("4000999"), InvalidRequestError, 4000999, id="undocumented"),
    ],
)
def test_result_code_as_numeric_string(body: bytes, cls: type[ApiError], code: int) -> None:
    with pytest.raises(OcrError) as info:
        parse_response(200, body)
    assert type(info.value) is cls
    assert info.value.code == code
    assert isinstance(info.value.code, int)


def test_success_with_result_code_as_string() -> None:
    res = parse_response(200, envelope("0", ok=True, result={"fileType": "png"}))
    assert res.file_type == "png"
    assert res.no_text is False


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        pytest.param(429, 4000006, RateLimitedError, id="429-rate-limit"),
        pytest.param(401, 4010006, InvalidTokenError, id="401-invalid-token"),
        pytest.param(403, 4010007, AuthError, id="403-permission"),
        pytest.param(503, 5000503, TemporarilyUnavailableError, id="503-unavailable"),
        pytest.param(502, -1, ServerFailureError, id="502-fail"),
        pytest.param(400, 4000002, InvalidRequestError, id="400-invalid-file"),
        pytest.param(413, 4131000, InvalidRequestError, id="413-too-big"),
    ],
)
def test_envelope_is_honoured_whatever_the_status(
    status: int, code: int, cls: type[ApiError]
) -> None:
    with pytest.raises(OcrError) as info:
        parse_response(status, envelope(code, "from a gateway"))
    assert type(info.value) is cls
    assert info.value.code == code


@pytest.mark.parametrize("status", [pytest.param(500, id="500"), pytest.param(503, id="503")])
def test_success_and_no_text_envelopes_are_honoured_whatever_the_status(status: int) -> None:
    assert parse_response(status, GUIDE_GENERAL).text == "stella artois belgium"
    assert parse_response(status, envelope(4000501)).no_text is True


@pytest.mark.parametrize(
    ("is_successful", "code"),
    [
        pytest.param(False, 0, id="code-0-not-successful"),
        pytest.param(None, 0, id="code-0-no-flag"),
        pytest.param("true", 0, id="code-0-flag-as-string"),
    ],
)
def test_code_zero_without_success_flag(is_successful: Any, code: int) -> None:
    with pytest.raises(UnknownApiError) as info:
        parse_response(200, envelope(code, ok=is_successful, result={}))
    assert info.value.code == 0
    assert info.value.retryable is False


def test_successful_flag_with_failure_code_is_a_failure() -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_response(200, envelope(4000001, "Invalid parameter.", ok=True, result={}))
    assert info.value.code == 4000001


HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("status", "body", "retryable"),
    [
        pytest.param(502, HTML_502, True, id="502-html"),
        pytest.param(503, b"", True, id="503-empty"),
        pytest.param(504, b"upstream request timeout", True, id="504-text"),
        pytest.param(500, b'{"message": "Internal Server Error"}', True, id="500-json-no-header"),
        pytest.param(500, GUIDE_FAILURE[:40], True, id="500-truncated-envelope"),
        pytest.param(599, b"?", True, id="599"),
        pytest.param(429, b"Too Many Requests", True, id="429-text"),
        pytest.param(408, b"", True, id="408"),
        pytest.param(425, b"", True, id="425"),
        pytest.param(404, b"<html><body>Not Found</body></html>", False, id="404-html"),
        pytest.param(400, b"Bad Request", False, id="400"),
        pytest.param(401, b'{"error": "invalid_token"}', False, id="401-oauth-shape"),
        pytest.param(403, b"<html>Forbidden</html>", False, id="403"),
        pytest.param(413, b"<html>Request Entity Too Large</html>", False, id="413"),
        pytest.param(301, b"", False, id="301"),
        pytest.param(204, b"", False, id="204"),
    ],
)
def test_non_200_without_envelope_is_http_status_error(
    status: int, body: bytes, retryable: bool
) -> None:
    with pytest.raises(HttpStatusError) as info:
        parse_response(status, body)
    err = info.value
    assert err.status == status
    assert err.code == f"http_{status}"
    assert err.retryable is retryable
    assert err.local is False
    assert err.message.startswith(f"HTTP {status} without an API envelope: ")


# --- 429 and Retry-After ----------------------------------------------------------------


def test_a_gateways_429_is_a_refusal_for_the_rate() -> None:
    with pytest.raises(TooManyRequestsError) as info:
        parse_response(429, b"<html>Too Many Requests</html>", retry_after=3.0)
    err = info.value
    assert isinstance(err, HttpStatusError)  # still a gateway's non-200
    assert (err.status, err.code, err.retryable, err.retry_after) == (429, "http_429", True, 3.0)
    assert err.message.startswith("HTTP 429 without an API envelope: ")


def test_retry_after_rides_on_the_envelope_error_too() -> None:
    with pytest.raises(RateLimitedError) as info:
        parse_response(429, envelope(4000006, "slow down"), retry_after=1.5)
    assert info.value.retry_after == 1.5
    with pytest.raises(RateLimitedError) as bare:
        parse_response(200, envelope(4000006, "slow down"))
    assert bare.value.retry_after is None


# RFC 9110's own example date, and the same instant a minute and a half on.
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
LATER = "Sun, 06 Nov 1994 08:51:07 GMT"
DATE_EPOCH = 784111777.0


@pytest.mark.parametrize(
    ("value", "date", "now", "seconds"),
    [
        pytest.param("120", None, None, 120.0, id="seconds"),
        pytest.param(" 0 ", None, None, 0.0, id="zero-with-spaces"),
        pytest.param(LATER, DATE, None, 90.0, id="date-against-the-answers-date"),
        pytest.param(LATER, DATE, 0.0, 90.0, id="the-answers-date-beats-our-clock"),
        pytest.param(LATER, None, DATE_EPOCH, 90.0, id="date-against-our-clock"),
        pytest.param(DATE, LATER, None, 0.0, id="date-already-past"),
        pytest.param("Sunday, 06-Nov-94 08:51:07 GMT", DATE, None, 90.0, id="rfc-850-date"),
        pytest.param(LATER, "garbage", DATE_EPOCH, 90.0, id="bad-date-header-falls-back"),
        pytest.param(None, None, None, None, id="absent"),
        pytest.param("-5", None, None, None, id="negative"),
        pytest.param("1.5", None, None, None, id="fraction"),
        pytest.param("soon", None, 0.0, None, id="garbage"),
        pytest.param(LATER, None, None, None, id="date-with-no-clock"),
        pytest.param("\u0661\u0662", None, None, None, id="non-ascii-digits"),
    ],
)
def test_parse_retry_after(
    value: str | None, date: str | None, now: float | None, seconds: float | None
) -> None:
    assert parse_retry_after(value, date=date, now=now) == seconds


def test_http_status_error_message_shows_a_short_clean_snippet() -> None:
    with pytest.raises(HttpStatusError) as info:
        parse_response(502, b"<html>\r\n<body>Bad Gateway</body>\r\n</html>")
    assert str(info.value) == (
        "[http_502] HTTP 502 without an API envelope: '<html> <body>Bad Gateway</body> </html>'"
    )
    with pytest.raises(HttpStatusError) as long_info:
        parse_response(502, b"x" * 500)
    assert long_info.value.message == f"HTTP 502 without an API envelope: '{'x' * 120}...'"


def _prefixes(body: bytes) -> list[bytes]:
    stripped = body.rstrip()
    return [stripped[:cut] for cut in range(len(stripped))]


MALFORMED_200 = [
    pytest.param(HTML_502, "not JSON", id="html"),
    pytest.param(b"", "not JSON", id="empty"),
    pytest.param(b" \r\n\t", "not JSON", id="whitespace"),
    pytest.param(b"\x80\x81\xfe\xff garbage \xc3\x28", "not JSON", id="not-utf-8"),
    pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF", "not JSON", id="jpeg-echoed"),
    pytest.param(b"\xef\xbb\xbf<html>", "not JSON", id="bom-then-html"),
    pytest.param(GUIDE_GENERAL[:1], "not JSON", id="cut-after-brace"),
    pytest.param(GUIDE_GENERAL[:100], "not JSON", id="cut-in-header"),
    pytest.param(GUIDE_GENERAL[:300], "not JSON", id="cut-in-words"),
    pytest.param(GUIDE_GENERAL.rstrip()[:-1], "not JSON", id="cut-before-last-brace"),
    pytest.param(GUIDE_FAILURE[:60], "not JSON", id="failure-cut"),
    pytest.param(GUIDE_GENERAL + b"{}", "not JSON", id="trailing-garbage"),
    pytest.param(b"[]", "JSON without a valid header", id="empty-array"),
    pytest.param(b"[" + GUIDE_GENERAL + b"]", "JSON without a valid header", id="array-envelope"),
    pytest.param(b'"SUCCESS"', "JSON without a valid header", id="string"),
    pytest.param(b"0", "JSON without a valid header", id="number"),
    pytest.param(
        b"null",
        "JSON without a valid header",
        id="null",
    ),
    pytest.param(b"true", "JSON without a valid header", id="true"),
    pytest.param(b'{"result": {}}', "JSON without a valid header", id="no-header"),
    pytest.param(b'{"header": null}', "JSON without a valid header", id="null-header"),
    pytest.param(b'{"header": [0]}', "JSON without a valid header", id="header-list"),
    pytest.param(b'{"header": "0"}', "JSON without a valid header", id="header-string"),
    pytest.param(
        b'{"header": {"isSuccessful": true, "resultMessage": "SUCCESS"}, "result": {}}',
        "JSON without a valid header",
        id="no-result-code",
    ),
    pytest.param(envelope(None, ok=True, result={}), "JSON without a valid header", id="code-null"),
    pytest.param(
        envelope(False, ok=True, result={}), "JSON without a valid header", id="code-false"
    ),
    pytest.param(envelope(True, ok=True, result={}), "JSON without a valid header", id="code-true"),
    pytest.param(envelope(0.0, ok=True, result={}), "JSON without a valid header", id="code-float"),
    pytest.param(envelope("abc"), "JSON without a valid header", id="code-not-a-number"),
    pytest.param(envelope(""), "JSON without a valid header", id="code-empty-string"),
    pytest.param(envelope({}), "JSON without a valid header", id="code-object"),
    pytest.param(envelope([4000001]), "JSON without a valid header", id="code-list"),
]


@pytest.mark.parametrize(("body", "what"), MALFORMED_200)
def test_200_without_envelope_is_malformed(body: bytes, what: str) -> None:
    with pytest.raises(MalformedResponseError) as info:
        parse_response(200, body)
    err = info.value
    assert err.code == "bad_response"
    assert err.retryable is True
    assert err.local is False
    assert err.message.startswith(f"response body is {what}")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(envelope(0, "SUCCESS", ok=True), id="missing"),
        pytest.param(envelope(0, "SUCCESS", ok=True, result=None), id="null"),
        pytest.param(envelope(0, "SUCCESS", ok=True, result=[]), id="list"),
        pytest.param(envelope(0, "SUCCESS", ok=True, result="done"), id="string"),
    ],
)
def test_success_without_result_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedResponseError) as info:
        parse_response(200, body)
    assert str(info.value) == "[bad_response] success envelope without a result object"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(GUIDE_GENERAL, id="general"),
        pytest.param(GUIDE_CROPPING, id="cropping"),
        pytest.param(GUIDE_FAILURE, id="failure"),
        pytest.param(REAL_SHAPE, id="real-shape"),
    ],
)
def test_every_truncation_of_a_sample(body: bytes) -> None:
    prefixes = _prefixes(body)
    assert len(prefixes) > 100
    for prefix in prefixes:
        with pytest.raises(MalformedResponseError):
            parse_response(200, prefix)
    for prefix in prefixes[::37]:
        with pytest.raises(HttpStatusError):
            parse_response(502, prefix)


# --- parse_response: known crashes (must be OcrError) -------------------------------


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        pytest.param(200, b"[" * 100_000, MalformedResponseError, id="200-arrays"),
        pytest.param(200, b'{"header":' * 100_000, MalformedResponseError, id="200-objects"),
        pytest.param(502, b"[" * 100_000, HttpStatusError, id="502-arrays"),
    ],
)
def test_deeply_nested_json_is_malformed(status: int, body: bytes, cls: type[OcrError]) -> None:
    with pytest.raises(cls):
        parse_response(status, body)


BIG_INT = 10**400  # valid JSON once dumped; too large for float()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            success(
                {
                    "listOfInferTexts": [{"inferTexts": [{"value": "a", "conf": 0.5}]}],
                    "listOfBoundingBoxes": [{"boundingBoxes": [box(BIG_INT, 0, 0, 0, 0, 0, 0, 0)]}],
                }
            ),
            id="huge-box-corner",
        ),
        pytest.param(
            success({"listOfInferTexts": [{"inferTexts": [{"value": "a", "conf": BIG_INT}]}]}),
            id="huge-confidence",
        ),
    ],
)
def test_huge_numbers_are_tolerated(body: bytes) -> None:
    res = parse_response(200, body)
    assert res.text == "a"
    conf = res.words[0].conf
    assert conf is None or math.isfinite(conf) or math.isinf(conf)


# --- parse_response: fuzz (seeded, deterministic) -------------------------------------

STATUSES = [200, 200, 200, 200, 201, 204, 400, 401, 404, 413, 429, 500, 502, 503, 504]
SAMPLES = [GUIDE_GENERAL, GUIDE_CROPPING, GUIDE_FAILURE, REAL_SHAPE]


def _check_outcome(status: int, body: bytes) -> None:
    got = outcome(status, body)
    if isinstance(got, OcrResult):
        for word in got.words:
            assert isinstance(word.value, str)
            assert word.conf is None or isinstance(word.conf, float)
            assert word.box is None or isinstance(word.box, BoundingBox)
        assert got.text == "\n".join(" ".join(w.value for w in line.words) for line in got.lines)
        return
    assert isinstance(got.retryable, bool)
    assert str(got).startswith(f"[{got.code}] ")
    if isinstance(got, HttpStatusError):
        assert status != 200
    if isinstance(got, MalformedResponseError) and status != 200:
        # Only an envelope can be malformed whatever the status: a non-200
        # without one is an HttpStatusError.
        assert got.message == "success envelope without a result object"
    if isinstance(got, ApiError):
        assert isinstance(got.code, int)


def _mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:  # flip a byte
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op == 1:  # delete a slice
            del data[at : at + rng.randint(1, 20)]
        elif op == 2:  # insert random bytes
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:  # insert JSON punctuation
            data[at:at] = rng.choice([b"{", b"}", b"[", b"]", b",", b":", b'"', b"null", b"-1"])
        else:  # truncate
            del data[at:]
    return bytes(data)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] * 2 if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 1, 2, 4000501, 10**9, -(10**9), rng.randint(-1000, 1000)])
    if kind == "float":
        return rng.choice([0.0, 0.5, -1.5, 1e300, rng.random()])
    if kind == "str":
        return rng.choice(["", "0", "4000006", "x", "한글", '"', "\\", "1e5", " 7 "])
    if kind == "bool":
        return rng.choice([True, False])
    if kind == "null":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["value", "conf", "x1", "y1", "inferTexts", "boundingBoxes", "k"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _random_result(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        return _random_value(rng)
    corners = ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4")

    def word() -> Any:
        if rng.random() < 0.2:
            return _random_value(rng, 2)
        return {"value": _random_value(rng, 3), "conf": _random_value(rng, 3)}

    def a_box() -> Any:
        if rng.random() < 0.2:
            return _random_value(rng, 2)
        return {
            c: _random_value(rng, 3) if rng.random() < 0.2 else rng.randint(0, 999) for c in corners
        }

    n = rng.randint(0, 4)
    result: dict[str, Any] = {
        "listOfInferTexts": [
            {"inferTexts": [word() for _ in range(rng.randint(0, 4))]}
            if rng.random() < 0.9
            else _random_value(rng, 1)
            for _ in range(n)
        ],
        "listOfBoundingBoxes": [
            {"boundingBoxes": [a_box() for _ in range(rng.randint(0, 4))]}
            if rng.random() < 0.9
            else _random_value(rng, 1)
            for _ in range(rng.randint(0, n + 1))
        ],
    }
    for key in ("fileType", "slicesImages", "resolution"):
        if rng.random() < 0.5:
            result[key] = _random_value(rng, 2)
    return result


def _random_envelope(rng: random.Random) -> bytes:
    header: dict[str, Any] = {}
    if rng.random() < 0.9:
        header["isSuccessful"] = rng.choice([True, False, None, "true", 1])
    if rng.random() < 0.9:
        header["resultCode"] = rng.choice(
            [
                0,
                0,
                0,
                -1,
                4000501,
                4000006,
                4010006,
                5000503,
                4999,
                "0",
                "4000001",
                " -1 ",
                True,
                False,
                None,
                0.0,
                "x",
                123456789,
                [],
                {},
            ]
        )
    if rng.random() < 0.9:
        header["resultMessage"] = _random_value(rng, 3)
    document: dict[str, Any] = {"header": header if rng.random() < 0.95 else _random_value(rng)}
    if rng.random() < 0.9:
        document["result"] = _random_result(rng)
    return json.dumps(document, ensure_ascii=rng.random() < 0.5).encode("utf-8")


def test_fuzz_random_bytes() -> None:
    rng = random.Random(20261105)
    alphabet = b'{}[]":,0123456789-truefalsnl \n\x00\xff\xc3\xa9'
    for _ in range(2000):
        if rng.random() < 0.5:
            body = rng.randbytes(rng.randint(0, 64))
        else:
            body = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 64)))
        _check_outcome(rng.choice(STATUSES), body)


def test_fuzz_mutated_samples() -> None:
    rng = random.Random(1105)
    for _ in range(2000):
        _check_outcome(rng.choice(STATUSES), _mutate(rng, rng.choice(SAMPLES)))


def test_fuzz_random_envelopes() -> None:
    rng = random.Random(4000501)
    outcomes: set[str] = set()
    for _ in range(2000):
        status = rng.choice(STATUSES)
        body = _random_envelope(rng)
        _check_outcome(status, body)
        outcomes.add(type(outcome(status, body)).__name__)
    # The generator really reaches the interesting branches.
    assert {"OcrResult", "MalformedResponseError", "HttpStatusError", "UnknownApiError"} <= outcomes
    assert {"ServerFailureError", "RateLimitedError", "InvalidTokenError"} <= outcomes


# --- secrets echoed by a server ------------------------------------------------------


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(f"Bearer {TOKEN}", id="header"),
        pytest.param(f"token={TOKEN}", id="raw"),
        pytest.param(json.dumps({"X-NHN-Authorization": f"Bearer {TOKEN}"}), id="json-inside"),
    ],
)
@pytest.mark.parametrize("code", [4000001, 5000001, -1, 9999999])
def test_a_result_message_echoing_the_token_is_redacted(echo: str, code: int) -> None:
    with pytest.raises(OcrError) as info:
        parse_response(200, envelope(code, f"refused {echo} here"), redact=[TOKEN])
    assert TOKEN not in str(info.value)
    assert "<redacted>" in info.value.message
    assert "refused" in info.value.message


def test_a_result_echoing_the_token_is_redacted_in_every_string() -> None:
    words = [{"value": f"Bearer:{TOKEN}", "conf": 0.9}, {"value": "plain", "conf": 0.8}]
    body = success({"listOfInferTexts": [{"inferTexts": words}], "echo": {TOKEN: [TOKEN]}})
    res = parse_response(200, body, redact=[TOKEN])
    assert isinstance(res, OcrResult)
    assert res.text == "Bearer:<redacted> plain"
    assert TOKEN not in json.dumps(res.raw)
    assert res.raw["echo"] == {"<redacted>": ["<redacted>"]}


def test_a_json_escaped_echo_in_a_torn_body_is_redacted() -> None:
    token = "tok/with/slashes-1234"
    body = b'{"header": {"resultMessage": "Bearer ' + token.replace("/", "\\/").encode()
    with pytest.raises(MalformedResponseError) as info:
        parse_response(200, body, redact=[token])
    assert "\\/with" not in info.value.message
    assert "Bearer <redacted>" in info.value.message


def test_a_short_secret_does_not_eat_ordinary_words() -> None:
    with pytest.raises(OcrError) as info:
        parse_response(200, envelope(4010001, "wrong key or wrong secret"), redact=["wrong"])
    assert info.value.message == "INVALID_APPKEY_SECRETKEY: wrong key or wrong secret"


def test_a_result_message_is_one_bounded_line() -> None:
    message = "first\nsecond\x1b[2J" + "y" * 5000
    with pytest.raises(OcrError) as info:
        parse_response(200, envelope(5000001, message))
    assert "\n" not in info.value.message
    assert "\x1b" not in info.value.message
    assert len(info.value.message) < 300


# --- what strict JSON cannot hold --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        pytest.param(b'{"a": NaN, "b": [Infinity, -Infinity]}', {"a": None, "b": [None, None]}),
        pytest.param(b'{"a": "x\\ud800y", "\\udc00": 1}', {"a": "x\ufffdy", "\ufffd": 1}),
        pytest.param(b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}, id="pair-kept"),
        pytest.param(b'{"a": "\\\\ud800"}', {"a": "\\ud800"}, id="escaped-backslash-kept"),
    ],
)
def test_an_answer_keeps_only_what_strict_json_can_hold(raw: bytes, kept: Any) -> None:
    body = b'{"header": {"isSuccessful": true, "resultCode": 0}, "result": ' + raw + b"}"
    res = parse_response(200, body)
    assert isinstance(res, OcrResult)
    assert res.raw == kept


def test_decode_json_itself_reads_what_python_reads() -> None:
    # The review page reads records with it: nothing there is replaced.
    assert decode_json(b'{"a": "\\ud800"}') == {"a": "\ud800"}


def test_a_lone_surrogate_in_a_word_becomes_a_replacement_character() -> None:
    body = b'{"header": {"isSuccessful": true, "resultCode": 0, "resultMessage": "ok"},'
    body += (
        b' "result": {"listOfInferTexts": [{"inferTexts": [{"value": "a\\udc80b", "conf": NaN}]}]}}'
    )
    res = parse_response(200, body)
    assert isinstance(res, OcrResult)
    assert res.text == "a\ufffdb"
    assert res.text.encode("utf-8")  # a text file can hold it
    assert res.raw["listOfInferTexts"][0]["inferTexts"][0]["conf"] is None
