from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import traceback
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from aioresponses import aioresponses
from aioresponses.core import RequestCall
from fakes import FakeClock, Sleeps
from yarl import URL

from ocr_async import client as client_module
from ocr_async import protocol
from ocr_async.auth import StaticToken, TokenProvider
from ocr_async.client import PARSE_INLINE_LIMIT, OcrClient
from ocr_async.errors import (
    AnswerTooLargeError,
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    HttpStatusError,
    ImageDownloadError,
    InvalidRequestError,
    InvalidTokenError,
    LocalCheckError,
    MalformedResponseError,
    OcrError,
    RateLimitedError,
    RequestTimeoutError,
    ServerFailureError,
    SourceError,
    TemporarilyUnavailableError,
    TransportError,
)
from ocr_async.models import Endpoint, ImageBytes, ImageFile, ImageInput, ImageUrl
from ocr_async.retry import RetryPolicy
from ocr_async.transport import AiohttpTransport

TOKEN = "tok-SECRET-7f3a9c41"
NEW_TOKEN = "tok-RENEWED-b81e07d2"
SECRETS = (TOKEN, NEW_TOKEN)
APPKEY = "app-key-1"
GENERAL_URL = "https://api-ocr.nhncloudservice.com/v1.1/appkeys/app-key-1/general"
CROPPING_URL = GENERAL_URL + "/cropping"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(48)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(48))
IMAGE_URL = "https://img.example.com/scans/receipt.png"

RESULT: dict[str, Any] = {
    "fileType": "png",
    "resolution": "normal",
    "listOfInferTexts": [
        {"inferTexts": [{"value": "Hello", "conf": 0.99}, {"value": "World", "conf": 0.98}]},
        {"inferTexts": [{"value": "OCR", "conf": 0.9}]},
    ],
    "listOfBoundingBoxes": [
        {
            "boundingBoxes": [
                {"x1": 0, "y1": 0, "x2": 5, "y2": 0, "x3": 5, "y3": 2, "x4": 0, "y4": 2},
                {"x1": 6, "y1": 0, "x2": 9, "y2": 0, "x3": 9, "y3": 2, "x4": 6, "y4": 2},
            ]
        },
        {
            "boundingBoxes": [
                {"x1": 0, "y1": 3, "x2": 4, "y2": 3, "x3": 4, "y3": 5, "x4": 0, "y4": 5}
            ]
        },
    ],
}
RESULT_TEXT = "Hello World\nOCR"


def envelope(code: int = 0, message: str = "SUCCESS", result: Any = None) -> dict[str, Any]:
    return {
        "header": {"isSuccessful": code == 0, "resultCode": code, "resultMessage": message},
        "result": RESULT if result is None and code == 0 else result,
    }


def failure(code: int) -> dict[str, Any]:
    return envelope(code, f"failure {code}")


class RenewingTokens:
    """A TokenProvider that hands out the next token each time one is rejected."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = tokens
        self.index = 0
        self.rejected: list[str] = []

    async def get_token(self) -> str:
        return self.tokens[self.index]

    async def token_rejected(self, token: str) -> bool:
        self.rejected.append(token)
        if self.index + 1 < len(self.tokens):
            self.index += 1
            return True
        return False


class EndlessTokens(RenewingTokens):
    """Always has a fresh token to offer."""

    async def token_rejected(self, token: str) -> bool:
        self.rejected.append(token)
        self.index += 1
        self.tokens = (*self.tokens, f"{NEW_TOKEN}-{self.index}")
        return True


def make_client(sleeps: Sleeps, **overrides: Any) -> OcrClient:
    # Without the rate controller: these tests pin the retry and backoff
    # mechanics; the controller's path has its own tests with a virtual clock.
    options: dict[str, Any] = {
        "appkey": APPKEY,
        "token": TOKEN,
        "sleep": sleeps,
        "adapt_rate": False,
    }
    options.update(overrides)
    return OcrClient(**options)


def calls_to(mock: aioresponses, url: str = GENERAL_URL) -> list[RequestCall]:
    assert mock.requests is not None
    return list(mock.requests.get(("POST", URL(url)), []))


def request_count(mock: aioresponses) -> int:
    assert mock.requests is not None
    return sum(len(calls) for calls in mock.requests.values())


def sent_headers(call: RequestCall) -> dict[str, str]:
    headers = call.kwargs["headers"]
    return dict(headers)


def assert_secret_kept(exc: BaseException) -> None:
    """No token in the error, its repr, its args, its chain, or its formatted traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *(repr(arg) for arg in current.args)]
        pending += [current.__cause__, current.__context__]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.fixture
def mock() -> Iterator[aioresponses]:
    with aioresponses() as m:
        yield m


@pytest.fixture(autouse=True)
def _no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # The package logger too: the CLI sets its level, and that outlives a test.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="ocr_async")
    yield
    logged = [caplog.text, *(record.getMessage() for record in caplog.records)]
    for text in logged:
        for secret in SECRETS:
            assert secret not in text


# --- what is sent ---------------------------------------------------------------


async def test_bytes_are_sent_as_multipart_to_general_with_bearer_token(
    mock: aioresponses,
) -> None:
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    async with make_client(sleeps) as client:
        recognition = await client.recognize(PNG)

    assert recognition.text == RESULT_TEXT
    assert recognition.attempts == 1
    assert recognition.endpoint is Endpoint.GENERAL
    assert recognition.result.file_type == "png"
    assert recognition.result.raw["resolution"] == "normal"
    assert sleeps.waits == []
    [call] = calls_to(mock)
    assert request_count(mock) == 1
    headers = sent_headers(call)
    assert headers["X-NHN-Authorization"] == f"Bearer {TOKEN}"
    content_type = headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1]
    body = call.kwargs["data"]
    assert isinstance(body, bytes)
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert b'Content-Disposition: form-data; name="image"; filename="image.png"' in body
    assert b"Content-Type: image/png\r\n\r\n" + PNG + b"\r\n" in body


