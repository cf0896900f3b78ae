"""Tests for ocr_async.emulator.server: running the emulator on a real loopback socket."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from ocr_async.emulator import (
    EmulatorConfig,
    RunningEmulator,
    find_free_port,
    running_emulator,
    serve_forever,
)


def test_find_free_port_in_range() -> None:
    port = find_free_port(10000, 12000)
    assert 10000 <= port <= 12000


async def test_find_free_port_raises_when_range_is_taken() -> None:
    async with running_emulator() as emu:
        assert emu.base_url == f"http://127.0.0.1:{emu.port}"
        with pytest.raises(OSError, match="no free port"):
            find_free_port(emu.port, emu.port)
    with pytest.raises(ValueError, match="bad port range"):
        find_free_port(12000, 10000)


async def test_serve_forever_until_cancelled() -> None:
    ready: list[RunningEmulator] = []
    task = asyncio.create_task(
        serve_forever(EmulatorConfig(), "127.0.0.1", 0, on_ready=ready.append)
    )
    for _ in range(500):
        if ready:
            break
        await asyncio.sleep(0.01)
    assert ready
    async with aiohttp.ClientSession() as session:
        async with session.get(ready[0].url("healthz")) as r:
            assert r.status == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(ready[0].url("healthz"))
