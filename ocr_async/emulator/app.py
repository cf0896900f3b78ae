"""The emulator's aiohttp application: General OCR v1.1 on a local port.

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
import functools
import ipaddress
import json
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from types import MappingProxyType
from typing import Any, Final

import aiohttp
from aiohttp import web
from yarl import URL

from ocr_async.emulator.engine import EngineLines, FallbackEngine, TextEngine, place, runs_inline
from ocr_async.emulator.faults import ENVELOPE_FAULTS, FaultKind, FaultPlan
from ocr_async.emulator.images import image_size
from ocr_async.emulator.limiters import (
    LIMITER_KINDS,
    FixedWindowLimiter,
    Limiter,
    LimiterKind,
    ScheduledLimiter,
    make_limiter,
)
from ocr_async.emulator.oauth import IssuedTokens, OAuthEndpoint, TokenState
from ocr_async.emulator.samples import SAMPLES, sample_path
from ocr_async.errors import LocalCheckError
from ocr_async.protocol import (
    AUTH_HEADER,
    DEFAULT_MAX_BYTES,
    NO_TEXT_CODE,
    RESULT_CODES,
    ImageType,
    check_image_bytes,
    check_image_url,
    decode_json,
)

__all__ = [
    "CONFIG_KEY",
    "RESULT_MESSAGES",
    "STATS_KEY",
    "EmulatorConfig",
    "EmulatorStats",
    "build_result",
    "create_app",
    "multipart_field",
]

logger = logging.getLogger(__name__)

#: The ``resultMessage`` for each code, as NHN words it. The common codes
#: are the API guide's; the others are from General OCR's error-code page.
RESULT_MESSAGES: Final[Mapping[int, str]] = {
    0: "SUCCESS",
    -1: "Unknown error.",
    415: "Unsupported Media Type",
    4000001: "Invalid parameter.",
    4000002: "Invalid file.",
    4000003: "Invalid file type.",
    4000004: "Uploaded file is empty.",
    4000005: "Required headers is missing.",
    4000006: (
        "Api call limit exceeded, If you need to adjust the limit, please contact customer service."
    ),
    4000501: "General OCR not found in the image.",
    4000502: "Image size exceeded. Please check image URL.",
    4000503: "Image download takes more than 20 seconds. Please check image URL.",
    4000504: "Image download fail. Please check image URL.",
    4000505: "Image out of ratio. Please check image.",
    4010001: "Invalid appKey or secretKey.",
    4010006: "Invalid token.",
    4010007: "Permission denied.",
    4131000: "Request size is larger than permissible limit. the permissible limit is 5mb.",
    5000503: "The API you requested is temporarily unavailable. Please try again later.",
}

# Engine threads by default: one per core, at most 2. Each real engine call
# keeps a core busy (onnxruntime and tesseract are told to use one thread).
_DEFAULT_ENGINE_WORKERS: Final = max(1, min(2, os.cpu_count() or 1))
# The console calls images under 1280x720 "low" resolution (API-FACTS.md).
_NORMAL_LONG_SIDE: Final = 1280
_NORMAL_SHORT_SIDE: Final = 720
# RFC 2046 5.1.1: boundary=token or boundary="quoted string".
_BOUNDARY: Final = re.compile(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
_CONTENT_TYPES: Final[Mapping[str, str]] = {".png": "image/png", ".jpg": "image/jpeg"}
# What nginx answers when its upstream fails: a gateway in front of the API.
_BAD_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
# How often a slow call checks whether its client is still there.
_SLOW_POLL: Final = 0.02


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves; the defaults accept anything well formed.

    ``appkey`` None accepts any app key. Tokens: with ``tokens`` and ``uak``
    both None any non-empty token is accepted; ``tokens`` lists static tokens
    that are always accepted; ``uak`` (User Access Key ID -> secret) turns on
    the OAuth endpoint, whose live tokens are accepted too, and with
    ``tokens`` None they are the only ones (so a test can prove a client
    really uses OAuth). Without ``uak`` the OAuth routes answer 404.
    ``quota_rps`` None means no call limit; ``quota_kind`` says how calls are
    counted against it (:data:`~.limiters.LIMITER_KINDS`); ``quota_burst``
    (bucket only) defaults to ``max(1, round(quota_rps))``;
    ``quota_schedule`` (seconds from the first call, rate) pairs change the
    rate over time, the first at 0 (``quota_rps`` may then be left out).
    ``clock`` drives the quota and token
    expiry, so tests can step time instead of sleeping. ``fault`` receives
    the 1-based number of each call that passed auth and quota and may
    return a result code to answer instead (e.g. ``lambda n: 5000503 if n %
    3 == 0 else None``); ``faults`` is a seeded plan of random failures,
    transport failures included (:mod:`.faults`).
    """

    appkey: str | None = None
    tokens: frozenset[str] | None = field(default=None, repr=False)
    #: Largest accepted request body, and largest image downloaded from a URL.
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Seconds awaited before each OCR answer (for calls past the quota).
    latency: float = 0.0
    quota_rps: float | None = None
    quota_burst: int | None = None
    quota_kind: LimiterKind = "bucket"
    quota_schedule: tuple[tuple[float, float], ...] = ()
    #: Off by default: only loopback image URLs are fetched, so a test can
    #: never make the emulator reach out to the network.
    allow_remote_urls: bool = False
    #: The real service gives up after 20 s (4000503).
    download_timeout: float = 20.0
    engine: TextEngine = field(default_factory=FallbackEngine)
    #: Threads that run the engine off the event loop (engines that are not
    #: ``inline``): at most this many recognitions at once, others queue.
    engine_workers: int = _DEFAULT_ENGINE_WORKERS
    clock: Callable[[], float] = time.monotonic
    fault: Callable[[int], int | None] | None = None
    faults: FaultPlan | None = None
    #: User Access Key ID -> secret; kept out of the repr.
    uak: Mapping[str, str] | None = field(default=None, repr=False)
    #: ``expires_in`` of issued tokens (NHN: 60..86,400 s; any positive here).
    token_lifetime: float = 86400.0
    #: Send ``expires_in`` as a string, as NHN's documentation types it.
    expires_in_as_string: bool = False

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes}")
        if self.latency < 0:
            raise ValueError(f"latency must not be negative, not {self.latency}")
        if self.engine_workers < 1:
            raise ValueError(f"engine_workers must be at least 1, not {self.engine_workers}")
        if self.download_timeout <= 0:
            raise ValueError(f"download_timeout must be positive, not {self.download_timeout}")
        if self.quota_rps is not None and self.quota_rps <= 0:
            raise ValueError(f"quota_rps must be positive, not {self.quota_rps}")
        if self.quota_burst is not None and self.quota_burst < 1:
            raise ValueError(f"quota_burst must be at least 1, not {self.quota_burst}")
        if self.quota_kind not in LIMITER_KINDS:
            raise ValueError(f"quota_kind must be one of {', '.join(LIMITER_KINDS)}")
        if self.quota_burst is not None and self.quota_kind != "bucket":
            raise ValueError("quota_burst applies to the bucket quota_kind only")
        if self.quota_schedule:
            # Checked here, with the limiter's own rules, rather than at the
            # first call.
            object.__setattr__(self, "quota_schedule", tuple(self.quota_schedule))
            ScheduledLimiter(FixedWindowLimiter(1.0), self.quota_schedule, clock=self.clock)
            if self.quota_rps is None:
                object.__setattr__(self, "quota_rps", self.quota_schedule[0][1])
        if not (math.isfinite(self.token_lifetime) and self.token_lifetime > 0):
            raise ValueError(f"token_lifetime must be positive, not {self.token_lifetime}")
        if self.uak is not None:
            for key_id, secret in self.uak.items():
                # HTTP Basic cannot carry ':' in the user ID (RFC 7617).
                if not key_id or ":" in key_id or not secret:
                    raise ValueError("uak needs non-empty IDs without ':' and non-empty secrets")
            # A private read-only copy: the caller's dict cannot change it later.
            object.__setattr__(self, "uak", MappingProxyType(dict(self.uak)))

    @property
    def burst(self) -> int | None:
        """The bucket size in effect, or None when there is no quota or no bucket."""
        if self.quota_rps is None or self.quota_kind != "bucket":
            return None
        return self.quota_burst if self.quota_burst is not None else max(1, round(self.quota_rps))

    def make_limiter(self) -> Limiter | None:
        """A new limiter for the quota, or None when there is none."""
        if self.quota_rps is None:
            return None
        return make_limiter(
            self.quota_kind,
            self.quota_rps,
            burst=self.burst,
            schedule=self.quota_schedule,
            clock=self.clock,
        )


