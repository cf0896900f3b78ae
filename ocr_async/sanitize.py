"""What a server sends back, made safe to keep, show and write.

Any string an API, gateway or OAuth server sends may end up in a record, a
log line or the review page. This module is the one place that makes such
text safe:

- :class:`Redactor` blanks out every secret the client sent (the token, a
  User Access Key and its Basic header), in each spelling it was sent in;
- :func:`server_text` turns a server's text into one bounded, printable,
  redacted line for a message;
- :func:`url_origin` shows a URL by its origin only;
- :func:`strict_json` makes a decoded value writable as strict JSON
  (RFC 8259), which Python's ``json`` does not guarantee.

A leaf of the core: no I/O, and it imports nothing of the package.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote, quote_plus, urljoin, urlsplit

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "SERVER_TEXT_LIMIT",
    "Redactor",
    "exception_text",
    "server_text",
    "strict_json",
    "url_origin",
]

#: What a secret is replaced with.
REDACTED: Final = "<redacted>"
#: Secrets shorter than this are not searched for. A short one ("wrong",
#: "test") is also an ordinary word, and blanking it out of every message
#: ("unknown User Access Key or <redacted> secret") hides what the server
#: said while protecting little: a secret that short is guessed in moments.
#: NHN's tokens, key IDs and secrets are all far longer.
MIN_SECRET_LENGTH: Final = 8
#: Characters of a server's text kept in one of our messages.
SERVER_TEXT_LIMIT: Final = 200
# Text looked at for a message, before whitespace runs are collapsed: enough
# for a page of HTML markup to yield its words, bounded for a 64 MB body.
_WINDOW_FACTOR: Final = 4

# A hostname is at most 253 characters (RFC 1035); anything longer is not one.
_HOST_LIMIT: Final = 253


def url_origin(url: str, base: str = "") -> str:
    """``scheme://host[:port]`` of ``url`` (resolved against ``base``), and nothing more.

    A redirect's target is shown this way: its user part, path and query
    may hold credentials or signatures, and its host is all a user needs to
    see where the answer pointed. Anything that is not an http(s) URL with a
    plausible host is shown as ``an unreadable address``.
    """
    try:
        parts = urlsplit(urljoin(base, url.strip()))
        port = parts.port
    except ValueError:
        return "an unreadable address"
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or len(host) > _HOST_LIMIT:
        return "an unreadable address"
    if not all(ch.isascii() and (ch.isalnum() or ch in "-._:") for ch in host):
        return "an unreadable address"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _spellings(secret: str) -> set[str]:
    # How the client sends a secret (raw in a header, form- or URL-encoded in
    # a body) and how a server may echo it back (inside JSON, whose "/" may
    # be escaped, with upper- or lower-case percent escapes).
    quoted = quote(secret, safe="")
    forms = {
        secret,
        quoted,
        re.sub("%[0-9A-F]{2}", lambda escape: escape.group().lower(), quoted),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }
    return forms | {form.replace("/", "\\/") for form in forms}


class Redactor:
    """Blanks out secrets from text a server sent, in every spelling the client used.

    Give it the token and any other secret sent with a request;
    :meth:`for_basic_auth` adds what HTTP Basic auth sends. Secrets shorter
    than :data:`MIN_SECRET_LENGTH` are left alone, so that ordinary words
    survive. Immutable; its repr never shows a secret.
    """

    __slots__ = ("_longest", "_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = tuple(dict.fromkeys(s for s in secrets if len(s) >= MIN_SECRET_LENGTH))
        # Longest first, so a secret that contains another is blanked whole.
        forms = sorted({form for secret in kept for form in _spellings(secret)}, key=len)[::-1]
        self._secrets = kept
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None
        self._longest = len(forms[0]) if forms else 0

    @classmethod
    def for_basic_auth(cls, user: str, password: str, authorization: str) -> Redactor:
        """Secrets of HTTP Basic auth: the user, the password, and the header's base64.

        ``authorization`` is the header value sent (``Basic <base64>``); its
        base64 is matched with or without its ``=`` padding.
        """
        encoded = authorization.partition(" ")[2]
        return cls((user, password, f"{user}:{password}", encoded, encoded.rstrip("=")))

    def with_secrets(self, *secrets: str) -> Redactor:
        """A redactor for these secrets as well."""
        return Redactor((*self._secrets, *secrets))

    def __repr__(self) -> str:
        return f"Redactor(<{len(self._secrets)} secrets>)"

    def found_in(self, text: str) -> bool:
        """Whether ``text`` holds any secret."""
        return self._pattern is not None and self._pattern.search(text) is not None

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`REDACTED`."""
        return text if self._pattern is None else self._pattern.sub(REDACTED, text)

    def redact_prefix(self, text: str, length: int) -> str:
        """At most the first ``length`` characters of ``text``, redacted.

        Only a window of the text is searched, however long it is; a secret
        that begins in the prefix is blanked whole, and none is cut in two
        with its beginning left showing.
        """
        if self._pattern is None:
            return text[:length]
        window = text[: length + self._longest]
        pieces: list[str] = []
        shown = 0
        for match in self._pattern.finditer(window):
            if match.start() >= length:
                break
            pieces += [window[shown : match.start()], REDACTED]
            shown = match.end()
        pieces.append(window[shown:length])
        return "".join(pieces)

    def redact_value(self, value: Any) -> Any:
        """A decoded JSON value with every string in it (keys too) redacted."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, Mapping):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        return value

    @staticmethod
    def of(redact: Redactor | Collection[str]) -> Redactor:
        """``redact`` itself, or a redactor for the secrets it lists."""
        return redact if isinstance(redact, Redactor) else Redactor(redact)


def server_text(
    text: str, redact: Redactor | Collection[str] = (), *, limit: int = SERVER_TEXT_LIMIT
) -> str:
    """A server's text as it may appear in a message: one line, bounded, no secret.

    Secrets are blanked out first (so none is cut in half and half shown),
    then control and other unprintable characters (ANSI escapes, line
    breaks, bidi overrides) become spaces, runs of spaces collapse, and past
    ``limit`` characters the text ends in ``...``.
    """
    text = Redactor.of(redact).redact_prefix(text, limit * _WINDOW_FACTOR)
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return text[:limit] + "..." if len(text) > limit else text


def exception_text(exc: BaseException, redact: Redactor | Collection[str] = ()) -> str:
    """``ClassName: first line of the message``, as :func:`server_text` makes it safe.

    For exceptions of the HTTP library, whose messages may quote what the
    server sent (a malformed status line, a header).
    """
    detail = server_text(str(exc).split("\n", 1)[0], redact)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _valid_text(text: str) -> str:
    # A surrogate pair split in two code points is joined; a lone surrogate
    # (a "\ud800" escape alone, or a name not in UTF-8) becomes U+FFFD.
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def strict_json(value: Any) -> Any:
    """``value`` made writable as strict JSON (RFC 8259) and valid UTF-8.

    Python's ``json`` reads ``NaN``, ``Infinity`` and lone surrogate escapes
    and writes them back, but they are not JSON: jq and JavaScript refuse
    such lines. Here a number that is not finite becomes null (it says no
    number), and a lone surrogate, in a value or a key, becomes U+FFFD.
    Everything else is returned as it was, tuples as lists.
    """
    if isinstance(value, str):
        return _valid_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {_valid_text(str(k)): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value
