"""The one seam where bytes move: a :class:`Transport` posts a prepared request.

The client and the OAuth token provider build every request themselves
(:mod:`ocr_async.protocol`, :mod:`ocr_async.auth`) and read every answer
themselves; a transport only moves the bytes, as gidgethub's ``aiohttp``
backend or an httpx transport does. :class:`AiohttpTransport` is the one
the package uses; tests pass a fake that records the requests and answers
from a script.

What every transport promises:

* a redirect is never followed: a 3xx answer comes back as it is, with its
  headers and without its body (it would carry the token elsewhere, and a
  POST turned into a GET answers no recognition);
* no more than ``answer_limit`` bytes of an answer are ever held, counted
  after decompression (:class:`~ocr_async.errors.AnswerTooLargeError`);
* a failure to get an answer is one of our
  :class:`~ocr_async.errors.TransportError` subclasses, never the HTTP
  library's own exception. :data:`FOREIGN_ERRORS` is the one table that maps
  aiohttp's exceptions; a :class:`Wording` says how the messages name the
  peer (the API, or the OAuth server). The library's text is redacted with
  the caller's :class:`~ocr_async.sanitize.Redactor`: it may quote what the
  server sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import aiohttp

from ocr_async.errors import (
    AnswerTooLargeError,
    ConnectionFailedError,
    RequestTimeoutError,
    TransportError,
)
from ocr_async.protocol import PreparedRequest
from ocr_async.sanitize import Redactor, exception_text

__all__ = [
    "API_WORDING",
    "FOREIGN_ERRORS",
    "OAUTH_WORDING",
    "AiohttpTransport",
    "Answer",
    "Transport",
    "Wording",
    "map_foreign_error",
    "read_capped",
]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as received: status, headers (case-insensitive) and body."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    #: Empty for a redirect (3xx), which is never read.
    body: bytes = field(repr=False)

    @property
    def is_redirect(self) -> bool:
        """Whether the answer is a 3xx (which no caller follows)."""
        return 300 <= self.status < 400


class Transport(Protocol):
    """Moves a prepared request's bytes and brings the answer back."""

    async def post(
        self, request: PreparedRequest, *, answer_limit: int, redactor: Redactor
    ) -> Answer:
        """POST ``request``; the answer, or a :class:`TransportError` (see the module)."""
        ...

    async def open(self) -> None:
        """Get ready to post (open a connection pool); :meth:`post` opens too if needed."""
        ...

    async def aclose(self) -> None:
        """Release what the transport opened; it may be opened again by the next post."""
        ...


@dataclass(frozen=True, slots=True)
class Wording:
    """How transport failures are worded for one peer; ``{detail}`` is the library's text."""

    timeout: str
    cut_off: str
    unreachable: str
    failed: str


#: Messages of failures talking to the API (they go into records: stable).
API_WORDING: Final = Wording(
    timeout="no complete answer in time",
    cut_off="answer cut off: {detail}",
    unreachable="{detail}",
    failed="{detail}",
)
#: Messages of failures talking to the OAuth server.
OAUTH_WORDING: Final = Wording(
    timeout="the OAuth server did not answer in time",
    cut_off="the OAuth server's answer was cut off: {detail}",
    unreachable="cannot reach the OAuth server: {detail}",
    failed="OAuth request failed: {detail}",
)

#: The one table of foreign exceptions: (what aiohttp or asyncio raises, what
#: we raise, its code, which wording). First match wins, so the specific come
#: first: aiohttp's ServerTimeoutError is a TimeoutError as well as a
#: connection error, and it is a timeout.
FOREIGN_ERRORS: Final[tuple[tuple[type[BaseException], type[TransportError], str, str], ...]] = (
    (TimeoutError, RequestTimeoutError, "timeout", "timeout"),
    (aiohttp.ClientPayloadError, ConnectionFailedError, "connection", "cut_off"),
    (aiohttp.ClientConnectionError, ConnectionFailedError, "connection", "unreachable"),
    (aiohttp.ClientError, TransportError, "transport", "failed"),
)
#: What :data:`FOREIGN_ERRORS` catches.
_CAUGHT: Final = tuple(foreign for foreign, *_ in FOREIGN_ERRORS)


