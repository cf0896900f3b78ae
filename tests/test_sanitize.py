"""Server text made safe: origins of redirect targets, redaction, strict JSON."""

from __future__ import annotations

import base64
import re
from urllib.parse import quote, quote_plus

import pytest

from ocr_async.sanitize import (
    MIN_SECRET_LENGTH,
    REDACTED,
    SERVER_TEXT_LIMIT,
    Redactor,
    server_text,
    url_origin,
)

BASE = "https://api-ocr.nhncloudservice.com/v1.1/appkeys/k/general"


@pytest.mark.parametrize(
    ("location", "origin"),
    [
        pytest.param("https://evil.example/steal?token=t", "https://evil.example", id="absolute"),
        pytest.param("http://u:pw@evil.example:8080/x", "http://evil.example:8080", id="userinfo"),
        pytest.param("/elsewhere?sig=1", "https://api-ocr.nhncloudservice.com", id="relative"),
        pytest.param("//evil.example/x", "https://evil.example", id="scheme-relative"),
        pytest.param("http://[::1]:9/x", "http://[::1]:9", id="ipv6"),
        pytest.param("HTTP://EVIL.Example/", "http://evil.example", id="case"),
        pytest.param("ftp://evil.example/x", "an unreadable address", id="not-http"),
        pytest.param("http://evil.example:99999/", "an unreadable address", id="bad-port"),
        pytest.param("http://ev\x1bil/", "an unreadable address", id="control"),
        pytest.param("http://" + "a" * 300 + "/", "an unreadable address", id="long-host"),
    ],
)
def test_url_origin_shows_scheme_host_and_port_only(location: str, origin: str) -> None:
    assert url_origin(location, BASE) == origin


# --- redaction ---------------------------------------------------------------------------

TOKEN = "tok-SECRET/9f+2c=="
UAK_ID = "uak-ID-4e1b"
UAK_SECRET = "uak-SECRET-77d0"
BASIC = "Basic " + base64.b64encode(f"{UAK_ID}:{UAK_SECRET}".encode()).decode()


def basic_redactor() -> Redactor:
    return Redactor.for_basic_auth(UAK_ID, UAK_SECRET, BASIC)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(TOKEN, id="raw"),
        pytest.param(quote(TOKEN, safe=""), id="url-encoded"),
        pytest.param(
            re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(TOKEN, safe="")),
            id="url-encoded-lower-hex",
        ),
        pytest.param(quote_plus(TOKEN), id="form-encoded"),
        pytest.param(TOKEN.replace("/", "\\/"), id="json-escaped-slash"),
    ],
)
def test_every_spelling_of_the_token_is_redacted(spelling: str) -> None:
    text = f"refused: Bearer {spelling} (try again)"
    assert Redactor([TOKEN]).redact(text) == f"refused: Bearer {REDACTED} (try again)"


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(BASIC, id="header"),
        pytest.param(BASIC.partition(" ")[2], id="base64-alone"),
        pytest.param(BASIC.partition(" ")[2].rstrip("="), id="base64-unpadded"),
        pytest.param(f"{UAK_ID}:{UAK_SECRET}", id="pair"),
        pytest.param(UAK_ID, id="id"),
        pytest.param(UAK_SECRET, id="secret"),
        pytest.param(quote(f"{UAK_ID}:{UAK_SECRET}", safe=""), id="pair-url-encoded"),
    ],
)
def test_every_part_of_basic_auth_is_redacted(echo: str) -> None:
    redacted = basic_redactor().redact(f"bad credentials [{echo}]")
    assert redacted in (f"bad credentials [{REDACTED}]", f"bad credentials [Basic {REDACTED}]")
    for secret in (UAK_ID, UAK_SECRET, BASIC.partition(" ")[2].rstrip("=")):
        assert secret not in redacted


@pytest.mark.parametrize(
    ("secret", "text"),
    [
        pytest.param("wrong", "unknown User Access Key or wrong secret", id="short-word"),
        pytest.param("test", "test image: tested", id="short-token"),
        pytest.param("a", "a b c", id="one-letter"),
        pytest.param("", "anything", id="empty"),
    ],
)
def test_short_secrets_leave_ordinary_words_alone(secret: str, text: str) -> None:
    assert len(secret) < MIN_SECRET_LENGTH
    assert Redactor([secret]).redact(text) == text
    assert server_text(text, [secret]) == text


def test_a_secret_inside_a_longer_one_is_redacted_whole() -> None:
    redactor = Redactor(["abcdefgh", "xxabcdefghyy"])
    assert redactor.redact("<xxabcdefghyy> <abcdefgh>") == f"<{REDACTED}> <{REDACTED}>"


def test_redact_prefix_never_shows_the_start_of_a_cut_secret() -> None:
    redactor = Redactor([TOKEN])
    text = "ab " * 10 + TOKEN + " tail"
    for length in range(len(text) + 1):
        shown = redactor.redact_prefix(text, length)
        assert TOKEN[:4] not in shown
        assert len(shown) <= max(length, text.index(TOKEN) + len(REDACTED))


def test_redact_value_walks_keys_and_values() -> None:
    value = {"a": [TOKEN, {TOKEN: 1.5}], "b": None, "c": 7, "d": f"x{TOKEN}"}
    assert Redactor([TOKEN]).redact_value(value) == {
        "a": [REDACTED, {REDACTED: 1.5}],
        "b": None,
        "c": 7,
        "d": f"x{REDACTED}",
    }


def test_the_redactor_repr_shows_no_secret() -> None:
    shown = repr(basic_redactor().with_secrets(TOKEN))
    assert re.fullmatch(r"Redactor\(<\d+ secrets>\)", shown)


def test_server_text_is_one_bounded_printable_line() -> None:
    text = f"line one\r\n\x1b[31mred\x1b[0m\u202e {TOKEN}\t" + "x" * 1000
    shown = server_text(text, [TOKEN])
    assert shown.startswith(f"line one [31mred [0m {REDACTED} xxx")
    assert shown.endswith("x...")
    assert len(shown) == SERVER_TEXT_LIMIT + 3


def test_server_text_looks_at_a_bounded_window_of_a_huge_text() -> None:
    huge = " " * 10_000_000 + TOKEN
    assert server_text(huge, [TOKEN]) == ""
