"""A hostile API and OAuth server of our own, for the fault-and-abuse suite.

Everything the real API never does, on 127.0.0.1 and an ephemeral port:
redirects to another origin, oversize and compressed bodies, secrets echoed
back, answers that are not strict JSON, a slow drip, silence, torn bodies.

The app key picks the behaviour, so one server serves every case and
``ocr-async run --appkey redirect-302 --base-url ...`` needs no other set-up:
``POST /v1.1/appkeys/{behaviour}/general``. The OAuth endpoint takes the
behaviour from a path prefix: ``NHN_OAUTH_URL={base_url}/{behaviour}``.
``silent_url`` is a raw socket that accepts and never reads or answers.

A second server, ``elsewhere``, stands for another origin: redirects point
there, and it records every request it gets (none should arrive) and
answers each with a success, as a thief would.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

__all__ = [
    "API_BEHAVIOURS",
    "OAUTH_BEHAVIOURS",
    "REDIRECTS",
    "Hostile",
    "running_hostile",
]

#: The redirect statuses served as ``redirect-<status>``.
REDIRECTS: Final = (301, 302, 303, 307, 308)
# Streamed bodies stop here if the client never hangs up: 256 MiB.
_STREAM_CHUNKS: Final = 4096
_CHUNK: Final = 64 * 1024
# One gzip member's deflate blocks, repeated: 8 MiB of zeros in about 8 kB each.
_ZEROS: Final = 8 * 1024 * 1024
# The drip: one byte this often, of a body announced far longer.
_DRIP_SECONDS: Final = 0.1


def _envelope(code: int = 0, message: str = "SUCCESS", result: Any = None) -> dict[str, Any]:
    header = {"isSuccessful": code == 0, "resultCode": code, "resultMessage": message}
    return {"header": header, "result": result}


def _words(*values: Any, conf: Any = 0.9) -> dict[str, Any]:
    return {"listOfInferTexts": [{"inferTexts": [{"value": v, "conf": conf} for v in values]}]}


#: A success that is not strict JSON: NaN, Infinity, an overflowing number,
#: lone surrogate escapes in a word and in a key.
NOT_STRICT_BODY: Final = (
    b'{"header": {"isSuccessful": true, "resultCode": 0, "resultMessage": "SUCCESS"},'
    b' "result": {"listOfInferTexts": [{"inferTexts": ['
    b'{"value": "half\\ud800", "conf": NaN}, {"value": "\\udc80low", "conf": Infinity}]}],'
    b' "listOfBoundingBoxes": [{"boundingBoxes": [{"x1": -Infinity, "y1": 1e999, "x2": 0,'
    b' "y2": 0, "x3": 0, "y3": 0, "x4": 0, "y4": 0}]}], "\\ud800key": NaN}}'
)


@dataclass(slots=True)
class Hostile:
    """A running hostile server, with what it saw."""

    base_url: str
    #: Another origin: redirects point here.
    elsewhere_url: str
    #: A socket that accepts connections and never answers.
    silent_url: str
    #: ``(behaviour, headers)`` of every request the hostile server got.
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: Headers of every request that reached the other origin (should be none).
    elsewhere: list[dict[str, str]] = field(default_factory=list)
    #: Bytes each streaming behaviour managed to write before the client hung up.
    streamed: dict[str, int] = field(default_factory=dict)

    def oauth_url(self, behaviour: str) -> str:
        """The ``NHN_OAUTH_URL`` that makes the OAuth endpoint behave so."""
        return f"{self.base_url}/{behaviour}"


Handler = Callable[[Hostile, web.Request], Awaitable[web.StreamResponse]]


async def _redirect(hostile: Hostile, request: web.Request, status: int) -> web.StreamResponse:
    # The Location carries a query a leak would show: a signature, say.
    target = f"{hostile.elsewhere_url}/v1.1/appkeys/k/general?sig=LOCATION-QUERY-9d1c"
    return web.Response(status=status, headers={"Location": target})


async def _stream(
    hostile: Hostile, request: web.Request, name: str, first: bytes, chunk: bytes, encoding: str
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if encoding:
        response.headers["Content-Encoding"] = encoding
    hostile.streamed[name] = 0
    # The client hanging up is what these behaviours wait for.
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.prepare(request)
        await response.write(first)
        for _ in range(_STREAM_CHUNKS):
            await response.write(chunk)
            hostile.streamed[name] += len(chunk)
    return response


async def _huge(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    head = b'{"header": {"isSuccessful": true, "resultCode": 0, "resultMessage": "'
    return await _stream(hostile, request, "huge", head, b"x" * _CHUNK, "")


async def _gzip_bomb(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: a gzip member
    first = squeezer.compress(b"\0" * _ZEROS) + squeezer.flush(zlib.Z_SYNC_FLUSH)
    again = squeezer.compress(b"\0" * _ZEROS) + squeezer.flush(zlib.Z_SYNC_FLUSH)
    return await _stream(hostile, request, "gzip-bomb", first, again, "gzip")


def _seen_token(request: web.Request) -> str:
    return request.headers.get("X-NHN-Authorization", "")


async def _echo_message(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    message = f"header X-NHN-Authorization: {_seen_token(request)} refused"
    return web.json_response(_envelope(4000001, message))


async def _echo_result(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    token = _seen_token(request).removeprefix("Bearer ")
    return web.json_response(_envelope(result=_words("seen:", token, "kept")))


async def _echo_html(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    page = f"<html><body>Bad Request<pre>{_seen_token(request)}</pre></body></html>"
    return web.Response(status=502, text=page, content_type="text/html")


async def _not_strict(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    return web.Response(body=NOT_STRICT_BODY, content_type="application/json")


async def _drip(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 1_000_000
    with contextlib.suppress(ConnectionError, RuntimeError):
        await response.prepare(request)
        for _ in range(1_000_000):
            await response.write(b" ")
            await asyncio.sleep(_DRIP_SECONDS)
    return response


async def _hang(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()  # the request was read; no answer ever comes
    raise AssertionError("unreachable")


async def _torn(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = 1000
    await response.prepare(request)
    await response.write(json.dumps(_envelope(result=_words("torn"))).encode()[:40])
    assert request.transport is not None
    request.transport.close()
    return response


def _api_behaviours() -> dict[str, Handler]:
    behaviours: dict[str, Handler] = {
        "huge": _huge,
        "gzip-bomb": _gzip_bomb,
        "echo-message": _echo_message,
        "echo-result": _echo_result,
        "echo-html": _echo_html,
        "not-strict": _not_strict,
        "drip": _drip,
        "hang": _hang,
        "torn": _torn,
    }
    for status in REDIRECTS:

        async def redirect(hostile: Hostile, request: web.Request, s: int = status) -> Any:
            return await _redirect(hostile, request, s)

        behaviours[f"redirect-{status}"] = redirect
    return behaviours


#: What the API endpoint can do, by app key.
API_BEHAVIOURS: Final = _api_behaviours()


async def _oauth_echo(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    header = request.headers.get("Authorization", "")
    pair = base64.b64decode(header.partition(" ")[2]).decode()
    uak_id, _, secret = pair.partition(":")
    description = (
        f"got {header}; base64 {header.partition(' ')[2]}; id {uak_id}; secret {secret}; "
        f"pair {pair}"
    )
    document = {"error": "invalid_client", "error_description": description}
    return web.json_response(document, status=401)


async def _oauth_redirect(hostile: Hostile, request: web.Request) -> web.StreamResponse:
    target = f"{hostile.elsewhere_url}/oauth2/token/create?next=LOCATION-QUERY-9d1c"
    return web.Response(status=307, headers={"Location": target})


#: What the OAuth endpoint can do, by path prefix.
OAUTH_BEHAVIOURS: Final[dict[str, Handler]] = {
    "oauth-echo": _oauth_echo,
    "oauth-redirect": _oauth_redirect,
}


def _hostile_app(hostile: Hostile) -> web.Application:
    async def api(request: web.Request) -> web.StreamResponse:
        behaviour = request.match_info["behaviour"]
        hostile.requests.append((behaviour, dict(request.headers)))
        await request.read()
        return await API_BEHAVIOURS[behaviour](hostile, request)

    async def oauth(request: web.Request) -> web.StreamResponse:
        behaviour = request.match_info["behaviour"]
        hostile.requests.append((behaviour, dict(request.headers)))
        await request.read()
        return await OAUTH_BEHAVIOURS[behaviour](hostile, request)

    app = web.Application()
    app.router.add_post("/v1.1/appkeys/{behaviour}/general", api)
    app.router.add_post("/v1.1/appkeys/{behaviour}/general/cropping", api)
    app.router.add_post("/{behaviour}/oauth2/token/{action}", oauth)
    return app


def _elsewhere_app(hostile: Hostile) -> web.Application:
    async def thief(request: web.Request) -> web.StreamResponse:
        hostile.elsewhere.append(dict(request.headers))
        if "oauth2" in request.path:
            document = {"access_token": "stolen-0000", "token_type": "Bearer", "expires_in": 60}
            return web.json_response(document)
        return web.json_response(_envelope(result=_words("answer", "from", "elsewhere")))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", thief)
    return app


async def _start(app: web.Application, stack: contextlib.AsyncExitStack) -> str:
    # No access log: a test's output stays its own.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


@contextlib.asynccontextmanager
async def running_hostile() -> AsyncIterator[Hostile]:
    """Run the hostile server, the other origin and the silent socket."""
    silent_connections: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent_connections.append(writer)  # kept open, never read, never answered

    async with contextlib.AsyncExitStack() as stack:
        silent_server = await asyncio.start_server(silent, "127.0.0.1", 0)
        stack.push_async_callback(silent_server.wait_closed)
        stack.callback(silent_server.close)

        def close_writers() -> None:
            for writer in silent_connections:
                writer.close()

        stack.callback(close_writers)
        hostile = Hostile(
            base_url="", elsewhere_url="", silent_url=_socket_url(silent_server.sockets[0])
        )
        hostile.elsewhere_url = await _start(_elsewhere_app(hostile), stack)
        hostile.base_url = await _start(_hostile_app(hostile), stack)
        yield hostile


def _socket_url(sock: Any) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"