def map_foreign_error(exc: BaseException, wording: Wording, redactor: Redactor) -> TransportError:
    """Our :class:`TransportError` for an exception of the HTTP library (or a timeout).

    Messages name the failure, never the request: its headers hold the
    token. The library's own text may quote what the server sent (a
    malformed header or status line), so it is server text too: redacted,
    one line, bounded. Raises ``TypeError`` for an exception not in
    :data:`FOREIGN_ERRORS`.
    """
    for foreign, ours, code, kind in FOREIGN_ERRORS:
        if isinstance(exc, foreign):
            template: str = getattr(wording, kind)
            detail = exception_text(exc, redactor) if "{detail}" in template else ""
            return ours(code, template.format(detail=detail))
    raise TypeError(f"not a transport failure: {type(exc).__name__}")


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of ``response``, or :class:`AnswerTooLargeError` past ``limit`` bytes.

    The limit counts the body as decompressed: aiohttp inflates gzip,
    deflate and br a bounded piece at a time, and the pieces are counted as
    they come. A ``Content-Length`` over the limit is refused before any of
    the body is read. When this raises inside ``async with`` the response is
    released unread, which closes the connection: nothing more is received.
    """
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    announced = response.content_length
    if announced is not None and not encoded:
        if announced > limit:
            raise _too_large(limit, f"announced as {announced} bytes")
        # Its length framed by the header and within the limit: read in
        # one go (aiohttp reads no further than Content-Length).
        return await response.read()
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise _too_large(limit, "once decompressed" if encoded else "as sent")
        pieces.append(piece)
    return b"".join(pieces)


def _too_large(limit: int, how: str) -> AnswerTooLargeError:
    return AnswerTooLargeError(
        "answer_too_large",
        f"the answer is over the {limit}-byte limit ({how}); reading stopped, not retried "
        "(an answer of the API is far smaller: is the server right?)",
    )


class AiohttpTransport:
    """A :class:`Transport` over one ``aiohttp.ClientSession``.

    ``session`` is used if given, and left open; otherwise one is opened by
    :meth:`open` (or by the first :meth:`post`) with a pool of ``pool``
    connections (aiohttp's default when None), and closed by :meth:`aclose`.
    ``timeout`` (seconds) bounds each request, connecting at most 10 s of
    it. Timeout, redirects and status handling are set per request, so a
    caller's session with other defaults (``raise_for_status``, a 5-minute
    timeout) cannot change what counts as a failure or how long one takes.
    """

    __slots__ = ("_owns_session", "_pool", "_session", "_timeout", "_wording")

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float,
        pool: int | None = None,
        wording: Wording = API_WORDING,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._pool = pool
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 10.0))
        self._wording = wording

    def __repr__(self) -> str:
        owner = "own" if self._owns_session else "caller's"
        return f"AiohttpTransport({owner} session, pool={self._pool})"

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The session in use, or None before the first request (or after closing)."""
        return self._session

    async def open(self) -> None:
        """Open the session now, if the transport opens its own."""
        self._session_now()

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = (
                aiohttp.TCPConnector(limit=self._pool, limit_per_host=self._pool)
                if self._pool is not None
                else None
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def post(
        self, request: PreparedRequest, *, answer_limit: int, redactor: Redactor
    ) -> Answer:
        """POST ``request`` and read the answer (see the module for the promises)."""
        session = self._session_now()
        try:
            async with session.post(
                request.url,
                data=request.body,
                headers=request.headers,
                timeout=self._timeout,
                raise_for_status=False,
                # Never: a redirect would carry the credentials elsewhere.
                allow_redirects=False,
            ) as response:
                status, headers = response.status, response.headers
                if 300 <= status < 400:
                    return Answer(status, headers, b"")
                return Answer(status, headers, await read_capped(response, answer_limit))
        except _CAUGHT as exc:
            failure = map_foreign_error(exc, self._wording, redactor)
        # Raised out here, not in the except clause: the library's exception
        # may quote the server, and so the token, and must not ride along as
        # the context of ours.
        raise failure

    async def aclose(self) -> None:
        """Close the session if this transport opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None