async def test_cropping_endpoint_uses_the_cropping_path(mock: aioresponses) -> None:
    mock.post(CROPPING_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        recognition = await client.recognize(PNG, endpoint=Endpoint.CROPPING)

    assert recognition.endpoint is Endpoint.CROPPING
    assert recognition.text == RESULT_TEXT
    assert len(calls_to(mock, CROPPING_URL)) == 1
    assert calls_to(mock, GENERAL_URL) == []


async def test_base_url_and_appkey_are_used_for_the_path(mock: aioresponses) -> None:
    url = "http://127.0.0.1:9/v1.1/appkeys/a%2Fb%20c/general"
    mock.post(url, payload=envelope())
    async with make_client(Sleeps(), appkey="a/b c", base_url="http://127.0.0.1:9/") as client:
        await client.recognize(PNG)
    assert request_count(mock) == 1
    assert len(calls_to(mock, url)) == 1


@pytest.mark.parametrize(
    "as_input",
    [
        pytest.param(str, id="str-path"),
        pytest.param(lambda path: path, id="Path"),
        pytest.param(ImageFile, id="ImageFile"),
    ],
)
async def test_a_file_is_read_and_sent_as_multipart(
    mock: aioresponses, tmp_path: Path, as_input: Any
) -> None:
    path = tmp_path / "scan.jpg"
    path.write_bytes(JPEG)
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        recognition = await client.recognize(as_input(path))

    assert recognition.text == RESULT_TEXT
    assert recognition.attempts == 1
    [call] = calls_to(mock)
    assert sent_headers(call)["Content-Type"].startswith("multipart/form-data; boundary=")
    body = call.kwargs["data"]
    assert b'filename="image.jpg"' in body
    assert b"Content-Type: image/jpeg\r\n\r\n" + JPEG + b"\r\n" in body
    # The local name never leaves the machine.
    assert b"scan" not in body


@pytest.mark.parametrize(
    "image",
    [pytest.param(IMAGE_URL, id="str"), pytest.param(ImageUrl(IMAGE_URL), id="ImageUrl")],
)
async def test_a_url_is_sent_as_json(mock: aioresponses, image: ImageInput) -> None:
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        recognition = await client.recognize(image)

    assert recognition.text == RESULT_TEXT
    assert recognition.attempts == 1
    [call] = calls_to(mock)
    headers = sent_headers(call)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-NHN-Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(call.kwargs["data"]) == {"imageUrl": IMAGE_URL}


async def test_image_bytes_are_sent(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        recognition = await client.recognize(ImageBytes(PNG, name="from-memory"))

    assert recognition.attempts == 1
    [call] = calls_to(mock)
    assert PNG in call.kwargs["data"]
    assert b"from-memory" not in call.kwargs["data"]


async def test_no_text_answer_is_a_result_not_an_error(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=envelope(4000501, "GENERAL_OCR_NOT_FOUND", {}))
    async with make_client(Sleeps()) as client:
        recognition = await client.recognize(PNG)
    assert recognition.result.no_text is True
    assert recognition.text == ""
    assert recognition.attempts == 1


async def test_allowed_url_ports_are_sent(mock: aioresponses) -> None:
    urls = ["https://img.example.com:10000/a.png", "http://img.example.com:80/a.png"]
    mock.post(GENERAL_URL, payload=envelope(), repeat=True)
    async with make_client(Sleeps()) as client:
        for url in urls:
            await client.recognize(url)
    assert [json.loads(c.kwargs["data"])["imageUrl"] for c in calls_to(mock)] == urls


# --- retries --------------------------------------------------------------------


async def test_rate_limit_twice_then_success_backs_off_exponentially(
    mock: aioresponses,
) -> None:
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    policy = RetryPolicy(initial_wait=0.5, max_wait=20.0, jitter=0.0)
    async with make_client(sleeps, retry=policy) as client:
        recognition = await client.recognize(PNG)

    assert recognition.attempts == 3
    assert recognition.text == RESULT_TEXT
    assert sleeps.waits == [0.5, 1.0]
    calls = calls_to(mock)
    assert len(calls) == 3
    # The retried request is the same request.
    assert {c.kwargs["data"] for c in calls} == {calls[0].kwargs["data"]}


async def test_jittered_waits_grow_and_stay_within_bounds(mock: aioresponses) -> None:
    for _ in range(4):
        mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    policy = RetryPolicy()  # 5 attempts, 0.5 s doubling, 20 s cap, 0.5 s jitter
    async with make_client(sleeps, retry=policy) as client:
        recognition = await client.recognize(PNG)

    assert recognition.attempts == 5
    assert len(sleeps.waits) == 4
    for n, wait in enumerate(sleeps.waits):
        base = policy.initial_wait * 2**n
        assert base <= wait <= base + policy.jitter
        assert wait <= policy.max_wait + policy.jitter
    assert sleeps.waits == sorted(sleeps.waits)


async def test_waits_are_capped_at_max_wait(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(5000503), repeat=True)
    sleeps = Sleeps()
    policy = RetryPolicy(
        max_attempts=5, max_throttled=5, initial_wait=1.0, max_wait=3.0, jitter=0.0
    )
    async with make_client(sleeps, retry=policy) as client:
        with pytest.raises(TemporarilyUnavailableError):
            await client.recognize(PNG)
    assert sleeps.waits == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        pytest.param(4000006, RateLimitedError, id="4000006-rate-limited"),
        pytest.param(5000503, TemporarilyUnavailableError, id="5000503-unavailable"),
        pytest.param(-1, ServerFailureError, id="-1-fail"),
        pytest.param(5005001, ServerFailureError, id="5005001-engine"),
        pytest.param(5000001, ServerFailureError, id="5000001-internal"),
        pytest.param(4000503, ImageDownloadError, id="4000503-download-timeout"),
        pytest.param(4000504, ImageDownloadError, id="4000504-download-fail"),
        pytest.param(5009999, ServerFailureError, id="undocumented-5xxxxxx"),
    ],
)
async def test_retryable_result_codes_are_retried(
    mock: aioresponses, code: int, error_class: type[OcrError]
) -> None:
    mock.post(GENERAL_URL, payload=failure(code))
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    async with make_client(sleeps) as client:
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 2
    assert len(sleeps.waits) == 1
    assert sleeps.waits[0] > 0

    # And when it never stops, the typed error comes out with the count.
    mock.post(GENERAL_URL, payload=failure(code), repeat=True)
    # (call-limit codes count against max_throttled, the others max_attempts)
    policy = RetryPolicy(max_attempts=2, max_throttled=2)
    async with make_client(sleeps, retry=policy) as client:
        with pytest.raises(error_class) as raised:
            await client.recognize(PNG)
    assert raised.value.code == code
    assert raised.value.attempts == 2
    assert raised.value.local is False
    assert request_count(mock) == 4
    assert_secret_kept(raised.value)


