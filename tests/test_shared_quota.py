"""Tests for ocr_async.shared_quota against a real redis-server.

Each test gets its own redis-server on a free loopback port (the
``redis_server`` fixture in conftest.py; the tests skip without Debian's
``redis-server``). The Lua scripts are exercised directly; the coordinator
with real clients (:class:`~ocr_async.OcrClient`, its controller joined to
the group) against the emulator with a quota, members as tasks of this
process and, for ``kill -9``, as a child process. Heartbeats are 0.2 s and
leases 0.6 s here, so that leases lapse quickly; assertions are on counts
and on states reached before generous deadlines, never on how long
something took.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import redis.asyncio as aioredis
from conftest import RedisServer, free_port
from redis.exceptions import ConnectionError as RedisConnectionError

from ocr_async import OcrClient
from ocr_async.emulator import EmulatorConfig, RunningEmulator, make_png, running_emulator
from ocr_async.errors import ConfigurationError
from ocr_async.limits import RateController
from ocr_async.retry import RetryPolicy
from ocr_async.shared_quota import (
    BEAT,
    CUT,
    LEAVE,
    GroupState,
    SharedQuota,
    SharedQuotaUnavailableError,
    store_key,
)

APPKEY = "shared-quota-test-appkey"
HEARTBEAT = 0.2
LEASE = 0.6
# A refused call never fails an image here: the tests are about the rate.
RETRY = RetryPolicy(max_throttled=100_000)


def member(url: str, name: str, *, appkey: str = APPKEY, reconnects: int = 2) -> SharedQuota:
    return SharedQuota(
        url, appkey, member=name, heartbeat=HEARTBEAT, lease=LEASE, reconnects=reconnects
    )


async def wait_until(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            pytest.fail(f"not reached within {deadline:g} s")
        await asyncio.sleep(0.05)


# -- the Lua scripts, called directly -----------------------------------------


class Scripts:
    """The three scripts on one group's keys, as a member would call them."""

    def __init__(self, client: aioredis.Redis, appkey: str = APPKEY) -> None:
        prefix = store_key(appkey)
        self.keys = [f"{prefix}:state", f"{prefix}:leases", f"{prefix}:wants"]
        self._beat = client.register_script(BEAT)
        self._cut = client.register_script(CUT)
        self._leave = client.register_script(LEAVE)

    async def beat(self, name: str, want: float, lease: float = 60.0) -> GroupState:
        raw = await self._beat(keys=self.keys, args=[name, lease, want, 10.0, 0.05, 1.0, 600])
        return GroupState.parse(raw)

    async def cut(self, name: str, known: int, estimate: float, hold: float) -> GroupState:
        raw = await self._cut(keys=self.keys, args=[name, known, estimate, hold, 0.05, 600])
        return GroupState.parse(raw)

    async def leave(self, name: str) -> int:
        return int(await self._leave(keys=self.keys, args=[name]))


@pytest.fixture
async def scripts(redis_server: RedisServer) -> AsyncIterator[Scripts]:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        yield Scripts(client)
    finally:
        await client.aclose()


def test_keys_are_the_app_key_hashed() -> None:
    key = store_key(APPKEY)
    assert APPKEY not in key
    assert key.startswith("ocr-async:quota:{")
    assert key.endswith("}")
    assert len(key) == len("ocr-async:quota:{}") + 16
    assert store_key("another-appkey") != key
    assert store_key(APPKEY) == key  # the same key on every machine


async def test_a_cut_applies_once_per_epoch(scripts: Scripts) -> None:
    await scripts.beat("a", -1)
    first = await scripts.cut("a", known=0, estimate=40.0, hold=1.0)
    # Another member refused in the same burst knew epoch 0 too: its cut is
    # the same event, answered with the one already made.
    second = await scripts.cut("b", known=0, estimate=20.0, hold=1.0)
    assert (first.flag, first.epoch, first.estimate) == (True, 1, 40.0)
    assert (second.flag, second.epoch, second.estimate) == (False, 1, 40.0)
    assert not first.slow_start
    assert first.base == pytest.approx(40.0 * 0.95)  # the hold, a margin under
    assert first.since == pytest.approx(first.now + 1.0)  # probing after the hold
    third = await scripts.cut("b", known=1, estimate=30.0, hold=2.0)
    assert (third.flag, third.epoch, third.estimate) == (True, 2, 30.0)


