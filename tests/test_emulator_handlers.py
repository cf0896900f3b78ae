"""Tests for ocr_async.emulator.handlers: the routes of a real emulator on loopback.

Every request goes over a real socket. Requests are built with
:mod:`ocr_async.protocol` where possible and answers are read back with
``protocol.parse_response``, so these tests also prove that the client and
the emulator agree. Expected messages and shapes come from the API guide
(``shared/spec/000_*.txt``) and API-FACTS.md.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import test_utils, web

from ocr_async.emulator import (
    RESULT_MESSAGES,
    STATS_KEY,
    EmulatorConfig,
    RunningEmulator,
    create_app,
    find_free_port,
    make_jpeg,
    make_png,
    running_emulator,
    sample_path,
)
from ocr_async.emulator.wire import multipart_field
from ocr_async.errors import (
    InvalidRequestError,
    InvalidTokenError,
    LocalCheckError,
    RateLimitedError,
    TemporarilyUnavailableError,
)
from ocr_async.models import Endpoint
from ocr_async.protocol import (
    AUTH_HEADER,
    PreparedRequest,
    build_file_request,
    build_url_request,
    endpoint_url,
    parse_response,
)

TOKEN = "test-token"
APPKEY = "my-appkey"
AUTH = {AUTH_HEADER: f"Bearer {TOKEN}"}
KOREAN = "안녕하세요 세계"
ENDPOINTS = [
    pytest.param(Endpoint.GENERAL, id="general"),
    pytest.param(Endpoint.CROPPING, id="cropping"),
]


class FakeClock:
    """A monotonic clock that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def emulator_in_range(config: EmulatorConfig | None = None) -> AsyncIterator[RunningEmulator]:
    """An emulator on a port the API accepts in imageUrl (10000-12000).

    So its own ``/samples/`` route can serve URL-mode requests.
    """
    async with running_emulator(config, port=find_free_port(10000, 12000)) as emulator:
        yield emulator


@pytest.fixture
async def emu() -> AsyncIterator[RunningEmulator]:
    async with emulator_in_range() as emulator:
        yield emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def ocr_url(
    emu: RunningEmulator, endpoint: Endpoint = Endpoint.GENERAL, appkey: str = APPKEY
) -> str:
    return endpoint_url(emu.base_url, appkey, endpoint)


async def read_answer(response: aiohttp.ClientResponse) -> dict[str, Any]:
    # The API always answers HTTP 200 with a JSON envelope (API guide).
    assert response.status == 200
    assert response.content_type == "application/json"
    document = await response.json()
    assert isinstance(document, dict)
    return document


async def send(session: aiohttp.ClientSession, prepared: PreparedRequest) -> dict[str, Any]:
    async with session.post(prepared.url, data=prepared.body, headers=dict(prepared.headers)) as r:
        return await read_answer(r)


async def send_raw(session: aiohttp.ClientSession, prepared: PreparedRequest) -> bytes:
    async with session.post(prepared.url, data=prepared.body, headers=dict(prepared.headers)) as r:
        assert r.status == 200
        return await r.read()


def file_request(
    emu: RunningEmulator,
    image: bytes,
    endpoint: Endpoint = Endpoint.GENERAL,
    *,
    token: str = TOKEN,
    appkey: str = APPKEY,
    max_bytes: int = 10**9,
) -> PreparedRequest:
    return build_file_request(
        base_url=emu.base_url,
        appkey=appkey,
        token=token,
        endpoint=endpoint,
        image=image,
        max_bytes=max_bytes,
    )


def url_request(
    emu: RunningEmulator, image_url: str, endpoint: Endpoint = Endpoint.GENERAL
) -> PreparedRequest:
    return build_url_request(
        base_url=emu.base_url, appkey=APPKEY, token=TOKEN, endpoint=endpoint, image_url=image_url
    )


async def post_form(
    session: aiohttp.ClientSession,
    url: str,
    image: bytes,
    *,
    headers: dict[str, str] | None = None,
    field: str = "image",
) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field(field, image, filename="sample.png", content_type="image/png")
    async with session.post(url, data=form, headers=AUTH if headers is None else headers) as r:
        return await read_answer(r)


async def post_body(
    session: aiohttp.ClientSession, url: str, body: bytes, content_type: str
) -> dict[str, Any]:
    headers = {**AUTH, "Content-Type": content_type}
    async with session.post(url, data=body, headers=headers) as r:
        return await read_answer(r)


