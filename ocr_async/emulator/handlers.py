"""The emulator's handlers: the routes of General OCR v1.1 on a local port.

It answers like the real service (API guide, ``API-FACTS.md``): always HTTP
200 with the JSON envelope, the documented result codes and messages, the
real ``result`` shape. Every rule the client also applies (image type by
magic bytes, the ``imageUrl`` scheme/port rule, the size limit) comes from
:mod:`ocr_async.protocol`, so client and emulator cannot drift apart.

A request goes through these steps; the first refusal answers:

1. body larger than ``max_bytes`` by ``Content-Length`` -> 4131000
   (the body is not read);
2. no ``X-NHN-Authorization`` -> 4000005; not ``Bearer <token>`` or a token
   not in ``tokens`` -> 4010006; app key other than ``appkey`` -> 4010001;
3. quota (a limiter over all OCR calls, :mod:`.limiters`: a token bucket,
   a fixed one-second window or HAProxy's sliding count, optionally on a
   schedule of rates) refuses -> 4000006, at once;
4. the call gets its number ``n`` (1-based, reset by ``/_emulator/reset``):
   ``fault(n)`` returns a code -> that code; ``faults.decide(n)`` (a seeded
   :class:`~ocr_async.emulator.faults.FaultPlan`) picks an envelope fault
   (5000503, -1) -> that code, or a transport fault acted out below;
5. body read, at most ``max_bytes + 1`` bytes (chunked uploads) -> 4131000;
6. ``multipart/form-data`` field ``image`` (missing -> 4000001), or
   ``application/json`` ``{"imageUrl": ...}`` (bad JSON, no URL, URL refused
   by :func:`~ocr_async.protocol.check_image_url` -> 4000001; not loopback
   while ``allow_remote_urls`` is off -> 4000504; download timeout ->
   4000503; non-200 or connection error -> 4000504; larger than
   ``max_bytes`` -> 4000502); any other content type -> 415;
7. empty image -> 4000004; not JPEG/PNG -> 4000003;
8. ``latency`` seconds, then the engine: no lines -> 4000501, else success
   with the engine's words, boxes and confidences (:mod:`.engine`). An
   engine that reads pixels runs in a bounded thread pool
   (``engine_workers`` threads), never on the event loop, so the emulator
   keeps answering other calls, its stats and health while it works;
9. a transport fault, if one was picked, delivers that answer damaged:
   ``drop`` closes the connection unanswered, ``502`` answers a gateway's
   HTML page, ``truncated`` sends half the body under the full
   ``Content-Length`` and closes, ``cut`` sends half the JSON as a complete
   body; ``slow`` waits ``slow_seconds`` first (less if the client leaves).

Any unexpected exception answers -1 "Unknown error.", never a 500.

With ``uak`` set, the same app serves the OAuth endpoint (:mod:`.oauth`):
OCR calls then accept the tokens it issued while they are live, plus the
static ``tokens``; an expired or revoked issued token answers 4010006.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiohttp import web
from yarl import URL

from ocr_async.emulator.connection import deliver_damaged, read_limited, wait_unless_gone, write
from ocr_async.emulator.engine import EngineLines, runs_inline
from ocr_async.emulator.faults import ENVELOPE_FAULTS, FaultKind
from ocr_async.emulator.images import image_size
from ocr_async.emulator.oauth import IssuedTokens, OAuthEndpoint, TokenState
from ocr_async.emulator.samples import SAMPLES, sample_path
from ocr_async.emulator.state import CONFIG_KEY, STATS_KEY, EmulatorConfig, EmulatorStats
from ocr_async.emulator.wire import build_result, envelope, image_url, multipart_field
from ocr_async.errors import LocalCheckError
from ocr_async.protocol import AUTH_HEADER, NO_TEXT_CODE, check_image_bytes, check_image_url

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
_CONTENT_TYPES: Final[Mapping[str, str]] = {".png": "image/png", ".jpg": "image/jpeg"}


class _RefusedError(Exception):
    """Answer this result code now (control flow inside a handler)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _refusal(exc: LocalCheckError) -> _RefusedError:
    # protocol's pre-checks carry the code the server answers: reuse it.
    return _RefusedError(exc.code if isinstance(exc.code, int) else 4000001)


