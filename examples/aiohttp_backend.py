"""An aiohttp.web backend that answers ``POST /ocr`` with the text of an uploaded image.

One :class:`~ocr_async.OcrClient` is opened when the app starts and shared by
every request: one connection pool, one token, one rate controller, and at
most ``concurrency`` calls to the OCR API in flight however many requests
arrive at once (the others wait their turn inside the client).

Each call has a deadline (``asyncio.timeout``): past it the call, retries
included, is cancelled and the caller gets 504. A caller that hangs up
cancels its handler (``handler_cancellation=True``), which cancels the call
to the OCR API and closes that connection, so nobody pays for an answer that
nobody will read.

``GET /metrics`` serves the client's Prometheus metrics (requests in flight,
latency by outcome, the rate controller's rate and refusals) from the app's
own event loop; the ``metrics`` extra (``prometheus-client``) is needed.

Run it (the settings come from the same environment variables as the
``ocr-async`` command)::

    export NHN_OCR_APPKEY=... NHN_OCR_TOKEN=...
    python examples/aiohttp_backend.py --port 8080
    curl -F image=@scan.png http://127.0.0.1:8080/ocr

**Several worker processes, one quota.** Under gunicorn each worker process
has its own client, and so its own rate controller: four of them would probe
the app key's quota four times over and refuse each other's calls. With
``OCR_ASYNC_SHARED_QUOTA`` (a Redis URL; ``pip install 'ocr-async[cluster]'``)
every worker's client joins one shared controller instead, and an idle
worker holds no share of the quota::

    export OCR_ASYNC_SHARED_QUOTA=redis://127.0.0.1:6379/0
    gunicorn --pythonpath examples aiohttp_backend:gunicorn_app \
        --worker-class aiohttp.GunicornWebWorker --workers 4 --bind 127.0.0.1:8080

A worker that cannot reach Redis when it starts fails to boot, with the
reason in gunicorn's log; Redis lost later costs no request: each worker
carries on with its own controller and says so once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import BodyPartReader, web
from prometheus_client.aiohttp import make_aiohttp_handler

from ocr_async import (
    ApiError,
    AuthError,
    BoundingBox,
    InvalidRequestError,
    LocalCheckError,
    OcrClient,
    OcrError,
    RateLimitedError,
    TemporarilyUnavailableError,
)
from ocr_async.auth import (
    TokenProvider,
    UserAccessKeyTokens,
    token_from_environment,
    uak_from_environment,
)
from ocr_async.options import SHARED_QUOTA_ENV
from ocr_async.outputs.metrics import OcrMetrics
from ocr_async.protocol import DEFAULT_BASE_URL, DEFAULT_MAX_BYTES

log = logging.getLogger("ocr_backend")


@dataclass(frozen=True, slots=True)
class Settings:
    """How the backend talks to the OCR API."""

    appkey: str
    token: str | TokenProvider
    base_url: str = DEFAULT_BASE_URL
    #: OCR calls in flight at once, shared by all requests.
    concurrency: int = 8
    #: Seconds one request may spend on OCR, retries and waits included.
    timeout: float = 10.0
    #: The largest upload accepted (the API's own limit by default).
    max_upload: int = DEFAULT_MAX_BYTES
    #: A Redis URL: share the app key's quota with every other worker process.
    shared_quota: str | None = None


@dataclass(slots=True)
class Counters:
    """What the backend has done, for logs and tests."""

    ok: int = 0
    failed: int = 0
    timed_out: int = 0
    cancelled: int = 0


SETTINGS = web.AppKey("settings", Settings)
OCR_CLIENT = web.AppKey("ocr_client", OcrClient)
COUNTERS = web.AppKey("counters", Counters)
METRICS = web.AppKey("metrics", OcrMetrics)


async def ocr_client_context(app: web.Application) -> AsyncIterator[None]:
    """Open the one shared client at startup; close it at shutdown."""
    settings, metrics = app[SETTINGS], app[METRICS]
    async with OcrClient(
        appkey=settings.appkey,
        token=settings.token,
        base_url=settings.base_url,
        concurrency=settings.concurrency,
        max_bytes=settings.max_upload,
        shared_quota=settings.shared_quota,
        observer=metrics,  # every request to the OCR API, retries included
    ) as client:
        metrics.watch(client.rate_controller)
        app[OCR_CLIENT] = client
        yield


def error_response(status: int, code: int | str, message: str) -> web.Response:
    """A JSON error answer."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def read_upload(request: web.Request, limit: int) -> bytes | web.Response:
    """The bytes of the multipart field ``image``, or the error answer to send."""
    if request.content_type != "multipart/form-data":
        return error_response(400, "no_image", "send the image as multipart field 'image'")
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name != "image":
            continue
        data = bytearray()
        while chunk := await part.read_chunk():
            data += chunk
            if len(data) > limit:
                return error_response(413, 4131000, f"the image is over {limit} bytes")
        return bytes(data)
    return error_response(400, "no_image", "send the image as multipart field 'image'")


