"""The emulator's OAuth endpoint: User Access Key -> bearer token.

``POST /oauth2/token/create`` and ``POST /oauth2/token/revoke`` as
API-FACTS.md describes NHN Cloud's (the same host and port as the OCR
routes; point the client at it with ``NHN_OAUTH_URL``):

- HTTP Basic auth ``UserAccessKeyID:SecretAccessKey``, a form body
  (``application/x-www-form-urlencoded``);
- create: ``grant_type=client_credentials`` answers
  ``{"access_token", "token_type": "Bearer", "expires_in"}``;
- revoke: ``token=<access_token>`` answers 200 ``{}``, also for a token that
  is unknown or belongs to another key (RFC 7009, 2.2), which is left alone;
- errors as RFC 6749 5.2: missing or wrong credentials -> 401
  ``invalid_client`` (with ``WWW-Authenticate``), a missing parameter or a
  body that is not a form -> 400 ``invalid_request``, another grant type ->
  400 ``unsupported_grant_type``.

Issued tokens are remembered with their expiry on the config's ``clock``;
the OCR routes ask :class:`IssuedTokens` whether a token is live.
"""

from __future__ import annotations

import base64
import enum
import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from ocr_async.auth import OAUTH_CREATE_PATH, OAUTH_REVOKE_PATH
from ocr_async.emulator.state import EmulatorStats

__all__ = ["OAUTH_CREATE_PATH", "OAUTH_REVOKE_PATH", "IssuedTokens", "OAuthEndpoint", "TokenState"]

_FORM: Final = "application/x-www-form-urlencoded"
# RFC 6749 5.1: token answers must not be cached.
_NO_STORE: Final[Mapping[str, str]] = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CHALLENGE: Final = 'Basic realm="oauth", charset="UTF-8"'


class TokenState(enum.Enum):
    """What the emulator knows about a bearer token."""

    LIVE = "live"
    EXPIRED = "expired"
    REVOKED = "revoked"
    #: Never issued here (it may still be one of the config's static tokens).
    UNKNOWN = "unknown"


@dataclass(slots=True)
class _Issued:
    client_id: str
    expires_at: float
    revoked: bool = False


class IssuedTokens:
    """Tokens issued by the OAuth endpoint, with their expiry on ``clock``.

    Expired and revoked tokens are kept, so a late call with one is told
    apart from a call with a token never issued.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._tokens: dict[str, _Issued] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def issue(self, client_id: str, lifetime: float) -> str:
        """A new random token for ``client_id``, live for ``lifetime`` seconds."""
        token = secrets.token_urlsafe(32)
        self._tokens[token] = _Issued(client_id, self._clock() + lifetime)
        return token

    def state(self, token: str) -> TokenState:
        """Whether ``token`` is live, expired, revoked or unknown right now."""
        issued = self._tokens.get(token)
        if issued is None:
            return TokenState.UNKNOWN
        if issued.revoked:
            return TokenState.REVOKED
        return TokenState.LIVE if self._clock() < issued.expires_at else TokenState.EXPIRED

    def revoke(self, token: str, client_id: str) -> bool:
        """Revoke ``token`` if ``client_id`` holds it; True when it was revoked now."""
        issued = self._tokens.get(token)
        if issued is None or issued.revoked or issued.client_id != client_id:
            return False
        issued.revoked = True
        return True


class _OAuthError(Exception):
    """Answer an RFC 6749 error (control flow inside a handler)."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.description = description


class OAuthEndpoint:
    """The two OAuth handlers for one emulator app.

    ``uak`` maps User Access Key IDs to their secrets; ``lifetime`` is the
    ``expires_in`` of every token, sent as a string when
    ``expires_in_as_string`` (the documentation says string, its example
    shows a number).
    """

    def __init__(
        self,
        uak: Mapping[str, str],
        tokens: IssuedTokens,
        stats: EmulatorStats,
        *,
        lifetime: float,
        expires_in_as_string: bool = False,
    ) -> None:
        self.uak = uak
        self.tokens = tokens
        self.stats = stats
        self.lifetime = lifetime
        self.expires_in_as_string = expires_in_as_string

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register ``POST /oauth2/token/create`` and ``/oauth2/token/revoke``."""
        router.add_post(OAUTH_CREATE_PATH, self.create)
        router.add_post(OAUTH_REVOKE_PATH, self.revoke)

    async def create(self, request: web.Request) -> web.Response:
        """``POST /oauth2/token/create``: issue a token."""
        try:
            client_id = self._authenticate(request)
            form = await _form(request)
            grant_type = form.get("grant_type")
            if not grant_type:
                raise _OAuthError(400, "invalid_request", "grant_type is required")
            if grant_type != "client_credentials":
                raise _OAuthError(
                    400, "unsupported_grant_type", "only client_credentials is supported"
                )
        except _OAuthError as refused:
            return self._refusal(refused)
        token = self.tokens.issue(client_id, self.lifetime)
        self.stats.tokens_issued += 1
        return _json(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": self._expires_in()}
        )

    async def revoke(self, request: web.Request) -> web.Response:
        """``POST /oauth2/token/revoke``: revoke a token of the same key."""
        try:
            client_id = self._authenticate(request)
            token = (await _form(request)).get("token")
            if not token:
                raise _OAuthError(400, "invalid_request", "token is required")
        except _OAuthError as refused:
            return self._refusal(refused)
        if self.tokens.revoke(token, client_id):
            self.stats.tokens_revoked += 1
        return _json(200, {})

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization")
        if not header:
            raise _OAuthError(401, "invalid_client", "client authentication (HTTP Basic) required")
        credentials = _basic_credentials(header)
        if credentials is None:
            raise _OAuthError(401, "invalid_client", "malformed HTTP Basic credentials")
        login, password = credentials
        expected = self.uak.get(login)
        # Compare the secret in constant time, known ID or not.
        secret_ok = hmac.compare_digest(password.encode("utf-8"), (expected or "").encode("utf-8"))
        if expected is None or not secret_ok:
            raise _OAuthError(401, "invalid_client", "unknown User Access Key or wrong secret")
        return login

    def _refusal(self, refused: _OAuthError) -> web.Response:
        self.stats.oauth_refused += 1
        response = _json(
            refused.status, {"error": refused.error, "error_description": refused.description}
        )
        if refused.status == 401:
            response.headers["WWW-Authenticate"] = _CHALLENGE
        return response

    def _expires_in(self) -> int | float | str:
        seconds: int | float = (
            int(self.lifetime) if float(self.lifetime).is_integer() else self.lifetime
        )
        return str(seconds) if self.expires_in_as_string else seconds


def _basic_credentials(header: str) -> tuple[str, str] | None:
    """``(user ID, password)`` from ``Basic base64(id:password)`` (RFC 7617), or None."""
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError
        return None
    login, colon, password = decoded.partition(":")
    return (login, password) if colon else None


async def _form(request: web.Request) -> Mapping[str, str]:
    if request.content_type != _FORM:
        raise _OAuthError(400, "invalid_request", f"the body must be {_FORM}")
    try:
        form = await request.post()
    except ValueError:
        raise _OAuthError(400, "invalid_request", "the form cannot be read") from None
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _json(status: int, document: Mapping[str, Any]) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(document).encode("utf-8"),
        content_type="application/json",
        charset="utf-8",
        headers=_NO_STORE,
    )
