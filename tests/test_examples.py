"""The example programs in examples/, run against the emulator.

``examples/aiohttp_backend.py`` is loaded as a module and served on a
loopback port, exactly as its ``main()`` serves it; one test also runs it as
a program, and one under gunicorn with three worker processes sharing one
quota over Redis. The emulator answers slowly where a test needs a call to be in
flight when the caller gives up.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from conftest import APPKEY, TOKEN, RedisServer, emulator_config, free_port
from prometheus_client.parser import text_string_to_metric_families

from ocr_async import OcrClient
from ocr_async.emulator import RunningEmulator, make_png, running_emulator
from ocr_async.shared_quota import store_key
from ocr_async.transport import AiohttpTransport

ROOT = Path(__file__).resolve().parent.parent
BACKEND_PATH = ROOT / "examples" / "aiohttp_backend.py"


def load_example(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


backend = load_example(BACKEND_PATH)


class Backend:
    """The example app served on a loopback port, and a session to call it."""

    def __init__(self, app: web.Application, runner: web.AppRunner, session: aiohttp.ClientSession):
        self.app = app
        self.runner = runner
        self.session = session
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/ocr"

    @property
    def counters(self) -> Any:
        return self.app[backend.COUNTERS]

    @property
    def client(self) -> OcrClient:
        client: OcrClient = self.app[backend.OCR_CLIENT]
        return client

    def busy_connections(self) -> int:
        """Connections of the shared client now in use (aiohttp has no public count)."""
        transport = self.client.transport
        assert isinstance(transport, AiohttpTransport)
        session = transport.session
        assert session is not None
        connector = session.connector
        assert connector is not None
        return len(connector._acquired)

    async def post(self, data: bytes, field: str = "image") -> tuple[int, dict[str, Any]]:
        form = aiohttp.FormData()
        form.add_field(field, data, filename="scan.png", content_type="image/png")
        async with self.session.post(self.url, data=form) as response:
            return response.status, await response.json()


class Backends:
    """Starts the example app against an emulator; stops everything it started."""

    def __init__(self) -> None:
        self.started: list[Backend] = []

    async def start(self, emulator: RunningEmulator, **overrides: Any) -> Backend:
        options: dict[str, Any] = {
            "appkey": APPKEY,
            "token": TOKEN,
            "base_url": emulator.base_url,
            **overrides,
        }
        app = backend.create_app(backend.Settings(**options))
        runner = await backend.start(app, "127.0.0.1", 0)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        started = Backend(app, runner, session)
        self.started.append(started)
        return started

    async def close(self) -> None:
        for started in self.started:
            await started.session.close()
            await started.runner.cleanup()


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    started = Backends()
    try:
        yield started
    finally:
        await started.close()


async def until(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not reached in {seconds} s")


# --- one client shared by concurrent handlers --------------------------------------------


async def test_fifty_concurrent_requests_share_one_client_within_its_concurrency(
    backends: Backends,
) -> None:
    async with running_emulator(emulator_config(latency=0.05)) as emulator:
        server = await backends.start(emulator, concurrency=8)
        texts = [f"request {n}" for n in range(50)]

        answers = await asyncio.gather(*(server.post(make_png(text)) for text in texts))

    assert [status for status, _ in answers] == [200] * 50
    assert [body["text"] for _, body in answers] == texts
    assert emulator.stats.requests == 50
    # Eight calls at most reached the API at once, whatever the number of requests.
    assert emulator.stats.peak_in_flight == 8
    assert server.counters.ok == 50
    assert server.busy_connections() == 0


async def test_the_answer_carries_lines_words_and_boxes(
    backends: Backends, emulator: RunningEmulator
) -> None:
    server = await backends.start(emulator)
    status, body = await server.post(make_png("stella artois\nbelgium"))

    assert status == 200
    assert body["text"] == "stella artois\nbelgium"
    assert body["lines"] == ["stella artois", "belgium"]
    assert [word["value"] for word in body["words"]] == ["stella", "artois", "belgium"]
    assert all(len(word["box"]) == 8 for word in body["words"])
    assert body["attempts"] == 1


# --- deadlines and callers that leave ----------------------------------------------------


async def test_a_call_past_its_deadline_answers_504_and_is_cancelled(backends: Backends) -> None:
    async with running_emulator(emulator_config(latency=1.0)) as emulator:
        server = await backends.start(emulator, timeout=0.2)
        started = asyncio.get_running_loop().time()

        status, body = await server.post(make_png("too slow"))

        assert asyncio.get_running_loop().time() - started < 0.9
        assert status == 504
        assert body["error"]["code"] == "timeout"
        assert server.counters.timed_out == 1
        # The call to the API was abandoned, not left running on a pooled connection.
        assert server.busy_connections() == 0
        await until(lambda: emulator.stats.in_flight == 0)
        assert emulator.stats.disconnected == 1
        assert emulator.stats.answered_ok == 0


async def test_a_caller_that_hangs_up_cancels_the_ocr_call(backends: Backends) -> None:
    async with running_emulator(emulator_config(latency=1.0)) as emulator:
        # One call at a time: a leaked slot or connection would block the next one.
        server = await backends.start(emulator, concurrency=1)
        caller = asyncio.create_task(server.post(make_png("never read")))
        await until(lambda: emulator.stats.in_flight == 1)

        caller.cancel()  # the caller's connection to the backend closes
        with pytest.raises(asyncio.CancelledError):
            await caller

        await until(lambda: server.counters.cancelled == 1)
        # Cancelled while the emulator was still working on it: nothing was answered.
        assert server.busy_connections() == 0
        await until(lambda: emulator.stats.in_flight == 0)
        assert emulator.stats.disconnected == 1
        assert emulator.stats.answered_ok == 0

        async with asyncio.timeout(5):
            status, body = await server.post(make_png("the next one"))
        assert status == 200
        assert body["text"] == "the next one"


# --- bad requests ------------------------------------------------------------------------------


async def test_bad_uploads_get_clear_answers(backends: Backends, emulator: RunningEmulator) -> None:
    server = await backends.start(emulator, max_upload=10_000)
    async with server.session.post(server.url, data=b"raw bytes") as response:
        not_multipart = response.status
    wrong_field = await server.post(make_png("x"), field="file")
    text = await server.post(b"plain text, not an image")
    empty = await server.post(b"")
    too_big = await server.post(make_png("big", width=400, height=400) + b"\0" * 20_000)

    assert not_multipart == 400
    assert wrong_field[0] == 400
    assert text[0] == 422
    assert text[1]["error"]["code"] == 4000003
    assert empty[0] == 422
    assert empty[1]["error"]["code"] == 4000004
    assert too_big[0] == 413
    assert emulator.stats.requests == 0  # nothing bad reached the API


async def test_refused_credentials_answer_502(
    backends: Backends, emulator: RunningEmulator
) -> None:
    server = await backends.start(emulator, token="not-the-right-token")
    status, body = await server.post(make_png("x"))

    assert status == 502
    assert body["error"]["code"] == 4010006


# --- as a program --------------------------------------------------------------------------------


async def test_the_metrics_count_the_requests_to_the_ocr_api(
    backends: Backends, emulator: RunningEmulator
) -> None:
    started = await backends.start(emulator)
    for _ in range(3):
        assert (await started.post(make_png("counted")))[0] == 200
    async with started.session.get(started.url.replace("/ocr", "/metrics")) as response:
        assert response.status == 200
        text = await response.text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    ok = (("outcome", "ok"),)
    assert samples[("ocr_async_request_duration_seconds_count", ok)] == 3
    assert samples[("ocr_async_requests_in_flight", ())] == 0
    assert ("ocr_async_rate_calls_per_second", ()) in samples


async def test_the_example_runs_as_a_program(
    unused_tcp_port: int, emulator: RunningEmulator
) -> None:
    env = {
        **os.environ,
        "NHN_OCR_APPKEY": APPKEY,
        "NHN_OCR_TOKEN": TOKEN,
        "NHN_OCR_BASE_URL": emulator.base_url,
    }
    for name in ("NHN_UAK_ID", "NHN_UAK_SECRET", "NHN_OCR_TOKEN_FILE"):
        env.pop(name, None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BACKEND_PATH),
        "--port",
        str(unused_tcp_port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10):
            banner = await process.stdout.readline()
        assert b"serving POST" in banner
        form = aiohttp.FormData()
        form.add_field("image", make_png("hello from a process"), filename="scan.png")
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{unused_tcp_port}/ocr", data=form) as response,
        ):
            assert response.status == 200
            assert (await response.json())["text"] == "hello from a process"
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- under gunicorn, several workers on one quota ---------------------------------------------


async def leases_held(url: str, key: str) -> int:
    """Members holding a lease that has not lapsed, in the group whose keys start with ``key``."""
    store = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        seconds, micros = await store.time()  # leases expire on Redis's clock
        return await store.zcount(f"{key}:leases", seconds + micros / 1e6, "+inf")
    finally:
        await store.aclose()


async def until_held(url: str, key: str, members: int, seconds: float) -> None:
    """Wait until exactly ``members`` hold a lease (polling; fails after ``seconds``)."""
    async with asyncio.timeout(seconds):
        while True:
            if await leases_held(url, key) == members:
                return
            await asyncio.sleep(0.1)


@pytest.mark.timeout(60)
async def test_gunicorn_workers_share_one_quota_over_redis(redis_server: RedisServer) -> None:
    gunicorn = shutil.which("gunicorn", path=os.path.dirname(sys.executable))
    if gunicorn is None:
        pytest.skip("gunicorn is not installed (the 'test' extra has it)")
    workers, requests = 3, 150
    port = free_port()
    config = emulator_config(quota_rps=30.0, quota_burst=5, latency=0.03)
    async with running_emulator(config) as emulator:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("NHN_", "OCR_ASYNC_"))},
            "NHN_OCR_APPKEY": APPKEY,
            "NHN_OCR_TOKEN": TOKEN,
            "NHN_OCR_BASE_URL": emulator.base_url,
            "OCR_ASYNC_SHARED_QUOTA": redis_server.url,
        }
        argv = [gunicorn, "--pythonpath", str(BACKEND_PATH.parent), "aiohttp_backend:gunicorn_app",
                "--worker-class", "aiohttp.GunicornWebWorker", "--workers", str(workers),
                "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "10",
                "--no-control-socket"]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        group = store_key(APPKEY)
        try:
            # Each worker joins the group as its app starts, before it serves.
            await until_held(redis_server.url, group, workers, seconds=30)
            # A new connection a request, so that every worker process takes some.
            connector = aiohttp.TCPConnector(force_close=True, limit=30)
            png = make_png("one quota")
            async with aiohttp.ClientSession(connector=connector) as session:

                async def call() -> int:
                    form = aiohttp.FormData()
                    form.add_field("image", png, filename="scan.png", content_type="image/png")
                    url = f"http://127.0.0.1:{port}/ocr"
                    async with session.post(url, data=form) as response:
                        return response.status

                statuses = await asyncio.gather(*(call() for _ in range(requests)))
            members = await leases_held(redis_server.url, group)
            store = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
            state = await store.hgetall(f"{group}:state")
            await store.aclose()
        finally:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await process.wait()
        stats = emulator.stats
    assert statuses == [200] * requests
    assert members == workers  # all three still in one group
    assert stats.answered_ok == requests
    # One controller for the three: the group measured the whole quota (each
    # member measures its part, scaled up by its share), not a third of it...
    assert 15.0 <= float(state["estimate"]) <= 60.0
    # ... and the start-up's probe cost a few refusals (the share refused over
    # a long run, shared and alone, is in docs/benchmarks.md).
    assert stats.rate_limited <= 0.3 * stats.requests
    # Gone from the group once stopped: each leaves as its app shuts down (or,
    # had one been stuck, its lease would lapse).
    await until_held(redis_server.url, group, 0, seconds=10)
