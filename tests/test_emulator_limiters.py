"""Tests for ocr_async.emulator.limiters: each limiter model, call by call, on a stepped clock."""

from __future__ import annotations

import pytest

from ocr_async.emulator.limiters import (
    LIMITER_KINDS,
    BucketLimiter,
    FixedWindowLimiter,
    ScheduledLimiter,
    SlidingWindowLimiter,
    make_limiter,
    parse_schedule,
)


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def admits(
    limiter: BucketLimiter | FixedWindowLimiter | SlidingWindowLimiter, n: int
) -> list[bool]:
    return [limiter.admit() for _ in range(n)]


def test_bucket_spends_its_burst_then_lets_through_its_rate() -> None:
    clock = Clock()
    bucket = BucketLimiter(10.0, 3.0, clock=clock)
    assert admits(bucket, 4) == [True, True, True, False]
    clock.now += 0.1  # one token at 10/s
    assert admits(bucket, 2) == [True, False]
    clock.now += 60.0  # never more than the burst saved
    assert admits(bucket, 4) == [True, True, True, False]
    bucket.reset()
    assert admits(bucket, 4) == [True, True, True, False]
    assert bucket.burst == 3.0


def test_a_refused_call_costs_a_bucket_nothing() -> None:
    clock = Clock()
    bucket = BucketLimiter(10.0, 1.0, clock=clock)
    assert admits(bucket, 50) == [True] + [False] * 49
    clock.now += 0.1
    assert bucket.admit()


def test_fixed_window_resets_at_every_whole_second() -> None:
    clock = Clock(100.5)
    window = FixedWindowLimiter(3.0, clock=clock)
    assert admits(window, 4) == [True, True, True, False]
    clock.now = 100.99
    assert not window.admit()  # still the same second
    clock.now = 101.0
    assert admits(window, 4) == [True, True, True, False]
    window.rate = 0.5  # a rate under 1 still lets one call a second through
    clock.now = 102.0
    assert admits(window, 2) == [True, False]


def test_sliding_count_weighs_the_previous_second_and_counts_refused_calls() -> None:
    clock = Clock(0.0)
    sliding = SlidingWindowLimiter(4.0, clock=clock)
    assert admits(sliding, 6) == [True, True, True, True, False, False]
    # Half a second into the next period: 6 calls last period (refused ones
    # too) weigh 3, so one more call makes 4, the next 5.
    clock.now = 1.5
    assert admits(sliding, 2) == [True, False]
    # The refused calls count too: at the start of the next period the three
    # just refused make the count 4 + 1, where they would otherwise make 1 + 1.
    assert admits(sliding, 2) == [False, False]
    clock.now = 2.0
    assert admits(sliding, 1) == [False]
    # Silence lets the count fall.
    clock.now = 4.0
    assert admits(sliding, 4) == [True] * 4
    sliding.reset()
    assert admits(sliding, 5) == [True] * 4 + [False]


def test_schedule_changes_the_rate_from_the_first_call() -> None:
    clock = Clock(50.0)
    scheduled = ScheduledLimiter(
        FixedWindowLimiter(1.0, clock=clock), ((0.0, 2.0), (10.0, 5.0)), clock=clock
    )
    assert scheduled.rate == 2.0
    clock.now = 60.0  # the first call: the schedule's time 0
    assert admits(scheduled, 3) == [True, True, False]  # type: ignore[arg-type]
    assert scheduled.rate_at(9.9) == 2.0
    assert scheduled.rate_at(10.0) == 5.0
    clock.now = 70.0
    assert admits(scheduled, 6) == [True] * 5 + [False]  # type: ignore[arg-type]
    assert scheduled.rate == 5.0
    scheduled.reset()
    assert scheduled.rate == 2.0
    clock.now = 200.0
    assert admits(scheduled, 3) == [True, True, False]  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        scheduled.rate = 3.0
    assert scheduled.steps == ((0.0, 2.0), (10.0, 5.0))


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        pytest.param("0:40,10:20,20:60", ((0, 40), (10, 20), (20, 60)), id="three-steps"),
        pytest.param(" 0:2.5 , 1.5:3 ", ((0, 2.5), (1.5, 3)), id="spaces-and-fractions"),
    ],
)
def test_parse_schedule(text: str, steps: tuple[tuple[float, float], ...]) -> None:
    assert parse_schedule(text) == steps


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("40", id="no-colon"),
        pytest.param("0:x", id="not-a-number"),
        pytest.param("-1:40", id="negative-time"),
        pytest.param("nan:40", id="nan-time"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_schedule_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="bad quota step"):
        parse_schedule(text)


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param((), id="empty"),
        pytest.param(((5.0, 40.0),), id="not-from-0"),
        pytest.param(((0.0, 40.0), (10.0, 20.0), (5.0, 60.0)), id="times-go-back"),
        pytest.param(((0.0, 40.0), (0.0, 20.0)), id="same-time-twice"),
        pytest.param(((0.0, 40.0), (10.0, 0.0)), id="zero-rate"),
    ],
)
def test_schedule_refuses_nonsense(steps: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ValueError, match=r"schedule|rate"):
        ScheduledLimiter(FixedWindowLimiter(1.0), steps, clock=Clock())


def test_make_limiter_builds_every_kind() -> None:
    clock = Clock()
    kinds = {kind: make_limiter(kind, 40.0, clock=clock) for kind in LIMITER_KINDS}
    assert isinstance(kinds["bucket"], BucketLimiter)
    assert kinds["bucket"].burst == 40
    assert isinstance(kinds["window"], FixedWindowLimiter)
    assert isinstance(kinds["sliding"], SlidingWindowLimiter)
    assert isinstance(
        make_limiter("window", 40.0, schedule=((0.0, 40.0),), clock=clock), ScheduledLimiter
    )
    assert "rate=40" in repr(kinds["sliding"])


@pytest.mark.parametrize(
    ("kind", "rate", "burst"),
    [
        pytest.param("bucket", 0.0, None, id="zero-rate"),
        pytest.param("bucket", float("inf"), None, id="infinite-rate"),
        pytest.param("bucket", 10.0, 0.5, id="burst-under-1"),
        pytest.param("window", 10.0, 5.0, id="burst-of-a-window"),
        pytest.param("leaky", 10.0, None, id="unknown-kind"),
    ],
)
def test_make_limiter_refuses_nonsense(kind: str, rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match=r"rate|burst|kind"):
        make_limiter(kind, rate, burst=burst)  # type: ignore[arg-type]
