"""Tests for ocr_async.limits, on virtual time.

Everything runs on :class:`VirtualTimeLoop`: an asyncio event loop whose
clock is a number and whose selector, instead of blocking, moves that number
to the next timer. Time therefore advances exactly when every task is blocked,
``asyncio.sleep`` is the fake sleep, and a two-minute simulation of 64 workers
runs in well under a second of real time. Nothing here reads the wall clock.

The simulation: N workers loop acquire -> the server decides at once -> the
answer comes back after a latency -> feedback; a refused call goes back to
acquire. The server is a token bucket (rate Q, some burst) or a fixed
one-second window, on the same virtual clock.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import random
import selectors
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import pytest

from ocr_async.errors import (
    ConfigurationError,
    InvalidRequestError,
    RateLimitedError,
    TemporarilyUnavailableError,
)
from ocr_async.limits import (
    BETA,
    HISTORY_SIZE,
    INITIAL_RATE,
    MARGIN,
    PAUSE,
    THROTTLE_ERRORS,
    RateController,
    RateSample,
    Ticket,
    TokenBucket,
)

T = TypeVar("T")

# -- virtual time ------------------------------------------------------------


class _JumpingSelector(selectors.SelectSelector):
    """Never waits: a select() with a timeout moves the virtual clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._vloop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is set")
        self._vloop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, starting at 0.0."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def vclock() -> Callable[[], float]:
    return asyncio.get_running_loop().time


def test_virtual_loop_jumps_without_waiting() -> None:
    async def main() -> tuple[float, float]:
        start = vclock()()
        await asyncio.sleep(3600)
        return start, vclock()()

    assert run_virtual(main()) == (0.0, 3600.0)


# -- simulated servers -------------------------------------------------------


class Server(Protocol):
    quota: float

    def admit(self) -> bool: ...


class TokenBucketServer:
    """The API's limiter as a token bucket: ``quota`` a second, ``burst`` saved."""

    def __init__(self, quota: float, burst: float, clock: Callable[[], float]) -> None:
        self.quota = quota
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()

    def admit(self) -> bool:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.quota)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class FixedWindowServer:
    """The API's limiter as a counter per whole second of the clock."""

    def __init__(self, quota: float, clock: Callable[[], float]) -> None:
        self.quota = quota
        self._clock = clock
        self._window = -1
        self._count = 0

    def admit(self) -> bool:
        window = int(self._clock())
        if window != self._window:
            self._window, self._count = window, 0
        if self._count < self.quota:
            self._count += 1
            return True
        return False


ServerFactory = Callable[[float, Callable[[], float]], Server]


def bucket_server(burst_seconds: float) -> ServerFactory:
    """A token-bucket server whose burst is ``burst_seconds`` of its quota (at least 1)."""
    return lambda quota, clock: TokenBucketServer(quota, max(1.0, quota * burst_seconds), clock)


def window_server() -> ServerFactory:
    return FixedWindowServer


# -- the simulation ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    t: float
    accepted: bool


@dataclass(slots=True)
class Simulation:
    controller: RateController
    sends: list[Send] = field(default_factory=list)

    def _window(self, start: float, end: float) -> list[Send]:
        return [s for s in self.sends if start <= s.t < end]

    def goodput(self, start: float, end: float) -> float:
        """Accepted calls per second, by send time, in [start, end)."""
        return sum(s.accepted for s in self._window(start, end)) / (end - start)

    def reject_share(self, start: float, end: float) -> float:
        window = self._window(start, end)
        return sum(not s.accepted for s in window) / len(window)

    def first_refusal(self) -> float:
        return next(s.t for s in self.sends if not s.accepted)