def code_of(document: dict[str, Any]) -> int:
    code = document["header"]["resultCode"]
    assert isinstance(code, int)
    return code


def failure(code: int) -> dict[str, Any]:
    """The whole failure answer: a header and no result (API guide)."""
    return {
        "header": {
            "isSuccessful": False,
            "resultCode": code,
            "resultMessage": RESULT_MESSAGES[code],
        }
    }


def texts(document: dict[str, Any]) -> list[list[str]]:
    return [
        [word["value"] for word in group["inferTexts"]]
        for group in document["result"]["listOfInferTexts"]
    ]


# --- success ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("make", [make_png, make_jpeg], ids=["png", "jpeg"])
async def test_file_mode_recognizes_embedded_korean(
    emu: RunningEmulator,
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    make: Callable[[str], bytes],
) -> None:
    image = make(f"{KOREAN}\nline two")
    body = await send_raw(session, file_request(emu, image, endpoint))
    result = parse_response(200, body)
    assert result.text == f"{KOREAN}\nline two"
    assert result.file_type == ("png" if make is make_png else "jpg")
    assert all(word.conf == 0.99 and word.box is not None for word in result.words)
    assert (result.slices_images is not None) == (endpoint is Endpoint.CROPPING)
    assert result.raw["resolution"] == "low"


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("name", "expected"),
    [("stella.jpg", [["stella", "artois"], ["belgium"]]), ("korean.png", [["안녕하세요", "세계"]])],
)
async def test_url_mode_downloads_and_recognizes(
    emu: RunningEmulator,
    session: aiohttp.ClientSession,
    endpoint: Endpoint,
    name: str,
    expected: list[list[str]],
) -> None:
    document = await send(session, url_request(emu, emu.sample_url(name), endpoint))
    assert document["header"] == {"isSuccessful": True, "resultCode": 0, "resultMessage": "SUCCESS"}
    assert texts(document) == expected
    assert document["result"]["fileType"] == name[-3:]
    assert emu.stats.downloads == 1