async def test_the_rate_is_split_max_min_fairly_by_demand(scripts: Scripts) -> None:
    await scripts.beat("hungry", -1)
    await scripts.cut("hungry", known=0, estimate=100.0, hold=600.0)  # G holds at 95/s
    await scripts.beat("modest", 5.0)  # wants 5/s, less than an equal part
    await scripts.beat("idle", 0.0)
    hungry = await scripts.beat("hungry", -1)
    modest = await scripts.beat("modest", 5.0)
    idle = await scripts.beat("idle", 0.0)
    assert hungry.members == 3
    assert idle.fraction == 0.0  # an idle member holds no share
    assert modest.fraction * 95.0 == pytest.approx(5.0)
    assert hungry.fraction * 95.0 == pytest.approx(90.0)  # all the rest
    # Two hungry members split what the modest one leaves.
    again = await scripts.beat("idle", -1)
    assert again.fraction * 95.0 == pytest.approx(45.0)


async def test_leaving_and_lapsed_leases_return_the_share(scripts: Scripts) -> None:
    await scripts.beat("a", -1)
    await scripts.beat("b", -1)
    await scripts.beat("c", -1, lease=0.3)
    assert (await scripts.beat("a", -1)).fraction == pytest.approx(1 / 3)
    assert await scripts.leave("b") == 2  # at once
    await asyncio.sleep(0.5)  # c's lease lapses, unrenewed (as after kill -9)
    state = await scripts.beat("a", -1)
    assert (state.members, state.fraction) == (1, 1.0)


async def test_a_group_whose_leases_all_lapsed_starts_again_from_its_estimate(
    scripts: Scripts,
) -> None:
    await scripts.beat("a", -1, lease=0.2)
    await scripts.cut("a", known=0, estimate=50.0, hold=1.0)
    await asyncio.sleep(0.3)
    state = await scripts.beat("b", -1)
    assert state.members == 1
    assert state.estimate == 50.0  # what was measured is kept...
    assert state.base == pytest.approx(50.0 * 0.95)  # ...held, then probed again
    assert state.since == pytest.approx(state.now + 1.0)


# -- joining, and failing to -------------------------------------------------------


async def test_redis_down_at_start_is_a_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    controller = RateController()
    shared = member(url, "early")
    with pytest.raises(SharedQuotaUnavailableError) as caught:
        await shared.start(controller)
    assert isinstance(caught.value, ConfigurationError)  # the CLI's exit 2
    message = str(caught.value)
    assert url in message
    assert "cannot be reached" in message
    assert controller.coordinator is None


async def test_a_bad_url_or_a_fixed_rate_is_a_configuration_error(
    redis_server: RedisServer,
) -> None:
    with pytest.raises(ConfigurationError, match="bad shared-quota URL"):
        await member("http://127.0.0.1:1/0", "bad").start(RateController())
    with pytest.raises(ConfigurationError, match="adaptive"):
        await member(redis_server.url, "fixed").start(RateController(10.0))
    with pytest.raises(ConfigurationError):
        SharedQuota(redis_server.url, "")