def simulate(
    quota: float,
    *,
    server: ServerFactory,
    duration: float,
    workers: int = 64,
    latency: tuple[float, float] = (0.3, 0.7),
    reject_latency: tuple[float, float] = (0.02, 0.06),
    quota_changes: Sequence[tuple[float, float]] = (),
    seed: int = 1,
    **controller_options: Any,
) -> Simulation:
    """Run ``workers`` against a server of ``quota`` calls/s for ``duration`` virtual s.

    A success answers after ``latency`` (uniform, seconds), a refusal after
    ``reject_latency``: the API refuses without running the OCR engine.
    """

    async def main() -> Simulation:
        clock = vclock()
        controller = RateController(clock=clock, **controller_options)
        limiter = server(quota, clock)
        sim = Simulation(controller)
        rng = random.Random(seed)

        async def worker() -> None:
            while clock() < duration:
                while True:  # one image: refused calls go back through acquire()
                    ticket = await controller.acquire()
                    accepted = limiter.admit()
                    sim.sends.append(Send(clock(), accepted))
                    if accepted:
                        await asyncio.sleep(rng.uniform(*latency))
                        controller.on_success(ticket)
                        break
                    await asyncio.sleep(rng.uniform(*reject_latency))
                    controller.on_throttled(ticket)

        async def change_quota() -> None:
            for at, new_quota in quota_changes:
                await asyncio.sleep(at - clock())
                limiter.quota = new_quota

        await asyncio.gather(change_quota(), *(worker() for _ in range(workers)))
        return sim

    return run_virtual(main())


# -- TokenBucket -------------------------------------------------------------


def test_bucket_starts_full_then_paces() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(10.0, 3.0, clock=vclock())
        return [await bucket.acquire() for _ in range(6)]

    times = run_virtual(main())
    assert times[:3] == [0.0, 0.0, 0.0]  # the burst
    assert times[3:] == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_uses_the_injected_sleep() -> None:
    """Driven by a hand-cranked clock: sleep records the wait and moves the clock."""
    now = [0.0]
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    async def main() -> None:
        bucket = TokenBucket(4.0, 1.0, clock=lambda: now[0], sleep=fake_sleep)
        for _ in range(3):
            await bucket.acquire()

    asyncio.run(main())
    assert waits == pytest.approx([0.25, 0.25])
    assert now[0] == pytest.approx(0.5)


def test_bucket_serves_waiters_first_come_first_served_with_one_sleeper() -> None:
    sleeping = 0
    most_sleeping = 0

    async def counting_sleep(seconds: float) -> None:
        nonlocal sleeping, most_sleeping
        sleeping += 1
        most_sleeping = max(most_sleeping, sleeping)
        try:
            await asyncio.sleep(seconds)
        finally:
            sleeping -= 1

    async def main() -> list[tuple[int, float]]:
        bucket = TokenBucket(5.0, 1.0, clock=vclock(), sleep=counting_sleep)
        served: list[tuple[int, float]] = []

        async def take(i: int) -> None:
            served.append((i, await bucket.acquire()))

        await asyncio.gather(*(take(i) for i in range(20)))
        return served

    served = run_virtual(main())
    assert [i for i, _ in served] == list(range(20))  # nobody overtaken
    times = [t for _, t in served]
    assert times == pytest.approx([i / 5.0 for i in range(20)])  # one distinct slot each
    assert most_sleeping == 1  # no thundering herd: only the head sleeps


def test_bucket_does_not_starve_anyone_under_contention() -> None:
    async def main() -> list[int]:
        clock = vclock()
        bucket = TokenBucket(50.0, 1.0, clock=clock)
        counts = [0] * 10

        async def loop(i: int) -> None:
            while clock() < 20.0:
                await bucket.acquire()
                counts[i] += 1
                await asyncio.sleep(0.01 * (i + 1))  # fast and slow workers

        await asyncio.gather(*(loop(i) for i in range(10)))
        return counts

    counts = run_virtual(main())
    assert 1000 <= sum(counts) <= 1010  # 50/s for 20 s, and a last one each
    # Everyone queues behind everyone: each gets about a tenth, though some
    # workers come back ten times sooner than others.
    assert max(counts) <= 1.1 * min(counts)


def test_rate_change_applies_to_callers_already_waiting() -> None:
    async def main() -> list[float]:
        bucket = TokenBucket(10.0, 1.0, clock=vclock())
        times: list[float] = []

        async def take() -> None:
            times.append(await bucket.acquire())

        tasks = [asyncio.create_task(take()) for _ in range(4)]
        await asyncio.sleep(0.15)  # two served at 10/s (0.0, 0.1); two waiting
        bucket.rate = 1.0
        await asyncio.gather(*tasks)
        return times

    times = run_virtual(main())
    assert times[:2] == pytest.approx([0.0, 0.1])
    # The token half-earned at 10/s (0.1..0.15) is kept; the rest accrues at 1/s.
    assert times[2] == pytest.approx(0.15 + 0.5)
    assert times[3] == pytest.approx(times[2] + 1.0)


