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
import json
import logging
import random
import signal
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import redis.asyncio as aioredis
from conftest import RedisServer, free_port
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from ocr_async import OcrClient
from ocr_async.emulator import EmulatorConfig, RunningEmulator, make_png, running_emulator
from ocr_async.emulator.limiters import make_limiter
from ocr_async.emulator.simulation import run_virtual
from ocr_async.errors import ConfigurationError
from ocr_async.limits import INITIAL_RATE, MARGIN, Cut, RateController, Share
from ocr_async.retry import RetryPolicy
from ocr_async.shared_quota import (
    BEAT,
    CUT,
    LEAVE,
    GroupState,
    RedisStore,
    SharedQuota,
    SharedQuotaUnavailableError,
    group_cut,
    store_key,
)

APPKEY = "shared-quota-test-appkey"
HEARTBEAT = 0.2
LEASE = 0.6
# A refused call never fails an image here: the tests are about the rate.
RETRY = RetryPolicy(max_throttled=100_000)


def member(
    url: str,
    name: str,
    *,
    appkey: str = APPKEY,
    reconnects: int = 2,
    heartbeat: float = HEARTBEAT,
    lease: float = LEASE,
) -> SharedQuota:
    return SharedQuota(
        url, appkey, member=name, heartbeat=heartbeat, lease=lease, reconnects=reconnects
    )