@pytest.mark.parametrize(
    ("failure_exc", "error_class", "code"),
    [
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            ConnectionFailedError,
            "connection",
            id="server-disconnected",
        ),
        pytest.param(
            aiohttp.ClientConnectionError("Connection reset by peer"),
            ConnectionFailedError,
            "connection",
            id="connection-error",
        ),
        pytest.param(
            aiohttp.ClientOSError(104, "Connection reset by peer"),
            ConnectionFailedError,
            "connection",
            id="os-error",
        ),
        pytest.param(TimeoutError(), RequestTimeoutError, "timeout", id="timeout"),
        pytest.param(
            aiohttp.ServerTimeoutError("Timeout on reading data from socket"),
            RequestTimeoutError,
            "timeout",
            id="server-timeout",
        ),
        pytest.param(
            aiohttp.ClientPayloadError("Response payload is not completed"),
            ConnectionFailedError,
            "connection",
            id="torn-body",
        ),
    ],
)
async def test_transport_failures_are_retried(
    mock: aioresponses,
    failure_exc: Exception,
    error_class: type[TransportError],
    code: str,
) -> None:
    mock.post(GENERAL_URL, exception=failure_exc)
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    async with make_client(sleeps) as client:
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 2
    assert recognition.text == RESULT_TEXT
    assert len(sleeps.waits) == 1

    mock.post(GENERAL_URL, exception=failure_exc, repeat=True)
    async with make_client(sleeps, retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(error_class) as raised:
            await client.recognize(PNG)
    assert raised.value.code == code
    assert raised.value.attempts == 3
    assert raised.value.retryable is True
    assert request_count(mock) == 5
    assert_secret_kept(raised.value)


async def test_http_502_html_is_retried(mock: aioresponses) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    mock.post(GENERAL_URL, status=502, body=html, content_type="text/html")
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        assert (await client.recognize(PNG)).attempts == 2

    mock.post(GENERAL_URL, status=502, body=html, content_type="text/html", repeat=True)
    async with make_client(Sleeps(), retry=RetryPolicy(max_attempts=3)) as client:
        with pytest.raises(HttpStatusError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == "http_502"
    assert raised.value.status == 502
    assert raised.value.attempts == 3
    assert request_count(mock) == 5
    assert_secret_kept(raised.value)


async def test_truncated_json_is_retried(mock: aioresponses) -> None:
    torn = json.dumps(envelope())[:40]
    mock.post(GENERAL_URL, body=torn)
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        assert (await client.recognize(PNG)).attempts == 2

    mock.post(GENERAL_URL, body=torn, repeat=True)
    async with make_client(Sleeps(), retry=RetryPolicy(max_attempts=2)) as client:
        with pytest.raises(MalformedResponseError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == "bad_response"
    assert raised.value.attempts == 2
    assert request_count(mock) == 4
    assert_secret_kept(raised.value)


@pytest.mark.parametrize(
    ("code", "error_class"),
    [
        pytest.param(4000003, InvalidRequestError, id="4000003-file-type"),
        pytest.param(4000001, InvalidRequestError, id="4000001-parameter"),
        pytest.param(4131000, InvalidRequestError, id="4131000-too-large"),
        pytest.param(4000505, InvalidRequestError, id="4000505-ratio"),
        pytest.param(4010001, AuthError, id="4010001-appkey"),
        pytest.param(4010007, AuthError, id="4010007-permission"),
    ],
)
async def test_final_result_codes_are_not_retried(
    mock: aioresponses, code: int, error_class: type[OcrError]
) -> None:
    mock.post(GENERAL_URL, payload=failure(code), repeat=True)
    sleeps = Sleeps()
    async with make_client(sleeps) as client:
        with pytest.raises(error_class) as raised:
            await client.recognize(PNG)
    assert raised.value.code == code
    assert raised.value.attempts == 1
    assert raised.value.local is False
    assert raised.value.retryable is False
    assert request_count(mock) == 1
    assert sleeps.waits == []
    assert_secret_kept(raised.value)


async def test_http_404_html_is_not_retried(mock: aioresponses) -> None:
    mock.post(
        GENERAL_URL,
        status=404,
        body="<html>Not Found</html>",
        content_type="text/html",
        repeat=True,
    )
    sleeps = Sleeps()
    async with make_client(sleeps) as client:
        with pytest.raises(HttpStatusError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == "http_404"
    assert raised.value.attempts == 1
    assert request_count(mock) == 1
    assert sleeps.waits == []
    assert_secret_kept(raised.value)


async def test_rate_limit_exhaustion_reports_every_attempt(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(4000006), repeat=True)
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=3, max_throttled=3)
    async with make_client(sleeps, retry=policy) as client:
        with pytest.raises(RateLimitedError) as raised:
            await client.recognize(PNG)
    assert raised.value.attempts == 3
    assert raised.value.code == 4000006
    assert request_count(mock) == 3
    assert len(sleeps.waits) == 2
    assert_secret_kept(raised.value)


async def test_a_final_error_after_retries_counts_all_attempts(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=failure(4000003))
    async with make_client(Sleeps()) as client:
        with pytest.raises(InvalidRequestError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == 4000003
    assert raised.value.attempts == 2
    assert request_count(mock) == 2


async def test_one_attempt_policy_never_retries(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(4000006), repeat=True)
    sleeps = Sleeps()
    policy = RetryPolicy(max_attempts=1, max_throttled=1)
    async with make_client(sleeps, retry=policy) as client:
        with pytest.raises(RateLimitedError) as raised:
            await client.recognize(PNG)
    assert raised.value.attempts == 1
    assert request_count(mock) == 1
    assert sleeps.waits == []


# --- local pre-checks -----------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "max_bytes", "code"),
    [
        pytest.param(b"", None, 4000004, id="empty-bytes"),
        pytest.param(ImageBytes(b""), None, 4000004, id="empty-ImageBytes"),
        pytest.param(b"just some text\n", None, 4000003, id="text-bytes"),
        pytest.param(b"GIF89a" + bytes(20), None, 4000003, id="gif"),
        pytest.param(PNG + bytes(2000), 1000, 4131000, id="oversize"),
        # The limit covers the whole multipart body, so the image alone fitting is not enough.
        pytest.param(PNG + bytes(1000 - len(PNG)), 1000, 4131000, id="framing-counts"),
        pytest.param("https://img.example.com:8080/a.png", None, 4000001, id="port-8080"),
        pytest.param("ftp://img.example.com/a.png", None, 4000001, id="ftp"),
        pytest.param(ImageUrl("https://:443/a.png"), None, 4000001, id="no-host"),
    ],
)
async def test_local_precheck_failures_send_nothing(
    mock: aioresponses, image: ImageInput, max_bytes: int | None, code: int
) -> None:
    mock.post(GENERAL_URL, payload=envelope(), repeat=True)
    sleeps = Sleeps()
    options: dict[str, Any] = {} if max_bytes is None else {"max_bytes": max_bytes}
    async with make_client(sleeps, **options) as client:
        with pytest.raises(LocalCheckError) as raised:
            await client.recognize(image)
    assert raised.value.code == code
    assert raised.value.attempts == 0
    assert raised.value.local is True
    assert raised.value.retryable is False
    assert mock.requests == {}
    assert sleeps.waits == []
    assert_secret_kept(raised.value)


async def test_oversized_file_is_refused_before_sending(mock: aioresponses, tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(PNG + bytes(5000))
    mock.post(GENERAL_URL, payload=envelope(), repeat=True)
    async with make_client(Sleeps(), max_bytes=1000) as client:
        with pytest.raises(LocalCheckError) as raised:
            await client.recognize(path)
    assert raised.value.code == 4131000
    assert raised.value.attempts == 0
    assert mock.requests == {}


async def test_missing_file_is_a_source_error_and_sends_nothing(
    mock: aioresponses, tmp_path: Path
) -> None:
    mock.post(GENERAL_URL, payload=envelope(), repeat=True)
    async with make_client(Sleeps()) as client:
        with pytest.raises(SourceError) as raised:
            await client.recognize(tmp_path / "nope.png")
    assert raised.value.code == "not_found"
    assert raised.value.attempts == 0
    assert raised.value.local is True
    assert mock.requests == {}


# --- token renewal --------------------------------------------------------------


async def test_rejected_token_is_renewed_and_retried_at_once(mock: aioresponses) -> None:
    tokens = RenewingTokens(TOKEN, NEW_TOKEN)
    assert isinstance(tokens, TokenProvider)
    mock.post(GENERAL_URL, payload=failure(4010006))
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    async with make_client(sleeps, token=tokens) as client:
        recognition = await client.recognize(PNG)

    assert recognition.attempts == 2
    assert recognition.text == RESULT_TEXT
    first, second = calls_to(mock)
    assert sent_headers(first)["X-NHN-Authorization"] == f"Bearer {TOKEN}"
    assert sent_headers(second)["X-NHN-Authorization"] == f"Bearer {NEW_TOKEN}"
    assert tokens.rejected == [TOKEN]
    assert all(wait == 0 for wait in sleeps.waits)


async def test_static_token_refused_is_final(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(4010006), repeat=True)
    sleeps = Sleeps()
    async with make_client(sleeps, token=StaticToken(TOKEN)) as client:
        with pytest.raises(InvalidTokenError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == 4010006
    assert raised.value.attempts == 1
    assert request_count(mock) == 1
    assert sleeps.waits == []
    assert_secret_kept(raised.value)


async def test_token_is_renewed_only_once_per_image(mock: aioresponses) -> None:
    tokens = EndlessTokens(TOKEN)
    mock.post(GENERAL_URL, payload=failure(4010006), repeat=True)
    sleeps = Sleeps()
    async with make_client(sleeps, token=tokens) as client:
        with pytest.raises(InvalidTokenError) as raised:
            await client.recognize(PNG)
    assert raised.value.attempts == 2
    first, second = calls_to(mock)
    assert request_count(mock) == 2
    assert sent_headers(first)["X-NHN-Authorization"] == f"Bearer {TOKEN}"
    assert sent_headers(second)["X-NHN-Authorization"] == f"Bearer {NEW_TOKEN}-1"
    assert tokens.rejected == [TOKEN]
    assert all(wait == 0 for wait in sleeps.waits)
    assert_secret_kept(raised.value)


async def test_provider_that_cannot_renew_stops_after_one_request(mock: aioresponses) -> None:
    tokens = RenewingTokens(TOKEN)
    mock.post(GENERAL_URL, payload=failure(4010006), repeat=True)
    async with make_client(Sleeps(), token=tokens) as client:
        with pytest.raises(InvalidTokenError):
            await client.recognize(PNG)
    assert request_count(mock) == 1
    assert tokens.rejected == [TOKEN]


async def test_renewal_after_backoff_retries_uses_the_new_token(mock: aioresponses) -> None:
    tokens = RenewingTokens(TOKEN, NEW_TOKEN)
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=failure(4010006))
    mock.post(GENERAL_URL, payload=envelope())
    sleeps = Sleeps()
    policy = RetryPolicy(jitter=0.0)
    async with make_client(sleeps, token=tokens, retry=policy) as client:
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 3
    auth = [sent_headers(c)["X-NHN-Authorization"] for c in calls_to(mock)]
    assert auth == [f"Bearer {TOKEN}", f"Bearer {TOKEN}", f"Bearer {NEW_TOKEN}"]
    assert sleeps.waits == [0.5]  # a renewed token is tried at once, with no sleep at all


# --- session ownership and configuration -----------------------------------------


async def test_a_caller_session_is_left_open(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=envelope())
    async with aiohttp.ClientSession() as session:
        async with make_client(Sleeps(), session=session) as client:
            await client.recognize(PNG)
        assert session.closed is False
    assert request_count(mock) == 1


async def test_a_session_the_client_opened_is_closed(
    mock: aioresponses, monkeypatch: pytest.MonkeyPatch
) -> None:
    created: list[aiohttp.ClientSession] = []
    real_session = aiohttp.ClientSession

    def recording_session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        session = real_session(*args, **kwargs)
        created.append(session)
        return session

    monkeypatch.setattr(aiohttp, "ClientSession", recording_session)
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps(), concurrency=3, timeout=7.5) as client:
        await client.recognize(PNG)
        [session] = created
        assert session.closed is False
        assert session.connector is not None
        assert session.connector.limit == 3
        assert session.timeout.total == 7.5
    assert session.closed is True


async def test_recognize_outside_async_with_raises(mock: aioresponses) -> None:
    client = make_client(Sleeps())
    with pytest.raises(RuntimeError, match="async with"):
        await client.recognize(PNG)
    async with client:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        await client.recognize(PNG)
    assert mock.requests == {}


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"appkey": ""}, id="empty-appkey"),
        pytest.param({"concurrency": 0}, id="concurrency-0"),
        pytest.param({"timeout": 0}, id="timeout-0"),
        pytest.param({"timeout": -1.0}, id="timeout-negative"),
        pytest.param({"max_bytes": 0}, id="max-bytes-0"),
        pytest.param({"token": "   "}, id="blank-token"),
        pytest.param({"token": "a\nb"}, id="token-with-line-break"),
    ],
)
def test_bad_settings_are_configuration_errors(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        make_client(Sleeps(), **overrides)


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"max_attempts": 0}, id="max-attempts-0"),
        pytest.param({"initial_wait": -0.1}, id="negative-initial"),
        pytest.param({"max_wait": -1.0}, id="negative-max"),
        pytest.param({"jitter": -0.5}, id="negative-jitter"),
    ],
)
def test_bad_retry_policies_are_configuration_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**settings)