def test_pause_holds_everyone_and_releases_them_one_at_a_time() -> None:
    async def main() -> tuple[list[float], float]:
        clock = vclock()
        bucket = TokenBucket(100.0, 10.0, clock=clock)
        await asyncio.sleep(1.0)  # a full bucket of 10 saved up
        bucket.pause(2.0)
        until = bucket.paused_until
        assert bucket.tokens == 0.0
        assert not bucket.try_acquire()
        times = await asyncio.gather(*(bucket.acquire() for _ in range(5)))
        return list(times), until

    times, until = run_virtual(main())
    assert until == pytest.approx(3.0)
    assert min(times) == pytest.approx(3.0)
    # The savings were cut to one token: no burst of ten after the pause.
    assert sorted(times) == pytest.approx([3.0, 3.01, 3.02, 3.03, 3.04])


def test_cancelled_waiter_leaves_the_queue_in_order() -> None:
    async def main() -> list[int]:
        bucket = TokenBucket(1.0, 1.0, clock=vclock())
        await bucket.acquire()
        served: list[int] = []

        async def take(i: int) -> None:
            await bucket.acquire()
            served.append(i)

        tasks = [asyncio.create_task(take(i)) for i in range(5)]
        await asyncio.sleep(0)
        tasks[0].cancel()  # the head, asleep on the timer
        tasks[2].cancel()  # one queued behind it
        await asyncio.gather(*tasks, return_exceptions=True)
        assert bucket.waiting == 0
        return served

    assert run_virtual(main()) == [1, 3, 4]


def test_try_acquire_never_jumps_the_queue() -> None:
    async def main() -> None:
        bucket = TokenBucket(1.0, 2.0, clock=vclock())
        assert bucket.try_acquire()
        assert bucket.try_acquire()
        assert not bucket.try_acquire()
        waiter = asyncio.create_task(bucket.acquire())
        await asyncio.sleep(0.5)
        assert bucket.waiting == 1
        assert not bucket.try_acquire()
        assert await waiter == pytest.approx(1.0)

    run_virtual(main())


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        pytest.param(0.0, 1.0, id="zero-rate"),
        pytest.param(-1.0, 1.0, id="negative-rate"),
        pytest.param(float("inf"), 1.0, id="infinite-rate"),
        pytest.param(float("nan"), 1.0, id="nan-rate"),
        pytest.param(1.0, 0.5, id="burst-below-one"),
    ],
)
def test_bucket_refuses_nonsense(rate: float, burst: float) -> None:
    with pytest.raises(ConfigurationError):
        TokenBucket(rate, burst)


# -- RateController: the epoch rule and the pause ----------------------------


def test_a_burst_of_throttles_is_one_congestion_event() -> None:
    async def main() -> None:
        controller = RateController(clock=vclock(), initial_rate=100.0)
        tickets = [await controller.acquire() for _ in range(20)]
        assert {t.epoch for t in tickets} == {0}
        refused_rate = tickets[-1].rate

        opened = [controller.on_throttled(t) for t in tickets]

        assert opened == [True] + [False] * 19
        assert controller.throttled == 20
        assert controller.congestion_events == 1
        assert controller.epoch == 1
        w_max = refused_rate * (1 - MARGIN)
        assert controller.quota_estimate == pytest.approx(w_max)
        assert controller.current_rate == pytest.approx(BETA * w_max)  # cut once, not 20x

        # A call sent after the cut that is refused is news: a second event.
        later = await controller.acquire()
        assert later.epoch == 1
        assert controller.on_throttled(later)
        assert controller.congestion_events == 2
        assert controller.current_rate == pytest.approx(BETA * BETA * w_max * (1 - MARGIN))

    run_virtual(main())


