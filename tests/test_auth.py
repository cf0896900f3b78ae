from __future__ import annotations

import asyncio
import base64
import json
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ocr_async.auth import (
    DEFAULT_OAUTH_URL,
    OAUTH_URL_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    TOKEN_FILE_LIMIT,
    UAK_ID_ENV,
    UAK_SECRET_ENV,
    StaticToken,
    TokenProvider,
    UserAccessKeyTokens,
    oauth_error,
    parse_token_answer,
    token_from_environment,
    uak_from_environment,
)
from ocr_async.client import OcrClient
from ocr_async.emulator import EmulatorConfig, RunningEmulator, make_png, running_emulator
from ocr_async.errors import (
    AnswerTooLargeError,
    ConfigurationError,
    ConnectionFailedError,
    HttpStatusError,
    InvalidRequestError,
    MalformedResponseError,
    RequestTimeoutError,
)
from ocr_async.models import Endpoint
from ocr_async.protocol import build_file_request
from ocr_async.transport import AiohttpTransport

TOKEN = "tok-SECRET-5d2e8a"
OTHER_TOKEN = "tok-OTHER-c09b17"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(TOKEN, id="plain"),
        pytest.param(f"  {TOKEN}  ", id="spaces"),
        pytest.param(f"{TOKEN}\n", id="trailing-newline"),
        pytest.param(f"\t{TOKEN}\r\n", id="tab-and-crlf"),
    ],
)
async def test_static_token_strips_surrounding_whitespace(raw: str) -> None:
    assert await StaticToken(raw).get_token() == TOKEN


@pytest.mark.parametrize(
    ("raw", "complaint"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("   ", "empty", id="blank"),
        pytest.param("\r\n", "empty", id="only-newline"),
        pytest.param("tok-SECRET\nsecond-line", "line break", id="lf-inside"),
        pytest.param("tok-SECRET\rsecond-line", "line break", id="cr-inside"),
        pytest.param("tok-SECRET\r\nX-Injected: 1", "line break", id="header-injection"),
    ],
)
def test_static_token_refuses_empty_and_line_breaks(raw: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as raised:
        StaticToken(raw)
    assert "tok-SECRET" not in str(raised.value)
    assert "second-line" not in str(raised.value)


def test_static_token_repr_is_redacted() -> None:
    token = StaticToken(TOKEN)
    assert repr(token) == "StaticToken(<redacted>)"
    assert TOKEN not in repr(token)
    assert TOKEN not in str(token)
    assert TOKEN not in f"{token!r} {token}"


async def test_static_token_cannot_be_renewed() -> None:
    token = StaticToken(TOKEN)
    assert isinstance(token, TokenProvider)
    assert await token.token_rejected(TOKEN) is False
    assert await token.get_token() == TOKEN


async def test_token_from_environment_variable() -> None:
    provider = token_from_environment({TOKEN_ENV: f" {TOKEN}\n"})
    assert isinstance(provider, StaticToken)
    assert await provider.get_token() == TOKEN


async def test_token_from_file_named_in_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n", encoding="utf-8")
    provider = token_from_environment({TOKEN_FILE_ENV: str(path)})
    assert await provider.get_token() == TOKEN


async def test_token_file_with_crlf_line_ending(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(f"{TOKEN}\r\n".encode())
    assert await token_from_environment({}, token_file=path).get_token() == TOKEN


@pytest.mark.parametrize("as_arg", [pytest.param(str, id="str"), pytest.param(Path, id="Path")])
async def test_explicit_token_file_wins_over_environment(tmp_path: Path, as_arg: type) -> None:
    explicit = tmp_path / "explicit"
    explicit.write_text(f"{TOKEN}\n", encoding="utf-8")
    from_env = tmp_path / "from-env"
    from_env.write_text(f"{OTHER_TOKEN}\n", encoding="utf-8")
    env = {TOKEN_ENV: OTHER_TOKEN, TOKEN_FILE_ENV: str(from_env)}
    provider = token_from_environment(env, token_file=as_arg(explicit))
    assert await provider.get_token() == TOKEN


def test_missing_token_file_names_the_file_not_the_token(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token-file"
    env = {TOKEN_ENV: OTHER_TOKEN}
    with pytest.raises(ConfigurationError) as raised:
        token_from_environment(env, token_file=missing)
    message = str(raised.value)
    assert str(missing) in message
    assert OTHER_TOKEN not in message
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__ is True


def test_missing_token_file_from_environment_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(ConfigurationError, match="gone"):
        token_from_environment({TOKEN_FILE_ENV: str(missing)})


def test_token_file_that_is_a_directory_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as raised:
        token_from_environment({}, token_file=tmp_path)
    assert str(tmp_path) in str(raised.value)


def test_empty_token_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="empty"):
        token_from_environment({}, token_file=path)


def test_token_file_with_two_lines_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n{OTHER_TOKEN}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="line break") as raised:
        token_from_environment({}, token_file=path)
    assert TOKEN not in str(raised.value)


def test_token_file_not_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"tok-SECRET-\xff\xfe-latin1\n")
    with pytest.raises(ConfigurationError) as raised:
        token_from_environment({}, token_file=path)
    assert str(path) in str(raised.value)
    assert "tok-SECRET" not in str(raised.value)
    assert raised.value.__suppress_context__ is True


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="nothing"),
        pytest.param({TOKEN_ENV: ""}, id="empty-variable"),
        pytest.param({TOKEN_FILE_ENV: ""}, id="empty-file-variable"),
        pytest.param({"NHN_OCR_APPKEY": "k"}, id="only-appkey"),
    ],
)
def test_no_token_anywhere_names_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match=TOKEN_ENV) as raised:
        token_from_environment(env)
    assert TOKEN_FILE_ENV in str(raised.value)