def test_max_bytes_property_reports_the_limit() -> None:
    assert make_client(Sleeps(), max_bytes=1234).max_bytes == 1234


def test_constructing_a_client_emits_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        OcrClient(appkey=APPKEY, token=TOKEN)


async def test_caller_session_raise_for_status_does_not_change_classification(
    mock: aioresponses,
) -> None:
    mock.post(
        GENERAL_URL,
        status=404,
        body="<html>Not Found</html>",
        content_type="text/html",
        repeat=True,
    )
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        make_client(Sleeps(), session=session) as client,
    ):
        with pytest.raises(HttpStatusError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == "http_404"
    assert request_count(mock) == 1


async def test_caller_session_raise_for_status_keeps_a_429_envelope(mock: aioresponses) -> None:
    # A gateway may send the API's 4000006 envelope with HTTP 429: still a rate limit.
    mock.post(GENERAL_URL, status=429, payload=failure(4000006), repeat=True)
    sleeps = Sleeps()
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        make_client(
            sleeps, session=session, retry=RetryPolicy(max_attempts=2, max_throttled=2)
        ) as client,
    ):
        with pytest.raises(RateLimitedError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == 4000006
    assert raised.value.attempts == 2
    assert len(sleeps.waits) == 1


# --- secrets --------------------------------------------------------------------


def test_client_repr_hides_the_token() -> None:
    client = make_client(Sleeps())
    assert TOKEN not in repr(client)
    assert TOKEN not in str(client)
    tokens_client = make_client(Sleeps(), token=StaticToken(TOKEN))
    assert TOKEN not in repr(tokens_client)


async def test_debug_logs_never_show_the_token(
    mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ocr_async")
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, exception=aiohttp.ServerDisconnectedError())
    mock.post(GENERAL_URL, payload=failure(4010006))
    async with make_client(Sleeps()) as client:
        with pytest.raises(InvalidTokenError) as raised:
            await client.recognize(PNG)
    assert raised.value.attempts == 3
    assert_secret_kept(raised.value)
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        pytest.param(400, HttpStatusError, id="400-html"),
        pytest.param(200, MalformedResponseError, id="200-html"),
    ],
)
async def test_a_gateway_echoing_the_token_does_not_leak_it(
    mock: aioresponses, status: int, error_class: type[TransportError]
) -> None:
    echo = f"<html>Bad Request: X-NHN-Authorization: Bearer {TOKEN}</html>"
    mock.post(GENERAL_URL, status=status, body=echo, content_type="text/html", repeat=True)
    async with make_client(Sleeps(), retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(error_class) as raised:
            await client.recognize(PNG)
    assert "Bearer <redacted>" in str(raised.value)
    assert_secret_kept(raised.value)


async def test_a_renewed_token_echoed_by_a_gateway_does_not_leak(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(4010006))
    echo = f"<html>502 upstream said: Bearer {NEW_TOKEN}</html>"
    mock.post(GENERAL_URL, status=502, body=echo, content_type="text/html", repeat=True)
    tokens = RenewingTokens(TOKEN, NEW_TOKEN)
    async with make_client(Sleeps(), token=tokens, retry=RetryPolicy(max_attempts=2)) as client:
        with pytest.raises(HttpStatusError) as raised:
            await client.recognize(PNG)
    assert raised.value.attempts == 2
    assert "<redacted>" in str(raised.value)
    assert_secret_kept(raised.value)


async def test_each_retry_is_logged_at_debug_without_the_token(
    mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ocr_async")
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, exception=aiohttp.ServerDisconnectedError())
    mock.post(GENERAL_URL, payload=envelope())
    policy = RetryPolicy(jitter=0.0)
    async with make_client(Sleeps(), retry=policy) as client:
        recognition = await client.recognize(ImageBytes(PNG, name="page-7"))
    assert recognition.attempts == 3
    messages = [r.getMessage() for r in caplog.records if r.name == "ocr_async.client"]
    assert len(messages) == 2
    assert messages[0].startswith("page-7: attempt 1 failed ([4000006]")
    assert messages[0].endswith("retrying in 0.50 s")
    assert messages[1].startswith("page-7: attempt 2 failed ([connection]")
    assert messages[1].endswith("retrying in 1.00 s")


# --- clock ----------------------------------------------------------------------


async def test_elapsed_ms_comes_from_the_injected_clock(mock: aioresponses) -> None:
    clock = FakeClock()

    def server_takes_125_ms(url: URL, **kwargs: Any) -> None:
        clock.now += 0.125

    mock.post(GENERAL_URL, payload=envelope(), callback=server_takes_125_ms)
    async with make_client(Sleeps(clock), clock=clock) as client:
        recognition = await client.recognize(PNG)
    assert recognition.elapsed_ms == 125.0


async def test_elapsed_ms_includes_backoff_waits(mock: aioresponses) -> None:
    clock = FakeClock()

    def server_takes_250_ms(url: URL, **kwargs: Any) -> None:
        clock.now += 0.25

    mock.post(GENERAL_URL, payload=failure(4000006), callback=server_takes_250_ms)
    mock.post(GENERAL_URL, payload=envelope(), callback=server_takes_250_ms)
    sleeps = Sleeps(clock)
    async with make_client(sleeps, clock=clock, retry=RetryPolicy(jitter=0.0)) as client:
        recognition = await client.recognize(PNG)
    assert sleeps.waits == [0.5]
    assert recognition.elapsed_ms == 1000.0


# --- a real socket --------------------------------------------------------------


def base_url_of(server: BaseTestServer) -> str:
    return str(server.make_url(""))


async def test_real_server_receives_a_valid_multipart_upload() -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        field = form["image"]
        assert isinstance(field, web.FileField)
        seen.append((request.headers["X-NHN-Authorization"], field.filename, field.file.read()))
        return web.json_response(envelope())

    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", handler)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        make_client(Sleeps(), base_url=base_url_of(server)) as client,
    ):
        recognition = await client.recognize(PNG)
    assert recognition.text == RESULT_TEXT
    assert seen == [(f"Bearer {TOKEN}", "image.png", PNG)]