async def test_two_app_keys_on_one_redis_do_not_mix(redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(
            member(redis_server.url, "a").joined(RateController())
        )
        second = await stack.enter_async_context(
            member(redis_server.url, "b", appkey="another").joined(RateController())
        )
        assert first.key != second.key
        assert (first.members, second.members) == (1, 1)
        assert first.fraction == second.fraction == 1.0


# -- members sending through the emulator's quota --------------------------------


@asynccontextmanager
async def quota(rps: float) -> AsyncIterator[RunningEmulator]:
    config = EmulatorConfig(quota_rps=rps, quota_burst=5, latency=0.03)
    async with running_emulator(config) as emulator:
        yield emulator


@asynccontextmanager
async def sending(
    base_url: str, shared: SharedQuota, stop: asyncio.Event, concurrency: int = 8
) -> AsyncIterator[list[int]]:
    """A member whose workers recognize images until ``stop``; yields its count of answers."""
    png = make_png("shared")
    done = [0]
    async with OcrClient(
        appkey=APPKEY, token="t", base_url=base_url, concurrency=concurrency, retry=RETRY
    ) as client:
        assert client.rate_controller is not None
        await shared.start(client.rate_controller)

        async def worker() -> None:
            while not stop.is_set():
                await client.recognize(png)
                done[0] += 1

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            yield done
        finally:
            stop.set()
            await asyncio.gather(*workers)
            await shared.close()


async def test_three_members_share_one_quota(redis_server: RedisServer) -> None:
    images = 100
    png = make_png("three")
    async with quota(60.0) as emulator:
        members = [member(redis_server.url, f"m{i}") for i in range(3)]
        fractions: list[list[float]] = []

        async def run(shared: SharedQuota) -> int:
            async with OcrClient(
                appkey=APPKEY, token="t", base_url=emulator.base_url, concurrency=16, retry=RETRY
            ) as client:
                assert client.rate_controller is not None
                async with shared.joined(client.rate_controller):
                    results = await asyncio.gather(*(client.recognize(png) for _ in range(images)))
            return len(results)

        async def watch() -> None:
            # Once every member is in, and the leases have settled.
            await wait_until(lambda: all(m.members == 3 for m in members))
            await asyncio.sleep(3 * HEARTBEAT)
            fractions.append([m.fraction for m in members])

        watcher = asyncio.create_task(watch())
        done = await asyncio.gather(*(run(m) for m in members))
        await watcher
        stats = emulator.stats
    assert done == [images] * 3  # every image answered
    assert stats.answered_ok == 3 * images
    # One controller for all: few refused (three controllers each probing
    # alone refuse several times more; see docs/benchmarks.md).
    assert stats.rate_limited <= 0.08 * stats.requests
    (shares,) = fractions
    assert sum(shares) == pytest.approx(1.0, abs=0.05)  # the whole rate, no more
    assert all(0.2 <= share <= 0.45 for share in shares)  # split near evenly


CHILD = """
import asyncio, sys
from ocr_async import OcrClient
from ocr_async.retry import RetryPolicy
from ocr_async.emulator import make_png
from ocr_async.shared_quota import SharedQuota

async def main(redis_url: str, base_url: str, appkey: str) -> None:
    png = make_png("victim")
    async with OcrClient(appkey=appkey, token="t", base_url=base_url, concurrency=8,
                         retry=RetryPolicy(max_throttled=100_000)) as client:
        shared = SharedQuota(redis_url, appkey, member="victim", heartbeat=0.2, lease=0.6)
        await shared.start(client.rate_controller)
        print("joined", flush=True)
        while True:
            await asyncio.gather(*(client.recognize(png) for _ in range(8)))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_a_member_killed_with_sigkill_loses_its_share(redis_server: RedisServer) -> None:
    async with quota(60.0) as emulator, AsyncExitStack() as stack:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, redis_server.url, emulator.base_url, APPKEY,
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert child.stdout is not None
            assert await asyncio.wait_for(child.stdout.readline(), 30) == b"joined\n"
            stop = asyncio.Event()
            survivors = [member(redis_server.url, f"s{i}") for i in range(2)]
            for shared in survivors:
                await stack.enter_async_context(sending(emulator.base_url, shared, stop))
            await wait_until(lambda: all(s.members == 3 for s in survivors))
            await asyncio.sleep(3 * HEARTBEAT)
            assert all(s.fraction < 0.45 for s in survivors)  # the victim holds a third
            child.send_signal(signal.SIGKILL)  # no leave: its lease must lapse
            await child.wait()
            # Within the lease and a heartbeat (0.8 s here); the deadline is generous.
            await wait_until(lambda: all(s.members == 2 for s in survivors))
            await wait_until(lambda: all(s.fraction > 0.45 for s in survivors))
            assert sum(s.fraction for s in survivors) == pytest.approx(1.0, abs=0.05)
        finally:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert child.returncode == -signal.SIGKILL


async def test_redis_lost_mid_run_every_image_completes_with_one_warning(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ocr_async.shared_quota")
    images = 60
    png = make_png("lost")
    async with quota(40.0) as emulator:
        members = [member(redis_server.url, f"m{i}") for i in range(2)]

        async def run(shared: SharedQuota) -> int:
            async with OcrClient(
                appkey=APPKEY, token="t", base_url=emulator.base_url, concurrency=8, retry=RETRY
            ) as client:
                assert client.rate_controller is not None
                await shared.start(client.rate_controller)
                try:
                    results = await asyncio.gather(*(client.recognize(png) for _ in range(images)))
                    # The bounded attempts to rejoin run out (0.2 + 0.4 s here).
                    await wait_until(lambda: "still unreachable" in caplog.text)
                finally:
                    await shared.close()
            return len(results)

        async def kill_redis() -> None:
            await wait_until(lambda: emulator.stats.answered_ok >= 30)
            redis_server.stop()

        killer = asyncio.create_task(kill_redis())
        done = await asyncio.gather(*(run(m) for m in members))
        await killer
        stats = emulator.stats
    assert done == [images, images]
    assert stats.answered_ok == 2 * images  # no image lost or failed
    assert all(m.lost and not m.sharing for m in members)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 2  # one per member, not one per failed heartbeat
    assert all("lost the store" in r.getMessage() for r in warnings)


# -- the client built with a URL ------------------------------------------------------


async def test_a_client_given_a_url_joins_when_it_opens_and_leaves_when_it_closes(
    redis_server: RedisServer,
) -> None:
    png = make_png("client")
    async with quota(60.0) as emulator:
        client = OcrClient(
            appkey=APPKEY, token="t", base_url=emulator.base_url, shared_quota=redis_server.url
        )
        shared = client.shared_quota
        assert isinstance(shared, SharedQuota)
        assert not shared.sharing
        async with client:
            assert shared.sharing
            assert shared.members == 1
            assert (await client.recognize(png)).text == "client"
        leases = f"{shared.key}:leases"
    assert not shared.sharing
    store = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        assert await store.zcard(leases) == 0  # left at once, not when the lease lapsed
    finally:
        await store.aclose()


async def test_a_client_whose_store_is_down_raises_and_stays_closed() -> None:
    client = OcrClient(appkey=APPKEY, token="t", shared_quota=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(SharedQuotaUnavailableError, match="cannot be reached"):
        async with client:
            pytest.fail("not reached")
    with pytest.raises(RuntimeError, match="not open"):
        await client.recognize(make_png("x"))


# -- closing while a heartbeat is in flight -------------------------------------------


class SwallowingStore:
    """A store whose commands turn a cancellation into a ConnectionError.

    redis-py does this (8.1 here) when a command is cancelled in flight: it
    drops the connection and raises ConnectionError, or finishes the command,
    instead of letting CancelledError through. ``blocking`` makes the next
    command wait until it is cancelled.
    """

    def __init__(self) -> None:
        self.blocking = False
        self.calls = 0

    def register_script(self, script: str) -> Callable[..., object]:
        async def run(keys: list[str], args: list[object]) -> list[object]:
            self.calls += 1
            if self.blocking:
                self.blocking = False
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    raise RedisConnectionError("Connection closed by server.") from None
            # beat and cut: now, epoch, slow, base, since, estimate, fraction, members, flag
            return ["1000.0", 0, 1, "10.0", "1000.0", "", "1.0", 1, 1]

        return run


@pytest.mark.xfail(
    strict=True,
    reason="SharedQuota._run loops on 'while True': a cancel that redis-py turns into "
    "ConnectionError sends it to rejoin, and close() waits for it forever. The fix "
    "('while not self._closed' in _run and _rejoin) belongs to shared_quota.py's owner.",
)
async def test_closing_while_a_heartbeat_is_in_flight_ends_the_heartbeat() -> None:
    store = SwallowingStore()
    shared = SharedQuota(
        "redis://unused",
        APPKEY,
        heartbeat=0.02,
        lease=0.1,
        client=store,  # type: ignore[arg-type]
    )
    await shared.start(RateController())
    store.blocking = True  # the next heartbeat hangs until cancelled
    await wait_until(lambda: store.calls >= 2)
    async with asyncio.timeout(2):
        await shared.close()
