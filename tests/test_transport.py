"""The transport: aiohttp's errors become ours from one table; redirects come back unread."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ocr_async.errors import (
    AnswerTooLargeError,
    ConnectionFailedError,
    RequestTimeoutError,
    TransportError,
)
from ocr_async.protocol import PreparedRequest
from ocr_async.sanitize import Redactor
from ocr_async.transport import (
    API_WORDING,
    FOREIGN_ERRORS,
    OAUTH_WORDING,
    AiohttpTransport,
    Wording,
    map_foreign_error,
)

SECRET = "secret-token-4242"


@pytest.mark.parametrize(
    ("foreign", "ours", "code", "api", "oauth"),
    [
        pytest.param(
            TimeoutError(),
            RequestTimeoutError,
            "timeout",
            "no complete answer in time",
            "the OAuth server did not answer in time",
            id="timeout",
        ),
        pytest.param(
            aiohttp.ServerTimeoutError("read timed out"),
            RequestTimeoutError,
            "timeout",
            "no complete answer in time",
            "the OAuth server did not answer in time",
            id="aiohttp-timeout-is-a-timeout-not-a-connection-error",
        ),
        pytest.param(
            aiohttp.ClientPayloadError(f"cut short near {SECRET}"),
            ConnectionFailedError,
            "connection",
            "answer cut off: ClientPayloadError: cut short near <redacted>",
            "the OAuth server's answer was cut off: ClientPayloadError: cut short near <redacted>",
            id="payload",
        ),
        pytest.param(
            aiohttp.ServerDisconnectedError(),
            ConnectionFailedError,
            "connection",
            "ServerDisconnectedError: Server disconnected",
            "cannot reach the OAuth server: ServerDisconnectedError: Server disconnected",
            id="disconnected",
        ),
        pytest.param(
            aiohttp.ClientError(f"odd answer {SECRET}\nsecond line"),
            TransportError,
            "transport",
            "ClientError: odd answer <redacted>",
            "OAuth request failed: ClientError: odd answer <redacted>",
            id="other-client-error",
        ),
    ],
)
def test_every_foreign_error_maps_from_the_one_table(
    foreign: BaseException, ours: type[TransportError], code: str, api: str, oauth: str
) -> None:
    redactor = Redactor([SECRET])
    for wording, message in ((API_WORDING, api), (OAUTH_WORDING, oauth)):
        error = map_foreign_error(foreign, wording, redactor)
        assert type(error) is ours
        assert error.code == code
        assert error.message.startswith(message)
        assert SECRET not in error.message
        assert "\n" not in error.message


def test_the_table_lists_the_specific_before_the_general() -> None:
    kinds = [foreign for foreign, *_ in FOREIGN_ERRORS]
    for earlier, later in itertools.pairwise(kinds):
        assert not issubclass(later, earlier), f"{later} would never be reached"
    assert all(kind in Wording.__dataclass_fields__ for *_, kind in FOREIGN_ERRORS)


def test_something_else_is_not_a_transport_failure() -> None:
    with pytest.raises(TypeError):
        map_foreign_error(ValueError("x"), API_WORDING, Redactor())


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=307, headers={"Location": "/elsewhere"}, body=b"x" * 10_000)

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"y" * 5000)

    async def elsewhere(request: web.Request) -> web.Response:
        raise AssertionError("a redirect was followed")

    app = web.Application()
    app.router.add_post("/moved", moved)
    app.router.add_post("/big", big)
    app.router.add_route("*", "/elsewhere", elsewhere)
    async with TestServer(app, host="127.0.0.1") as running:
        yield str(running.make_url("")).rstrip("/")


def post_to(url: str) -> PreparedRequest:
    return PreparedRequest(url=url, headers={"Content-Type": "text/plain"}, body=b"hi")


async def test_a_redirect_comes_back_unread_and_unfollowed(server: str) -> None:
    transport = AiohttpTransport(timeout=5.0)
    try:
        answer = await transport.post(
            post_to(f"{server}/moved"), answer_limit=100, redactor=Redactor()
        )
    finally:
        await transport.aclose()
    assert (answer.status, answer.is_redirect, answer.body) == (307, True, b"")
    assert answer.headers["location"] == "/elsewhere"  # headers are case-insensitive


async def test_an_answer_over_the_limit_is_refused(server: str) -> None:
    transport = AiohttpTransport(timeout=5.0)
    try:
        with pytest.raises(AnswerTooLargeError):
            await transport.post(post_to(f"{server}/big"), answer_limit=4999, redactor=Redactor())
        answer = await transport.post(
            post_to(f"{server}/big"), answer_limit=5000, redactor=Redactor()
        )
    finally:
        await transport.aclose()
    assert len(answer.body) == 5000


async def test_a_callers_session_is_used_and_left_open(server: str) -> None:
    async with aiohttp.ClientSession() as session:
        transport = AiohttpTransport(session, timeout=5.0)
        await transport.open()
        assert transport.session is session
        await transport.post(post_to(f"{server}/big"), answer_limit=10_000, redactor=Redactor())
        await transport.aclose()
        assert not session.closed


async def test_an_own_session_is_opened_with_the_pool_and_closed(server: str) -> None:
    transport = AiohttpTransport(timeout=5.0, pool=3)
    await transport.open()
    session = transport.session
    assert session is not None
    assert session.connector is not None
    assert session.connector.limit == 3
    await transport.aclose()
    assert session.closed
    assert transport.session is None