async def test_real_server_too_slow_times_out_after_every_attempt() -> None:
    release = asyncio.Event()
    hits: list[int] = []

    async def slow(request: web.Request) -> web.StreamResponse:
        hits.append(1)
        await request.read()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 5)
        return web.json_response(envelope())

    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", slow)
    sleeps = Sleeps()
    async with TestServer(app, host="127.0.0.1") as server:
        try:
            async with make_client(
                sleeps, base_url=base_url_of(server), timeout=0.2, retry=RetryPolicy(max_attempts=2)
            ) as client:
                with pytest.raises(RequestTimeoutError) as raised:
                    await client.recognize(PNG)
        finally:
            release.set()
    assert raised.value.code == "timeout"
    assert raised.value.attempts == 2
    assert len(hits) == 2
    assert len(sleeps.waits) == 1
    assert_secret_kept(raised.value)


async def test_real_server_too_slow_times_out_with_a_caller_session() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.StreamResponse:
        await request.read()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(release.wait(), 5)
        return web.json_response(envelope())

    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", slow)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        try:
            async with make_client(
                Sleeps(),
                base_url=base_url_of(server),
                session=session,
                timeout=0.1,
                retry=RetryPolicy(max_attempts=1),
            ) as client:
                with pytest.raises(RequestTimeoutError):
                    # With the bug the client waits on; give up well before the server does.
                    await asyncio.wait_for(client.recognize(PNG), 0.6)
        finally:
            release.set()