async def wait_until(condition: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not condition():
        if loop.time() > end:
            pytest.fail(f"not reached within {deadline:g} s")
        await asyncio.sleep(0.05)


async def next_message(pubsub: PubSub, deadline: float = 10.0) -> str:
    """The next message published on a subscribed channel; fail after a generous deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while loop.time() < end:
        # None for the subscription's own confirmation, or nothing yet.
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            return str(message["data"])
    pytest.fail(f"no message within {deadline:g} s")


# -- the Lua scripts, called directly -----------------------------------------


class Scripts:
    """The three scripts on one group's keys, as a member would call them."""

    def __init__(self, client: aioredis.Redis, appkey: str = APPKEY) -> None:
        prefix = store_key(appkey)
        self.keys = [f"{prefix}:state", f"{prefix}:leases", f"{prefix}:wants"]
        self.channel = f"{prefix}:events"
        self._beat = client.register_script(BEAT)
        self._cut = client.register_script(CUT)
        self._leave = client.register_script(LEAVE)

    async def beat(self, name: str, want: float, lease: float = 60.0) -> GroupState:
        raw = await self._beat(
            keys=self.keys, args=[name, lease, want, 10.0, 0.05, 1.0, 600, self.channel]
        )
        return GroupState.parse(raw)

    async def cut(self, name: str, known: int, estimate: float, hold: float) -> GroupState:
        raw = await self._cut(
            keys=self.keys, args=[name, known, estimate, hold, 0.05, 600, self.channel]
        )
        return GroupState.parse(raw)

    async def leave(self, name: str) -> int:
        return int(await self._leave(keys=self.keys, args=[name, self.channel]))


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


async def test_the_scripts_tell_everyone_of_cuts_and_of_changes_of_members(
    redis_server: RedisServer, scripts: Scripts
) -> None:
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(scripts.channel)
    try:
        await scripts.beat("a", -1)  # joined: news
        await scripts.beat("a", -1)  # renewed, wanting the same: none
        await scripts.cut("a", known=0, estimate=100.0, hold=600.0)  # applied: news
        await scripts.cut("b", known=0, estimate=20.0, hold=1.0)  # the same event: none
        await scripts.beat("b", 5.0)  # joined: news
        await scripts.beat("b", -1)  # wants more than its 5/s, and gets it: news
        await scripts.beat("b", 5.0)  # wants less: none (the others take it at their beat)
        await scripts.beat("b", 9.0)  # wants more, but less than the margin of 95/s: none
        await scripts.leave("b")  # news
        await client.publish(scripts.channel, json.dumps({"kind": "end"}))
        news: list[dict[str, str]] = []
        while not news or news[-1]["kind"] != "end":  # one channel keeps its order
            news.append(json.loads(await next_message(pubsub)))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
    assert [(n["kind"], n.get("member")) for n in news] == [
        ("members", "a"),
        ("cut", "a"),
        ("members", "b"),
        ("members", "b"),
        ("members", "b"),
        ("end", None),
    ]
    cut = news[1]  # the schedule itself, for the others to follow at once
    assert (int(cut["epoch"]), float(cut["estimate"])) == (1, 100.0)
    assert float(cut["base"]) == pytest.approx(100.0 * 0.95)
    assert float(cut["since"]) == pytest.approx(float(cut["now"]) + 600.0)


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


# -- news pushed to every member -----------------------------------------------


def slow(url: str, name: str) -> SharedQuota:
    """A member whose heartbeats are a minute apart.

    What it learns within a test's deadline, it learned from the channel,
    not from its heartbeat.
    """
    return member(url, name, heartbeat=60.0, lease=180.0)


async def test_a_cut_reaches_every_member_without_waiting_for_a_heartbeat(
    redis_server: RedisServer,
) -> None:
    refused, other = RateController(), RateController()
    async with (
        slow(redis_server.url, "a").joined(refused) as a,
        slow(redis_server.url, "b").joined(other) as b,
    ):
        # a heard b join, and gave up half its share at once.
        await wait_until(lambda: a.members == 2)
        assert a.fraction == pytest.approx(0.5)
        # Anyone may publish on the channel: what is not news is ignored.
        client = aioredis.Redis.from_url(redis_server.url)
        for junk in ("not json", "[1, 2]", '{"kind": "cut", "epoch": 9}', '{"epoch": "x"}'):
            await client.publish(f"{a.key}:events", junk)
        await client.aclose()
        assert refused.on_throttled(await refused.acquire())  # ends the start-up: a cut
        await wait_until(lambda: b.epoch == 1)
        assert b.quota_estimate == a.quota_estimate
        assert other.epoch == 1  # the same event here: the burst's refusals fold into it
        estimate = b.quota_estimate
        assert estimate is not None
        assert other.current_rate == pytest.approx(0.5 * estimate * 0.95)
        await b.close()
        await wait_until(lambda: a.fraction == 1.0)  # b's share came back at once


async def test_a_failed_report_rejoins_when_the_store_answers_again(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller = RateController()
    store = RedisStore(redis_server.url, APPKEY)
    shared = SharedQuota(store, member="a", heartbeat=HEARTBEAT, lease=LEASE)
    async with shared.joined(controller):

        async def lost(*args: object, **kwargs: object) -> object:
            raise RedisConnectionError("the cut's report was lost")

        # One command of a live server fails: the report of the next cut.
        monkeypatch.setattr(store, "cut", lost)
        assert controller.on_throttled(await controller.acquire())
        await wait_until(lambda: shared.lost)
        assert controller.coordinator is None  # pacing alone meanwhile
        monkeypatch.undo()
        await wait_until(lambda: shared.sharing)  # the next heartbeat took it back
        assert not shared.lost


def test_a_refusal_at_the_hold_is_measured_on_the_groups_calls() -> None:
    # A third of the group, refused once after one call got through: on its
    # own calls alone (1 + 4) / (2 + 4) of the rate; the others' two calls
    # since the event got through too, so (3 + 4) / (4 + 4) of it.
    hold = Cut(0.0, 50.0, 47.5, 1.0, 50.0, False, "hold", 60.0, 1, 1)
    assert group_cut(hold, 1 / 3)[0] == pytest.approx(180.0 * 7 / 8)
    # A member alone measures as one controller does.
    assert group_cut(hold, 1.0)[0] == pytest.approx(hold.estimate)
    # Never below MAX_CUT of the group's rate, however many were refused.
    many = Cut(0.0, 30.0, 28.5, 1.0, 50.0, False, "hold", 60.0, 0, 40)
    assert group_cut(many, 1 / 3)[0] == pytest.approx(180.0 * 0.5)


def test_a_probe_scales_the_members_measurement() -> None:
    cut = Cut(0.0, 60.0, 57.0, 1.0, 300.0, False, "probe", 70.0, 30, 1)
    estimate, hold = group_cut(cut, 1 / 3)
    assert estimate == pytest.approx(180.0)
    # The hold's 300 calls are the group's: 1.75 s at 171/s, not 5.3 s at 57/s.
    assert hold == pytest.approx(300.0 / 171.0)


def test_the_start_up_steps_back_the_groups_calls_not_the_members() -> None:
    # A member refused at 71 calls/s measured 58 two of its calls back in
    # the climb: the group's rate stood at 213, and two of the group's calls
    # back (a third of the time) it stood at 213 * (58 / 71) ** (1/3), 199,
    # where 58 * 3 (174, before the fix) is two of the member's calls back.
    cut = Cut(0.0, 58.2, 55.3, 1.0, 300.0, True, "start-up", 70.9, 10, 1)
    estimate, hold = group_cut(cut, 1 / 3)
    assert estimate == pytest.approx(212.7 * (58.2 / 70.9) ** (1 / 3))
    assert 198.0 < estimate < 200.0
    assert hold == pytest.approx(300.0 / 165.9)
    # A member alone measures as one controller does.
    assert group_cut(cut, 1.0)[0] == pytest.approx(58.2)


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


# -- a group on virtual time ----------------------------------------------------------


class VirtualGroup:
    """A stand-in for the store on virtual time, to test what members measure.

    It keeps the ``cut`` script's rule (a cut applies only in the epoch it
    was measured in, and sets the schedule: hold a margin under the
    estimate, probe after the hold) and the channel's (the others follow a
    cut a millisecond later, the reporter at its answer). Every member has
    an equal part; heartbeats, leases and demand are left out, as they
    change nothing while every member has work.
    """

    def __init__(self, members: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.fraction = 1.0 / members
        self.epoch, self.estimate = 0, 0.0
        self.schedule = Share(INITIAL_RATE, clock(), slow_start=True, estimate=None)
        self.controllers = [RateController(clock=clock) for _ in range(members)]
        self.known = [0] * members
        for i, controller in enumerate(self.controllers):
            controller.coordinator = _VirtualMember(self, i)
            self.follow(i, event=False)

    def follow(self, i: int, *, event: bool) -> None:
        s, f = self.schedule, self.fraction
        estimate = None if s.estimate is None else f * s.estimate
        self.controllers[i].follow(Share(f * s.base, s.since, s.slow_start, estimate), event=event)
        self.known[i] = self.epoch

    def pushed(self, i: int) -> None:
        # Another member's refusal opened the event: this one's calls in
        # flight were refused by the same burst.
        self.follow(i, event=True)

    def cut(self, i: int, known: int, estimate: float, hold: float) -> None:
        if known == self.epoch:
            self.epoch, self.estimate = self.epoch + 1, estimate
            since = self.clock() + hold
            self.schedule = Share(estimate * (1 - MARGIN), since, False, estimate)
            loop = asyncio.get_running_loop()
            for other in range(len(self.controllers)):
                if other != i:
                    loop.call_later(0.001, self.pushed, other)
        self.follow(i, event=False)


class _VirtualMember:
    def __init__(self, group: VirtualGroup, i: int) -> None:
        self.group, self.i = group, i

    def on_cut(self, cut: Cut) -> None:
        group = self.group
        estimate, hold = group_cut(cut, group.fraction)
        # The script runs a round trip of a millisecond later.
        known = group.known[self.i]
        asyncio.get_running_loop().call_later(0.001, group.cut, self.i, known, estimate, hold)


def three_on_a_bucket(
    quota: float,
    seed: int,
    seconds: float = 20.0,
    *,
    schedule: tuple[tuple[float, float], ...] = (),
    since: float = 0.0,
) -> tuple[float, float]:
    """Three members of 16 workers each on a bucket (burst 5): goodput and the estimate held.

    The goodput counts from ``since`` (seconds); ``schedule`` moves the quota.
    """

    async def main() -> tuple[float, float]:
        clock = asyncio.get_running_loop().time
        limiter = make_limiter("bucket", quota, burst=5.0, schedule=schedule, clock=clock)
        group = VirtualGroup(3, clock)
        rng = random.Random(seed)
        accepted = 0

        async def worker(controller: RateController) -> None:
            nonlocal accepted
            while clock() < seconds:
                ticket = await controller.acquire()
                if limiter.admit():
                    if clock() >= since:
                        accepted += 1
                    await asyncio.sleep(rng.uniform(0.025, 0.035))
                    controller.on_success(ticket)
                else:
                    await asyncio.sleep(rng.uniform(0.002, 0.006))
                    controller.on_throttled(ticket)

        await asyncio.gather(*(worker(c) for c in group.controllers for _ in range(16)))
        return accepted / (quota * (clock() - since) + 5.0), group.estimate

    return run_virtual(main())


def test_three_members_measure_a_refusal_at_the_hold_on_the_groups_calls() -> None:
    # Seeded. Measured on each member's own calls instead (a third of the
    # sample), the refusals after the start-up left the estimate at 186-200
    # on these seeds, where the probes never raised it: 0.906 on average.
    runs = [three_on_a_bucket(200.0, seed) for seed in range(1, 7)]
    assert statistics.mean(goodput for goodput, _ in runs) >= 0.94
    assert all(estimate >= 0.95 * 200 for _, estimate in runs)


def test_three_members_raise_an_estimate_their_start_up_left_low() -> None:
    # Seeded. On a loaded machine the three members' calls bunch past the
    # bucket's burst and the start-up is refused under the quota: here the
    # quota is 140 for its first second, then 200. The probes, measured on
    # the last second (mostly the hold), left the group at 180-195 calls/s
    # on these seeds: 0.90 of the quota from 10 s on.
    steps = ((0.0, 140.0), (1.0, 200.0))
    runs = [three_on_a_bucket(200.0, seed, schedule=steps, since=10.0) for seed in range(1, 5)]
    assert statistics.mean(goodput for goodput, _ in runs) >= 0.93
    assert all(0.97 * 200 <= estimate <= 1.1 * 200 for _, estimate in runs)


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


async def _swallowing_cancel(calls: list[str], what: str) -> None:
    # redis-py does this (8.1 here) when a command is cancelled in flight: it
    # drops the connection and raises ConnectionError instead of letting
    # CancelledError through.
    calls.append(what)
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise RedisConnectionError("Connection closed by server.") from None


class SwallowingStore:
    """A :class:`QuotaStore` whose commands turn a cancellation into a ConnectionError.

    ``blocking`` makes the next beat wait until it is cancelled; the news
    channel always waits so.
    """

    key = "ocr-async:quota:{swallowing}"
    name = "swallowing"
    hint = "none"

    def __init__(self) -> None:
        self.blocking = False
        self.calls: list[str] = []

    async def open(self) -> None:
        pass

    async def beat(self, member: str, **_: float) -> GroupState:
        if self.blocking:
            self.blocking = False
            await _swallowing_cancel(self.calls, "beat")
        self.calls.append("beat")
        return GroupState(1000.0, 0, True, 10.0, 1000.0, None, 1.0, 1, True)

    async def cut(self, member: str, **_: float) -> GroupState:
        return await self.beat(member)

    async def leave(self, member: str) -> None:
        self.calls.append("leave")

    async def subscribe(self) -> SwallowingStore:
        return self

    async def get(self, timeout: float) -> str | None:
        await _swallowing_cancel(self.calls, "listen")
        return None

    async def aclose(self) -> None:
        self.calls.append("close")


async def test_closing_while_a_heartbeat_and_the_news_are_in_flight_ends_both() -> None:
    # Before the fix, the heartbeat task looped on 'while True': the cancel
    # turned into ConnectionError sent it off to rejoin, and close() waited
    # for it forever (and the listener subscribed again, as forever).
    store = SwallowingStore()
    shared = SharedQuota(store, heartbeat=0.02, lease=0.1)
    await shared.start(RateController())
    store.blocking = True  # the next heartbeat hangs until cancelled
    await wait_until(lambda: store.calls.count("beat") >= 2 and "listen" in store.calls)
    async with asyncio.timeout(5):
        await shared.close()
    assert not shared.lost  # a command cut short by closing is no lost store
    assert store.calls[-2:] == ["leave", "close"]  # left at once, not when the lease lapsed
