"""Hostile answers: peak memory of a run, and how long the event loop stalls.

    python -m benchmarks.hostile            # about a minute

Two measurements against a hostile stand-in API in a child process
(``python -m benchmarks.hostile serve PORT``), whose app key picks the answer:

1. ``ocr-async run`` on one image, in a child process, for each answer:
   its wall time, its peak RSS (the kernel's high-water mark) and the
   record's outcome. ``small`` is the baseline.
2. In this process, one client sends a big valid answer's request and, while
   that answer is parsed, small requests one after another; a heartbeat task
   notes the longest gap of the event loop. Once as shipped (big answers
   parsed in a worker thread), once with every answer parsed on the loop
   (as before), in the same run.

See docs/benchmarks.md ("Hostile answers") for the figures.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Final

from aiohttp import web

import ocr_async.client
from benchmarks.harness import HOST, _server, child_env, machine, ocr_async_run, run_child
from ocr_async import OcrClient
from ocr_async.emulator import find_free_port, make_png

#: Words in the big valid answer: about 58 MB of JSON, under the 64 MiB cap.
BIG_WORDS: Final = 400_000
_MIB: Final = 1024 * 1024
_HUGE_BYTES: Final = 500 * _MIB
_BOMB_BYTES: Final = 4 * _MIB  # compressed; about 4 GiB of zeros inflated
_SMALL: Final = (
    b'{"header":{"isSuccessful":true,"resultCode":0,"resultMessage":"SUCCESS"},'
    b'"result":{"listOfInferTexts":[{"inferTexts":[{"value":"ok","conf":0.9}]}]}}'
)


def big_answer(words: int) -> bytes:
    """A valid success with ``words`` words, each with its box, in lines of 10."""
    lines = [
        {"inferTexts": [{"value": f"word{n + i}", "conf": 0.9} for i in range(10)]}
        for n in range(0, words, 10)
    ]
    box = {"x1": 1, "y1": 2, "x2": 3, "y2": 2, "x3": 3, "y3": 4, "x4": 1, "y4": 4}
    boxes = [{"boundingBoxes": [box] * 10} for _ in range(0, words, 10)]
    header = {"isSuccessful": True, "resultCode": 0, "resultMessage": "SUCCESS"}
    result = {"listOfInferTexts": lines, "listOfBoundingBoxes": boxes}
    return json.dumps({"header": header, "result": result}).encode()


def create_app() -> web.Application:
    """The hostile stand-in: ``POST /v1.1/appkeys/{answer}/general``; ``GET /healthz``."""
    big = big_answer(BIG_WORDS)

    async def stream(
        request: web.Request, chunks: list[bytes], encoding: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if encoding:
            response.headers["Content-Encoding"] = encoding
        try:
            await response.prepare(request)
            for chunk in chunks:
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        return response

    async def ocr(request: web.Request) -> web.StreamResponse:
        await request.read()
        answer = request.match_info["answer"]
        if answer == "huge":
            piece = b"x" * _MIB
            head = b'{"header": {"resultMessage": "'
            return await stream(request, [head] + [piece] * (_HUGE_BYTES // _MIB), "")
        if answer == "bomb":
            squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)
            first = squeezer.compress(b"\0" * (8 * _MIB)) + squeezer.flush(zlib.Z_SYNC_FLUSH)
            again = squeezer.compress(b"\0" * (8 * _MIB)) + squeezer.flush(zlib.Z_SYNC_FLUSH)
            return await stream(request, [first] + [again] * (_BOMB_BYTES // len(again)), "gzip")
        body = big if answer == "words" else _SMALL
        return web.Response(body=body, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1.1/appkeys/{answer}/general", ocr)
    app.router.add_get("/healthz", health)
    return app


def run_cases(base_url: str, folder: Path) -> None:
    """Section 1: the real command line on each answer, in a child process."""
    image = folder / "scan.png"
    image.write_bytes(make_png("hostile"))
    print(f"{'answer':<8} {'wall s':>7} {'peak RSS MB':>12}  record")
    for answer in ("small", "huge", "bomb", "words"):
        out = folder / f"{answer}.jsonl"
        argv = ocr_async_run(base_url, out, str(image), "--appkey", answer, "--timeout", "120")
        run = run_child([*argv, "--max-attempts", "1"])
        record = json.loads(out.read_bytes())
        outcome = "ok" if record["ok"] else f"{record['error']['code']}"
        print(f"{answer:<8} {run.wall_s:>7.1f} {run.peak_rss_mb:>12.0f}  {outcome}")


async def loop_stall(base_url: str, *, inline: bool) -> tuple[float, int, float]:
    """Section 2: (longest loop gap in s, small requests done meanwhile, big request s)."""
    saved = ocr_async.client.PARSE_INLINE_LIMIT
    if inline:
        ocr_async.client.PARSE_INLINE_LIMIT = sys.maxsize  # every answer on the loop
    longest = 0.0
    done = 0
    image = make_png("x")
    try:
        async with (
            OcrClient(
                appkey="words", token="bench-token", base_url=base_url, timeout=300
            ) as big_client,
            OcrClient(appkey="small", token="bench-token", base_url=base_url) as small,
        ):

            async def heartbeat() -> None:
                nonlocal longest
                while True:
                    before = time.perf_counter()
                    await asyncio.sleep(0.005)
                    longest = max(longest, time.perf_counter() - before - 0.005)

            async def smalls() -> None:
                nonlocal done
                while True:
                    await small.recognize(image)
                    done += 1

            beat = asyncio.create_task(heartbeat())
            started = time.perf_counter()
            big = asyncio.create_task(big_client.recognize(image))
            others = asyncio.create_task(smalls())
            await big
            took = time.perf_counter() - started
            await asyncio.sleep(0.05)  # the heartbeat notes a stall that just ended
            beat.cancel()
            others.cancel()
            await asyncio.gather(beat, others, return_exceptions=True)
    finally:
        ocr_async.client.PARSE_INLINE_LIMIT = saved
    return longest, done, took


def main() -> None:
    """Run both sections against a hostile stand-in in a child process."""
    print(machine())
    port = find_free_port(10000, 12000)
    base_url = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "benchmarks.hostile", "serve", str(port)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        _server(argv, f"{base_url}/healthz", "the hostile stand-in"),
    ):
        assert child_env()  # the runs use the benchmark's credentials
        run_cases(base_url, Path(tmp))
        print(f"\nevent loop during a {BIG_WORDS:,}-word answer (small requests alongside)")
        print(f"{'parsed':<14} {'longest stall s':>16} {'small done':>11} {'big answer s':>13}")
        for inline in (True, False):
            longest, done, took = asyncio.run(loop_stall(base_url, inline=inline))
            where = "on the loop" if inline else "in a thread"
            print(f"{where:<14} {longest:>16.2f} {done:>11} {took:>13.1f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        web.run_app(create_app(), host=HOST, port=int(sys.argv[2]), print=None, access_log=None)
    else:
        main()
