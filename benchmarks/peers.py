"""The peers ocr-async is measured against, each as small as it can honestly be.

Run as ``python -m benchmarks.peers KIND BASE_URL LIST OUT N``: ``LIST``
names one image file a line; one JSON line per image goes to ``OUT`` (the
answer's envelope, as ocr-async writes one record per input). Each peer
sends the same multipart body ocr-async sends (one ``image`` part) with the
same headers, ``N`` requests in flight at once. ``KIND`` is one of:

* ``aiohttp``: one session, ``asyncio.gather`` over every image behind a
  semaphore, files read and lines written inline. No retries, no checks, no
  rate control: the ceiling of the stack ocr-async is built on.
* ``aiohttp-thread``: the same, each file read in a worker thread
  (``asyncio.to_thread``), as ocr-async reads them: disk I/O off the loop.
* ``requests``: a ``ThreadPoolExecutor`` of ``N`` threads, one
  ``requests.Session`` per thread, the multipart built by ``files=``.
* ``library``: ocr-async itself, as a script would use it:
  ``ocr_async.recognize_many`` over the paths, each record written with
  ``ocr_async.outputs.jsonl.encode_record``.

Each kind imports only what it uses, so that a bare loop carries no more
modules than a bare script would.

The third peer, ``xargs -P N curl``, needs no Python: see :func:`curl_argv`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from benchmarks import APPKEY, TOKEN

HEADERS = {"X-NHN-Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
BOUNDARY = "bench-boundary-5f0c1d2e"
#: The peers :func:`main` runs, and the module each needs, imported before
#: the clock starts.
KINDS = {
    "aiohttp": "aiohttp",
    "aiohttp-thread": "aiohttp",
    "requests": "requests",
    "library": "ocr_async",
}


def endpoint(base_url: str) -> str:
    """The ``/general`` URL on ``base_url``."""
    return f"{base_url}/v1.1/appkeys/{APPKEY}/general"


def multipart(image: bytes) -> bytes:
    """The body ocr-async sends for a PNG: one ``image`` part."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="image"; filename="image.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode("ascii")
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode("ascii")


def curl_argv(base_url: str, list_path: Path, concurrency: int) -> list[str]:
    """``xargs -P N curl``: one curl process per image, ``N`` at a time.

    curl's ``-F image=@file`` builds the multipart; ``-w '\\n'`` ends each
    answer with a newline so the output is JSONL.
    """
    return [
        "xargs", "-a", str(list_path), "-d", "\n", "-P", str(concurrency), "-I", "{}",
        "curl", "-sS", "-w", "\\n",
        "-H", f"X-NHN-Authorization: Bearer {TOKEN}",
        "-H", "Accept: application/json",
        "-F", "image=@{};type=image/png",
        endpoint(base_url),
    ]  # fmt: skip


def _line(path: str, answer: Any, out: TextIO) -> None:
    out.write(json.dumps({"source": path, "answer": answer}) + "\n")


async def aiohttp_loop(
    base_url: str, paths: Sequence[str], concurrency: int, out: TextIO, *, threaded: bool = False
) -> None:
    """The bare aiohttp loop: a semaphore and ``gather``; ``threaded`` reads in a thread."""
    import aiohttp

    url = endpoint(base_url)
    headers = {**HEADERS, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(path: str) -> None:
            async with semaphore:
                if threaded:
                    image = await asyncio.to_thread(Path(path).read_bytes)
                else:
                    # Read inline, as a short script does: tiny files, page cache.
                    image = Path(path).read_bytes()  # noqa: ASYNC240
                body = multipart(image)
                async with session.post(url, data=body, headers=headers) as response:
                    _line(path, await response.json(), out)

        await asyncio.gather(*(one(path) for path in paths))


def requests_pool(base_url: str, paths: Sequence[str], concurrency: int, out: TextIO) -> None:
    """``requests`` in a thread pool: one session per thread."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    url = endpoint(base_url)
    local = threading.local()

    def one(path: str) -> Any:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        with open(path, "rb") as image:
            files = {"image": ("image.png", image, "image/png")}
            return session.post(url, files=files, headers=HEADERS, timeout=60).json()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for path, answer in zip(paths, pool.map(one, paths), strict=True):
            _line(path, answer, out)


async def library_stream(
    base_url: str, paths: Sequence[str], concurrency: int, out: TextIO
) -> None:
    """ocr-async's library: ``recognize_many`` over the paths, a record a line."""
    from ocr_async import recognize_many
    from ocr_async.outputs.jsonl import encode_record

    records = recognize_many(
        paths, appkey=APPKEY, token=TOKEN, base_url=base_url, concurrency=concurrency
    )
    async for record in records:
        out.write(encode_record(record).decode("utf-8"))


def _paths(list_path: str) -> Iterator[str]:
    with open(list_path, encoding="utf-8") as handle:
        yield from (line.rstrip("\n") for line in handle if line.strip())


def main(argv: Sequence[str]) -> None:
    """``peers.py KIND BASE_URL LIST OUT N``."""
    kind, base_url, list_path, out_path, concurrency = argv
    if kind not in KINDS:
        raise SystemExit(f"unknown peer {kind!r}: one of {', '.join(KINDS)}")
    importlib.import_module(KINDS[kind])
    paths = list(_paths(list_path))
    # Timed from here, as ocr-async times its summary: start-up and imports
    # excluded.
    started = time.perf_counter()
    n = int(concurrency)
    with open(out_path, "w", encoding="utf-8") as out:
        if kind == "requests":
            requests_pool(base_url, paths, n, out)
        elif kind == "library":
            asyncio.run(library_stream(base_url, paths, n, out))
        else:
            threaded = kind == "aiohttp-thread"
            asyncio.run(aiohttp_loop(base_url, paths, n, out, threaded=threaded))
    elapsed = time.perf_counter() - started
    print(f"{len(paths) / elapsed:.1f} images/s over {elapsed:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