async def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert await token_from_environment().get_token() == TOKEN
    monkeypatch.delenv(TOKEN_ENV)
    with pytest.raises(ConfigurationError, match=TOKEN_ENV):
        token_from_environment()


# --- User Access Key tokens -------------------------------------------------------
#
# Against the emulator's OAuth endpoint on a real socket, and against a tiny
# scripted OAuth server where an answer must be chosen (failures, timeouts).

UAK_ID = "uak-id-42"
UAK_SECRET = "uak-SECRET-3c1f9b"
WRONG_SECRET = "uak-WRONG-SECRET-77aa"
SCRIPTED_TOKEN = "tok-SCRIPTED-e4d1"
SECRETS = (UAK_SECRET, WRONG_SECRET, SCRIPTED_TOKEN, TOKEN)


class FakeClock:
    """A monotonic clock that moves only when told (shared by client and emulator)."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ServerTime:
    """Time that moves ``tick`` seconds whenever the emulator reads it.

    The emulator reads its clock once per OCR call (is the token live?) and
    once per token issued, so time measures the work done; the client side
    reads the same time without moving it.
    """

    def __init__(self, tick: float) -> None:
        self.now = 0.0
        self.tick = tick

    def server(self) -> float:
        self.now += self.tick
        return self.now

    def client(self) -> float:
        return self.now


def assert_secrets_kept(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def assert_exception_keeps_secrets(exc: BaseException) -> None:
    assert_secrets_kept(
        "".join(traceback.format_exception(exc)), str(exc), repr(exc), *map(repr, exc.args)
    )


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="ocr_async")
    yield
    assert_secrets_kept(caplog.text, *(record.getMessage() for record in caplog.records))


@asynccontextmanager
async def oauth_emulator(**config: Any) -> AsyncIterator[RunningEmulator]:
    settings: dict[str, Any] = {"uak": {UAK_ID: UAK_SECRET}, **config}
    async with running_emulator(EmulatorConfig(**settings)) as emu:
        yield emu


async def ocr_code(emu: RunningEmulator, token: str) -> int:
    prepared = build_file_request(
        base_url=emu.base_url,
        appkey="k",
        token=token,
        endpoint=Endpoint.GENERAL,
        image=make_png("x"),
        max_bytes=10**6,
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(prepared.url, data=prepared.body, headers=prepared.headers) as r,
    ):
        code = (await r.json())["header"]["resultCode"]
    assert isinstance(code, int)
    return code


class ScriptedOAuth:
    """An OAuth server answering from a script; ``gate`` holds answers back."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.received = asyncio.Event()
        #: The Location sent with a 3xx answer.
        self.redirect_to = ""

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(
            (request.path, {k: str(v) for k, v in form.items()}, request.headers["Authorization"])
        )
        self.received.set()
        await self.gate.wait()
        status, document = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": self.redirect_to})
        if isinstance(document, bytes):
            return web.Response(status=status, body=document, content_type="text/html")
        return web.json_response(document, status=status)


@asynccontextmanager
async def scripted(*answers: tuple[int, Any]) -> AsyncIterator[tuple[ScriptedOAuth, str]]:
    oauth = ScriptedOAuth(*answers)
    app = web.Application()
    app.router.add_post("/oauth2/token/{action}", oauth.handle)
    async with TestServer(app, host="127.0.0.1") as server:
        yield oauth, str(server.make_url("")).rstrip("/")


def token_answer(token: str = SCRIPTED_TOKEN, expires_in: Any = 10) -> tuple[int, Any]:
    return 200, {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}


async def test_issued_token_is_accepted_by_the_ocr_endpoint() -> None:
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        assert isinstance(tokens, TokenProvider)
        token = await tokens.get_token()
        assert await tokens.get_token() == token
        assert await ocr_code(emu, token) == 0
        assert tokens.issued == 1
        assert emu.stats.tokens_issued == 1