@pytest.mark.parametrize(
    "fixed_rps", [pytest.param(None, id="adaptive"), pytest.param(20.0, id="fixed")]
)
def test_a_throttle_pauses_every_worker(fixed_rps: float | None) -> None:
    async def main() -> None:
        clock = vclock()
        controller = RateController(fixed_rps, clock=clock, initial_rate=20.0)
        ticket = await controller.acquire()
        await asyncio.sleep(0.01)
        assert controller.on_throttled(ticket)
        paused_until = controller.paused_until
        assert paused_until == pytest.approx(clock() + PAUSE)

        tickets = await asyncio.gather(*(controller.acquire() for _ in range(8)))

        times = sorted(t.sent_at for t in tickets)
        assert times[0] >= paused_until
        # ...and after the pause they leave one by one at the (new) rate.
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) == pytest.approx(1 / controller.current_rate)
        assert all(t.epoch == 1 for t in tickets)

    run_virtual(main())


def test_the_client_loop_retries_through_acquire() -> None:
    """The loop the module docstring prescribes, with a fake send."""
    answers: list[Exception | None] = [
        RateLimitedError(4000006, "limit"),
        TemporarilyUnavailableError(5000503, "busy"),
        None,
    ]

    async def send() -> str:
        answer = answers.pop(0)
        if answer is not None:
            raise answer
        return "result"

    async def recognize(controller: RateController) -> str:
        while True:
            ticket = await controller.acquire()
            try:
                result = await send()
            except THROTTLE_ERRORS:
                controller.on_throttled(ticket)
                continue
            controller.on_success(ticket)
            return result

    async def main() -> None:
        controller = RateController(clock=vclock())
        assert await recognize(controller) == "result"
        assert (controller.sent, controller.throttled, controller.successes) == (3, 2, 1)
        assert controller.congestion_events == 2  # each retry was sent after the cut

    run_virtual(main())
    assert not isinstance(InvalidRequestError(4000001, "x"), THROTTLE_ERRORS)


# -- RateController: fixed rate ----------------------------------------------


def test_fixed_rate_never_exceeds_its_rate_even_when_throttled() -> None:
    rps = 20.0
    sim = simulate(10.0, server=bucket_server(0.1), duration=60.0, fixed_rps=rps)
    times = [s.t for s in sim.sends]

    for i, start in enumerate(times):  # every 1-second window that starts on a send
        assert bisect.bisect_left(times, start + 1.0) - i <= rps + 1  # +1: the burst
    assert sim.controller.current_rate == rps
    assert sim.controller.quota_estimate is None
    assert sim.controller.congestion_events > 0  # it was refused, and paused...
    assert {s.event for s in sim.controller.history} <= {"start", "pause"}  # ...never cut
    # Each pause forgoes part of the server's share: a --rps above the quota
    # is the user's call, and the controller only keeps it from hammering.
    assert sim.goodput(10, 60) >= 0.5 * 10.0


def test_fixed_rate_below_the_quota_is_never_refused() -> None:
    sim = simulate(50.0, server=bucket_server(0.1), duration=30.0, fixed_rps=40.0)
    assert sim.controller.throttled == 0
    assert sim.goodput(5, 30) == pytest.approx(40.0, rel=0.01)


# -- RateController: adaptive, against simulated quotas ----------------------

WARM_UP = 30.0
RUN = 120.0


@pytest.mark.parametrize(
    ("quota", "server", "latency"),
    [
        pytest.param(5.0, bucket_server(0.1), (0.3, 0.7), id="5/s-bucket-burst1"),
        pytest.param(5.0, window_server(), (0.3, 0.7), id="5/s-window"),
        pytest.param(50.0, bucket_server(0.1), (0.3, 0.7), id="50/s-bucket-0.1s"),
        pytest.param(50.0, bucket_server(0.0), (0.3, 0.7), id="50/s-bucket-burst1"),
        pytest.param(50.0, window_server(), (0.3, 0.7), id="50/s-window"),
        # 64 workers can only send 64/latency calls/s: shorter calls for 500/s.
        pytest.param(500.0, bucket_server(0.1), (0.05, 0.1), id="500/s-bucket-0.1s"),
    ],
)
def test_adaptive_settles_at_the_quota(
    quota: float, server: ServerFactory, latency: tuple[float, float]
) -> None:
    sim = simulate(quota, server=server, duration=RUN, latency=latency)
    controller = sim.controller

    assert 0.9 * quota <= sim.goodput(WARM_UP, RUN) <= 1.05 * quota
    assert sim.reject_share(WARM_UP, RUN) <= 0.05
    assert 0.9 * quota <= controller.settled_rate <= 1.05 * quota
    assert controller.quota_estimate is not None
    assert 0.9 * quota <= controller.quota_estimate <= 1.1 * quota
    assert 0.8 * quota <= controller.current_rate <= 1.2 * quota
    assert not controller.slow_start