async def test_result_has_the_real_shape_and_layout(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    document = await send(session, file_request(emu, make_png("ab cde\n한글")))
    assert list(document) == ["header", "result"]
    result = document["result"]
    assert list(result) == ["fileType", "listOfInferTexts", "listOfBoundingBoxes", "resolution"]
    assert result["listOfInferTexts"] == [
        {"inferTexts": [{"value": "ab", "conf": 0.99}, {"value": "cde", "conf": 0.99}]},
        {"inferTexts": [{"value": "한글", "conf": 0.99}]},
    ]
    # Line i at y = 10 + 30 i, 24 high; 12 px per character, 12 px gaps;
    # corners clockwise from the top left.
    assert result["listOfBoundingBoxes"] == [
        {
            "boundingBoxes": [
                {"x1": 10, "y1": 10, "x2": 34, "y2": 10, "x3": 34, "y3": 34, "x4": 10, "y4": 34},
                {"x1": 46, "y1": 10, "x2": 82, "y2": 10, "x3": 82, "y3": 34, "x4": 46, "y4": 34},
            ]
        },
        {
            "boundingBoxes": [
                {"x1": 10, "y1": 40, "x2": 34, "y2": 40, "x3": 34, "y3": 64, "x4": 10, "y4": 64}
            ]
        },
    ]


async def test_answers_are_utf8_json_with_raw_korean(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    body = await send_raw(session, file_request(emu, make_png(KOREAN)))
    assert KOREAN.split()[0].encode("utf-8") in body


async def test_cropping_reports_slices_from_the_image_size(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    image = make_png("long", width=3000, height=200)
    document = await send(session, file_request(emu, image, Endpoint.CROPPING))
    assert document["result"]["slicesImages"] == 6
    big = await send(session, file_request(emu, make_jpeg("hd", 1920, 1080), Endpoint.CROPPING))
    assert big["result"]["resolution"] == "normal"
    assert big["result"]["slicesImages"] == 1


async def test_image_without_text_reads_as_its_fingerprint(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    # PNG magic and the closing IEND chunk (the pre-check wants both), no text.
    image = b"\x89PNG\r\n\x1a\n" + b"not really a png" + b"IEND\xaeB`\x82"
    document = await send(session, file_request(emu, image, Endpoint.CROPPING))
    assert texts(document)[0][0] == "sha256"
    assert len(texts(document)[0][1]) == 16
    assert document["result"]["slicesImages"] == 1  # size unknown
    # Without IEND the emulator refuses it as the client's pre-check does.
    cut_short = await post_form(session, ocr_url(emu), image[:-8])
    assert cut_short == failure(4000002)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_no_text_answers_4000501_without_result(
    emu: RunningEmulator, session: aiohttp.ClientSession, endpoint: Endpoint
) -> None:
    prepared = file_request(emu, sample_path("blank.png").read_bytes(), endpoint)
    body = await send_raw(session, prepared)
    assert json.loads(body) == failure(4000501)
    assert parse_response(200, body).no_text


# --- auth ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        pytest.param({}, 4000005, id="missing"),
        pytest.param({AUTH_HEADER: ""}, 4000005, id="empty"),
        pytest.param({AUTH_HEADER: "Basic dXNlcjpwYXNz"}, 4010006, id="not-bearer"),
        pytest.param({AUTH_HEADER: "Bearer "}, 4010006, id="no-token"),
        pytest.param({AUTH_HEADER: "Bearer anything"}, 0, id="any-token"),
        pytest.param({AUTH_HEADER: "bearer anything"}, 0, id="scheme-case"),
    ],
)
async def test_auth_header(
    emu: RunningEmulator, session: aiohttp.ClientSession, headers: dict[str, str], code: int
) -> None:
    document = await post_form(session, ocr_url(emu), make_png("x"), headers=headers)
    assert code_of(document) == code
    if code:
        assert document == failure(code)


async def test_configured_tokens_and_appkey() -> None:
    config = EmulatorConfig(tokens=frozenset({"good", "also-good"}), appkey="key/한")
    async with emulator_in_range(config) as emu, aiohttp.ClientSession() as session:
        image = make_png("x")
        right = file_request(emu, image, token="also-good", appkey="key/한")
        assert code_of(await send(session, right)) == 0
        wrong_token = file_request(emu, image, token="bad", appkey="key/한")
        assert await send(session, wrong_token) == failure(4010006)
        wrong_key = file_request(emu, image, token="good", appkey="other")
        assert await send(session, wrong_key) == failure(4010001)
        with pytest.raises(InvalidTokenError):  # as the client reads it
            parse_response(200, await send_raw(session, wrong_token))


# --- file mode errors -------------------------------------------------------------


async def test_missing_image_field(emu: RunningEmulator, session: aiohttp.ClientSession) -> None:
    document = await post_form(session, ocr_url(emu), make_png("x"), field="file")
    assert document == failure(4000001)


async def test_empty_image(emu: RunningEmulator, session: aiohttp.ClientSession) -> None:
    assert await post_form(session, ocr_url(emu), b"") == failure(4000004)


@pytest.mark.parametrize(
    "image",
    [
        pytest.param(b"GIF89a\x01\x00\x01\x00\x00\x00\x00", id="gif"),
        pytest.param(b"%PDF-1.7\n", id="pdf"),
        pytest.param(b"\x89PNX", id="almost-png"),
    ],
)
async def test_not_jpeg_or_png(
    emu: RunningEmulator, session: aiohttp.ClientSession, image: bytes
) -> None:
    assert await post_form(session, ocr_url(emu), image) == failure(4000003)


async def test_malformed_multipart(emu: RunningEmulator, session: aiohttp.ClientSession) -> None:
    body = b'--zzz\r\nContent-Disposition: form-data; name="image"\r\n\r\nnever closed'
    document = await post_body(session, ocr_url(emu), body, "multipart/form-data; boundary=zzz")
    assert document == failure(4000001)
    no_boundary = await post_body(session, ocr_url(emu), body, "multipart/form-data")
    assert no_boundary == failure(4000001)


async def test_other_content_types_are_unsupported(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    document = await post_body(session, ocr_url(emu), make_png("x"), "image/png")
    assert document == {
        "header": {
            "isSuccessful": False,
            "resultCode": 415,
            "resultMessage": "Unsupported Media Type",
        }
    }


# --- URL mode errors ------------------------------------------------------------------


@pytest.fixture
async def image_host() -> AsyncIterator[str]:
    """A second server, in the imageUrl port range, with misbehaving routes."""

    async def ok(request: web.Request) -> web.Response:
        return web.Response(body=make_png("from the image host"), content_type="image/png")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return await ok(request)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=make_png("big") + bytes(5000), content_type="image/png")

    async def big_chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(make_png("big"))
        for _ in range(10):
            await response.write(bytes(1000))
        await response.write_eof()
        return response

    async def empty(request: web.Request) -> web.Response:
        return web.Response(body=b"", content_type="image/png")

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>not an image</html>", content_type="text/html")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    app = web.Application()
    for path, handler in [
        ("/ok", ok),
        ("/slow", slow),
        ("/big", big),
        ("/big-chunked", big_chunked),
        ("/empty", empty),
        ("/html", html),
        ("/broken", broken),
        ("/redirect", redirect),
    ]:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = find_free_port(10000, 12000)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "code", "downloads"),
    [
        pytest.param("/ok", 0, 1, id="ok"),
        pytest.param("/slow", 4000503, 1, id="timeout"),
        pytest.param("/big", 4000502, 1, id="too-big-by-length"),
        pytest.param("/big-chunked", 4000502, 1, id="too-big-chunked"),
        pytest.param("/empty", 4000004, 1, id="empty"),
        pytest.param("/html", 4000003, 1, id="not-an-image"),
        pytest.param("/broken", 4000504, 1, id="http-500"),
        pytest.param("/missing", 4000504, 1, id="http-404"),
        pytest.param("/redirect", 4000504, 1, id="redirect-not-followed"),
    ],
)
async def test_url_download_outcomes(image_host: str, path: str, code: int, downloads: int) -> None:
    config = EmulatorConfig(max_bytes=4000, download_timeout=0.2)
    async with emulator_in_range(config) as emu, aiohttp.ClientSession() as session:
        document = await send(session, url_request(emu, image_host + path))
        assert code_of(document) == code
        if code:
            assert document == failure(code)
        assert emu.stats.downloads == downloads


