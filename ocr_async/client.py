"""OcrClient: sends prepared payloads through a transport, retrying as the policy decides.

The client moves bytes and nothing else: the pre-check stage
(:mod:`ocr_async.precheck`) reads and checks every input and hands on a
:class:`~ocr_async.models.Payload`; :mod:`ocr_async.protocol` assembles the
request and reads the answer; a :class:`~ocr_async.transport.Transport`
moves the bytes; :func:`ocr_async.retry.decide` says what to do after a
failure, and :meth:`OcrClient.send` carries that out with the rate
controller. :meth:`OcrClient.recognize` is the same, for one path, bytes or
URL: the pre-check stage, then :meth:`~OcrClient.send`.

With ``shared_quota`` the rate controller joins a :class:`QuotaGroup`
when the client opens: every process of the group paces at its share of
one quota (:mod:`ocr_async.shared_quota` over Redis; a Dask run's workers
through :mod:`ocr_async.pipeline.cluster`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Final, Protocol, Self
from urllib.parse import urlsplit

import aiohttp

from ocr_async import protocol
from ocr_async.auth import StaticToken, TokenProvider, UserAccessKeyTokens
from ocr_async.errors import ApiError, ConfigurationError, LocalCheckError, OcrError
from ocr_async.inputs import InputLike, as_source_item
from ocr_async.limits import THROTTLE_ERRORS, RateController
from ocr_async.models import Endpoint, OcrResult, Payload, Recognition
from ocr_async.options import APPKEY_ENV, Options
from ocr_async.precheck import Precheck
from ocr_async.retry import GiveUp, RenewToken, RetryPolicy, Tried, Wait, decide
from ocr_async.sanitize import Redactor
from ocr_async.transport import AiohttpTransport, Answer, Transport

log = logging.getLogger(__name__)

__all__ = ["LEAVE_TIMEOUT", "PARSE_INLINE_LIMIT", "OcrClient", "QuotaGroup", "RequestObserver"]

#: Answers up to this size are parsed on the event loop; larger ones in a
#: worker thread. Parsing runs at about 15 MB/s, so an inline parse holds the
#: loop 4 ms at most, less than a thread hop would save; a 64 MB answer
#: parsed inline would stall every other request in flight for seconds.
PARSE_INLINE_LIMIT = 64 * 1024
_REFUSED_FOR_RATE: Final = (429, 503)
#: Seconds closing a client waits to leave its shared quota. Leaving is one
#: command to the store; one that does not return in time is abandoned, and
#: the member's lease lapses on its own (within 3 s): a store that stalls,
#: or a heartbeat that does not stop, never holds a closing program up.
LEAVE_TIMEOUT: Final = 5.0


class QuotaGroup(Protocol):
    """Processes that share one quota, which a client's rate controller joins.

    :class:`ocr_async.shared_quota.SharedQuota` is one (over Redis); a Dask
    run's workers use another (:mod:`ocr_async.pipeline.cluster`).
    """

    async def start(self, controller: RateController) -> None:
        """Join: ``controller`` paces at this process's share from now on."""
        ...

    async def close(self) -> None:
        """Leave the group; the controller carries on alone. Safe to call twice."""
        ...