async def test_issuance_is_single_flight_under_100_concurrent_calls() -> None:
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        got = await asyncio.gather(*(tokens.get_token() for _ in range(100)))
        assert len(set(got)) == 1
        assert tokens.issued == 1
        assert emu.stats.tokens_issued == 1


async def test_the_request_is_the_documented_one() -> None:
    async with (
        scripted(token_answer()) as (oauth, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url + "/") as tokens,
    ):
        assert await tokens.get_token() == SCRIPTED_TOKEN
    ((path, form, authorization),) = oauth.requests
    assert path == "/oauth2/token/create"
    assert form == {"grant_type": "client_credentials"}
    assert authorization == "Basic " + base64.b64encode(f"{UAK_ID}:{UAK_SECRET}".encode()).decode()


async def test_renewed_shortly_before_expiry() -> None:
    clock = FakeClock()
    async with (
        oauth_emulator(token_lifetime=3, clock=clock) as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url, clock=clock) as tokens,
    ):
        first = await tokens.get_token()
        clock.now += 2.69  # the margin is 10 % of 3 s: renewal from 2.7 s on
        assert await tokens.get_token() == first
        assert await ocr_code(emu, first) == 0
        clock.now += 0.01
        second = await tokens.get_token()
        assert second != first
        assert tokens.issued == 2
        assert await ocr_code(emu, second) == 0
        assert await ocr_code(emu, first) == 0  # still alive for 0.3 s: nobody waited
        clock.now += 0.3
        assert await ocr_code(emu, first) == 4010006
        assert await tokens.get_token() == second
        assert tokens.issued == 2


@pytest.mark.parametrize(
    ("lifetime", "margin", "renew_after"),
    [
        pytest.param(86400, None, 86100.0, id="day-renews-5-min-early"),
        pytest.param(3000, None, 2700.0, id="10-percent"),
        pytest.param(3, None, 2.7, id="3-seconds"),
        pytest.param(600, 60.0, 540.0, id="explicit"),
        pytest.param(10, 60.0, 5.0, id="explicit-capped-at-half"),
        pytest.param(10, 0.0, 10.0, id="zero-margin"),
    ],
)
async def test_refresh_margin(lifetime: int, margin: float | None, renew_after: float) -> None:
    clock = FakeClock(0.0)
    async with scripted(token_answer("tok-one", lifetime), token_answer("tok-two", lifetime)) as (
        _,
        url,
    ):
        tokens = UserAccessKeyTokens(
            UAK_ID, UAK_SECRET, oauth_url=url, clock=clock, refresh_margin=margin
        )
        async with tokens:
            assert await tokens.get_token() == "tok-one"
            clock.now = renew_after - 1e-6
            assert await tokens.get_token() == "tok-one"
            clock.now = renew_after
            assert await tokens.get_token() == "tok-two"


@pytest.mark.parametrize("expires_in", [3600, "3600", " 3600 ", 3600.0, "3.6e3"])
async def test_expires_in_as_number_or_string(expires_in: Any) -> None:
    clock = FakeClock(0.0)
    async with (
        scripted(token_answer("tok-one", expires_in), token_answer("tok-two")) as (_, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url, clock=clock) as tokens,
    ):
        assert await tokens.get_token() == "tok-one"
        clock.now = 3299.0  # 10 % of an hour is 360 s, but the margin stops at 300 s
        assert await tokens.get_token() == "tok-one"
        clock.now = 3300.0
        assert await tokens.get_token() == "tok-two"


async def test_emulator_expires_in_string_is_read() -> None:
    clock = FakeClock()
    async with (
        oauth_emulator(token_lifetime=100, expires_in_as_string=True, clock=clock) as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url, clock=clock) as tokens,
    ):
        first = await tokens.get_token()
        clock.now += 90
        assert await tokens.get_token() != first


async def test_token_rejected_is_single_flight_too() -> None:
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        old = await tokens.get_token()
        answers = await asyncio.gather(*(tokens.token_rejected(old) for _ in range(50)))
        assert answers == [True] * 50
        assert tokens.issued == 2
        new = await tokens.get_token()
        assert new != old
        # A late report of the old token: someone already renewed it.
        assert await tokens.token_rejected(old) is True
        assert tokens.issued == 2
        assert emu.stats.tokens_issued == 2


async def test_token_rejected_before_any_token_issues_one() -> None:
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        assert await tokens.token_rejected("from-somewhere-else") is True
        assert tokens.issued == 1
        assert await ocr_code(emu, await tokens.get_token()) == 0


async def test_token_rejected_raises_when_no_new_token_can_be_issued() -> None:
    refused = (401, {"error": "invalid_client", "error_description": "key disabled"})
    async with (
        scripted(token_answer(), refused) as (_, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url) as tokens,
    ):
        token = await tokens.get_token()
        with pytest.raises(ConfigurationError, match="key disabled"):
            await tokens.token_rejected(token)