def torn_app(torn_answers: int) -> tuple[web.Application, list[int]]:
    """A server that cuts off its first ``torn_answers`` answers mid-body."""
    hits: list[int] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(1)
        await request.read()
        if len(hits) > torn_answers:
            return web.json_response(envelope())
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(json.dumps(envelope()).encode()[:30])
        assert request.transport is not None
        request.transport.close()
        return response

    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", handler)
    return app, hits


async def test_real_server_dropping_mid_body_is_retried() -> None:
    app, hits = torn_app(torn_answers=1)
    sleeps = Sleeps()
    async with (
        TestServer(app, host="127.0.0.1") as server,
        make_client(sleeps, base_url=base_url_of(server)) as client,
    ):
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 2
    assert recognition.text == RESULT_TEXT
    assert len(hits) == 2
    assert len(sleeps.waits) == 1


async def test_real_server_always_dropping_mid_body_is_a_connection_failure() -> None:
    app, hits = torn_app(torn_answers=99)
    sleeps = Sleeps()
    async with (
        TestServer(app, host="127.0.0.1") as server,
        make_client(
            sleeps, base_url=base_url_of(server), retry=RetryPolicy(max_attempts=3)
        ) as client,
    ):
        with pytest.raises(ConnectionFailedError) as raised:
            await client.recognize(PNG)
    assert raised.value.code == "connection"
    assert raised.value.attempts == 3
    assert len(hits) == 3
    assert len(sleeps.waits) == 2
    assert_secret_kept(raised.value)


# --- bounds and logs added after review -------------------------------------------


async def test_concurrency_is_enforced_on_a_callers_session() -> None:
    # A web backend shares one client across handlers and passes its own
    # session, whose pool is larger: the client still bounds its requests.
    in_flight = 0
    peak = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return web.json_response(envelope())

    app = web.Application()
    app.router.add_post("/v1.1/appkeys/{appkey}/general", handler)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        client = OcrClient(
            appkey=APPKEY,
            token=TOKEN,
            base_url=str(server.make_url("")).rstrip("/"),
            session=session,
            concurrency=3,
            # The semaphore is under test, not the rate controller's start-up
            # climb, which would keep fewer calls in flight at first.
            adapt_rate=False,
        )
        async with client:
            await asyncio.gather(*(client.recognize(PNG) for _ in range(12)))
    assert peak == 3


async def test_retry_log_hides_url_query_and_credentials(
    mock: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    url = "https://user:pa55@img.example.com:10443/a/b.png?X-Signature=s3cr3t"
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(Sleeps()) as client:
        await client.recognize(url)
    logged = caplog.text
    assert "https://img.example.com:10443/a/b.png?..." in logged
    assert "pa55" not in logged
    assert "s3cr3t" not in logged


@pytest.mark.parametrize("timeout", [float("nan"), -1.0, 0.0])
def test_non_positive_or_nan_timeout_is_refused(timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        OcrClient(appkey=APPKEY, token=TOKEN, timeout=timeout)


# --- the rate controller on the request path ----------------------------------------


async def test_call_limit_refusals_have_their_own_budget(mock: aioresponses) -> None:
    for _ in range(5):
        mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=envelope())
    policy = RetryPolicy(max_attempts=2, max_throttled=10)
    async with make_client(Sleeps(), retry=policy) as client:
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 6  # five refusals did not use up max_attempts=2


async def test_other_failures_still_stop_at_max_attempts(mock: aioresponses) -> None:
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=failure(5005001), repeat=True)
    policy = RetryPolicy(max_attempts=2, max_throttled=10)
    async with make_client(Sleeps(), retry=policy) as client:
        with pytest.raises(ServerFailureError) as raised:
            await client.recognize(PNG)
    assert raised.value.attempts == 3  # one refusal + two engine failures


def controlled_client(clock: FakeClock, **overrides: Any) -> OcrClient:
    options: dict[str, Any] = {
        "appkey": APPKEY,
        "token": TOKEN,
        "sleep": Sleeps(clock),  # advances the fake clock: the pacer really paces
        "clock": clock,
    }
    options.update(overrides)
    return OcrClient(**options)


async def test_refusals_go_back_through_the_controller_without_backoff(
    mock: aioresponses,
) -> None:
    clock = FakeClock()
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=failure(4000006))
    mock.post(GENERAL_URL, payload=envelope())
    async with controlled_client(clock) as client:
        controller = client.rate_controller
        assert controller is not None
        assert controller.slow_start  # climbing until the first refusal
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 3
    assert controller.throttled == 2
    # The second refusal came before anything got through after the cut:
    # the same burst, so a longer pause rather than a second cut.
    assert controller.congestion_events == 1
    assert controller.successes == 1
    assert not controller.slow_start  # holding under the limit it found
    # No exponential backoff: only the controller's pauses (one call's time
    # at the 5 calls/s it started at, then twice that for the second
    # refusal of the burst) and pacing, under the 0.5 s + 1.0 s (plus
    # jitter) that backoff would have waited.
    assert clock.now - 1000.0 < 1.5


async def test_fixed_rps_paces_every_request(mock: aioresponses) -> None:
    clock = FakeClock()
    mock.post(GENERAL_URL, payload=envelope(), repeat=True)
    async with controlled_client(clock, rps=4.0) as client:
        for _ in range(9):
            await client.recognize(PNG)
    # 9 calls at 4 calls/s with a burst of one: the last leaves 2 s after the first.
    assert clock.now - 1000.0 == pytest.approx(2.0)


async def test_a_gateways_429_retry_after_pauses_every_worker(mock: aioresponses) -> None:
    clock = FakeClock()
    mock.post(GENERAL_URL, status=429, body="slow down", headers={"Retry-After": "3"})
    mock.post(GENERAL_URL, payload=envelope())
    async with controlled_client(clock) as client:
        controller = client.rate_controller
        assert controller is not None
        recognition = await client.recognize(PNG)
        # Every worker is held until the gateway's time has passed.
        assert controller.paused_until >= 1003.0
    assert recognition.attempts == 2
    assert (controller.throttled, controller.congestion_events) == (1, 1)
    assert clock.now >= 1003.0  # the retry left after the Retry-After, not before