class RequestObserver(Protocol):
    """Hears of every HTTP request the client sends, retries included: metrics, say.

    :class:`ocr_async.outputs.metrics.OcrMetrics` is one. Called on the
    event loop; keep both calls cheap.
    """

    def request_started(self) -> None:
        """A request is about to be sent (it has its place among those in flight)."""
        ...

    def request_finished(self, elapsed_s: float, error: BaseException | None = None) -> None:
        """The request started ``elapsed_s`` ago has its parsed answer, or failed with ``error``.

        Called exactly once per :meth:`request_started`: also when the
        answer is an API error, and when the request is cancelled.
        """
        ...


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

    Its settings are one :class:`~ocr_async.options.Options` (``options``);
    ``concurrency``, ``timeout``, ``max_bytes``, ``max_answer_bytes``,
    ``retry``, ``rps`` and ``adapt_rate`` are shorthand for changing it.
    ``transport`` replaces the aiohttp transport (for tests: a fake that
    records the requests); a transport passed in is left open. ``observer``
    (a :class:`RequestObserver`, such as
    :class:`~ocr_async.outputs.metrics.OcrMetrics`) hears of every request.

    ``shared_quota`` (or ``options.shared_quota``) shares the quota of the
    app key with other processes: a Redis URL (``redis://HOST:6379/0``; the
    ``cluster`` extra), from which the client builds a
    :class:`~ocr_async.shared_quota.SharedQuota`, or a :class:`QuotaGroup`
    of your own. The client joins it when it opens (a store that cannot be
    reached raises :class:`~ocr_async.shared_quota.SharedQuotaUnavailableError`,
    a :class:`~ocr_async.errors.ConfigurationError`, and the client stays
    closed) and leaves it when it closes; a group you pass is joined, but
    left for you to close. It needs the adaptive controller (no ``rps``).
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
        transport: Transport | None = None,
        shared_quota: str | QuotaGroup | None = None,
        observer: RequestObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not appkey:
            raise ConfigurationError(f"no app key: set {APPKEY_ENV} or pass --appkey")
        if session is not None and transport is not None:
            raise TypeError("pass either session= or transport=, not both")
        # The keywords are shorthand for the Options they change: one value
        # is checked once and read by everything the client does.
        self._options = options = (options or Options()).with_changes(
            concurrency=concurrency,
            timeout=timeout,
            max_bytes=max_bytes,
            max_answer_bytes=max_answer_bytes,
            retry=retry,
            rps=rps,
            adapt_rate=adapt_rate,
            shared_quota=shared_quota if isinstance(shared_quota, str) else None,
        )
        self._appkey = appkey
        self._tokens: TokenProvider = StaticToken(token) if isinstance(token, str) else token
        # Secrets blanked out of every answer: the token sent, and a User
        # Access Key's own (a server in between may echo anything it saw).
        self._key_redactor = (
            self._tokens.redactor if isinstance(self._tokens, UserAccessKeyTokens) else Redactor()
        )
        self._redactor_for: tuple[str, Redactor] | None = None
        self._base_url = base_url
        self._owns_transport = transport is None
        self._transport: Transport = transport or AiohttpTransport(
            session, timeout=options.timeout, pool=None if session else options.concurrency
        )
        # A client that opens its own session is ready once opened and until
        # closed; one on a caller's session or transport is ready as it is.
        self._owns_session = session is None and transport is None
        self._open = not self._owns_session
        self._precheck = Precheck(options)
        # Bounds requests in flight even on a caller's session, whose pool
        # may be larger: a web backend sharing one client across handlers.
        self._in_flight = asyncio.Semaphore(options.concurrency)
        # One multipart boundary per client, not one per request: servers
        # cache the parsed Content-Type (aiohttp keeps the last 56), and a new
        # boundary on every call costs the server a full header parse each time.
        self._boundary = protocol.new_boundary()
        self._sleep = sleep
        self._clock = clock
        self._observer = observer
        self._rate: RateController | None = None
        if options.rps is not None or options.adapt_rate:
            self._rate = RateController(fixed_rps=options.rps, clock=clock, sleep=sleep)
        self._shared: QuotaGroup | None = None
        self._owns_shared = False
        if shared_quota is not None and not isinstance(shared_quota, str):
            self._shared = shared_quota
        elif options.shared_quota is not None:
            self._shared = _shared_quota(options.shared_quota, appkey, clock, sleep)
            self._owns_shared = True
        if self._shared is not None and (self._rate is None or options.rps is not None):
            raise ConfigurationError("a shared quota needs the adaptive rate controller, not rps")

    def __repr__(self) -> str:
        return f"OcrClient(base_url={self._base_url!r}, concurrency={self._options.concurrency})"

    @property
    def options(self) -> Options:
        """The options this client was built with (the keywords folded in)."""
        return self._options

    @property
    def rate_controller(self) -> RateController | None:
        """The controller pacing every request, or None when rate control is off."""
        return self._rate

    @property
    def shared_quota(self) -> QuotaGroup | None:
        """The group this client's controller joins when it opens, or None."""
        return self._shared

    @property
    def max_bytes(self) -> int:
        """The request-size limit applied before sending."""
        return self._options.max_bytes

    @property
    def transport(self) -> Transport:
        """The transport that moves the bytes."""
        return self._transport

    async def __aenter__(self) -> Self:
        await self._transport.open()
        self._open = True
        if self._shared is not None:
            assert self._rate is not None  # checked when built
            try:
                await self._shared.start(self._rate)
            except BaseException:
                # Not joined: the client stays closed, and nothing is left open.
                await self._close_transport()
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close what this client opened (its session, its shared quota); a caller's stay open.

        A shared quota is left first, so that its share goes to the others at once.
        """
        if self._shared is not None and self._owns_shared:
            try:
                async with asyncio.timeout(LEAVE_TIMEOUT):
                    await self._shared.close()
            except TimeoutError:
                log.warning(
                    "shared quota: could not leave within %.0f s; the lease lapses on its own",
                    LEAVE_TIMEOUT,
                )
        await self._close_transport()

    async def _close_transport(self) -> None:
        if self._owns_transport:
            await self._transport.aclose()
        if self._owns_session:
            self._open = False

    async def recognize(self, image: InputLike, *, endpoint: Endpoint | None = None) -> Recognition:
        """Recognize one image: a path, bytes, or a URL the API downloads.

        The image goes through the pre-check stage (:mod:`ocr_async.precheck`,
        as the options say: read, checked, perhaps converted or shrunk), then
        :meth:`send`. ``endpoint`` overrides the options' endpoint.

        Returns a :class:`Recognition` with the result and the number of
        attempts. Raises an :class:`OcrError` whose ``attempts`` says how many
        requests were sent (0 when a pre-check refused the image locally).
        """
        self._check_open()
        item = as_source_item(image)
        # Two pages at most are made: a second one is enough to refuse.
        async with contextlib.aclosing(self._precheck.payloads(item, endpoint=endpoint)) as pages:
            payload = await anext(pages)
            if await anext(pages, None) is not None:
                raise LocalCheckError(
                    "pages",
                    f"{item.source} has several pages: send them one by one "
                    "(client.send), or use recognize_many, which gives each its record",
                )
        return await self.send(payload)

    async def send(self, payload: Payload) -> Recognition:
        """Send one pre-checked payload, retrying as the :class:`RetryPolicy` decides.

        A payload that carries its local error raises it (``attempts`` 0).
        Every attempt builds the request with the token current at that
        moment, so a token issued or renewed meanwhile (or a hiccup issuing
        it) is retried like any other transient failure.
        """
        self._check_open()
        if payload.error is not None:
            raise payload.error
        started = self._clock()
        tried = Tried()
        token: str | None = None
        request: protocol.PreparedRequest | None = None
        while True:
            tried = tried.attempt()
            try:
                current = await self._tokens.get_token()
                if current != token or request is None:
                    token, request = current, self._request(payload, current)
                result = await self._paced_send(request, current)
            except OcrError as exc:
                tried = await self._recover(exc, tried, token, payload)
                continue
            return Recognition(
                result=result,
                endpoint=payload.endpoint,
                attempts=tried.attempts,
                elapsed_ms=(self._clock() - started) * 1000.0,
            )

    async def _recover(
        self, failure: OcrError, tried: Tried, token: str | None, payload: Payload
    ) -> Tried:
        """Carry out what the policy decides after ``failure``; the counters, or raise."""
        while True:
            step = decide(self._options.retry, tried, failure, paced=self._rate is not None)
            tried, decision = step.tried, step.decision
            if isinstance(decision, GiveUp):
                raise failure.with_attempts(tried.attempts)
            if isinstance(decision, RenewToken):
                try:
                    renewed = token is not None and await self._tokens.token_rejected(token)
                except OcrError as exc:
                    failure = exc  # issuing the new token failed: decide on that
                    continue
                if not renewed:
                    raise failure.with_attempts(tried.attempts)
            wait = decision.seconds if isinstance(decision, Wait) else 0.0
            log.debug(
                "%s: attempt %d failed (%s); retrying in %.2f s",
                _loggable(payload),
                tried.attempts,
                failure,
                wait,
            )
            if isinstance(decision, Wait):
                await self._sleep(wait)
            return tried

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("OcrClient is not open: use 'async with OcrClient(...)'")

    def _request(self, payload: Payload, token: str) -> protocol.PreparedRequest:
        if payload.url is not None:
            return protocol.assemble_url_request(
                base_url=self._base_url,
                appkey=self._appkey,
                token=token,
                endpoint=payload.endpoint,
                image_url=payload.url,
            )
        # The stage checked the bytes and named their kind.
        assert payload.image is not None
        assert payload.kind is not None
        return protocol.assemble_file_request(
            base_url=self._base_url,
            appkey=self._appkey,
            token=token,
            endpoint=payload.endpoint,
            image=payload.image,
            kind=payload.kind,
            boundary=self._boundary,
        )

    async def _paced_send(self, request: protocol.PreparedRequest, token: str) -> OcrResult:
        # Every attempt, retries included, goes through the one controller.
        if self._rate is None:
            return await self._exchange(request, token)
        ticket = await self._rate.acquire()
        try:
            result = await self._exchange(request, token)
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

    async def _exchange(self, request: protocol.PreparedRequest, token: str) -> OcrResult:
        redactor = self._redactor(token)
        observer = self._observer
        started: float | None = None
        failure: BaseException | None = None
        try:
            async with self._in_flight:
                # Observed from here: a request waiting for its turn is not in flight.
                if observer is not None:
                    started = self._clock()
                    observer.request_started()
                answer = await self._transport.post(
                    request, answer_limit=self._options.max_answer_bytes, redactor=redactor
                )
            # Parsed inside the observation, so an API error counts as an answer.
            return await self._parse(request, answer, redactor)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            if observer is not None and started is not None:
                observer.request_finished(self._clock() - started, failure)

    async def _parse(
        self, request: protocol.PreparedRequest, answer: Answer, redactor: Redactor
    ) -> OcrResult:
        if answer.is_redirect:
            raise protocol.redirect_error(
                answer.status, answer.headers.get("Location"), request.url
            )
        retry_after = _retry_after(answer.headers) if answer.status in _REFUSED_FOR_RATE else None
        if len(answer.body) <= PARSE_INLINE_LIMIT:
            return protocol.parse_response(
                answer.status, answer.body, redact=redactor, retry_after=retry_after
            )
        return await asyncio.to_thread(
            protocol.parse_response,
            answer.status,
            answer.body,
            redact=redactor,
            retry_after=retry_after,
        )

    def _redactor(self, token: str) -> Redactor:
        # Built once per token: the token changes rarely, answers come often.
        if self._redactor_for is None or self._redactor_for[0] != token:
            self._redactor_for = (token, self._key_redactor.with_secrets(token))
        return self._redactor_for[1]


def _shared_quota(
    url: str, appkey: str, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> QuotaGroup:
    # Imported when asked for: redis-py is in the 'cluster' extra only.
    try:
        from ocr_async.shared_quota import SharedQuota
    except ImportError:
        raise ConfigurationError(
            "a shared quota needs redis-py, which is not installed: "
            "pip install 'ocr-async[cluster]'"
        ) from None
    return SharedQuota(url, appkey, clock=clock, sleep=sleep)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    # An HTTP-date is read against the answer's own Date header, so a
    # gateway whose clock is off still gets the wait it meant.
    return protocol.parse_retry_after(
        headers.get("Retry-After"), date=headers.get("Date"), now=time.time()
    )


def _loggable(payload: Payload) -> str:
    # A URL's query string may be a signature and its user part a password:
    # logs show scheme, host and path only.
    if payload.url is None:
        return payload.source
    parts = urlsplit(payload.url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    query = "?..." if parts.query else ""
    return f"{parts.scheme}://{host}{port}{parts.path}{query}"
