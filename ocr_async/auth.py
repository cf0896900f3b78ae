"""Where the bearer token comes from.

A token is a secret: providers keep it out of every repr, and nothing in the
package formats it into a message. The client asks its provider for the
current token before each request and tells it when the API refused one.

Two providers: :class:`StaticToken` (a token issued elsewhere) and
:class:`UserAccessKeyTokens`, which issues tokens itself from a User Access
Key through NHN Cloud's OAuth endpoint and renews them before they expire
(API-FACTS.md, "Authentication: the User Access Key token").
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, Self, runtime_checkable
from urllib.parse import urlencode, urlsplit

import aiohttp

from ocr_async.errors import (
    ConfigurationError,
    HttpStatusError,
    MalformedResponseError,
    TransportError,
)
from ocr_async.protocol import PreparedRequest
from ocr_async.sanitize import Redactor, server_text, url_origin
from ocr_async.transport import OAUTH_WORDING, AiohttpTransport, Transport

__all__ = [
    "DEFAULT_OAUTH_URL",
    "OAUTH_CREATE_PATH",
    "OAUTH_REVOKE_PATH",
    "OAUTH_URL_ENV",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "TOKEN_FILE_LIMIT",
    "UAK_ID_ENV",
    "UAK_SECRET_ENV",
    "StaticToken",
    "TokenProvider",
    "UserAccessKeyTokens",
    "oauth_error",
    "parse_token_answer",
    "token_from_environment",
    "uak_from_environment",
]

log = logging.getLogger(__name__)

#: The environment variable holding a User Access Key token.
TOKEN_ENV = "NHN_OCR_TOKEN"
#: The environment variable naming a file that holds the token.
TOKEN_FILE_ENV = "NHN_OCR_TOKEN_FILE"
#: A token file larger than this many bytes is refused unread.
TOKEN_FILE_LIMIT: Final = 16 * 1024
#: The environment variables holding a User Access Key (ID and secret).
UAK_ID_ENV = "NHN_UAK_ID"
UAK_SECRET_ENV = "NHN_UAK_SECRET"
#: The environment variable overriding the OAuth server (e.g. the emulator).
OAUTH_URL_ENV = "NHN_OAUTH_URL"

#: NHN Cloud's OAuth server (API-FACTS.md).
DEFAULT_OAUTH_URL: Final = "https://oauth.api.nhncloudservice.com"
#: Issue a token: Basic auth ``id:secret``, form ``grant_type=client_credentials``.
OAUTH_CREATE_PATH: Final = "/oauth2/token/create"
#: Revoke a token: Basic auth, form ``token=<access_token>``.
OAUTH_REVOKE_PATH: Final = "/oauth2/token/revoke"

# Renew this long before expiry at most (5 min), and at most this share of
# the lifetime, so a 3-second token is renewed 0.3 s before it dies.
_MAX_REFRESH_MARGIN: Final = 300.0
_REFRESH_SHARE: Final = 0.1
# The documented default lifetime, assumed when an answer omits expires_in.
_DEFAULT_LIFETIME: Final = 86400.0
# After a failed early renewal, the old token is used this long before retrying.
_RENEW_RETRY: Final = 1.0
#: Seconds for one OAuth request.
_OAUTH_TIMEOUT: Final = 30.0
# A token answer is under 1 kB; an error page a few kB. More is no OAuth server.
_OAUTH_ANSWER_LIMIT: Final = 1024 * 1024


@runtime_checkable
class TokenProvider(Protocol):
    """Supplies the bearer token; shared by every worker of a client."""

    async def get_token(self) -> str:
        """The token to send now."""
        ...

    async def token_rejected(self, token: str) -> bool:
        """The API answered 4010006 for ``token``.

        Return True when a different token is now available, so that one
        more attempt is worth making; False when nothing can change.
        """
        ...


class StaticToken:
    """A fixed token, as issued elsewhere. It cannot be renewed."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token:
            raise ConfigurationError("the token is empty")
        if any(ch in token for ch in "\r\n"):
            raise ConfigurationError("the token contains a line break")
        self._token = token

    async def get_token(self) -> str:
        """The fixed token."""
        return self._token

    async def token_rejected(self, token: str) -> bool:
        """Nothing can be renewed: a refused static token stays refused."""
        return False

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"