async def test_wrong_secret_is_a_clear_configuration_error() -> None:
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, WRONG_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        outcomes = await asyncio.gather(
            *(tokens.get_token() for _ in range(100)), return_exceptions=True
        )
        assert emu.stats.oauth_refused == 1  # one request for all 100 callers
        assert all(isinstance(outcome, ConfigurationError) for outcome in outcomes)
        error = outcomes[0]
        assert isinstance(error, ConfigurationError)
        assert str(error) == (
            "the OAuth server refused the User Access Key (invalid_client): "
            "unknown User Access Key or wrong secret"
        )
        assert_exception_keeps_secrets(error)
        assert_secrets_kept(repr(tokens), str(tokens))
        # A failure is not remembered: the next call asks again.
        with pytest.raises(ConfigurationError):
            await tokens.get_token()
        assert emu.stats.oauth_refused == 2
        assert tokens.issued == 0


def test_repr_names_the_key_id_only() -> None:
    tokens = UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url="http://127.0.0.1:9")
    assert repr(tokens) == f"UserAccessKeyTokens(uak_id={UAK_ID!r}, oauth_url='http://127.0.0.1:9')"
    assert UAK_SECRET not in f"{tokens!r} {tokens}"
    assert tokens.uak_id == UAK_ID
    assert tokens.oauth_url == "http://127.0.0.1:9"


async def test_unreachable_oauth_server_is_a_connection_failure() -> None:
    async with running_emulator() as emu:
        closed = emu.base_url  # nothing listens there once the block ends
    async with UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=closed) as tokens:
        with pytest.raises(ConnectionFailedError, match="cannot reach the OAuth server") as raised:
            await tokens.get_token()
    assert raised.value.retryable
    assert_exception_keeps_secrets(raised.value)


async def test_silent_oauth_server_is_a_timeout() -> None:
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        tokens = UserAccessKeyTokens(
            UAK_ID, UAK_SECRET, oauth_url=f"http://127.0.0.1:{port}", timeout=0.2
        )
        async with tokens:
            with pytest.raises(RequestTimeoutError) as raised:
                await tokens.get_token()
        assert_exception_keeps_secrets(raised.value)
    finally:
        server.close()
        await server.wait_closed()


async def test_server_failure_while_renewing_keeps_the_valid_token() -> None:
    clock = FakeClock(0.0)
    async with (
        scripted(token_answer(expires_in=10), (503, b"<html>busy</html>")) as (oauth, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url, clock=clock) as tokens,
    ):
        assert await tokens.get_token() == SCRIPTED_TOKEN
        clock.now = 9.5  # renewal due (from 9 s), but the token lives until 10 s
        assert await tokens.get_token() == SCRIPTED_TOKEN
        assert len(oauth.requests) == 2
        clock.now = 9.9  # not on every call: the next try is a second later, or at expiry
        assert await tokens.get_token() == SCRIPTED_TOKEN
        assert len(oauth.requests) == 2
        clock.now = 10.0
        with pytest.raises(HttpStatusError) as raised:
            await tokens.get_token()
        assert raised.value.status == 503
        assert raised.value.retryable
        oauth.answers = [token_answer("tok-recovered")]
        assert await tokens.get_token() == "tok-recovered"


async def test_a_cancelled_caller_does_not_cancel_the_issuance_for_the_others() -> None:
    async with (
        scripted(token_answer()) as (oauth, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url) as tokens,
    ):
        oauth.gate.clear()
        impatient = asyncio.create_task(tokens.get_token())
        patient = asyncio.create_task(tokens.get_token())
        await oauth.received.wait()
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        oauth.gate.set()
        assert await patient == SCRIPTED_TOKEN
        assert len(oauth.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        pytest.param((200, {"token_type": "Bearer"}), MalformedResponseError, "access_token"),
        pytest.param((200, b"<html>welcome</html>"), MalformedResponseError, "JSON object"),
        pytest.param((429, {"error": "slow_down"}), HttpStatusError, "HTTP 429"),
        pytest.param((200, b"x" * (2 << 20)), AnswerTooLargeError, "over the 1048576-byte limit"),
        pytest.param(
            (400, {"error": "invalid_scope"}), ConfigurationError, r"token request \(invalid_scope"
        ),
    ],
)
async def test_unusable_answers_raise_typed_errors(
    answer: tuple[int, Any], error: type[Exception], match: str
) -> None:
    async with (
        scripted(answer) as (_, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url) as tokens,
    ):
        with pytest.raises(error, match=match) as raised:
            await tokens.get_token()
    assert_exception_keeps_secrets(raised.value)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_an_oauth_redirect_is_refused_and_never_followed(status: int) -> None:
    # Followed, a 307 or 308 would send the Basic header (the key and its
    # secret) on to whatever host the Location names.
    elsewhere: list[str] = []

    async def other_host(request: web.Request) -> web.Response:
        elsewhere.append(request.headers.get("Authorization", ""))
        return web.json_response(token_answer()[1])

    other_app = web.Application()
    other_app.router.add_route("*", "/{tail:.*}", other_host)
    async with TestServer(other_app, host="127.0.0.1") as other:
        other_origin = str(other.make_url("")).rstrip("/")
        async with scripted((status, b"")) as (oauth, url):
            oauth.redirect_to = f"{other_origin}/oauth2/token/create?client_secret=x"
            async with UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url) as tokens:
                with pytest.raises(ConfigurationError) as raised:
                    await tokens.get_token()
    message = str(raised.value)
    assert elsewhere == []
    assert len(oauth.requests) == 1
    assert f"HTTP {status}: a redirect to {other_origin}, not followed" in message
    assert OAUTH_URL_ENV in message
    assert "client_secret" not in message
    assert_exception_keeps_secrets(raised.value)