async def test_redirects_are_followed_when_remote_urls_are_allowed(image_host: str) -> None:
    async with (
        emulator_in_range(EmulatorConfig(allow_remote_urls=True)) as emu,
        aiohttp.ClientSession() as session,
    ):
        document = await send(session, url_request(emu, image_host + "/redirect"))
        assert texts(document) == [["from", "the", "image", "host"]]


async def test_connection_refused_is_a_download_failure(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    nobody = find_free_port(10000, 12000)
    document = await send(session, url_request(emu, f"http://127.0.0.1:{nobody}/x.png"))
    assert document == failure(4000504)


async def test_localhost_by_name_is_loopback(
    image_host: str, emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    url = image_host.replace("127.0.0.1", "localhost") + "/ok"
    assert code_of(await send(session, url_request(emu, url))) == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/example.jpg",
        "https://10.0.0.1/x.png",
        "http://[2001:db8::1]:10000/x.png",
        "http://127.0.0.1.nip.io/x.png",
        "http://0.0.0.0:10000/x.png",
    ],
)
async def test_remote_urls_are_not_fetched_by_default(
    emu: RunningEmulator, session: aiohttp.ClientSession, url: str
) -> None:
    assert await send(session, url_request(emu, url)) == failure(4000504)
    assert emu.stats.downloads == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="bad-json"),
        pytest.param(b"[]", id="not-an-object"),
        pytest.param(b"{}", id="no-image-url"),
        pytest.param(b'{"imageUrl": 42}', id="url-not-a-string"),
        pytest.param(b'{"imageUrl": "  "}', id="url-blank"),
        pytest.param(b'{"imageUrl": "ftp://127.0.0.1/x.png"}', id="ftp"),
        pytest.param(b'{"imageUrl": "http://127.0.0.1:8080/x.png"}', id="port-8080"),
        pytest.param(b'{"imageUrl": "http://127.0.0.1:12001/x.png"}', id="port-12001"),
        pytest.param(b'{"imageUrl": "http://127.0.0.1:99999/x.png"}', id="port-invalid"),
        pytest.param(b'{"imageUrl": "http:///x.png"}', id="no-host"),
    ],
)
async def test_bad_url_requests_are_invalid_parameters(
    emu: RunningEmulator, session: aiohttp.ClientSession, body: bytes
) -> None:
    document = await post_body(session, ocr_url(emu), body, "application/json")
    assert document == failure(4000001)
    assert emu.stats.downloads == 0