async def test_retry_after_as_a_date_is_read_against_the_answers_date(mock: aioresponses) -> None:
    clock = FakeClock()
    headers = {
        "Retry-After": "Sun, 06 Nov 1994 08:49:42 GMT",
        "Date": "Sun, 06 Nov 1994 08:49:37 GMT",  # the gateway's clock: 5 s before
    }
    mock.post(GENERAL_URL, status=429, headers=headers)
    mock.post(GENERAL_URL, payload=envelope())
    async with controlled_client(clock) as client:
        await client.recognize(PNG)
    assert clock.now >= 1005.0


async def test_without_the_controller_retry_after_is_a_floor_under_backoff(
    mock: aioresponses,
) -> None:
    sleeps = Sleeps()
    mock.post(GENERAL_URL, status=429, headers={"Retry-After": "7"})
    mock.post(GENERAL_URL, payload=failure(4000006), headers={"Retry-After": "0"})
    mock.post(GENERAL_URL, payload=envelope())
    async with make_client(sleeps) as client:
        recognition = await client.recognize(PNG)
    assert recognition.attempts == 3
    assert sleeps.waits[0] == 7.0  # not the 0.5 s + jitter of the first backoff
    assert sleeps.waits[1] < 2.0  # a 200's Retry-After: 0 is no floor at all


async def test_transport_failures_tell_the_controller_nothing(mock: aioresponses) -> None:
    clock = FakeClock()
    mock.post(GENERAL_URL, exception=aiohttp.ServerDisconnectedError())
    mock.post(GENERAL_URL, payload=failure(4000003))
    async with controlled_client(clock) as client:
        with pytest.raises(InvalidRequestError):
            await client.recognize(PNG)
        controller = client.rate_controller
        assert controller is not None
    assert (controller.sent, controller.successes, controller.throttled) == (2, 1, 0)


async def test_rate_control_can_be_turned_off(mock: aioresponses) -> None:
    async with make_client(Sleeps()) as client:
        assert client.rate_controller is None


# --- redirects: never followed -----------------------------------------------------


def catch_all(handler: Any) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    "image", [pytest.param(PNG, id="file"), pytest.param(ImageUrl(IMAGE_URL), id="url")]
)
async def test_a_redirect_is_an_error_and_is_never_followed(status: int, image: ImageInput) -> None:
    # Followed, a 302 turns the POST into a GET, carries the token to the
    # other host, and that host's answer comes back as the result.
    elsewhere: list[str] = []

    async def other_host(request: web.Request) -> web.StreamResponse:
        elsewhere.append(request.headers.get("X-NHN-Authorization", ""))
        return web.json_response(envelope())

    async with TestServer(catch_all(other_host), host="127.0.0.1") as other:
        other_origin = base_url_of(other).rstrip("/")
        target = f"{other_origin}/steal/here?sig=s3cr3t-query"

        async def redirect(request: web.Request) -> web.StreamResponse:
            return web.Response(status=status, headers={"Location": target})

        sleeps = Sleeps()
        async with (
            TestServer(catch_all(redirect), host="127.0.0.1") as server,
            make_client(sleeps, base_url=base_url_of(server)) as client,
        ):
            with pytest.raises(HttpStatusError) as raised:
                await client.recognize(image)
    error = raised.value
    assert elsewhere == []
    assert error.code == f"http_{status}"
    assert error.retryable is False
    assert error.attempts == 1
    assert sleeps.waits == []
    assert f"redirect to {other_origin}," in error.message
    assert "steal" not in error.message
    assert "s3cr3t" not in error.message
    assert_secret_kept(error)


async def test_a_relative_redirect_names_the_api_origin() -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": "/elsewhere?token=x"})

    async with (
        TestServer(catch_all(redirect), host="127.0.0.1") as server,
        make_client(Sleeps(), base_url=base_url_of(server)) as client,
    ):
        origin = base_url_of(server).rstrip("/")
        with pytest.raises(HttpStatusError) as raised:
            await client.recognize(PNG)
    assert f"redirect to {origin}," in raised.value.message
    assert "token" not in raised.value.message


# --- secrets echoed by a server -------------------------------------------------------


async def test_a_result_message_echoing_the_token_is_redacted(mock: aioresponses) -> None:
    echo = envelope(4000001, f"header X-NHN-Authorization: Bearer {TOKEN} is not allowed")
    mock.post(GENERAL_URL, payload=echo)
    async with make_client(Sleeps()) as client:
        with pytest.raises(InvalidRequestError) as raised:
            await client.recognize(PNG)
    assert raised.value.message == (
        "INVALID_PARAMETER: header X-NHN-Authorization: Bearer <redacted> is not allowed"
    )
    assert_secret_kept(raised.value)


async def test_a_success_echoing_the_token_is_redacted(mock: aioresponses) -> None:
    words = {"inferTexts": [{"value": TOKEN, "conf": 0.5}, {"value": "kept", "conf": 0.5}]}
    mock.post(GENERAL_URL, payload=envelope(result={"listOfInferTexts": [words]}))
    async with make_client(Sleeps()) as client:
        recognition = await client.recognize(PNG)
    assert recognition.text == "<redacted> kept"
    assert TOKEN not in json.dumps(recognition.result.raw)


async def test_an_http_library_error_quoting_the_server_hides_the_token() -> None:
    # aiohttp quotes a malformed header in its error: server text like any other.
    async def echo_badly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen = next(line for line in head.split(b"\r\n") if line.startswith(b"X-NHN"))
        writer.write(b"HTTP/1.1 200 OK\r\nX-Echo: " + seen + b"\x00\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo_badly, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with make_client(
            Sleeps(), base_url=f"http://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=1)
        ) as client:
            with pytest.raises(TransportError) as raised:
                await client.recognize(PNG)
    finally:
        server.close()
        await server.wait_closed()
    assert "Bearer <redacted>" in raised.value.message
    assert_secret_kept(raised.value)


# --- answers too large to keep ------------------------------------------------------------

CAP = 1024 * 1024