def token_from_environment(
    env: Mapping[str, str] | None = None, token_file: str | os.PathLike[str] | None = None
) -> StaticToken:
    """A :class:`StaticToken` from the first set of: ``token_file``, the env vars.

    The order is ``token_file``, then ``NHN_OCR_TOKEN_FILE``, then ``NHN_OCR_TOKEN``.

    A file is read as UTF-8; a byte-order mark that a Windows editor may
    have put in front is dropped, not sent as part of the token. A file
    larger than :data:`TOKEN_FILE_LIMIT` is refused unread. Raises
    :class:`ConfigurationError` saying what to set when none is found, and
    naming where the token came from when it is unusable (empty, more than
    one line, a control character); the token itself is never in a message.
    """
    env = os.environ if env is None else env
    file_name = token_file or env.get(TOKEN_FILE_ENV)
    if file_name:
        shown = f"the token file {os.fspath(file_name)!r}"
        return _checked_token(_read_token_file(file_name, shown), shown)
    value = env.get(TOKEN_ENV)
    if value:
        return _checked_token(value, TOKEN_ENV)
    raise ConfigurationError(
        f"no token: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or pass --token-file) "
        "to a User Access Key token"
    )


def _read_token_file(name: str | os.PathLike[str], shown: str) -> str:
    # Bounded: the wrong file (a log, an image, /dev/zero) must not be read
    # whole into memory before it is found to be no token.
    try:
        with open(name, "rb") as handle:
            data = handle.read(TOKEN_FILE_LIMIT + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read {shown}: {exc.strerror}") from None
    if len(data) > TOKEN_FILE_LIMIT:
        raise ConfigurationError(
            f"{shown} is larger than {TOKEN_FILE_LIMIT // 1024} KiB; a token is a few "
            "hundred bytes: is it the right file?"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{shown} is not UTF-8 text") from None


def _checked_token(text: str, origin: str) -> StaticToken:
    # A control character would fail every request when the header is built:
    # refused here, at start, with where the token came from.
    try:
        token = StaticToken(text)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (in {origin})") from None
    if _has_control(text.strip()):
        raise ConfigurationError(
            f"the token in {origin} contains a control character: copy it again, as issued"
        )
    return token


# --- User Access Key tokens -------------------------------------------------------


class UserAccessKeyTokens:
    """Tokens issued from a User Access Key, renewed shortly before they expire.

    Issues ``POST {oauth_url}/oauth2/token/create`` with HTTP Basic auth
    ``uak_id:uak_secret`` and ``grant_type=client_credentials`` (API-FACTS.md).
    One token serves every worker of a client. Issuance is single-flight:
    however many tasks find the token missing, near expiry or refused at the
    same moment, exactly one request is in flight and all of them share its
    outcome, success or failure.

    A token is renewed ``refresh_margin`` seconds before it expires; by
    default ``min(300 s, 10 % of its lifetime)``, and never more than half
    the lifetime. ``clock`` is a monotonic clock in seconds; a token's life is
    counted from the moment its request was sent. ``session`` is used if
    given (and left open); otherwise one is opened on first use and closed by
    :meth:`aclose` or ``async with``. ``transport`` replaces the aiohttp
    transport (:mod:`ocr_async.transport`) altogether, for tests.

    Raises :class:`~ocr_async.errors.ConfigurationError` when the OAuth
    server refuses the key (the same key would be refused again), and a
    :class:`~ocr_async.errors.TransportError` when it cannot be reached or
    answers with something unusable (worth trying again later). Neither the
    secret nor a token ever appears in a repr, message or log line.
    """

    __slots__ = (
        "_authorization",
        "_clock",
        "_expires_at",
        "_issued",
        "_pending",
        "_redactor",
        "_refresh_margin",
        "_renew_at",
        "_token",
        "_transport",
        "_uak_id",
        "_url",
    )

    def __init__(
        self,
        uak_id: str,
        uak_secret: str,
        *,
        oauth_url: str = DEFAULT_OAUTH_URL,
        session: aiohttp.ClientSession | None = None,
        refresh_margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = _OAUTH_TIMEOUT,
        transport: Transport | None = None,
    ) -> None:
        uak_id, uak_secret = uak_id.strip(), uak_secret.strip()
        if not uak_id:
            raise ConfigurationError("the User Access Key ID is empty")
        if not uak_secret:
            raise ConfigurationError("the User Access Key secret is empty")
        # HTTP Basic cannot carry a ':' in the user ID (RFC 7617, 2).
        if ":" in uak_id or _has_control(uak_id):
            raise ConfigurationError("the User Access Key ID contains ':' or a control character")
        if _has_control(uak_secret):
            raise ConfigurationError("the User Access Key secret contains a control character")
        if refresh_margin is not None and not (
            math.isfinite(refresh_margin) and refresh_margin >= 0
        ):
            raise ConfigurationError("refresh_margin must be a non-negative number of seconds")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigurationError("the OAuth timeout must be positive")
        self._uak_id = uak_id
        self._authorization = aiohttp.encode_basic_auth(uak_id, uak_secret)
        self._redactor = Redactor.for_basic_auth(uak_id, uak_secret, self._authorization)
        self._url = _oauth_base_url(oauth_url)
        self._transport: Transport = transport or AiohttpTransport(
            session, timeout=timeout, wording=OAUTH_WORDING
        )
        self._refresh_margin = refresh_margin
        self._clock = clock
        self._token: str | None = None
        self._expires_at = -math.inf
        self._renew_at = -math.inf
        self._issued = 0
        self._pending: asyncio.Task[str] | None = None

    def __repr__(self) -> str:
        return f"UserAccessKeyTokens(uak_id={self._uak_id!r}, oauth_url={self._url!r})"

    @property
    def uak_id(self) -> str:
        """The User Access Key ID (not a secret)."""
        return self._uak_id

    @property
    def redactor(self) -> Redactor:
        """Blanks out this key's ID, secret and Basic header from a server's text.

        An :class:`~ocr_async.OcrClient` using this provider applies it, with
        the token, to every answer of the API as well.
        """
        return self._redactor

    @property
    def oauth_url(self) -> str:
        """The OAuth server's base URL, without a trailing slash."""
        return self._url

    @property
    def issued(self) -> int:
        """How many tokens this provider has issued so far."""
        return self._issued

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop an issuance in flight and close the session if this provider opened it."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await self._transport.aclose()

    async def get_token(self) -> str:
        """The current token, issuing a new one when it is missing or about to expire."""
        token = self._token
        if token is not None and self._clock() < self._renew_at:
            return token
        try:
            return await self._renewal()
        except TransportError:
            # Renewing early failed on the network, but the old token has
            # life left in it: use it, and try again in a moment rather than
            # on every call.
            token, now = self._token, self._clock()
            if token is not None and now < self._expires_at:
                log.warning("could not renew the OAuth token yet; using the current one")
                self._renew_at = max(self._renew_at, min(now + _RENEW_RETRY, self._expires_at))
                return token
            raise

    async def token_rejected(self, token: str) -> bool:
        """The API answered 4010006 for ``token``: make sure a different one is ready.

        If ``token`` is still the current one, it is dropped and a new one is
        issued (once, however many workers report it); if another token has
        replaced it meanwhile, nothing is issued. Returns True; raises when
        the new token cannot be issued.
        """
        current = self._token
        if current is not None and current != token:
            return True
        if current is not None:
            self._token = None  # refused: never hand it out again
            self._renew_at = self._expires_at = -math.inf
        await self._renewal()
        return True

    async def revoke(self) -> None:
        """Revoke the current token at the OAuth server and forget it (no-op without one)."""
        token = self._token
        if token is None:
            return
        self._token = None
        self._renew_at = self._expires_at = -math.inf
        redactor = self._redactor.with_secrets(token)
        status, body = await self._post(OAUTH_REVOKE_PATH, {"token": token}, redactor)
        if status != 200:
            raise oauth_error(status, body, redact=redactor, what="revocation")
        log.debug("revoked the OAuth token for User Access Key %s", self._uak_id)

    async def _renewal(self) -> str:
        # Single flight: every caller awaits the same task. shield() keeps one
        # caller's cancellation from cancelling the issuance for the others.
        task = self._pending
        if task is None:
            task = asyncio.get_running_loop().create_task(self._issue())
            self._pending = task
            task.add_done_callback(self._issue_done)
        return await asyncio.shield(task)

    def _issue_done(self, task: asyncio.Task[str]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled():
            task.exception()  # retrieved, even if every waiter was cancelled

    async def _issue(self) -> str:
        started = self._clock()
        status, body = await self._post(
            OAUTH_CREATE_PATH, {"grant_type": "client_credentials"}, self._redactor
        )
        token, lifetime = parse_token_answer(status, body, redact=self._redactor)
        margin = self._refresh_margin
        if margin is None:
            margin = min(_MAX_REFRESH_MARGIN, _REFRESH_SHARE * lifetime)
        self._token = token
        self._expires_at = started + lifetime
        self._renew_at = self._expires_at - min(margin, lifetime / 2)
        self._issued += 1
        log.debug(
            "issued an OAuth token for User Access Key %s, valid %g s", self._uak_id, lifetime
        )
        return token

    async def _post(
        self, path: str, form: Mapping[str, str], redactor: Redactor
    ) -> tuple[int, bytes]:
        request = PreparedRequest(
            url=self._url + path,
            headers={
                "Authorization": self._authorization,
                "Content-Type": "application/x-www-form-urlencoded",
            },
            body=urlencode(form).encode("ascii"),
        )
        answer = await self._transport.post(
            request, answer_limit=_OAUTH_ANSWER_LIMIT, redactor=redactor
        )
        if answer.is_redirect:
            # No redirect is followed: the Basic credentials go nowhere else.
            raise _redirect_refused(answer.status, answer.headers.get("Location"), request.url)
        return answer.status, answer.body


def parse_token_answer(
    status: int, body: bytes, *, redact: Redactor | Collection[str] = ()
) -> tuple[str, float]:
    """``(access_token, expires_in)`` from an answer of the token endpoint.

    ``expires_in`` may be a number or a numeric string (API-FACTS.md); when
    it is missing, the documented default of 86,400 s is assumed. Raises
    :class:`ConfigurationError` for an RFC 6749 error answer (the request
    will be refused again), :class:`HttpStatusError` for other non-200
    statuses and :class:`MalformedResponseError` for a 200 that is not a
    usable token. No secret of ``redact`` (a :class:`Redactor`, or the
    secrets themselves) appears in a message.
    """
    redact = Redactor.of(redact)
    if status != 200:
        raise oauth_error(status, body, redact=redact)
    document = _json_object(body)
    if document is None:
        raise MalformedResponseError("oauth", "the OAuth server's answer is not a JSON object")
    token = document.get("access_token")
    if token is None and isinstance(document.get("error"), str):
        raise oauth_error(400, body, redact=redact)
    if not isinstance(token, str) or not token or _has_control(token) or " " in token:
        raise MalformedResponseError(
            "oauth", "the OAuth server's answer has no usable access_token"
        )
    token_type = document.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = server_text(str(token_type), redact)
        raise MalformedResponseError("oauth", f"the OAuth server issued a token of type {shown!r}")
    return token, _lifetime(document.get("expires_in", _DEFAULT_LIFETIME))


def oauth_error(
    status: int,
    body: bytes,
    *,
    redact: Redactor | Collection[str] = (),
    what: str = "token request",
) -> Exception:
    """The exception for a non-200 answer of the OAuth server.

    An RFC 6749 (5.2) error or a 400/401/403 is a :class:`ConfigurationError`:
    the key or the request is wrong and will be refused again; so is a 404 or
    405, which means the OAuth URL is wrong. Anything else
    is an :class:`HttpStatusError`, retryable for 408, 425, 429 and 5xx.
    The server's text in the message is redacted with ``redact``.
    """
    redact = Redactor.of(redact)
    document = _json_object(body)
    error = document.get("error") if document is not None else None
    transient = status in (408, 425, 429) or status >= 500
    if isinstance(error, str) and error and not transient:
        description = document.get("error_description") if document is not None else None
        subject = "the User Access Key" if error == "invalid_client" else f"the {what}"
        message = f"the OAuth server refused {subject} ({server_text(error, redact)})"
        if isinstance(description, str) and description.strip():
            message += f": {server_text(description, redact)}"
        return ConfigurationError(message)
    if status in (400, 401, 403):
        subject = "the User Access Key" if status == 401 else f"the {what}"
        return ConfigurationError(f"the OAuth server refused {subject} (HTTP {status})")
    if status in (404, 405):
        return ConfigurationError(
            f"the OAuth server answered HTTP {status}: is the OAuth URL ({OAUTH_URL_ENV}) right?"
        )
    return HttpStatusError(status, f"the OAuth server answered HTTP {status}")


def _redirect_refused(status: int, location: str | None, url: str) -> ConfigurationError:
    # NHN's OAuth server does not redirect: a wrong URL (http for https, an
    # old host) does. Asking again would be redirected again.
    target = url_origin(location, url) if location else "nowhere (no Location)"
    return ConfigurationError(
        f"the OAuth server answered HTTP {status}: a redirect to {target}, not followed "
        f"(the User Access Key is sent nowhere else): is the OAuth URL ({OAUTH_URL_ENV}) right?"
    )


def uak_from_environment(
    env: Mapping[str, str] | None = None,
    *,
    session: aiohttp.ClientSession | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> UserAccessKeyTokens | None:
    """A :class:`UserAccessKeyTokens` from ``NHN_UAK_ID`` and ``NHN_UAK_SECRET``.

    ``NHN_OAUTH_URL`` overrides the OAuth server. Returns None when neither
    key variable is set; raises :class:`ConfigurationError` when only one is.
    """
    env = os.environ if env is None else env
    uak_id = env.get(UAK_ID_ENV, "").strip()
    secret = env.get(UAK_SECRET_ENV, "").strip()
    if not uak_id and not secret:
        return None
    if not secret:
        raise ConfigurationError(f"{UAK_ID_ENV} is set but {UAK_SECRET_ENV} is not: set both")
    if not uak_id:
        raise ConfigurationError(f"{UAK_SECRET_ENV} is set but {UAK_ID_ENV} is not: set both")
    oauth_url = env.get(OAUTH_URL_ENV, "").strip() or DEFAULT_OAUTH_URL
    return UserAccessKeyTokens(uak_id, secret, oauth_url=oauth_url, session=session, clock=clock)


def _oauth_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith(OAUTH_CREATE_PATH):  # the whole endpoint was given
        url = url[: -len(OAUTH_CREATE_PATH)]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigurationError(f"the OAuth URL {url!r} is not an http(s) base URL")
    return url


def _lifetime(value: Any) -> float:
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = float(value.strip())
        except ValueError:
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise MalformedResponseError(
            "oauth", "the OAuth server's answer has no usable expires_in (seconds)"
        )
    return seconds


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _has_control(text: str) -> bool:
    return any(not ch.isprintable() for ch in text)