def test_the_client_refuses_the_same_urls() -> None:
    # The emulator's URL rule is protocol.check_image_url: the client's pre-check.
    for url in ("ftp://127.0.0.1/x.png", "http://127.0.0.1:8080/x.png"):
        with pytest.raises(LocalCheckError) as caught:
            build_url_request(
                base_url="http://e", appkey="k", token="t", endpoint=Endpoint.GENERAL, image_url=url
            )
        assert caught.value.code == 4000001


# --- size limit -----------------------------------------------------------------------


def padded_request(emu: RunningEmulator, size: int) -> PreparedRequest:
    """A file request whose whole body is exactly ``size`` bytes."""
    image = make_png("fits")
    overhead = len(file_request(emu, image).body) - len(image)
    return file_request(emu, image + bytes(size - overhead - len(image)))


async def test_body_of_exactly_max_bytes_is_accepted() -> None:
    async with emulator_in_range(EmulatorConfig(max_bytes=2000)) as emu:
        prepared = padded_request(emu, 2000)
        assert len(prepared.body) == 2000
        async with aiohttp.ClientSession() as session:
            assert texts(await send(session, prepared)) == [["fits"]]
        assert emu.stats.bytes_received == 2000


async def test_body_over_max_bytes_is_refused_unread() -> None:
    async with emulator_in_range(EmulatorConfig(max_bytes=2000)) as emu:
        prepared = padded_request(emu, 2001)
        # The client's own pre-check refuses the same body with the same code.
        with pytest.raises(LocalCheckError) as caught:
            build_file_request(
                base_url=emu.base_url,
                appkey=APPKEY,
                token=TOKEN,
                endpoint=Endpoint.GENERAL,
                image=multipart_field(prepared.body, prepared.headers["Content-Type"], "image")
                or b"",
                max_bytes=2000,
            )
        assert caught.value.code == 4131000
        async with aiohttp.ClientSession() as session:
            body = await send_raw(session, prepared)
        assert json.loads(body) == failure(4131000)
        with pytest.raises(InvalidRequestError):
            parse_response(200, body)
        assert emu.stats.oversize == 1
        assert emu.stats.bytes_received == 0  # refused by Content-Length


async def test_chunked_body_is_read_no_further_than_max_bytes_plus_one() -> None:
    async with emulator_in_range(EmulatorConfig(max_bytes=2000)) as emu:

        async def chunks(body: bytes) -> AsyncIterator[bytes]:
            for i in range(0, len(body), 100):
                yield body[i : i + 100]

        async with aiohttp.ClientSession() as session:
            for size, code in [(2000, 0), (5000, 4131000)]:
                prepared = padded_request(emu, size)
                headers = dict(prepared.headers)
                async with session.post(
                    prepared.url, data=chunks(prepared.body), headers=headers
                ) as r:
                    assert r.request_info.headers.get("Transfer-Encoding") == "chunked"
                    assert code_of(await read_answer(r)) == code
        assert emu.stats.oversize == 1
        assert emu.stats.bytes_received == 2000 + 2001


async def test_expect_continue_upload_is_refused_before_the_body() -> None:
    async with emulator_in_range(EmulatorConfig(max_bytes=2000)) as emu:
        prepared = padded_request(emu, 50_000)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                prepared.url, data=prepared.body, headers=dict(prepared.headers), expect100=True
            ) as r,
        ):
            assert await read_answer(r) == failure(4131000)
            assert r.headers.get("Connection", "").lower() == "close"
        small = padded_request(emu, 1500)
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                small.url, data=small.body, headers=dict(small.headers), expect100=True
            ) as r,
        ):
            assert code_of(await read_answer(r)) == 0
        assert emu.stats.oversize == 1
        assert emu.stats.bytes_received == 1500