async def test_emulator_without_oauth_is_a_wrong_url() -> None:
    async with (
        running_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        with pytest.raises(ConfigurationError, match="HTTP 404: is the OAuth URL"):
            await tokens.get_token()


async def test_revoke() -> None:
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
    ):
        await tokens.revoke()  # nothing to revoke yet: no request
        assert emu.stats.tokens_revoked == 0
        old = await tokens.get_token()
        await tokens.revoke()
        assert emu.stats.tokens_revoked == 1
        assert await ocr_code(emu, old) == 4010006
        new = await tokens.get_token()
        assert new != old
        assert await ocr_code(emu, new) == 0


async def test_revoke_sends_the_token_in_a_form() -> None:
    async with (
        scripted(token_answer(), (200, {})) as (oauth, url),
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url) as tokens,
    ):
        await tokens.get_token()
        await tokens.revoke()
    assert oauth.requests[1][:2] == ("/oauth2/token/revoke", {"token": SCRIPTED_TOKEN})


async def test_session_ownership() -> None:
    async with oauth_emulator() as emu, aiohttp.ClientSession() as session:
        tokens = UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url, session=session)
        async with tokens:
            await tokens.get_token()
        assert not session.closed  # the caller's session is the caller's
        own = UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url)
        await own.get_token()
        transport = own._transport
        assert isinstance(transport, AiohttpTransport)
        opened = transport.session
        await own.aclose()
        assert opened is not None
        assert opened.closed
        await own.aclose()  # twice is fine


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        pytest.param(("", UAK_SECRET), {}, "ID is empty", id="empty-id"),
        pytest.param((UAK_ID, "  "), {}, "secret is empty", id="blank-secret"),
        pytest.param(("a:b", UAK_SECRET), {}, "':'", id="colon-in-id"),
        pytest.param((UAK_ID, UAK_SECRET + "\nX: y"), {}, "control", id="newline-in-secret"),
        pytest.param((UAK_ID, UAK_SECRET), {"oauth_url": "ftp://x"}, "http", id="ftp"),
        pytest.param((UAK_ID, UAK_SECRET), {"oauth_url": "oauth.example"}, "http", id="no-scheme"),
        pytest.param((UAK_ID, UAK_SECRET), {"oauth_url": "https://h/?a=1"}, "http", id="query"),
        pytest.param((UAK_ID, UAK_SECRET), {"refresh_margin": -1.0}, "refresh_margin", id="margin"),
        pytest.param((UAK_ID, UAK_SECRET), {"timeout": 0.0}, "timeout", id="timeout"),
    ],
)
def test_constructor_refuses_nonsense(
    args: tuple[str, str], kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match) as raised:
        UserAccessKeyTokens(*args, **kwargs)
    assert UAK_SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://oauth.api.nhncloudservice.com", "https://oauth.api.nhncloudservice.com"),
        (" https://oauth.example/ ", "https://oauth.example"),
        ("http://127.0.0.1:8080/oauth2/token/create", "http://127.0.0.1:8080"),
        ("https://gw.example/nhn", "https://gw.example/nhn"),
    ],
)
def test_oauth_url_is_normalised(given: str, expected: str) -> None:
    assert UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=given).oauth_url == expected


def test_default_oauth_url_is_nhns() -> None:
    assert UserAccessKeyTokens(UAK_ID, UAK_SECRET).oauth_url == DEFAULT_OAUTH_URL
    assert DEFAULT_OAUTH_URL == "https://oauth.api.nhncloudservice.com"


