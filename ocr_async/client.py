"""OcrClient: one aiohttp session, one image per call, retries with backoff.

The client only moves bytes: :mod:`ocr_async.protocol` builds every request
and reads every answer. Retries use tenacity with an injectable ``sleep`` so
tests record the waits instead of waiting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

from ocr_async import protocol
from ocr_async.auth import StaticToken, TokenProvider, UserAccessKeyTokens
from ocr_async.errors import (
    ApiError,
    ConfigurationError,
    ConnectionFailedError,
    InvalidTokenError,
    OcrError,
    RequestTimeoutError,
    TransportError,
)
from ocr_async.httpio import read_capped
from ocr_async.limits import MAX_RETRY_AFTER, THROTTLE_ERRORS, RateController
from ocr_async.models import (
    Endpoint,
    ImageBytes,
    ImageFile,
    ImageInput,
    ImageUrl,
    OcrResult,
    Recognition,
)
from ocr_async.options import APPKEY_ENV, Options
from ocr_async.reading import read_image_file
from ocr_async.retry import RetryPolicy
from ocr_async.sanitize import Redactor, exception_text

log = logging.getLogger(__name__)

__all__ = ["PARSE_INLINE_LIMIT", "OcrClient", "as_image_input"]

#: Answers up to this size are parsed on the event loop; larger ones in a
#: worker thread. Parsing runs at about 15 MB/s, so an inline parse holds the
#: loop 4 ms at most, less than a thread hop would save; a 64 MB answer
#: parsed inline would stall every other request in flight for seconds.
PARSE_INLINE_LIMIT = 64 * 1024


def as_image_input(image: ImageInput) -> ImageFile | ImageBytes | ImageUrl:
    """Normalise what :meth:`OcrClient.recognize` accepts.

    A ``str`` with ``://`` in it is a URL; any other ``str`` or path-like is
    a file; ``bytes`` are the image itself.
    """
    if isinstance(image, ImageFile | ImageBytes | ImageUrl):
        return image
    if isinstance(image, bytes | bytearray | memoryview):
        return ImageBytes(bytes(image))
    if isinstance(image, str) and "://" in image:
        return ImageUrl(image)
    if isinstance(image, str | os.PathLike):
        return ImageFile(image)
    raise TypeError(f"cannot recognize a {type(image).__name__}: pass a path, bytes or a URL")


class OcrClient:
    """An async client for General OCR v1.1.

    Use it as an async context manager. It opens one ``aiohttp.ClientSession``
    with a connection pool of ``concurrency`` connections, or uses the
    ``session`` you pass, which it then leaves open::

        async with OcrClient(appkey="...", token="...") as client:
            recognition = await client.recognize("scan.png")
            print(recognition.text)

    One client is safe to share between concurrent tasks. Every request goes
    through one :class:`~ocr_async.limits.RateController`: with ``rps`` it
    sends at that rate; by default it finds the call limit (4000006, or a
    gateway's 429) and holds the rate just under it, following it when it
    moves. ``adapt_rate=False`` turns that off (each refusal then backs off
    alone, honouring any ``Retry-After``).
    """

    def __init__(
        self,
        *,
        appkey: str,
        token: str | TokenProvider,
        base_url: str = protocol.DEFAULT_BASE_URL,
        session: aiohttp.ClientSession | None = None,
        options: Options | None = None,
        concurrency: int | None = None,
        timeout: float | None = None,
        max_bytes: int | None = None,
        max_answer_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        rps: float | None = None,
        adapt_rate: bool | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not appkey:
            raise ConfigurationError(f"no app key: set {APPKEY_ENV} or pass --appkey")
        # The keywords are shorthand for the Options they change: one value
        # is checked once and read by everything the client does.
        options = (options or Options()).with_changes(
            concurrency=concurrency,
            timeout=timeout,
            max_bytes=max_bytes,
            max_answer_bytes=max_answer_bytes,
            retry=retry,
            rps=rps,
            adapt_rate=adapt_rate,
        )
        self._options = options
        self._appkey = appkey
        self._tokens: TokenProvider = StaticToken(token) if isinstance(token, str) else token
        # Secrets blanked out of every answer: the token sent, and a User
        # Access Key's own (a server in between may echo anything it saw).
        self._key_redactor = (
            self._tokens.redactor if isinstance(self._tokens, UserAccessKeyTokens) else Redactor()
        )
        self._redactor_for: tuple[str, Redactor] | None = None
        self._base_url = base_url
        self._session = session
        self._owns_session = session is None
        self._concurrency = options.concurrency
        # Bounds requests in flight even on a caller's session, whose pool
        # may be larger: a web backend sharing one client across handlers.
        self._in_flight = asyncio.Semaphore(options.concurrency)
        self._max_bytes = options.max_bytes
        self._max_answer_bytes = options.max_answer_bytes
        # One multipart boundary per client, not one per request: servers
        # cache the parsed Content-Type (aiohttp keeps the last 56), and a new
        # boundary on every call costs the server a full header parse each time.
        self._boundary = f"ocr-async-{secrets.token_hex(16)}"
        self._retry = options.retry
        self._sleep = sleep
        self._clock = clock
        self._request_timeout = aiohttp.ClientTimeout(
            total=options.timeout, connect=min(options.timeout, 10)
        )
        if options.rps is not None or options.adapt_rate:
            self._rate: RateController | None = RateController(
                fixed_rps=options.rps, clock=clock, sleep=sleep
            )
        else:
            self._rate = None

    def __repr__(self) -> str:
        return f"OcrClient(base_url={self._base_url!r}, concurrency={self._concurrency})"

    @property
    def rate_controller(self) -> RateController | None:
        """The controller pacing every request, or None when rate control is off."""
        return self._rate

    @property
    def options(self) -> Options:
        """The options this client was built with (the keywords folded in)."""
        return self._options

    @property
    def max_bytes(self) -> int:
        """The request-size limit applied before sending."""
        return self._max_bytes

    async def __aenter__(self) -> Self:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._concurrency, limit_per_host=self._concurrency
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._request_timeout
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def recognize(
        self, image: ImageInput, *, endpoint: Endpoint = Endpoint.GENERAL
    ) -> Recognition:
        """Recognize one image: a path, bytes, or a URL the API downloads.

        Returns a :class:`Recognition` with the result and the number of
        attempts. Raises an :class:`OcrError` whose ``attempts`` says how many
        requests were sent (0 when a pre-check refused the image locally).
        """
        if self._session is None:
            raise RuntimeError("OcrClient is not open: use 'async with OcrClient(...)'")
        started = self._clock()
        image = as_image_input(image)
        body = await self._load(image)
        # Built once before the loop, without the token, so that a pre-check
        # failure costs no request and no token; each attempt then builds
        # the request with the token current at that moment, so a token
        # issued or renewed meanwhile (or a hiccup issuing it) is retried
        # like any other transient failure.
        token = ""
        request = self._prepare(body, token, endpoint)
        attempts = 0
        # Call-limit refusals have their own budget: with the rate controller
        # they are paced, not hammered, and an image must not fail merely
        # because the run is at the quota. Other failures back off.
        throttled = 0
        backed_off = 0
        renewed_token = False

        def should_retry(exc: BaseException) -> bool:
            return isinstance(exc, OcrError) and exc.retryable

        def stop(state: RetryCallState) -> bool:
            if isinstance(_failure(state), THROTTLE_ERRORS):
                return throttled >= self._retry.max_throttled
            return state.attempt_number - throttled >= self._retry.max_attempts

        def wait(state: RetryCallState) -> float:
            nonlocal backed_off
            failure = _failure(state)
            if isinstance(failure, InvalidTokenError):
                return 0.0  # a new token is ready: try it at once
            if isinstance(failure, THROTTLE_ERRORS) and self._rate is not None:
                return 0.0  # the controller paces the retry and pauses everyone
            backed_off += 1
            wait = self._retry.backoff(backed_off)
            if isinstance(failure, OcrError) and failure.retry_after is not None:
                # A server's Retry-After is a floor, not a hint.
                wait = max(wait, min(failure.retry_after, MAX_RETRY_AFTER))
            return wait

        def log_retry(state: RetryCallState) -> None:
            wait_s = state.next_action.sleep if state.next_action else 0.0
            log.debug(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                _loggable(image),
                state.attempt_number,
                _failure(state),
                wait_s,
            )

        retrying = AsyncRetrying(
            stop=stop,
            wait=wait,
            retry=retry_if_exception(should_retry),
            sleep=self._sleep,
            before_sleep=log_retry,
            reraise=True,
        )

        async def send_once() -> OcrResult:
            nonlocal token, request, throttled, renewed_token
            current = await self._tokens.get_token()
            if current != token:
                token, request = current, self._prepare(body, current, endpoint)
            try:
                return await self._paced_send(request, token)
            except THROTTLE_ERRORS:
                throttled += 1
                raise
            except InvalidTokenError as exc:
                if not renewed_token and await self._tokens.token_rejected(token):
                    renewed_token = True
                    exc.retryable = True  # this occurrence only: a new token is ready
                raise

        # The first attempt goes without tenacity: nearly every call succeeds
        # at once, and tenacity's bookkeeping per attempt (it inspects every
        # callback to see whether it is a coroutine function) costs more than
        # the rest of the request's own Python work (docs/benchmarks.md, 2).
        try:
            result = await send_once()
        except OcrError as exc:
            if not should_retry(exc):
                exc.attempts = 1
                raise
            first: OcrError | None = exc
        else:
            return Recognition(
                result=result,
                endpoint=endpoint,
                attempts=1,
                elapsed_ms=(self._clock() - started) * 1000.0,
            )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    if first is not None:
                        # Attempt 1 is the one above: hand its failure to
                        # tenacity, which waits, logs and decides as usual.
                        failure, first = first, None
                        raise failure
                    result = await send_once()
        except OcrError as exc:
            exc.attempts = attempts
            raise
        return Recognition(
            result=result,
            endpoint=endpoint,
            attempts=attempts,
            elapsed_ms=(self._clock() - started) * 1000.0,
        )

    async def _load(self, image: ImageFile | ImageBytes | ImageUrl) -> bytes | ImageUrl:
        if isinstance(image, ImageFile):
            return await read_image_file(image.path, self._max_bytes)
        if isinstance(image, ImageBytes):
            return image.data
        return image

    def _prepare(
        self, body: bytes | ImageUrl, token: str, endpoint: Endpoint
    ) -> protocol.PreparedRequest:
        if isinstance(body, ImageUrl):
            return protocol.build_url_request(
                base_url=self._base_url,
                appkey=self._appkey,
                token=token,
                endpoint=endpoint,
                image_url=body.url,
            )
        return protocol.build_file_request(
            base_url=self._base_url,
            appkey=self._appkey,
            token=token,
            endpoint=endpoint,
            image=body,
            max_bytes=self._max_bytes,
            boundary=self._boundary,
        )

    async def _paced_send(self, request: protocol.PreparedRequest, token: str) -> OcrResult:
        # Every attempt, retries included, goes through the one controller.
        if self._rate is None:
            return await self._send(request, token)
        ticket = await self._rate.acquire()
        try:
            result = await self._send(request, token)
        except THROTTLE_ERRORS as exc:
            if self._rate.on_throttled(ticket, retry_after=exc.retry_after):
                log.info(
                    "call limit reached: pacing at %.1f calls/s for now", self._rate.current_rate
                )
            raise
        except ApiError:
            self._rate.on_success(ticket)  # an answer: the call got through the limiter
            raise
        # A transport failure reports nothing: it says nothing about the quota.
        self._rate.on_success(ticket)
        return result

    async def _send(self, request: protocol.PreparedRequest, token: str) -> OcrResult:
        assert self._session is not None
        redactor = self._redactor(token)
        try:
            # Timeout and status handling are set per request, so a caller's
            # session with other defaults (raise_for_status, 5-minute timeout)
            # cannot change what counts as a failure or how long one may take.
            async with (
                self._in_flight,
                self._session.post(
                    request.url,
                    data=request.body,
                    headers=request.headers,
                    timeout=self._request_timeout,
                    raise_for_status=False,
                    # Never: a redirect would carry the token elsewhere.
                    allow_redirects=False,
                ) as response,
            ):
                status = response.status
                if 300 <= status < 400:
                    location = response.headers.get("Location")
                    raise protocol.redirect_error(status, location, request.url)
                retry_after = _retry_after(response.headers) if status in (429, 503) else None
                body = await read_capped(response, self._max_answer_bytes)
        except (TimeoutError, aiohttp.ClientError) as exc:
            failure = _transport_error(exc, redactor)
        else:
            if len(body) <= PARSE_INLINE_LIMIT:
                return protocol.parse_response(
                    status, body, redact=redactor, retry_after=retry_after
                )
            return await asyncio.to_thread(
                protocol.parse_response, status, body, redact=redactor, retry_after=retry_after
            )
        # Raised out here, not in the except clause: the library's exception
        # may quote the server, and so the token, and must not ride along as
        # the context of ours.
        raise failure

    def _redactor(self, token: str) -> Redactor:
        # Built once per token: the token changes rarely, answers come often.
        if self._redactor_for is None or self._redactor_for[0] != token:
            self._redactor_for = (token, self._key_redactor.with_secrets(token))
        return self._redactor_for[1]


def _transport_error(exc: TimeoutError | aiohttp.ClientError, redactor: Redactor) -> TransportError:
    # Messages name the failure, never the request: its headers hold the
    # token. aiohttp's own messages may quote what the server sent (a
    # malformed header or status line), so they are server text too.
    if isinstance(exc, TimeoutError):
        return RequestTimeoutError("timeout", "no complete answer in time")
    detail = exception_text(exc, redactor)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ConnectionFailedError("connection", f"answer cut off: {detail}")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return ConnectionFailedError("connection", detail)
    return TransportError("transport", detail)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # An HTTP-date is read against the answer's own Date header, so a
    # gateway whose clock is off still gets the wait it meant.
    return protocol.parse_retry_after(
        headers.get("Retry-After"), date=headers.get("Date"), now=time.time()
    )


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _loggable(image: ImageFile | ImageBytes | ImageUrl) -> str:
    # A URL's query string may be a signature and its user part a password:
    # logs show scheme, host and path only.
    if isinstance(image, ImageUrl):
        parts = urlsplit(image.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        query = "?..." if parts.query else ""
        return f"{parts.scheme}://{host}{port}{parts.path}{query}"
    return str(image)
