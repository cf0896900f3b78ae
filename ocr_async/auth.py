"""Where the bearer token comes from.

A token is a secret: providers keep it out of every repr, and nothing in the
package formats it into a message. The client asks its provider for the
current token before each request and tells it when the API refused one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from ocr_async.errors import ConfigurationError

__all__ = ["TOKEN_ENV", "TOKEN_FILE_ENV", "StaticToken", "TokenProvider", "token_from_environment"]

#: The environment variable holding a User Access Key token.
TOKEN_ENV = "NHN_OCR_TOKEN"
#: The environment variable naming a file that holds the token.
TOKEN_FILE_ENV = "NHN_OCR_TOKEN_FILE"


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
    """A :class:`StaticToken` from ``token_file``, ``NHN_OCR_TOKEN`` or ``NHN_OCR_TOKEN_FILE``.

    Raises :class:`ConfigurationError` saying what to set when none is found.
    """
    env = os.environ if env is None else env
    file_name = token_file or env.get(TOKEN_FILE_ENV)
    if file_name:
        try:
            return StaticToken(Path(file_name).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the token file {os.fspath(file_name)!r}: {exc.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"the token file {os.fspath(file_name)!r} is not UTF-8 text"
            ) from None
    value = env.get(TOKEN_ENV)
    if value:
        return StaticToken(value)
    raise ConfigurationError(
        f"no token: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or pass --token-file) "
        "to a User Access Key token"
    )