@dataclass(slots=True)
class EmulatorStats:
    """Live counters; tests and benchmarks read them to prove what happened.

    ``requests`` counts every OCR POST. ``by_code`` counts the envelopes
    answered (written, or attempted to be) by result code; calls whose
    answer a transport fault replaced, and slow calls whose client left
    first, are not in it. ``answered_ok`` counts success envelopes (code 0)
    written in full to a connection still open: the recognitions a client
    can have seen. ``disconnected`` counts answers not written because the
    client had gone. ``faults`` counts injected faults by kind name
    (:class:`~ocr_async.emulator.faults.FaultKind` values), as decided.
    ``oversize`` counts 4131000 answers, ``rate_limited`` 4000006 answers,
    ``bytes_received`` request body bytes actually read (an oversized chunked
    body counts the ``max_bytes + 1`` read before giving up), ``downloads``
    image URL fetches attempted. ``in_flight`` is the number of OCR calls
    being handled now and ``peak_in_flight`` its maximum, which shows how
    much concurrency a client really used. OAuth: ``tokens_issued``,
    ``tokens_revoked``, ``oauth_refused`` (error answers of the OAuth
    routes) and ``tokens_rejected_expired`` (OCR calls refused 4010006
    because their issued token had expired).
    """

    requests: int = 0
    answered_ok: int = 0
    by_code: dict[int, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    disconnected: int = 0
    rate_limited: int = 0
    oversize: int = 0
    bytes_received: int = 0
    downloads: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    tokens_issued: int = 0
    tokens_revoked: int = 0
    tokens_rejected_expired: int = 0
    oauth_refused: int = 0

    def reset(self) -> None:
        """Zero every counter (``in_flight`` stays true: calls may be running)."""
        self.requests = self.answered_ok = self.disconnected = 0
        self.rate_limited = self.oversize = 0
        self.bytes_received = self.downloads = 0
        self.tokens_issued = self.tokens_revoked = self.tokens_rejected_expired = 0
        self.oauth_refused = 0
        self.by_code.clear()
        self.faults.clear()
        self.peak_in_flight = self.in_flight

    def to_json(self) -> dict[str, Any]:
        """The counters as served by ``GET /_emulator/stats``."""
        return {
            "requests": self.requests,
            "answered_ok": self.answered_ok,
            "by_code": {str(code): n for code, n in sorted(self.by_code.items())},
            "faults": dict(sorted(self.faults.items())),
            "disconnected": self.disconnected,
            "rate_limited": self.rate_limited,
            "oversize": self.oversize,
            "bytes_received": self.bytes_received,
            "downloads": self.downloads,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "tokens_issued": self.tokens_issued,
            "tokens_revoked": self.tokens_revoked,
            "tokens_rejected_expired": self.tokens_rejected_expired,
            "oauth_refused": self.oauth_refused,
        }


#: Where :func:`create_app` keeps the live :class:`EmulatorStats`.
STATS_KEY: Final = web.AppKey("ocr_async.emulator.stats", EmulatorStats)
#: Where :func:`create_app` keeps its :class:`EmulatorConfig`.
CONFIG_KEY: Final = web.AppKey("ocr_async.emulator.config", EmulatorConfig)


class _RefusedError(Exception):
    """Answer this result code now (control flow inside a handler)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _refusal(exc: LocalCheckError) -> _RefusedError:
    # protocol's pre-checks carry the code the server answers: reuse it.
    return _RefusedError(exc.code if isinstance(exc.code, int) else 4000001)


def _message(code: int) -> str:
    message = RESULT_MESSAGES.get(code)
    if message is not None:
        return message
    known = RESULT_CODES.get(code)
    return known[0] if known is not None else "Unknown error."


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _envelope(code: int, result: Mapping[str, Any] | None = None) -> bytes:
    header = {"isSuccessful": code == 0, "resultCode": code, "resultMessage": _message(code)}
    return _dumps({"header": header} if result is None else {"header": header, "result": result})


# Failure answers never change: build their bytes once.
_FAILURES: Final[Mapping[int, bytes]] = {
    code: _envelope(code) for code in RESULT_MESSAGES if code != 0
}


# --- pure helpers ---------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _header_param(value: str, header: str, param: str) -> str | None:
    # email.message parses quoted and RFC 2231 parameters the way HTTP does.
    # It is slow-ish, hence the cache: clients repeat the same part headers,
    # and the boundary, which changes per request, has its own fast path.
    message = Message()
    message[header] = value
    found = message.get_param(param, header=header)
    return found if isinstance(found, str) else None


def _boundary(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def _part_name(head: bytes) -> str | None:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            return _header_param(value.decode("utf-8", "replace"), "content-disposition", "name")
    return None


def multipart_field(body: bytes, content_type: str, name: str) -> bytes | None:
    """The data of the first part called ``name`` in a multipart body.

    None when the body has no such part or is not valid multipart. Parsing
    a body already read (and size-checked) keeps the size rule exact and
    avoids aiohttp spooling file parts to disk.
    """
    boundary = _boundary(content_type)
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("utf-8")
    separator = b"\r\n" + delimiter
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble precedes the first delimiter (RFC 2046, 5.1.1)
        pos = body.find(separator)
        if pos < 0:
            return None
        pos += len(separator)
    while not body.startswith(b"--", pos):  # "--" after a delimiter closes the body
        line_end = body.find(b"\r\n", pos)
        head_end = body.find(b"\r\n\r\n", line_end) if line_end >= 0 else -1
        data_end = body.find(separator, head_end + 4) if head_end >= 0 else -1
        if data_end < 0:
            return None
        if _part_name(body[line_end + 2 : head_end]) == name:
            return body[head_end + 4 : data_end]
        pos = data_end + len(separator)
    return None


def build_result(
    file_type: ImageType, lines: EngineLines, size: tuple[int, int] | None, *, cropping: bool
) -> dict[str, Any]:
    """The success ``result`` object for recognized ``lines``.

    ``listOfInferTexts[i].inferTexts[j]`` pairs with
    ``listOfBoundingBoxes[i].boundingBoxes[j]`` (API-FACTS.md): one entry
    per line. A :class:`~ocr_async.emulator.engine.RecognizedWord` keeps the
    engine's box and confidence (rounded to 4 places); a plain string word
    gets the fixed fake layout (:func:`~ocr_async.emulator.engine.place`).
    Corners are integers, clockwise from the top left.
    ``/general/cropping`` adds ``slicesImages``: ``ceil(long / (2.5 short))``,
    at least 1, and 1 when the size is unknown.
    """
    texts: list[dict[str, Any]] = []
    boxes: list[dict[str, Any]] = []
    for words in place(lines):
        texts.append({"inferTexts": [{"value": w.value, "conf": round(w.conf, 4)} for w in words]})
        boxes.append({"boundingBoxes": [w.box_json() for w in words]})
    long_side, short_side = (max(size), min(size)) if size else (0, 0)
    normal = long_side >= _NORMAL_LONG_SIDE and short_side >= _NORMAL_SHORT_SIDE
    result: dict[str, Any] = {
        "fileType": file_type,
        "listOfInferTexts": texts,
        "listOfBoundingBoxes": boxes,
        "resolution": "normal" if normal else "low",
    }
    if cropping:
        # ceil(long / (2.5 * short)) in integers: ceil(2 long / (5 short)).
        result["slicesImages"] = max(1, -(-2 * long_side // (5 * short_side))) if size else 1
    return result


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
    """At most ``limit + 1`` bytes of ``stream``; True when it had more than ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await stream.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), size > limit