@pytest.mark.parametrize(
    ("env", "url"),
    [
        pytest.param(
            {UAK_ID_ENV: UAK_ID, UAK_SECRET_ENV: UAK_SECRET}, DEFAULT_OAUTH_URL, id="pair"
        ),
        pytest.param(
            {UAK_ID_ENV: f" {UAK_ID}\n", UAK_SECRET_ENV: f"{UAK_SECRET}\n", OAUTH_URL_ENV: ""},
            DEFAULT_OAUTH_URL,
            id="whitespace-and-empty-url",
        ),
        pytest.param(
            {UAK_ID_ENV: UAK_ID, UAK_SECRET_ENV: UAK_SECRET, OAUTH_URL_ENV: "http://127.0.0.1:1"},
            "http://127.0.0.1:1",
            id="url",
        ),
    ],
)
def test_uak_from_environment(env: dict[str, str], url: str) -> None:
    tokens = uak_from_environment(env)
    assert isinstance(tokens, UserAccessKeyTokens)
    assert tokens.uak_id == UAK_ID
    assert tokens.oauth_url == url


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({}, id="nothing"),
        pytest.param({UAK_ID_ENV: "", UAK_SECRET_ENV: " "}, id="both-empty"),
        pytest.param({OAUTH_URL_ENV: "http://127.0.0.1:1"}, id="only-url"),
        pytest.param({TOKEN_ENV: TOKEN}, id="static-token-only"),
    ],
)
def test_uak_from_environment_without_a_key(env: dict[str, str]) -> None:
    assert uak_from_environment(env) is None


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        pytest.param({UAK_ID_ENV: UAK_ID}, UAK_SECRET_ENV, id="id-only"),
        pytest.param({UAK_ID_ENV: UAK_ID, UAK_SECRET_ENV: ""}, UAK_SECRET_ENV, id="empty-secret"),
        pytest.param({UAK_SECRET_ENV: UAK_SECRET}, UAK_ID_ENV, id="secret-only"),
    ],
)
def test_uak_from_environment_needs_both_halves(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{missing} is not") as raised:
        uak_from_environment(env)
    assert UAK_SECRET not in str(raised.value)


def test_uak_from_environment_reads_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(UAK_ID_ENV, UAK_ID)
    monkeypatch.setenv(UAK_SECRET_ENV, UAK_SECRET)
    monkeypatch.delenv(OAUTH_URL_ENV, raising=False)
    tokens = uak_from_environment()
    assert tokens is not None
    assert tokens.uak_id == UAK_ID


# --- the token endpoint's answers, without I/O --------------------------------------------


def answer(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("document", "lifetime"),
    [
        pytest.param({"access_token": "t", "token_type": "Bearer", "expires_in": 86400}, 86400.0),
        pytest.param({"access_token": "t", "token_type": "bearer", "expires_in": "60"}, 60.0),
        pytest.param({"access_token": "t", "expires_in": 2.5}, 2.5, id="no-token-type"),
        pytest.param({"access_token": "t"}, 86400.0, id="no-expires-in-means-default"),
        pytest.param({"access_token": "t", "expires_in": 60, "scope": "x"}, 60.0, id="extra"),
    ],
)
def test_parse_token_answer(document: dict[str, Any], lifetime: float) -> None:
    assert parse_token_answer(200, answer(document)) == ("t", lifetime)


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"access_token": "t", "expires_in": value}, id=repr(value))
        for value in ["abc", "", 0, -5, "-1", "nan", "inf", True, None, [60], {"s": 60}]
    ]
    + [
        pytest.param({"expires_in": 60}, id="no-token"),
        pytest.param({"access_token": "", "expires_in": 60}, id="empty-token"),
        pytest.param({"access_token": "a b", "expires_in": 60}, id="space-in-token"),
        pytest.param({"access_token": "a\r\nX: 1", "expires_in": 60}, id="crlf-in-token"),
        pytest.param({"access_token": 42, "expires_in": 60}, id="number-token"),
        pytest.param({"access_token": "t", "token_type": "mac"}, id="not-bearer"),
        pytest.param(["access_token"], id="a-list"),
    ],
)
def test_parse_token_answer_refuses_unusable_answers(document: Any) -> None:
    with pytest.raises(MalformedResponseError) as raised:
        parse_token_answer(200, answer(document))
    assert raised.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        pytest.param(
            401,
            answer({"error": "invalid_client", "error_description": "bad key"}),
            ConfigurationError,
            "the OAuth server refused the User Access Key (invalid_client): bad key",
            id="invalid-client",
        ),
        pytest.param(
            400,
            answer({"error": "unsupported_grant_type"}),
            ConfigurationError,
            "the OAuth server refused the token request (unsupported_grant_type)",
            id="grant-type",
        ),
        pytest.param(
            200,
            answer({"error": "invalid_request", "error_description": "in a 200"}),
            ConfigurationError,
            "the OAuth server refused the token request (invalid_request): in a 200",
            id="error-in-200",
        ),
        pytest.param(
            401,
            b"<html>401</html>",
            ConfigurationError,
            "the OAuth server refused the User Access Key (HTTP 401)",
            id="401-html",
        ),
        pytest.param(
            403,
            b"",
            ConfigurationError,
            "the OAuth server refused the token request (HTTP 403)",
            id="403-empty",
        ),
        pytest.param(
            404,
            b"404: Not Found",
            ConfigurationError,
            "the OAuth server answered HTTP 404: is the OAuth URL (NHN_OAUTH_URL) right?",
            id="404-wrong-url",
        ),
        pytest.param(
            503,
            answer({"error": "temporarily_unavailable"}),
            HttpStatusError,
            "[http_503] the OAuth server answered HTTP 503",
            id="503-json",
        ),
        pytest.param(
            502,
            b"<html>bad gateway</html>",
            HttpStatusError,
            "[http_502] the OAuth server an",
            id="502-html",
        ),
    ],
)
def test_oauth_errors(status: int, body: bytes, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        parse_token_answer(status, body)
    assert str(raised.value).startswith(message)


def test_server_text_in_messages_is_redacted_and_bounded() -> None:
    body = answer(
        {
            "error": "invalid_client",
            "error_description": f"secret {UAK_SECRET} \x1b[31m" + "x" * 500,
        }
    )
    with pytest.raises(ConfigurationError) as raised:
        parse_token_answer(401, body, redact=(UAK_SECRET,))
    message = str(raised.value)
    assert UAK_SECRET not in message
    assert "<redacted>" in message
    assert "\x1b" not in message
    assert len(message) < 300


def test_oauth_error_for_revocation_names_it() -> None:
    error = oauth_error(400, answer({"error": "invalid_request"}), what="revocation")
    assert str(error) == "the OAuth server refused the revocation (invalid_request)"


# --- end to end: the client with OAuth tokens ------------------------------------------------


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def test_client_batch_through_short_lived_tokens() -> None:
    # Time passes only as the emulator works: 15 ms per OCR call it checks,
    # so 400 images span several 3-second token lifetimes without waiting.
    # 16 calls in flight take at most 16 x 15 ms = 0.24 s, less than the
    # 0.3 s renewal margin: no token may expire on its way.
    time = ServerTime(tick=0.015)
    images = [make_png(f"img {n}") for n in range(400)]
    texts: dict[int, str] = {}
    async with (
        oauth_emulator(token_lifetime=3, clock=time.server) as emu,
        UserAccessKeyTokens(
            UAK_ID, UAK_SECRET, oauth_url=emu.base_url, clock=time.client
        ) as tokens,
        OcrClient(
            appkey="k", token=tokens, base_url=emu.base_url, concurrency=16, sleep=no_sleep
        ) as client,
    ):
        todo = iter(enumerate(images))

        async def worker() -> None:  # as batch.py runs them: a fixed pool
            for n, image in todo:
                texts[n] = (await client.recognize(image)).text

        await asyncio.gather(*(worker() for _ in range(16)))
    assert texts == {n: f"img {n}" for n in range(len(images))}
    assert time.now > 6.0
    assert 2 <= tokens.issued <= 4  # a handful, not one per request
    stats = emu.stats
    assert stats.tokens_issued == tokens.issued
    assert stats.tokens_rejected_expired == 0
    assert stats.requests == stats.answered_ok == len(images)
    assert stats.peak_in_flight <= 16


async def test_client_renews_a_token_the_api_calls_expired() -> None:
    # The emulator's clock runs ahead: the token has expired there while the
    # provider still trusts it, so only the 4010006 answer can tell.
    server_clock, client_clock = FakeClock(), FakeClock()
    async with (
        oauth_emulator(token_lifetime=60, clock=server_clock) as emu,
        UserAccessKeyTokens(
            UAK_ID, UAK_SECRET, oauth_url=emu.base_url, clock=client_clock
        ) as tokens,
        OcrClient(appkey="k", token=tokens, base_url=emu.base_url, sleep=no_sleep) as client,
    ):
        first = await client.recognize(make_png("before"))
        assert first.attempts == 1
        server_clock.now += 61
        second = await client.recognize(make_png("after"))
    assert second.text == "after"
    assert second.attempts == 2
    assert tokens.issued == 2
    assert emu.stats.tokens_rejected_expired == 1


def test_token_file_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "token.txt"
    path.write_bytes(b"\xef\xbb\xbfbom-token\r\n")
    provider = token_from_environment({}, token_file=path)
    assert asyncio.run(provider.get_token()) == "bom-token"


# --- secrets echoed by the OAuth server ---------------------------------------------------


def echo_of(request: web.Request, uak_id: str, secret: str) -> str:
    header = request.headers["Authorization"]
    encoded = header.partition(" ")[2]
    return (
        f"bad credentials: header={header} b64={encoded} id={uak_id} secret={secret} "
        f"pair={uak_id}:{secret}"
    )


async def test_an_oauth_error_echoing_the_basic_header_shows_no_part_of_it() -> None:
    async def echo(request: web.Request) -> web.Response:
        description = echo_of(request, UAK_ID, UAK_SECRET)
        document = {"error": "invalid_client", "error_description": description}
        return web.json_response(document, status=401)

    app = web.Application()
    app.router.add_post("/oauth2/token/create", echo)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        async with UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=url) as tokens:
            with pytest.raises(ConfigurationError) as raised:
                await tokens.get_token()
    message = str(raised.value)
    encoded = base64.b64encode(f"{UAK_ID}:{UAK_SECRET}".encode()).decode()
    for secret in (encoded, encoded.rstrip("="), UAK_ID, UAK_SECRET):
        assert secret not in message
    assert message.startswith("the OAuth server refused the User Access Key (invalid_client): ")
    assert "header=Basic <redacted> b64=<redacted> id=<redacted>" in message
    assert_exception_keeps_secrets(raised.value)