class Endless:
    """Streams an answer that never ends; counts what it managed to send."""

    def __init__(self, *, gzip_chunks: bool = False, announce: int | None = None) -> None:
        self.sent = 0
        self.stopped = asyncio.Event()
        self.gzip_chunks = gzip_chunks
        self.announce = announce

    async def handler(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if self.announce is not None:
            response.content_length = self.announce
        first = chunk = b'{"header": {"resultMessage": "' + b"x" * 65536
        if self.gzip_chunks:
            # 8 MB of zeros in 8 kB: a header, then the same deflate blocks
            # again and again (each refers only to zeros before it).
            response.headers["Content-Encoding"] = "gzip"
            squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)
            first = squeezer.compress(b"\0" * (8 * CAP)) + squeezer.flush(zlib.Z_SYNC_FLUSH)
            chunk = squeezer.compress(b"\0" * (8 * CAP)) + squeezer.flush(zlib.Z_SYNC_FLUSH)
        try:
            await response.prepare(request)
            await response.write(first)
            for _ in range(4096):  # up to 256 MB plain, 32 GB unzipped: never reached
                await response.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what this test wants
        finally:
            self.stopped.set()
        return response


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(Endless(), id="endless"),
        pytest.param(Endless(gzip_chunks=True), id="gzip-bomb"),
        pytest.param(Endless(announce=10 * CAP), id="announced-too-long"),
    ],
)
async def test_an_answer_over_the_cap_is_an_error_and_reading_stops(server: Endless) -> None:
    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", server.handler)
    sleeps = Sleeps()
    async with (
        TestServer(app, host="127.0.0.1") as test_server,
        make_client(sleeps, base_url=base_url_of(test_server), max_answer_bytes=CAP) as client,
    ):
        with pytest.raises(AnswerTooLargeError) as raised:
            await client.recognize(PNG)
        await asyncio.wait_for(server.stopped.wait(), 10)
    error = raised.value
    assert error.code == "answer_too_large"
    assert error.retryable is False
    assert error.attempts == 1
    assert sleeps.waits == []
    assert f"over the {CAP}-byte limit" in error.message
    # Reading stopped near the cap: what the socket buffers held, not the body.
    assert server.sent < 64 * CAP


async def test_an_answer_of_exactly_the_cap_is_read() -> None:
    body = json.dumps(envelope()).encode()
    body += b" " * (CAP - len(body))

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", handler)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        make_client(Sleeps(), base_url=base_url_of(server), max_answer_bytes=CAP) as client,
    ):
        recognition = await client.recognize(PNG)
    assert recognition.text == RESULT_TEXT


def test_max_answer_bytes_must_be_positive() -> None:
    with pytest.raises(ConfigurationError):
        OcrClient(appkey=APPKEY, token=TOKEN, max_answer_bytes=0)


# --- big answers are parsed off the event loop -------------------------------------------


async def test_a_big_answer_is_parsed_without_stalling_other_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The big answer's parse is held until the small request has finished.
    # Off the event loop, the small one finishes meanwhile; on it, the loop
    # is stuck in the parse and nothing else can happen until it gives up.
    big_words = [{"value": f"w{n}", "conf": 0.5} for n in range(20_000)]
    big = envelope(result={"listOfInferTexts": [{"inferTexts": big_words}]})
    assert len(json.dumps(big)) > PARSE_INLINE_LIMIT
    small_done = threading.Event()
    big_parsing = threading.Event()
    order: list[str] = []
    real_parse = protocol.parse_response

    def held_parse(status: int, body: bytes, **options: Any) -> Any:
        if b'"w19999"' in body:
            big_parsing.set()
            small_done.wait(timeout=5)
            order.append("big")
        return real_parse(status, body, **options)

    async def handler(request: web.Request) -> web.StreamResponse:
        form = await request.post()
        field = form["image"]
        assert isinstance(field, web.FileField)
        return web.json_response(big if field.file.read() == PNG else envelope())

    monkeypatch.setattr(protocol, "parse_response", held_parse)
    app = web.Application()
    app.router.add_post(f"/v1.1/appkeys/{APPKEY}/general", handler)
    async with (
        TestServer(app, host="127.0.0.1") as server,
        make_client(Sleeps(), base_url=base_url_of(server)) as client,
    ):
        big_task = asyncio.create_task(client.recognize(PNG))
        assert await asyncio.to_thread(big_parsing.wait, 10)
        await client.recognize(JPEG + b"\xff\xd9")
        order.append("small")
        small_done.set()
        recognition = await big_task
    assert order == ["small", "big"]
    assert len(recognition.result.words) == 20_000


# --- a shared quota -----------------------------------------------------------------------


class FakeGroup:
    """A quota group that records what the client asks of it."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.refuse = refuse
        self.started: list[object] = []
        self.closed = 0

    async def start(self, controller: object) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.started.append(controller)

    async def close(self) -> None:
        self.closed += 1


async def test_a_quota_group_is_joined_when_the_client_opens_and_left_to_its_owner() -> None:
    group = FakeGroup()
    client = OcrClient(appkey="k", token="t", shared_quota=group)
    assert client.shared_quota is group
    assert group.started == []  # nothing before it opens
    async with client:
        assert group.started == [client.rate_controller]
    assert group.closed == 0  # a group passed in is its owner's to close


async def test_a_group_that_cannot_be_joined_leaves_the_client_closed() -> None:
    group = FakeGroup(refuse=ConfigurationError("the store is down"))
    client = OcrClient(appkey="k", token="t", shared_quota=group)
    with pytest.raises(ConfigurationError, match="the store is down"):
        await client.__aenter__()
    transport = client.transport
    assert isinstance(transport, AiohttpTransport)
    assert transport.session is None or transport.session.closed  # nothing left open
    with pytest.raises(RuntimeError, match="not open"):
        await client.recognize(b"\x89PNG")


@pytest.mark.parametrize(
    "settings",
    [pytest.param({"rps": 5.0}, id="rps"), pytest.param({"adapt_rate": False}, id="no-adapt")],
)
def test_a_shared_quota_needs_the_adaptive_controller(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="adaptive"):
        OcrClient(appkey="k", token="t", shared_quota=FakeGroup(), **settings)
    with pytest.raises(ConfigurationError, match="adaptive"):
        OcrClient(appkey="k", token="t", shared_quota="redis://r:6379/0", **settings)


def test_a_shared_quota_url_without_redis_py_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ocr_async.shared_quota", None)  # import fails
    with pytest.raises(ConfigurationError, match=r"pip install 'ocr-async\[cluster\]'"):
        OcrClient(appkey="k", token="t", shared_quota="redis://r:6379/0")


async def test_leaving_a_shared_quota_never_holds_up_closing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Stuck(FakeGroup):
        async def close(self) -> None:
            await asyncio.Event().wait()  # a store that never answers

    monkeypatch.setattr(client_module, "LEAVE_TIMEOUT", 0.05)
    client = OcrClient(appkey="k", token="t")
    stuck = Stuck()
    # As if built from a URL: the client owns it, and leaves it when it closes.
    client._shared, client._owns_shared = stuck, True
    async with client:
        assert stuck.started == [client.rate_controller]
    transport = client.transport
    assert isinstance(transport, AiohttpTransport)
    assert transport.session is None or transport.session.closed
    assert "could not leave" in caplog.text