# --- faults on the wire -----------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """One OCR call's fate beyond its answer."""

    fault: FaultKind | None = None


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _hang_up(request: web.Request) -> None:
    # close() flushes what was written, then sends FIN: the client sees the
    # connection end where the answer should have gone on.
    transport = request.transport
    if transport is not None:
        transport.close()


async def _write(request: web.Request, response: web.StreamResponse) -> bool:
    """Send ``response`` now; False when the client had gone."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        return False
    return True


async def _wait_unless_gone(request: web.Request, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the client has left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not _gone(request):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(_SLOW_POLL, remaining))
    return False


async def _damaged(request: web.Request, fault: FaultKind, body: bytes) -> web.StreamResponse:
    """Deliver the answer ``body`` as a transport ``fault`` damages it."""
    if fault is FaultKind.DROP:
        _hang_up(request)
        return web.Response()  # never written: the connection is closed
    if fault is FaultKind.HTTP_502_HTML:
        response = web.Response(status=502, text=_BAD_GATEWAY_HTML, content_type="text/html")
        await _write(request, response)
        return response
    half = body[: len(body) // 2]
    if fault is FaultKind.CUT_JSON:
        response = web.Response(body=half, content_type="application/json", charset="utf-8")
        await _write(request, response)
        return response
    # TRUNCATED_JSON: promise the whole body, send half, hang up.
    stream = web.StreamResponse(status=200)
    stream.content_type = "application/json"
    stream.charset = "utf-8"
    stream.content_length = len(body)
    try:
        await stream.prepare(request)
        await stream.write(half)
    except ConnectionError:
        pass
    _hang_up(request)
    return stream


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
            body = _FAILURES.get(code) if result is None else None
            if body is None:
                body = _envelope(code, result)
            fault = call.fault
            if fault is FaultKind.SLOW:
                assert self.config.faults is not None
                if not await _wait_unless_gone(request, self.config.faults.slow_seconds):
                    stats.disconnected += 1
                    return web.Response()  # never written: nobody is listening
            elif fault is not None:
                return await _damaged(request, fault, body)
            stats.by_code[code] = stats.by_code.get(code, 0) + 1
            if code == 4000006:
                stats.rate_limited += 1
            elif code == 4131000:
                stats.oversize += 1
            response = web.Response(body=body, content_type="application/json", charset="utf-8")
            if force_close:
                response.force_close()
            if not await _write(request, response):
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

        body, too_big = await _read_limited(request.content, config.max_bytes)
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
            return await self._download(_image_url(body))
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
                data, too_big = await _read_limited(response.content, config.max_bytes)
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


def _image_url(body: bytes) -> str:
    try:
        document = decode_json(body)
    except ValueError:
        raise _RefusedError(4000001) from None
    url = document.get("imageUrl") if isinstance(document, dict) else None
    if not isinstance(url, str) or not url.strip():
        raise _RefusedError(4000001)
    return url.strip()


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
