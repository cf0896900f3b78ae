"""A stand-in API that notes when the first OCR call arrives (the start-up benchmark).

``python -m benchmarks.stub PORT OUT`` serves on 127.0.0.1:PORT. A POST that
finds no file OUT writes its arrival time there, ``time.monotonic()``
(CLOCK_MONOTONIC, one clock for every process on the machine): delete OUT
before each measured run. Every POST is then held for :data:`HOLD` seconds,
so a client sends no more than its first round, and answered with a valid
success envelope.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from aiohttp import web

from benchmarks.harness import HOST

#: Seconds each call is held before its answer.
HOLD = 5.0
_ANSWER = (
    '{"header":{"isSuccessful":true,"resultCode":0,"resultMessage":"SUCCESS"},'
    '"result":{"fileType":"png","listOfInferTexts":[],"listOfBoundingBoxes":[],'
    '"resolution":"low"}}'
)


def create_app(out: Path) -> web.Application:
    """The stub: ``POST`` anywhere notes a first arrival; ``GET /healthz``."""

    async def ocr(request: web.Request) -> web.Response:
        arrived = time.monotonic()
        # One stat a call, and every call is held for seconds anyway.
        if not out.exists():  # noqa: ASYNC240
            # Written whole, then renamed: a reader never sees half a number.
            partial = out.with_suffix(".partial")
            partial.write_text(repr(arrived), encoding="ascii")
            os.replace(partial, out)
        await asyncio.sleep(HOLD)
        return web.Response(text=_ANSWER, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{path:.*}", ocr)
    app.router.add_get("/healthz", health)
    return app


def main(argv: list[str]) -> None:
    """``stub.py PORT OUT``."""
    port, out = int(argv[0]), Path(argv[1])
    web.run_app(create_app(out), host=HOST, port=port, print=None, access_log=None)


if __name__ == "__main__":
    main(sys.argv[1:])