async def test_a_short_secret_leaves_the_servers_words_alone() -> None:
    # A secret that is also a word: blanking it out would garble the message
    # ("unknown User Access Key or <redacted> secret").
    async with (
        oauth_emulator() as emu,
        UserAccessKeyTokens(UAK_ID, "wrong", oauth_url=emu.base_url) as tokens,
    ):
        with pytest.raises(ConfigurationError) as raised:
            await tokens.get_token()
    assert str(raised.value).endswith("unknown User Access Key or wrong secret")


async def test_the_client_redacts_the_keys_secrets_from_api_answers() -> None:
    # A gateway in front of the API may echo anything it saw, the key included.
    encoded = base64.b64encode(f"{UAK_ID}:{UAK_SECRET}".encode()).decode()

    async def echo(request: web.Request) -> web.Response:
        seen = request.headers["X-NHN-Authorization"]
        message = f"{seen}; Basic {encoded}; id {UAK_ID}; secret {UAK_SECRET}"
        header = {"isSuccessful": False, "resultCode": 4000001, "resultMessage": message}
        return web.json_response({"header": header})

    app = web.Application()
    app.router.add_post("/v1.1/appkeys/k/general", echo)
    async with (
        oauth_emulator() as emu,
        TestServer(app, host="127.0.0.1") as server,
        UserAccessKeyTokens(UAK_ID, UAK_SECRET, oauth_url=emu.base_url) as tokens,
        OcrClient(appkey="k", token=tokens, base_url=str(server.make_url(""))) as client,
    ):
        with pytest.raises(InvalidRequestError) as raised:
            await client.recognize(make_png("x"))
        token = await tokens.get_token()
    assert raised.value.message == (
        "INVALID_PARAMETER: Bearer <redacted>; Basic <redacted>; id <redacted>; secret <redacted>"
    )
    assert token not in str(raised.value)


