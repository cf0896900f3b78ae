"""What the emulator does with a connection: read, write, notice, hang up.

The I/O half of an answer, for the handlers (:mod:`.handlers`), which
decide what to answer: a request body read no further than the limit
allows (:func:`read_limited`), an answer written and known to have arrived
or not (:func:`write`), a wait cut short when the client leaves
(:func:`wait_unless_gone`), and an answer delivered as a transport fault
damages it (:func:`deliver_damaged`; the faults themselves are chosen by
:mod:`.faults`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

import aiohttp
from aiohttp import web

from ocr_async.emulator.faults import FaultKind
from ocr_async.emulator.wire import BAD_GATEWAY_HTML

__all__ = ["deliver_damaged", "read_limited", "wait_unless_gone", "write"]

# How often a slow call checks whether its client is still there.
_SLOW_POLL: Final = 0.02


async def read_limited(stream: aiohttp.StreamReader, limit: int) -> tuple[bytes, bool]:
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


async def write(request: web.Request, response: web.StreamResponse) -> bool:
    """Send ``response`` now; False when the client had gone."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError:
        return False
    return True


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _hang_up(request: web.Request) -> None:
    # close() flushes what was written, then sends FIN: the client sees the
    # connection end where the answer should have gone on.
    transport = request.transport
    if transport is not None:
        transport.close()


async def wait_unless_gone(request: web.Request, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the client has left."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not _gone(request):
        remaining = deadline - loop.time()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(_SLOW_POLL, remaining))
    return False


async def deliver_damaged(
    request: web.Request, fault: FaultKind, body: bytes
) -> web.StreamResponse:
    """Deliver the answer ``body`` as a transport ``fault`` damages it."""
    if fault is FaultKind.DROP:
        _hang_up(request)
        return web.Response()  # never written: the connection is closed
    if fault is FaultKind.HTTP_502_HTML:
        response = web.Response(status=502, text=BAD_GATEWAY_HTML, content_type="text/html")
        await write(request, response)
        return response
    half = body[: len(body) // 2]
    if fault is FaultKind.CUT_JSON:
        response = web.Response(body=half, content_type="application/json", charset="utf-8")
        await write(request, response)
        return response
    # TRUNCATED_JSON: promise the whole body, send half, hang up.
    stream = web.StreamResponse(status=200)
    stream.content_type = "application/json"
    stream.charset = "utf-8"
    stream.content_length = len(body)
    with contextlib.suppress(ConnectionError):
        await stream.prepare(request)
        await stream.write(half)
    _hang_up(request)
    return stream