async def test_default_limit_is_5_mib_not_aiohttps_1_mib(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    image = make_png("two megabytes") + bytes(2 * 1024 * 1024)
    assert texts(await send(session, file_request(emu, image))) == [["two", "megabytes"]]


# --- quota, latency, faults -------------------------------------------------------------


async def test_quota_token_bucket_with_an_injected_clock() -> None:
    clock = FakeClock()
    async with (
        emulator_in_range(EmulatorConfig(quota_rps=2.0, clock=clock)) as emu,
        aiohttp.ClientSession() as session,
    ):
        image = make_png("x")

        async def codes(n: int) -> list[int]:
            return [code_of(await send(session, file_request(emu, image))) for _ in range(n)]

        assert await codes(3) == [0, 0, 4000006]  # burst defaults to round(2.0)
        clock.now += 0.5  # one more token at 2/s
        assert await codes(2) == [0, 4000006]
        clock.now += 100.0  # the bucket holds at most the burst
        assert await codes(3) == [0, 0, 4000006]
        assert emu.stats.rate_limited == 3
        assert emu.stats.by_code == {0: 5, 4000006: 3}
        with pytest.raises(RateLimitedError):
            parse_response(200, await send_raw(session, file_request(emu, image)))


async def test_quota_burst_and_auth_order() -> None:
    clock = FakeClock()
    config = EmulatorConfig(quota_rps=0.1, quota_burst=2, clock=clock)
    assert config.burst == 2
    assert EmulatorConfig(quota_rps=0.1).burst == 1
    assert EmulatorConfig().burst is None
    async with emulator_in_range(config) as emu, aiohttp.ClientSession() as session:
        image = make_png("x")
        # A refused token does not spend the quota: auth is checked first.
        assert code_of(await post_form(session, ocr_url(emu), image, headers={})) == 4000005
        assert code_of(await post_form(session, ocr_url(emu), image)) == 0
        assert code_of(await post_form(session, ocr_url(emu), image)) == 0
        assert code_of(await post_form(session, ocr_url(emu), image)) == 4000006
        # Reset refills the bucket as well as zeroing the counters.
        async with session.post(emu.url("/_emulator/reset")) as r:
            assert (await r.json())["requests"] == 0
        assert code_of(await post_form(session, ocr_url(emu), image)) == 0


@pytest.mark.parametrize(
    ("kind", "first", "after_a_second"),
    [
        # A window refuses the rest of its second, then starts afresh.
        pytest.param("window", [0, 0, 4000006, 4000006], [0, 0, 4000006], id="window"),
        # A sliding count remembers the last second, refused calls included:
        # 4 calls weigh 4 a second later, so nothing gets through yet.
        pytest.param("sliding", [0, 0, 4000006, 4000006], [4000006], id="sliding"),
    ],
)
async def test_quota_kinds_over_http(
    kind: str, first: list[int], after_a_second: list[int]
) -> None:
    clock = FakeClock()
    config = EmulatorConfig(quota_rps=2.0, quota_kind=kind, clock=clock)  # type: ignore[arg-type]
    assert config.burst is None  # only a bucket has one
    async with emulator_in_range(config) as emu, aiohttp.ClientSession() as session:
        image = make_png("x")

        async def codes(n: int) -> list[int]:
            return [code_of(await send(session, file_request(emu, image))) for _ in range(n)]

        assert await codes(len(first)) == first
        clock.now += 1.0
        assert await codes(len(after_a_second)) == after_a_second
        assert emu.stats.rate_limited == first.count(4000006) + after_a_second.count(4000006)


async def test_quota_schedule_from_the_first_call_restarts_on_reset() -> None:
    clock = FakeClock()
    config = EmulatorConfig(
        quota_kind="window", quota_schedule=((0.0, 1.0), (10.0, 3.0)), clock=clock
    )
    assert config.quota_rps == 1.0
    async with emulator_in_range(config) as emu, aiohttp.ClientSession() as session:
        image = make_png("x")

        async def codes(n: int) -> list[int]:
            return [code_of(await send(session, file_request(emu, image))) for _ in range(n)]

        clock.now = 100.0  # the first call starts the schedule, not the start of the server
        assert await codes(2) == [0, 4000006]
        clock.now = 110.0
        assert await codes(4) == [0, 0, 0, 4000006]
        async with session.post(emu.url("/_emulator/reset")):
            pass
        clock.now = 200.0
        assert await codes(2) == [0, 4000006]  # back to the first step


async def test_latency_applies_to_answers_but_not_to_rate_limited_calls() -> None:
    clock = FakeClock()
    config = EmulatorConfig(latency=0.2, quota_rps=1.0, clock=clock)
    loop = asyncio.get_running_loop()
    async with emulator_in_range(config) as emu, aiohttp.ClientSession() as session:
        prepared = file_request(emu, make_png("x"))
        start = loop.time()
        assert code_of(await send(session, prepared)) == 0
        assert loop.time() - start >= 0.2
        start = loop.time()
        assert code_of(await send(session, prepared)) == 4000006
        assert loop.time() - start < 0.15


async def test_concurrency_is_visible_in_peak_in_flight() -> None:
    async with (
        emulator_in_range(EmulatorConfig(latency=0.1)) as emu,
        aiohttp.ClientSession() as session,
    ):
        prepared = file_request(emu, make_png("x"))
        answers = await asyncio.gather(*(send(session, prepared) for _ in range(6)))
        assert [code_of(a) for a in answers] == [0] * 6
        assert emu.stats.peak_in_flight == 6
        assert emu.stats.in_flight == 0


async def test_fault_injection_by_call_number() -> None:
    seen: list[int] = []

    def fault(n: int) -> int | None:
        seen.append(n)
        return {2: 5000503, 3: 4999999}.get(n)

    async with (
        emulator_in_range(EmulatorConfig(fault=fault)) as emu,
        aiohttp.ClientSession() as session,
    ):
        prepared = file_request(emu, make_png("x"))
        first = await send(session, prepared)
        second = await send_raw(session, prepared)
        third = await send(session, prepared)
        assert code_of(first) == 0
        with pytest.raises(TemporarilyUnavailableError):
            parse_response(200, second)
        assert third["header"]["resultMessage"] == "Unknown error."  # undocumented code
        assert code_of(await send(session, prepared)) == 0
    assert seen == [1, 2, 3, 4]


async def test_unexpected_exception_answers_minus_one() -> None:
    class Broken:
        def recognize(self, data: bytes) -> list[list[str]]:
            raise RuntimeError("engine on fire")

    async with (
        emulator_in_range(EmulatorConfig(engine=Broken())) as emu,
        aiohttp.ClientSession() as session,
    ):
        document = await send(session, file_request(emu, make_png("x")))
        assert document == failure(-1)
        assert document["header"]["resultMessage"] == "Unknown error."
        # The emulator keeps serving.
        assert code_of(await post_form(session, ocr_url(emu), b"")) == 4000004


# --- stats and other routes ------------------------------------------------------------


async def test_stats_count_everything_and_reset(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    image = make_png("x")
    await send(session, file_request(emu, image))
    await send(session, file_request(emu, image, Endpoint.CROPPING))
    await post_form(session, ocr_url(emu), b"")
    await send(session, url_request(emu, emu.sample_url("hello.png")))
    await post_form(session, ocr_url(emu), image, headers={})
    stats = emu.stats
    assert stats.requests == 5
    assert stats.by_code == {0: 3, 4000004: 1, 4000005: 1}
    assert stats.answered_ok == 3
    assert stats.faults == {}
    assert stats.disconnected == 0
    assert stats.downloads == 1
    assert stats.bytes_received > 2 * len(image)
    async with session.get(emu.url("/_emulator/stats")) as r:
        served = await r.json()
    assert served == stats.to_json()
    assert served["by_code"] == {"0": 3, "4000004": 1, "4000005": 1}
    async with session.post(emu.url("/_emulator/reset")) as r:
        assert r.status == 200
    assert stats.to_json() == {
        "requests": 0,
        "answered_ok": 0,
        "by_code": {},
        "faults": {},
        "disconnected": 0,
        "rate_limited": 0,
        "oversize": 0,
        "bytes_received": 0,
        "downloads": 0,
        "in_flight": 0,
        "peak_in_flight": 0,
        "tokens_issued": 0,
        "tokens_revoked": 0,
        "tokens_rejected_expired": 0,
        "oauth_refused": 0,
    }


async def test_samples_and_health_routes(
    emu: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    async with session.get(emu.sample_url("korean.png")) as r:
        assert r.status == 200
        assert r.content_type == "image/png"
        assert await r.read() == sample_path("korean.png").read_bytes()
    async with session.get(emu.sample_url("stella.jpg")) as r:
        assert r.content_type == "image/jpeg"
    async with session.get(emu.sample_url("..%2Fsamples.py")) as r:
        assert r.status == 404
    async with session.get(emu.url("/healthz")) as r:
        assert await r.json() == {"status": "ok"}
    assert emu.stats.requests == 0  # none of these is an OCR call


async def test_create_app_runs_under_aiohttp_test_utils() -> None:
    app = create_app(EmulatorConfig(appkey="k"))
    async with test_utils.TestClient(test_utils.TestServer(app)) as client:
        form = aiohttp.FormData()
        form.add_field("image", make_jpeg("under test"), filename="a.jpg")
        response = await client.post("/v1.1/appkeys/k/general", data=form, headers=AUTH)
        assert texts(await read_answer(response)) == [["under", "test"]]
    assert app[STATS_KEY].requests == 1


# --- the API guide's curl examples, adapted to loopback --------------------------------

# The guide's four curl examples, line by line; only the host, app key,
# token and example image URL are replaced when they run.
GUIDE_HOST = "https://ocr.api.nhncloudservice.com"
GUIDE_FILE = (
    "-F 'image=@sample.png'",
    "-H 'X-NHN-Authorization: Bearer ${User Access Key Token}'",
    "-H 'Content-Type: multipart/form-data'",
)
GUIDE_URL = (
    "-H 'X-NHN-Authorization: Bearer ${User Access Key Token}'",
    "-H 'Content-Type: application/json'",
    """--data '{ "imageUrl": "https://example.com/example.jpg" }'""",
)


def guide_command(path: str, lines: tuple[str, ...]) -> str:
    return " \\\n".join((f"curl -X POST '{GUIDE_HOST}/v1.1/appkeys/{{appKey}}{path}'", *lines))


GUIDE_CURL = {
    "file-general": guide_command("/general", GUIDE_FILE),
    "url-general": guide_command("/general", GUIDE_URL),
    "file-cropping": guide_command("/general/cropping", GUIDE_FILE),
    "url-cropping": guide_command("/general/cropping", GUIDE_URL),
}


def adapt(command: str, emu: RunningEmulator) -> list[str]:
    for old, new in [
        ("https://ocr.api.nhncloudservice.com", emu.base_url),
        ("{appKey}", APPKEY),
        ("${User Access Key Token}", TOKEN),
        ("https://example.com/example.jpg", emu.sample_url("stella.jpg")),
    ]:
        command = command.replace(old, new)
    return shlex.split(command.replace("\\\n", " "))


def expected_for(name: str) -> list[list[str]]:
    # sample.png is the Korean sample; example.jpg is the stella sample,
    # whose words are those of the guide's own sample answer.
    return (
        [["안녕하세요", "세계"]] if name.startswith("file") else [["stella", "artois"], ["belgium"]]
    )


@pytest.fixture
def sample_dir(tmp_path: Path) -> Path:
    shutil.copyfile(sample_path("korean.png"), tmp_path / "sample.png")
    return tmp_path


@pytest.mark.parametrize("name", sorted(GUIDE_CURL))
async def test_guide_example_with_aiohttp(
    emu: RunningEmulator, session: aiohttp.ClientSession, sample_dir: Path, name: str
) -> None:
    argv = adapt(GUIDE_CURL[name], emu)
    url = argv[3]
    options = list(zip(argv[4::2], argv[5::2], strict=True))
    headers = dict(value.split(": ", 1) for flag, value in options if flag == "-H")
    if "-F" in argv:
        form = aiohttp.FormData()
        form.add_field("image", (sample_dir / "sample.png").read_bytes(), filename="sample.png")
        del headers["Content-Type"]  # the form sets it, with its boundary, as curl does
        async with session.post(url, data=form, headers=headers) as r:
            document = await read_answer(r)
    else:
        data = argv[argv.index("--data") + 1]
        async with session.post(url, data=data.encode(), headers=headers) as r:
            document = await read_answer(r)
    assert texts(document) == expected_for(name)
    assert ("slicesImages" in document["result"]) == name.endswith("cropping")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("name", sorted(GUIDE_CURL))
async def test_guide_example_with_real_curl(
    emu: RunningEmulator, sample_dir: Path, name: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        *adapt(GUIDE_CURL[name], emu),
        "--silent",
        "--show-error",
        cwd=sample_dir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, stderr
    document = json.loads(stdout)
    assert document["header"]["isSuccessful"] is True
    assert texts(document) == expected_for(name)
    assert emu.stats.requests == 1