@pytest.mark.parametrize("size", [TOKEN_FILE_LIMIT + 1, 40 * 1024 * 1024])
def test_token_file_larger_than_the_limit_is_refused_unread(tmp_path: Path, size: int) -> None:
    path = tmp_path / "not-a-token.log"
    with path.open("wb") as handle:
        handle.truncate(size)  # sparse: costs no disk
    with pytest.raises(ConfigurationError, match="larger than 16 KiB") as raised:
        token_from_environment({}, token_file=path)
    assert str(path) in str(raised.value)


def test_token_file_of_endless_zeros_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="is it the right file"):
        token_from_environment({}, token_file="/dev/zero")


@pytest.mark.parametrize(
    ("where", "text"),
    [
        pytest.param("env", f"{TOKEN}\x01", id="env-soh"),
        pytest.param("env", f"{TOKEN[:4]}\x7f{TOKEN[4:]}", id="env-del"),
        pytest.param("file", f"{TOKEN[:4]}\t{TOKEN[4:]}\n", id="file-tab"),
        pytest.param("file", f"{TOKEN}\x00\n", id="file-nul"),
    ],
)
def test_token_with_a_control_character_is_refused_naming_its_origin(
    tmp_path: Path, where: str, text: str
) -> None:
    path = tmp_path / "token"
    if where == "file":
        path.write_text(text, encoding="utf-8")
        env = {TOKEN_FILE_ENV: str(path)}
        origin = f"the token file {str(path)!r}"
    else:
        env = {TOKEN_ENV: text}
        origin = TOKEN_ENV
    with pytest.raises(ConfigurationError) as raised:
        token_from_environment(env)
    message = str(raised.value)
    assert f"the token in {origin} contains a control character" in message
    assert TOKEN[4:] not in message