@pytest.mark.parametrize(
    "server",
    [
        pytest.param(bucket_server(0.1), id="bucket-0.1s"),
        pytest.param(bucket_server(1.0), id="bucket-1s"),
        pytest.param(window_server(), id="window"),
    ],
)
def test_the_target_at_50_per_second_and_64_workers(server: ServerFactory) -> None:
    """Goodput >= 95% of the quota with <= 5% of calls refused."""
    sim = simulate(50.0, server=server, duration=RUN, latency=(0.3, 0.7))
    assert sim.goodput(WARM_UP, RUN) >= 0.95 * 50.0
    assert sim.reject_share(WARM_UP, RUN) <= 0.05


def test_slow_start_finds_a_large_quota_quickly() -> None:
    sim = simulate(
        2000.0, server=bucket_server(0.1), duration=12.0, latency=(0.01, 0.03), workers=64
    )
    # From 10/s, doubling each second: 2000/s is reached in log2(200) ~ 7.6 s.
    assert sim.first_refusal() < 9.0
    assert sim.controller.quota_estimate is not None
    assert 0.9 * 2000 <= sim.controller.quota_estimate <= 1.1 * 2000


def test_slow_start_does_not_outgrow_what_is_sent() -> None:
    # Four workers with 1 s calls send 4/s: the rate may not run away from
    # that (doubling each second for 30 s would reach 10 * 2**30).
    sim = simulate(1000.0, server=bucket_server(0.1), duration=30.0, workers=4, latency=(1, 1))
    assert sim.controller.throttled == 0
    assert INITIAL_RATE <= sim.controller.current_rate <= 1.5 * 2 * 4.0
    assert sim.controller.settled_rate == pytest.approx(4.0, rel=0.05)


def test_rate_recovers_after_the_quota_is_raised() -> None:
    sim = simulate(50.0, server=bucket_server(0.1), duration=150.0, quota_changes=[(60.0, 100.0)])
    assert sim.goodput(WARM_UP, 60) == pytest.approx(50.0, rel=0.05)
    # CUBIC's convex probe finds twice the old quota in about 20 s.
    assert sim.goodput(90, 150) >= 0.9 * 100.0
    assert sim.reject_share(60, 150) <= 0.05
    assert sim.controller.quota_estimate is not None
    assert sim.controller.quota_estimate >= 90.0


def test_rate_follows_the_quota_down() -> None:
    sim = simulate(100.0, server=bucket_server(0.1), duration=120.0, quota_changes=[(40.0, 50.0)])
    assert 0.9 * 50 <= sim.goodput(60, 120) <= 1.05 * 50
    assert sim.reject_share(60, 120) <= 0.05
    assert sim.controller.quota_estimate is not None
    assert sim.controller.quota_estimate <= 55.0


def test_history_is_a_bounded_ring_buffer() -> None:
    sim = simulate(50.0, server=bucket_server(0.1), duration=60.0, history_size=32)
    history = sim.controller.history
    assert len(history) == 32
    assert all(isinstance(s, RateSample) for s in history)
    assert [s.t for s in history] == sorted(s.t for s in history)
    assert history[-1].t > 50.0  # the newest kept, the oldest dropped
    assert "cut" in {s.event for s in history}


def test_default_history_bound() -> None:
    # Five minutes of growth samples (4 a second) and cuts: more than the bound.
    sim = simulate(50.0, server=bucket_server(0.1), duration=300.0)
    assert len(sim.controller.history) == HISTORY_SIZE


