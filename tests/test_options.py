"""One options object, checked once; one place that finds the credentials."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from ocr_async import OcrClient
from ocr_async.auth import StaticToken, UserAccessKeyTokens
from ocr_async.cli.parsing import parse
from ocr_async.cli.run import _options
from ocr_async.errors import ConfigurationError
from ocr_async.models import Endpoint
from ocr_async.options import (
    DEFAULT_CONCURRENCY,
    Options,
    resolve_base_url,
    resolve_credentials,
)
from ocr_async.protocol import DEFAULT_BASE_URL
from ocr_async.retry import RetryPolicy


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        pytest.param({"concurrency": 0}, "concurrency", id="concurrency"),
        pytest.param({"timeout": 0.0}, "timeout", id="timeout-zero"),
        pytest.param({"timeout": float("nan")}, "timeout", id="timeout-nan"),
        pytest.param({"max_bytes": 0}, "max_bytes", id="max-bytes"),
        pytest.param({"max_answer_bytes": 0}, "max_answer_bytes", id="answer-cap"),
        pytest.param({"read_limit": 0}, "read_limit", id="read-limit"),
        pytest.param({"rps": 0.0}, "rps", id="rps-zero"),
        pytest.param({"rps": float("inf")}, "rps", id="rps-inf"),
        pytest.param({"grace": -1.0}, "grace", id="grace"),
        pytest.param({"endpoint": "sideways"}, "endpoint must be one of", id="endpoint"),
        pytest.param(
            {"shared_quota": "http://redis:6379"}, "redis://, rediss:// or unix://", id="store"
        ),
        pytest.param(
            {"shared_quota": "redis://r:6379/0", "rps": 5.0}, "not go with rps", id="shared-rps"
        ),
        pytest.param(
            {"shared_quota": "redis://r:6379/0", "adapt_rate": False},
            "needs the adaptive rate controller",
            id="shared-no-adapt",
        ),
    ],
)
def test_bad_values_are_refused_when_built(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        Options(**settings)


def test_endpoints_are_read_from_their_names() -> None:
    assert Options(endpoint="cropping").endpoint is Endpoint.CROPPING  # type: ignore[arg-type]
    auto = Options(endpoint="auto")
    assert (auto.auto_endpoint, auto.fixed_endpoint, auto.changes_images) == (
        True,
        Endpoint.GENERAL,
        True,
    )
    assert not Options().changes_images


def test_with_changes_applies_only_what_is_given_and_checks_it() -> None:
    base = Options(concurrency=4, shrink=True)
    changed = base.with_changes(concurrency=8, timeout=None)
    assert (changed.concurrency, changed.timeout, changed.shrink) == (8, base.timeout, True)
    assert base.with_changes(concurrency=None) is base
    with pytest.raises(ConfigurationError):
        base.with_changes(concurrency=-1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.concurrency = 2  # type: ignore[misc]


def test_the_client_reads_one_options_value() -> None:
    options = Options(concurrency=3, max_bytes=1234, timeout=9.0)
    client = OcrClient(appkey="k", token="t", options=options, max_bytes=999)
    assert client.options == dataclasses.replace(options, max_bytes=999)
    assert client.max_bytes == 999
    assert OcrClient(appkey="k", token="t").options == Options()


def test_the_command_line_becomes_one_options_value() -> None:
    args = parse(
        [
            "run",
            "in.png",
            "-o",
            "out.jsonl",
            "--concurrency",
            "7",
            "--max-bytes",
            "4096",
            "--timeout",
            "12",
            "--max-attempts",
            "2",
            "--max-throttled",
            "9",
            "--rps",
            "3.5",
            "--endpoint",
            "auto",
            "--convert",
            "--grace",
            "4",
        ]
    )
    assert _options(args) == Options(
        concurrency=7,
        timeout=12.0,
        max_bytes=4096,
        retry=RetryPolicy(max_attempts=2, max_throttled=9),
        rps=3.5,
        adapt_rate=True,
        endpoint="auto",
        convert=True,
        shrink=False,
        grace=4.0,
    )
    defaults = _options(parse(["run", "in.png", "-o", "out.jsonl"]))
    assert defaults == Options(concurrency=DEFAULT_CONCURRENCY)


# --- credentials ----------------------------------------------------------------------

TOKEN = "env-token-0123456789"


def test_what_is_given_wins_over_the_environment() -> None:
    env = {"NHN_OCR_APPKEY": "env-key", "NHN_OCR_TOKEN": TOKEN, "NHN_OCR_BASE_URL": "http://e"}
    given = StaticToken("given-token-9876543210")
    found = resolve_credentials(appkey="k", token=given, base_url="http://b", env=env)
    assert (found.appkey, found.tokens, found.base_url, found.owns_tokens) == (
        "k",
        given,
        "http://b",
        False,
    )


async def test_a_user_access_key_wins_over_a_fixed_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    env = {
        "NHN_OCR_APPKEY": "key",
        "NHN_OCR_TOKEN": TOKEN,
        "NHN_UAK_ID": "uak-id",
        "NHN_UAK_SECRET": "uak-secret-0123",
        "NHN_OAUTH_URL": "http://oauth.test",
    }
    found = resolve_credentials(token_file=token_file, env=env)
    assert isinstance(found.tokens, UserAccessKeyTokens)
    assert found.user_access_key is found.tokens
    assert found.owns_tokens
    await found.aclose()  # closes what it made (nothing was opened yet)


async def test_a_token_file_and_the_environment_give_a_static_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file-0123456789\n")
    env = {"NHN_OCR_APPKEY": " key ", "NHN_OCR_TOKEN": TOKEN}
    from_file = resolve_credentials(token_file=token_file, env=env)
    assert isinstance(from_file.tokens, StaticToken)
    assert await from_file.tokens.get_token() == "from-the-file-0123456789"
    assert from_file.appkey == "key"
    from_env = resolve_credentials(env=env)
    assert await from_env.tokens.get_token() == TOKEN
    assert (from_env.user_access_key, from_env.owns_tokens) == (None, False)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("appkey=", "no app key: set NHN_OCR_APPKEY or pass appkey="),
        ("--appkey", "no app key: set NHN_OCR_APPKEY or pass --appkey"),
    ],
)
def test_a_missing_app_key_names_how_to_give_it(flag: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve_credentials(env={"NHN_OCR_TOKEN": TOKEN, "NHN_OCR_APPKEY": "  "}, appkey_flag=flag)
    assert str(raised.value) == message


def test_a_missing_token_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="no token: set NHN_OCR_TOKEN"):
        resolve_credentials(env={"NHN_OCR_APPKEY": "k"})


def test_half_a_user_access_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="set both"):
        resolve_credentials(env={"NHN_OCR_APPKEY": "k", "NHN_UAK_ID": "id"})


@pytest.mark.parametrize(
    ("given", "env", "url"),
    [
        pytest.param(
            "http://given", {"NHN_OCR_BASE_URL": "http://env"}, "http://given", id="given"
        ),
        pytest.param(None, {"NHN_OCR_BASE_URL": " http://env "}, "http://env", id="env"),
        pytest.param(None, {"NHN_OCR_BASE_URL": ""}, DEFAULT_BASE_URL, id="empty-env"),
        pytest.param(None, {}, DEFAULT_BASE_URL, id="default"),
    ],
)
def test_the_base_url(given: str | None, env: dict[str, str], url: str) -> None:
    assert resolve_base_url(given, env) == url


def test_a_shared_quota_url_is_kept_out_of_the_repr_and_its_errors() -> None:
    options = Options(shared_quota="redis://:s3cret@store:6379/0")
    assert "s3cret" not in repr(options)
    with pytest.raises(ConfigurationError) as refused:
        Options(shared_quota="redis://:s3cret@store:6379/0", rps=2.0)
    assert "s3cret" not in str(refused.value)


def test_the_shared_quota_comes_from_the_flag_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["run", "a.png", "-o", "out.jsonl"]
    monkeypatch.setenv("OCR_ASYNC_SHARED_QUOTA", " redis://env:6379/0 ")
    assert _options(parse(argv)).shared_quota == "redis://env:6379/0"
    given = _options(parse([*argv, "--shared-quota", "redis://flag:6379/1"]))
    assert given.shared_quota == "redis://flag:6379/1"
    monkeypatch.setenv("OCR_ASYNC_SHARED_QUOTA", "")
    assert _options(parse(argv)).shared_quota is None
