"""Running the emulator on a real local socket.

:func:`running_emulator` is what tests and benchmarks use (an ephemeral
port, torn down on exit); :func:`serve_forever` is what ``ocr-async serve``
uses. Both listen on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from ocr_async.emulator.handlers import create_app
from ocr_async.emulator.state import STATS_KEY, EmulatorConfig, EmulatorStats

__all__ = ["RunningEmulator", "find_free_port", "running_emulator", "serve_forever"]

logger = logging.getLogger(__name__)

# In-flight calls get this long to finish when the emulator stops; tests with
# a long ``latency`` should not hold their teardown for aiohttp's 60 s.
_SHUTDOWN_TIMEOUT: Final = 2.0


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    """A started emulator: where it listens and its live counters."""

    #: ``http://host:port``, without a trailing slash.
    base_url: str
    host: str
    port: int
    #: The live counters (the same object the app updates).
    stats: EmulatorStats
    config: EmulatorConfig
    app: web.Application = field(repr=False)

    def url(self, path: str) -> str:
        """An absolute URL on this emulator, e.g. ``url("/samples/hello.png")``."""
        return f"{self.base_url}/{path.lstrip('/')}"

    def sample_url(self, name: str) -> str:
        """The URL of a bundled sample image (for ``imageUrl`` requests)."""
        return self.url(f"/samples/{name}")


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


@asynccontextmanager
async def running_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningEmulator]:
    """Run the emulator for the duration of an ``async with`` block.

    ``port=0`` picks a free ephemeral port; the one chosen is in the result.
    """
    config = config or EmulatorConfig()
    app = create_app(config)
    # No access log: the emulator serves benchmarks at thousands of requests/s.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield RunningEmulator(
            base_url=_base_url(host, bound_port),
            host=host,
            port=bound_port,
            stats=app[STATS_KEY],
            config=config,
            app=app,
        )
    finally:
        await runner.cleanup()


def find_free_port(lo: int, hi: int, *, host: str = "127.0.0.1") -> int:
    """A port in ``lo..hi`` (inclusive) that could be bound on ``host`` just now.

    Needed because the API only fetches ``imageUrl`` ports 80, 443 and
    10000-12000, so a server that hosts images for URL-mode requests must sit
    in that range. The search starts at a random offset so that concurrent
    test runs rarely race for the same port. Raises ``OSError`` when none is
    free.
    """
    if not 0 < lo <= hi <= 65535:
        raise ValueError(f"bad port range {lo}..{hi}")
    count = hi - lo + 1
    start = random.randrange(count)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for i in range(count):
        port = lo + (start + i) % count
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(errno.EADDRINUSE, f"no free port in {lo}..{hi} on {host}")


async def serve_forever(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    on_ready: Callable[[RunningEmulator], None] | None = None,
) -> None:
    """Serve until cancelled (Ctrl-C in ``ocr-async serve``).

    Prints nothing: ``on_ready`` is called once the socket is bound (the CLI
    prints ``emulator.base_url`` from it), and the address is logged at INFO.
    """
    async with running_emulator(config, host=host, port=port) as emulator:
        logger.info("emulator listening on %s", emulator.base_url)
        if on_ready is not None:
            on_ready(emulator)
        await asyncio.Event().wait()  # only cancellation ends this