def test_reports_before_any_traffic() -> None:
    async def main() -> None:
        controller = RateController(clock=vclock())
        assert controller.current_rate == INITIAL_RATE
        assert controller.settled_rate == 0.0
        assert controller.quota_estimate is None
        assert controller.slow_start
        assert (controller.sent, controller.successes, controller.throttled) == (0, 0, 0)
        assert controller.history == (RateSample(0.0, INITIAL_RATE, "start"),)
        assert controller.fixed_rps is None
        assert "adaptive" in repr(controller)

    run_virtual(main())


def test_tickets_are_values() -> None:
    assert Ticket(epoch=1, sent_at=2.0, rate=3.0) == Ticket(1, 2.0, 3.0)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fixed_rps": 0.0}, id="fixed-zero"),
        pytest.param({"fixed_rps": -5.0}, id="fixed-negative"),
        pytest.param({"initial_rate": 0.0}, id="initial-zero"),
        pytest.param({"min_rate": 0.0}, id="min-zero"),
        pytest.param({"min_rate": 5.0, "max_rate": 1.0}, id="max-below-min"),
        pytest.param({"beta": 1.0}, id="beta-one"),
        pytest.param({"beta": 0.0}, id="beta-zero"),
        pytest.param({"recovery_time": 0.0}, id="recovery-zero"),
        pytest.param({"margin": 1.0}, id="margin-one"),
        pytest.param({"pause": -1.0}, id="pause-negative"),
        pytest.param({"history_size": 0}, id="history-zero"),
    ],
)
def test_controller_refuses_nonsense(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        RateController(**options)


# -- unpaced start (what OcrClient uses) -------------------------------------------


@pytest.mark.parametrize(
    ("quota", "server", "latency"),
    [
        pytest.param(5.0, window_server(), (0.3, 0.7), id="5/s-window"),
        pytest.param(50.0, bucket_server(0.0), (0.3, 0.7), id="50/s-bucket-burst1"),
        pytest.param(50.0, bucket_server(0.1), (0.3, 0.7), id="50/s-bucket-0.1s"),
        pytest.param(50.0, bucket_server(1.0), (0.3, 0.7), id="50/s-bucket-1s"),
        pytest.param(50.0, window_server(), (0.3, 0.7), id="50/s-window"),
        pytest.param(500.0, bucket_server(0.1), (0.05, 0.1), id="500/s-bucket-0.1s"),
    ],
)
def test_unpaced_start_settles_at_the_quota(
    quota: float, server: ServerFactory, latency: tuple[float, float]
) -> None:
    sim = simulate(quota, server=server, duration=RUN, latency=latency, initial_rate=None)
    assert 0.95 * quota <= sim.goodput(WARM_UP, RUN) <= 1.05 * quota
    assert sim.reject_share(WARM_UP, RUN) <= 0.05
    assert sim.controller.quota_estimate is not None


def test_unpaced_start_never_waits_while_nothing_is_refused() -> None:
    # No limit in reach: the concurrency bound alone sets the pace, 64
    # workers at 0.1 s each make 640 calls/s from the first second.
    sim = simulate(1e9, server=bucket_server(1.0), duration=5.0, latency=(0.1, 0.1),
                   initial_rate=None)  # fmt: skip
    assert sim.goodput(0.0, 4.9) == pytest.approx(640, rel=0.03)
    assert sim.controller.current_rate == math.inf
    assert sim.controller.slow_start


def test_first_throttle_starts_pacing_from_what_got_through() -> None:
    async def main() -> RateController:
        clock = vclock()
        controller = RateController(initial_rate=None, clock=clock)
        tickets = [await controller.acquire() for _ in range(30)]
        assert all(t.rate == math.inf for t in tickets)
        for ticket in tickets[:20]:
            controller.on_success(ticket)
        assert controller.on_throttled(tickets[20]) is True
        assert controller.on_throttled(tickets[21]) is False  # same event
        return controller

    controller = run_virtual(main())
    # 30 calls went out in the last second and one was refused: the quota
    # lies below 29/s. CUBIC takes it from just under that.
    assert controller.quota_estimate == pytest.approx(29 * (1 - MARGIN))
    assert controller.current_rate == pytest.approx(29 * (1 - MARGIN) * BETA)
    assert not controller.slow_start
    assert controller.congestion_events == 1