def status_for(error: OcrError) -> int:
    """The HTTP status to answer for an OCR failure."""
    if isinstance(error, LocalCheckError | InvalidRequestError):
        return 422  # this image cannot be read: the caller's problem
    if isinstance(error, RateLimitedError | TemporarilyUnavailableError):
        return 503  # still over the call limit after the retries
    return 502  # credentials refused, API or network failure: ours, upstream


async def ocr_handler(request: web.Request) -> web.Response:
    """``POST /ocr``: multipart field ``image`` in, the recognized text out as JSON."""
    app = request.app
    settings, client, counters = app[SETTINGS], app[OCR_CLIENT], app[COUNTERS]
    upload = await read_upload(request, settings.max_upload)
    if isinstance(upload, web.Response):
        return upload
    try:
        async with asyncio.timeout(settings.timeout):
            recognition = await client.recognize(upload)
    except TimeoutError:
        counters.timed_out += 1
        return error_response(504, "timeout", f"no OCR answer within {settings.timeout:g} s")
    except asyncio.CancelledError:
        # The caller hung up: the call to the OCR API is cancelled with us.
        counters.cancelled += 1
        raise
    except OcrError as exc:
        counters.failed += 1
        if isinstance(exc, AuthError):
            log.error("the OCR API refused our credentials: %s", exc)
        elif not isinstance(exc, ApiError | LocalCheckError):
            log.warning("OCR call failed after %d attempts: %s", exc.attempts, exc)
        return error_response(status_for(exc), exc.code, exc.message)
    counters.ok += 1
    result = recognition.result
    return web.json_response(
        {
            "text": recognition.text,
            "lines": [line.text for line in result.lines],
            "words": [
                {
                    "value": word.value,
                    "conf": word.conf,
                    "box": None if word.box is None else list(_corners(word.box)),
                }
                for word in result.words
            ],
            "attempts": recognition.attempts,
            "elapsed_ms": round(recognition.elapsed_ms, 1),
        }
    )


def _corners(box: BoundingBox) -> tuple[float, ...]:
    return (box.x1, box.y1, box.x2, box.y2, box.x3, box.y3, box.x4, box.y4)


def create_app(settings: Settings) -> web.Application:
    """The application: ``POST /ocr`` over one shared :class:`OcrClient`."""
    # Room for the largest image plus the multipart framing around it.
    app = web.Application(client_max_size=settings.max_upload + 64 * 1024)
    app[SETTINGS] = settings
    app[COUNTERS] = Counters()
    # A registry of the app's own; a bigger app passes the one it already serves.
    app[METRICS] = OcrMetrics()
    app.cleanup_ctx.append(ocr_client_context)
    app.router.add_post("/ocr", ocr_handler)
    app.router.add_get("/metrics", make_aiohttp_handler(app[METRICS].registry))
    return app


async def start(app: web.Application, host: str = "127.0.0.1", port: int = 8080) -> web.AppRunner:
    """Serve ``app``; stop it with ``await runner.cleanup()``.

    ``handler_cancellation=True``: without it aiohttp lets a handler run on
    after its caller has gone, and the OCR call would be paid for anyway.
    """
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def settings_from_environment(concurrency: int, timeout: float) -> Settings:
    """Settings from ``NHN_OCR_*`` (and ``NHN_UAK_*``), as the command line reads them."""
    appkey = os.environ.get("NHN_OCR_APPKEY", "")
    if not appkey:
        raise SystemExit("set NHN_OCR_APPKEY")
    # A User Access Key (NHN_UAK_ID, NHN_UAK_SECRET) wins over a fixed token.
    tokens: TokenProvider = uak_from_environment() or token_from_environment()
    base_url = os.environ.get("NHN_OCR_BASE_URL") or DEFAULT_BASE_URL
    shared_quota = os.environ.get(SHARED_QUOTA_ENV) or None
    return Settings(
        appkey,
        tokens,
        base_url,
        concurrency=concurrency,
        timeout=timeout,
        shared_quota=shared_quota,
    )


async def gunicorn_app() -> web.AppRunner:
    """The app for gunicorn's ``aiohttp.GunicornWebWorker``, one per worker process.

    A runner rather than the app: it carries ``handler_cancellation=True``
    (see :func:`start`), which gunicorn's own runner would not.
    """
    settings = settings_from_environment(concurrency=8, timeout=10.0)
    app = create_app(settings)

    async def close_tokens(_: web.Application) -> None:
        await _close_tokens(settings)

    app.on_cleanup.append(close_tokens)
    return web.AppRunner(app, handler_cancellation=True)


async def _close_tokens(settings: Settings) -> None:
    if isinstance(settings.token, UserAccessKeyTokens):
        await settings.token.aclose()  # it holds a session to the OAuth server


async def serve(host: str, port: int, concurrency: int, timeout: float) -> None:
    """Run until cancelled (Ctrl-C)."""
    settings = settings_from_environment(concurrency, timeout)
    runner = await start(create_app(settings), host, port)
    print(f"serving POST http://{host}:{port}/ocr", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await _close_tokens(settings)


def main() -> None:
    """The command line of this example."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a clean shutdown
        asyncio.run(serve(args.host, args.port, args.concurrency, args.timeout))


if __name__ == "__main__":
    main()