@dataclass(slots=True)
class _Call:
    """One OCR call's fate beyond its answer."""

    fault: FaultKind | None = None


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- the application --------------------------------------------------------------


class _Emulator:
    """Handlers and per-app state (quota limiter, download session, samples)."""

    def __init__(self, config: EmulatorConfig, stats: EmulatorStats) -> None:
        self.config = config
        self.stats = stats
        self.limiter = config.make_limiter()
        self.calls = 0
        self.issued = IssuedTokens(config.clock) if config.uak is not None else None
        self.session: aiohttp.ClientSession | None = None
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        # Tiny files read once, so serving them costs no disk I/O per request.
        self.samples = {name: sample_path(name).read_bytes() for name in SAMPLES}

    async def session_context(self, app: web.Application) -> AsyncIterator[None]:
        """One client session per app for imageUrl downloads."""
        # Timeouts are applied per download with asyncio.timeout; trust_env
        # stays off so no proxy from the environment is ever used.
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            self.session = session
            yield
        self.session = None

    async def engine_context(self, app: web.Application) -> AsyncIterator[None]:
        """The engine's thread pool, for engines that must not run on the loop."""
        if runs_inline(self.config.engine):
            yield
            return
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.config.engine_workers, thread_name_prefix="ocr-async-engine"
        )
        self.pool = pool
        try:
            yield
        finally:
            self.pool = None
            # Queued recognitions are dropped; one running is waited for, in
            # a thread, so that no engine thread outlives the app.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def _run_engine(self, image: bytes) -> EngineLines:
        engine = self.config.engine
        if self.pool is None:
            if not runs_inline(engine):
                raise RuntimeError("the emulator app was not started (no engine pool)")
            return engine.recognize(image)
        return await asyncio.get_running_loop().run_in_executor(self.pool, engine.recognize, image)

    async def general(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1.1/appkeys/{appKey}/general``."""
        return await self._answer(request, cropping=False)

    async def cropping(self, request: web.Request) -> web.StreamResponse:
        """``POST /v1.1/appkeys/{appKey}/general/cropping``."""
        return await self._answer(request, cropping=True)

    async def expect_handler(self, request: web.Request) -> web.StreamResponse | None:
        """Refuse an oversized upload before the client sends its body.

        A client that asked ``Expect: 100-continue`` (curl does for large
        files) gets the 4131000 answer instead of "100 Continue", so the body
        never crosses the wire; otherwise this is aiohttp's default.
        """
        length = request.content_length
        if length is not None and length > self.config.max_bytes:
            # The size check comes first, so the endpoint does not matter.
            # Closing afterwards: the unsent body would otherwise be read as
            # the next request.
            return await self._answer(request, cropping=False, force_close=True)
        expect = request.headers.get("Expect", "")
        if request.version != aiohttp.HttpVersion11:
            return None
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the interim answer is not the body
        return None

    async def _answer(
        self, request: web.Request, *, cropping: bool, force_close: bool = False
    ) -> web.StreamResponse:
        # Writes the answer itself, so that answered_ok only counts answers
        # that really reached an open connection.
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        call = _Call()
        try:
            try:
                code, result = await self._recognize(request, call, cropping=cropping)
            except _RefusedError as refused:
                code, result = refused.code, None
            except Exception:
                logger.exception("emulator: unexpected error, answering -1")
                code, result = -1, None
            body = envelope(code, result)
            fault = call.fault
            if fault is FaultKind.SLOW:
                assert self.config.faults is not None
                if not await wait_unless_gone(request, self.config.faults.slow_seconds):
                    stats.disconnected += 1
                    return web.Response()  # never written: nobody is listening
            elif fault is not None:
                return await deliver_damaged(request, fault, body)
            stats.by_code[code] = stats.by_code.get(code, 0) + 1
            if code == 4000006:
                stats.rate_limited += 1
            elif code == 4131000:
                stats.oversize += 1
            response = web.Response(body=body, content_type="application/json", charset="utf-8")
            if force_close:
                response.force_close()
            if not await write(request, response):
                stats.disconnected += 1
            elif code == 0:
                stats.answered_ok += 1
            return response
        finally:
            stats.in_flight -= 1

    async def _recognize(
        self, request: web.Request, call: _Call, *, cropping: bool
    ) -> tuple[int, dict[str, Any] | None]:
        config = self.config
        length = request.content_length
        if length is not None and length > config.max_bytes:
            raise _RefusedError(4131000)
        self._authorize(request)
        if self.limiter is not None and not self.limiter.admit():
            raise _RefusedError(4000006)
        self.calls += 1
        number = self.calls
        if config.fault is not None:
            injected = config.fault(number)
            if injected is not None:
                raise _RefusedError(injected)
        if config.faults is not None:
            kind = config.faults.decide(number)
            if kind is not None:
                self.stats.faults[kind.value] = self.stats.faults.get(kind.value, 0) + 1
                code = ENVELOPE_FAULTS.get(kind)
                if code is not None:
                    raise _RefusedError(code)
                call.fault = kind  # acted out once the answer is ready

        body, too_big = await read_limited(request.content, config.max_bytes)
        self.stats.bytes_received += len(body)
        if too_big:
            raise _RefusedError(4131000)
        image = await self._image(request, body)
        try:
            file_type = check_image_bytes(image)
        except LocalCheckError as exc:
            raise _refusal(exc) from None

        if config.latency:
            await asyncio.sleep(config.latency)
        # An empty line is no line: the API never answers one.
        lines = [line for line in await self._run_engine(image) if line]
        if not lines:
            return NO_TEXT_CODE, None
        return 0, build_result(file_type, lines, image_size(image), cropping=cropping)

    def _authorize(self, request: web.Request) -> None:
        value = request.headers.get(AUTH_HEADER, "").strip()
        if not value:
            raise _RefusedError(4000005)
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _RefusedError(4010006)
        if not self._token_accepted(token):
            raise _RefusedError(4010006)
        if self.config.appkey is not None and request.match_info["appkey"] != self.config.appkey:
            raise _RefusedError(4010001)

    def _token_accepted(self, token: str) -> bool:
        if self.issued is not None:
            state = self.issued.state(token)
            if state is TokenState.LIVE:
                return True
            if state is TokenState.EXPIRED:
                self.stats.tokens_rejected_expired += 1
                return False
            if state is TokenState.REVOKED:
                return False
        if self.config.tokens is not None:
            return token in self.config.tokens
        # No static list: any token, unless OAuth is on (then only its own).
        return self.issued is None

    async def _image(self, request: web.Request, body: bytes) -> bytes:
        kind = request.content_type
        if kind == "multipart/form-data":
            image = multipart_field(body, request.headers.get("Content-Type", ""), "image")
            if image is None:
                raise _RefusedError(4000001)
            return image
        if kind == "application/json":
            url = image_url(body)
            if url is None:
                raise _RefusedError(4000001)
            return await self._download(url)
        raise _RefusedError(415)

    async def _download(self, url: str) -> bytes:
        try:
            check_image_url(url)
        except LocalCheckError as exc:
            raise _refusal(exc) from None
        config = self.config
        try:
            # Judge the host with the parser that will fetch it (yarl), so no
            # parser disagreement can smuggle a remote host past the check.
            target = URL(url)
        except (ValueError, TypeError):
            raise _RefusedError(4000001) from None
        if not config.allow_remote_urls and not _is_loopback(target.host or ""):
            raise _RefusedError(4000504)
        if self.session is None:
            raise RuntimeError("the emulator app was not started (no client session)")
        self.stats.downloads += 1
        try:
            async with (
                asyncio.timeout(config.download_timeout),
                # A redirect could leave loopback: follow none unless remote is allowed.
                self.session.get(target, allow_redirects=config.allow_remote_urls) as response,
            ):
                if response.status != 200:
                    raise _RefusedError(4000504)
                length = response.content_length
                if length is not None and length > config.max_bytes:
                    raise _RefusedError(4000502)
                data, too_big = await read_limited(response.content, config.max_bytes)
        except TimeoutError:
            raise _RefusedError(4000503) from None
        except (aiohttp.ClientError, OSError, ValueError):
            raise _RefusedError(4000504) from None
        if too_big:
            raise _RefusedError(4000502)
        return data

    async def stats_handler(self, request: web.Request) -> web.Response:
        """``GET /_emulator/stats``: the counters as JSON."""
        return web.json_response(self.stats.to_json())

    async def reset_handler(self, request: web.Request) -> web.Response:
        """``POST /_emulator/reset``: zero the counters and call numbers, reset the quota.

        The bucket refills, windows empty, a schedule restarts at the next
        call. Issued OAuth tokens are kept: they are state, not counters.
        """
        self.stats.reset()
        self.calls = 0
        if self.limiter is not None:
            self.limiter.reset()
        return web.json_response(self.stats.to_json())

    async def sample_handler(self, request: web.Request) -> web.Response:
        """``GET /samples/{name}``: a bundled sample image."""
        name = request.match_info["name"]
        data = self.samples.get(name)
        if data is None:
            raise web.HTTPNotFound(text=f"no sample named {name!r}")
        return web.Response(body=data, content_type=_CONTENT_TYPES[name[name.rfind(".") :]])

    async def health_handler(self, request: web.Request) -> web.Response:
        """``GET /healthz``: the emulator is up."""
        return web.json_response({"status": "ok"})


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """A new emulator application; run it with any aiohttp runner.

    The live :class:`EmulatorStats` is ``app[STATS_KEY]``. Routes: the two
    OCR endpoints, ``GET /_emulator/stats``, ``POST /_emulator/reset``,
    ``GET /samples/{name}``, ``GET /healthz``, and with ``config.uak`` set
    ``POST /oauth2/token/create`` and ``POST /oauth2/token/revoke``.
    """
    config = config or EmulatorConfig()
    # aiohttp's own 1 MiB default would refuse bodies the API accepts; the
    # handlers enforce max_bytes themselves, this only keeps request.read()
    # (if ever used) in agreement.
    app = web.Application(client_max_size=config.max_bytes)
    stats = EmulatorStats()
    app[CONFIG_KEY] = config
    app[STATS_KEY] = stats
    emulator = _Emulator(config, stats)
    app.cleanup_ctx.append(emulator.session_context)
    app.cleanup_ctx.append(emulator.engine_context)
    ocr = "/v1.1/appkeys/{appkey}/general"
    app.router.add_post(ocr, emulator.general, expect_handler=emulator.expect_handler)
    app.router.add_post(
        f"{ocr}/cropping", emulator.cropping, expect_handler=emulator.expect_handler
    )
    app.router.add_get("/_emulator/stats", emulator.stats_handler)
    app.router.add_post("/_emulator/reset", emulator.reset_handler)
    app.router.add_get("/samples/{name}", emulator.sample_handler)
    app.router.add_get("/healthz", emulator.health_handler)
    if config.uak is not None and emulator.issued is not None:
        OAuthEndpoint(
            config.uak,
            emulator.issued,
            stats,
            lifetime=config.token_lifetime,
            expires_in_as_string=config.expires_in_as_string,
        ).add_routes(app.router)
    return app
