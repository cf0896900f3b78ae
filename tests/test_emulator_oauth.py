"""Tests for ocr_async.emulator.oauth: the OAuth endpoint on a real socket.

What is checked comes from API-FACTS.md ("Authentication: the User Access
Key token") and RFC 6749 5.1/5.2 for the error answers.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from ocr_async.auth import OAUTH_CREATE_PATH, OAUTH_REVOKE_PATH, parse_token_answer
from ocr_async.emulator import EmulatorConfig, RunningEmulator, make_png, running_emulator
from ocr_async.errors import ConfigurationError
from ocr_async.models import Endpoint
from ocr_async.protocol import build_file_request

KEY_ID = "uak-id-0001"
SECRET = "uak-SECRET-9f8e7d"
OTHER_ID = "uak-id-0002"
OTHER_SECRET = "uak-OTHER-SECRET-1a2b"
UAK = {KEY_ID: SECRET, OTHER_ID: OTHER_SECRET}


def basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(login, password)}


BASIC = basic(KEY_ID, SECRET)
GRANT = {"grant_type": "client_credentials"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def oauth_emulator(**config: Any) -> AsyncIterator[tuple[RunningEmulator, FakeClock]]:
    clock = FakeClock()
    settings: dict[str, Any] = {"uak": UAK, "clock": clock, "token_lifetime": 60.0, **config}
    async with running_emulator(EmulatorConfig(**settings)) as emu:
        yield emu, clock


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def create(
    session: aiohttp.ClientSession,
    emu: RunningEmulator,
    *,
    auth: dict[str, str] | None = BASIC,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with session.post(
        emu.url(OAUTH_CREATE_PATH),
        data=GRANT if form is None else form,
        headers={**(auth or {}), **(headers or {})},
    ) as response:
        return response.status, await response.json(), response


async def issue(session: aiohttp.ClientSession, emu: RunningEmulator) -> str:
    status, document, _ = await create(session, emu)
    assert status == 200
    token = document["access_token"]
    assert isinstance(token, str)
    return token


async def revoke(
    session: aiohttp.ClientSession,
    emu: RunningEmulator,
    token: str | None,
    auth: dict[str, str] = BASIC,
) -> tuple[int, dict[str, Any]]:
    form = {} if token is None else {"token": token}
    async with session.post(emu.url(OAUTH_REVOKE_PATH), data=form, headers=auth) as response:
        return response.status, await response.json()


async def ocr_code(session: aiohttp.ClientSession, emu: RunningEmulator, token: str) -> int:
    prepared = build_file_request(
        base_url=emu.base_url,
        appkey="k",
        token=token,
        endpoint=Endpoint.GENERAL,
        image=make_png("with a token"),
        max_bytes=10**6,
    )
    async with session.post(prepared.url, data=prepared.body, headers=prepared.headers) as r:
        code = (await r.json())["header"]["resultCode"]
        assert isinstance(code, int)
        return code


# --- issuing --------------------------------------------------------------------------


async def test_issue_answers_a_bearer_token(session: aiohttp.ClientSession) -> None:
    async with oauth_emulator() as (emu, _):
        status, document, response = await create(session, emu)
        assert status == 200
        assert response.content_type == "application/json"
        # RFC 6749 5.1: token answers must not be cached.
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Pragma"] == "no-cache"
        assert set(document) == {"access_token", "token_type", "expires_in"}
        assert document["token_type"] == "Bearer"
        assert document["expires_in"] == 60
        assert isinstance(document["expires_in"], int)
        assert len(document["access_token"]) >= 32
        assert await ocr_code(session, emu, document["access_token"]) == 0
        second = await issue(session, emu)
        assert second != document["access_token"]
        assert emu.stats.tokens_issued == 2
        assert emu.stats.requests == 1  # OAuth calls are not OCR calls


@pytest.mark.parametrize(
    ("config", "expires_in"),
    [
        pytest.param({}, 60, id="number"),
        pytest.param({"expires_in_as_string": True}, "60", id="string"),
        pytest.param({"token_lifetime": 2.5}, 2.5, id="fraction"),
        pytest.param({"token_lifetime": 2.5, "expires_in_as_string": True}, "2.5", id="both"),
        pytest.param({"token_lifetime": 86400}, 86400, id="default-day"),
    ],
)
async def test_expires_in_as_configured(
    session: aiohttp.ClientSession, config: dict[str, Any], expires_in: object
) -> None:
    async with oauth_emulator(**config) as (emu, _):
        status, document, _ = await create(session, emu)
        async with session.post(emu.url(OAUTH_CREATE_PATH), data=GRANT, headers=BASIC) as r:
            raw = await r.read()
    assert status == 200
    assert document["expires_in"] == expires_in
    # The client reads both spellings the same way.
    assert parse_token_answer(200, raw)[1] == float(expires_in)  # type: ignore[arg-type]


async def test_only_issued_tokens_when_no_static_ones(session: aiohttp.ClientSession) -> None:
    async with oauth_emulator() as (emu, _):
        assert await ocr_code(session, emu, "made-up-token") == 4010006
        assert await ocr_code(session, emu, await issue(session, emu)) == 0


async def test_static_tokens_and_issued_tokens_together(session: aiohttp.ClientSession) -> None:
    async with oauth_emulator(tokens=frozenset({"static-token"})) as (emu, _):
        assert await ocr_code(session, emu, "static-token") == 0
        assert await ocr_code(session, emu, await issue(session, emu)) == 0
        assert await ocr_code(session, emu, "made-up-token") == 4010006


# --- errors (RFC 6749 5.2) ------------------------------------------------------------


def basic_header(user_pass: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(user_pass).decode()}


@pytest.mark.parametrize(
    ("auth", "headers"),
    [
        pytest.param(None, None, id="missing"),
        pytest.param(basic(KEY_ID, "wrong-secret"), None, id="wrong-secret"),
        pytest.param(basic("no-such-id", SECRET), None, id="unknown-id"),
        pytest.param(basic(KEY_ID, OTHER_SECRET), None, id="other-keys-secret"),
        pytest.param(basic(KEY_ID, ""), None, id="empty-secret"),
        pytest.param(None, {"Authorization": "Basic !!not-base64!!"}, id="malformed"),
        pytest.param(None, basic_header(b"no-colon-at-all"), id="no-colon"),
        pytest.param(None, {"Authorization": f"Bearer {SECRET}"}, id="bearer-scheme"),
    ],
)
async def test_bad_client_credentials_are_invalid_client(
    session: aiohttp.ClientSession,
    auth: dict[str, str] | None,
    headers: dict[str, str] | None,
) -> None:
    async with oauth_emulator() as (emu, _):
        status, document, response = await create(session, emu, auth=auth, headers=headers)
        assert status == 401
        assert document["error"] == "invalid_client"
        assert document["error_description"]
        assert SECRET not in str(document)
        assert response.headers["WWW-Authenticate"].startswith("Basic ")
        assert emu.stats.tokens_issued == 0
        assert emu.stats.oauth_refused == 1


@pytest.mark.parametrize(
    ("form", "error"),
    [
        pytest.param({}, "invalid_request", id="missing"),
        pytest.param({"grant_type": ""}, "invalid_request", id="empty"),
        pytest.param({"grant_type": "password"}, "unsupported_grant_type", id="password"),
        pytest.param(
            {"grant_type": "authorization_code"}, "unsupported_grant_type", id="authorization-code"
        ),
    ],
)
async def test_grant_type_errors(
    session: aiohttp.ClientSession, form: dict[str, str], error: str
) -> None:
    async with oauth_emulator() as (emu, _):
        status, document, _ = await create(session, emu, form=form)
    assert status == 400
    assert document["error"] == error
    assert emu.stats.tokens_issued == 0


async def test_a_body_that_is_not_a_form_is_invalid_request(
    session: aiohttp.ClientSession,
) -> None:
    async with (
        oauth_emulator() as (emu, _),
        session.post(emu.url(OAUTH_CREATE_PATH), json=GRANT, headers=BASIC) as r,
    ):
        assert r.status == 400
        assert (await r.json())["error"] == "invalid_request"


async def test_client_reads_the_refusals_as_configuration_errors(
    session: aiohttp.ClientSession,
) -> None:
    async with oauth_emulator() as (emu, _):
        async with session.post(
            emu.url(OAUTH_CREATE_PATH), data=GRANT, headers=basic(KEY_ID, "bad")
        ) as r:
            status, body = r.status, await r.read()
        with pytest.raises(ConfigurationError, match=r"refused the User Access Key \(invalid_c"):
            parse_token_answer(status, body)
        async with session.post(
            emu.url(OAUTH_CREATE_PATH), data={"grant_type": "x"}, headers=BASIC
        ) as r:
            status, body = r.status, await r.read()
        with pytest.raises(ConfigurationError, match="unsupported_grant_type"):
            parse_token_answer(status, body)


async def test_oauth_is_off_without_uak(session: aiohttp.ClientSession) -> None:
    async with running_emulator() as emu:
        async with session.post(emu.url(OAUTH_CREATE_PATH), data=GRANT, headers=BASIC) as r:
            assert r.status == 404
        async with session.post(emu.url(OAUTH_REVOKE_PATH), data={"token": "t"}) as r:
            assert r.status == 404
        assert await ocr_code(session, emu, "any-token") == 0  # the old default stands


# --- expiry and revocation ------------------------------------------------------------


async def test_an_expired_token_answers_4010006(session: aiohttp.ClientSession) -> None:
    async with oauth_emulator() as (emu, clock):
        token = await issue(session, emu)
        clock.now += 59.9
        assert await ocr_code(session, emu, token) == 0
        clock.now += 0.1  # exactly the lifetime: expired
        assert await ocr_code(session, emu, token) == 4010006
        assert await ocr_code(session, emu, token) == 4010006
        assert emu.stats.tokens_rejected_expired == 2
        assert emu.stats.by_code == {0: 1, 4010006: 2}
        fresh = await issue(session, emu)
        assert await ocr_code(session, emu, fresh) == 0


async def test_reset_keeps_issued_tokens(session: aiohttp.ClientSession) -> None:
    async with oauth_emulator() as (emu, _):
        token = await issue(session, emu)
        async with session.post(emu.url("/_emulator/reset")) as r:
            assert (await r.json())["tokens_issued"] == 0
        assert await ocr_code(session, emu, token) == 0


async def test_revoke(session: aiohttp.ClientSession) -> None:
    async with oauth_emulator() as (emu, _):
        token = await issue(session, emu)
        kept = await issue(session, emu)
        assert await revoke(session, emu, token) == (200, {})
        assert await ocr_code(session, emu, token) == 4010006
        assert await ocr_code(session, emu, kept) == 0
        assert emu.stats.tokens_revoked == 1
        assert emu.stats.tokens_rejected_expired == 0  # revoked, not expired
        # RFC 7009 2.2: an unknown or already revoked token is still a 200.
        assert await revoke(session, emu, token) == (200, {})
        assert await revoke(session, emu, "never-issued") == (200, {})
        assert emu.stats.tokens_revoked == 1


async def test_revoke_needs_the_key_that_holds_the_token(
    session: aiohttp.ClientSession,
) -> None:
    async with oauth_emulator() as (emu, _):
        token = await issue(session, emu)
        other = basic(OTHER_ID, OTHER_SECRET)
        assert await revoke(session, emu, token, auth=other) == (200, {})
        assert await ocr_code(session, emu, token) == 0  # not the other key's to revoke
        status, document = await revoke(session, emu, token, auth=basic(KEY_ID, "x"))
        assert (status, document["error"]) == (401, "invalid_client")
        status, document = await revoke(session, emu, None)
        assert (status, document["error"]) == (400, "invalid_request")
        assert await ocr_code(session, emu, token) == 0
        assert emu.stats.oauth_refused == 2


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"token_lifetime": 0.0}, "token_lifetime", id="zero-lifetime"),
        pytest.param({"token_lifetime": float("nan")}, "token_lifetime", id="nan-lifetime"),
        pytest.param({"uak": {"a:b": "s"}}, "uak", id="colon-in-id"),
        pytest.param({"uak": {"": "s"}}, "uak", id="empty-id"),
        pytest.param({"uak": {"a": ""}}, "uak", id="empty-secret"),
    ],
)
def test_config_refuses_nonsense(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmulatorConfig(**kwargs)


def test_config_keeps_secrets_out_of_its_repr_and_copies_the_keys() -> None:
    keys = {KEY_ID: SECRET}
    config = EmulatorConfig(uak=keys, tokens=frozenset({"static-SECRET"}))
    assert SECRET not in repr(config)
    assert "static-SECRET" not in repr(config)
    keys[KEY_ID] = "changed later"
    assert config.uak == {KEY_ID: SECRET}
