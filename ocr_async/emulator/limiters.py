"""Models of the call limiters an API may sit behind, on an injected clock.

NHN publishes neither its call limit nor how it counts (``API-FACTS.md``,
"Limits"), so the emulator can put any of the common kinds in front of its
OCR routes, and the rate controller's tests (``tests/test_limits.py``) run
their simulation against the very same objects:

* :class:`BucketLimiter` (``bucket``): a token bucket, ``rate`` tokens a
  second and at most ``burst`` saved up; a refused call costs nothing. This
  is also nginx ``limit_req`` (burst ``b`` there is ``b + 1`` here), AWS API
  Gateway and most SDKs' limiters.
* :class:`FixedWindowLimiter` (``window``): at most ``rate`` calls in each
  whole second of the clock, the counter reset at every second; a refused
  call costs nothing. Cheap counters in Redis (``INCR`` + ``EXPIRE``) work so.
* :class:`SlidingWindowLimiter` (``sliding``): HAProxy's
  ``sc_http_req_rate`` over a stick-table ``http_req_rate(1s)``: the calls of
  the current second plus those of the previous second weighted by the part
  of it still inside the sliding window, and *every* call counts, refused
  ones included. A client that keeps sending over the limit is refused for
  as long as it does: it must go quiet for the count to fall.

:class:`ScheduledLimiter` changes any of them's ``rate`` at given times
(``--quota-schedule "0:40,10:20,20:60"``). Each model answers one question,
:meth:`Limiter.admit`: may this call, arriving now, pass? Nothing here does
I/O or sleeps. Use a limiter from one thread (one event loop).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Final, Literal, Protocol

from ocr_async.limits import TokenBucket

__all__ = [
    "LIMITER_KINDS",
    "BucketLimiter",
    "FixedWindowLimiter",
    "Limiter",
    "LimiterKind",
    "ScheduledLimiter",
    "SlidingWindowLimiter",
    "make_limiter",
    "parse_schedule",
]

#: The names of the limiter kinds, as ``--quota-kind`` takes them.
LimiterKind = Literal["bucket", "window", "sliding"]
LIMITER_KINDS: Final[tuple[LimiterKind, ...]] = ("bucket", "window", "sliding")

Clock = Callable[[], float]


class Limiter(Protocol):
    """Decides, call by call, whether a call arriving now is within the quota."""

    #: Calls per second allowed; a schedule changes it while running.
    rate: float

    def admit(self) -> bool:
        """Count a call arriving now; True if it passes, False if refused."""
        ...

    def reset(self) -> None:
        """Forget every call: a full bucket, empty windows."""
        ...


def _check_rate(rate: float) -> None:
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"quota rate must be a positive number of calls per second, not {rate}")


class BucketLimiter:
    """A token bucket: ``rate`` calls a second, ``burst`` of them at once.

    The arithmetic is :class:`ocr_async.limits.TokenBucket`'s (the client's
    own pacer): one implementation of a token bucket, used here only through
    its non-blocking :meth:`~ocr_async.limits.TokenBucket.try_acquire`.
    """

    def __init__(self, rate: float, burst: float, *, clock: Clock = time.monotonic) -> None:
        _check_rate(rate)
        if not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"burst must be at least 1, not {burst}")
        self._clock = clock
        self._burst = burst
        self._bucket = TokenBucket(rate, burst, clock=clock)

    def __repr__(self) -> str:
        return f"BucketLimiter(rate={self.rate:g}, burst={self._burst:g})"

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._bucket.rate

    @rate.setter
    def rate(self, value: float) -> None:
        _check_rate(value)
        self._bucket.rate = value

    @property
    def burst(self) -> float:
        """The most tokens saved up."""
        return self._burst

    def admit(self) -> bool:
        """Take a token if there is one."""
        return self._bucket.try_acquire()

    def reset(self) -> None:
        """A full bucket."""
        self._bucket = TokenBucket(self.rate, self._burst, clock=self._clock)


class FixedWindowLimiter:
    """At most ``rate`` calls (rounded down, at least 1) in each whole second."""

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        _check_rate(rate)
        self.rate = rate
        self._clock = clock
        self._window = -math.inf
        self._count = 0

    def __repr__(self) -> str:
        return f"FixedWindowLimiter(rate={self.rate:g})"

    def admit(self) -> bool:
        """Count the call in this second's window if there is room left."""
        window = math.floor(self._clock())
        if window != self._window:
            self._window, self._count = window, 0
        if self._count < max(1, math.floor(self.rate)):
            self._count += 1
            return True
        return False

    def reset(self) -> None:
        """An empty window."""
        self._window, self._count = -math.inf, 0


class SlidingWindowLimiter:
    """HAProxy's ``http_req_rate(1s)`` with ``sc_http_req_rate(0) gt rate``.

    HAProxy keeps two counters per one-second period (``freq_ctr``): the
    current one and the previous one, and reads the rate as
    ``curr + prev * (1 - elapsed)``, ``elapsed`` the part of the current
    period gone by, truncated to an integer. ``track-sc0`` counts the call
    before the rule reads the rate, so the call counts itself, and it counts
    whether the rule then refuses it or not.
    """

    def __init__(self, rate: float, *, clock: Clock = time.monotonic) -> None:
        _check_rate(rate)
        self.rate = rate
        self._clock = clock
        self._start = clock()
        self._period = 0
        self._current = 0
        self._previous = 0

    def __repr__(self) -> str:
        return f"SlidingWindowLimiter(rate={self.rate:g})"

    def admit(self) -> bool:
        """Count the call, then refuse it if the weighted count is over the rate."""
        elapsed = self._clock() - self._start
        period = math.floor(elapsed)
        if period != self._period:
            # One period on, the current count becomes the previous one; more
            # than one, and both are stale.
            self._previous = self._current if period == self._period + 1 else 0
            self._current = 0
            self._period = period
        self._current += 1
        weighted = self._current + self._previous * (1.0 - (elapsed - period))
        return math.floor(weighted) <= self.rate

    def reset(self) -> None:
        """No calls counted; periods start now."""
        self._start = self._clock()
        self._period = self._current = self._previous = 0


class ScheduledLimiter:
    """Another limiter whose rate follows ``steps`` of (seconds, rate).

    Times count from the first call after creation or :meth:`reset`, so that
    a client started later still sees the whole schedule. The first step
    must be at 0.
    """

    def __init__(
        self, limiter: Limiter, steps: Sequence[tuple[float, float]], *, clock: Clock
    ) -> None:
        if not steps or steps[0][0] != 0:
            raise ValueError("a quota schedule starts at 0 s")
        times = [at for at, _ in steps]
        if times != sorted(times) or len(set(times)) != len(times):
            raise ValueError("a quota schedule's times must increase")
        for _, rate in steps:
            _check_rate(rate)
        self._limiter = limiter
        self._steps = tuple(steps)
        self._clock = clock
        self._origin: float | None = None
        limiter.rate = steps[0][1]

    def __repr__(self) -> str:
        steps = ",".join(f"{at:g}:{rate:g}" for at, rate in self._steps)
        return f"ScheduledLimiter({self._limiter!r}, {steps!r})"

    @property
    def rate(self) -> float:
        """The rate in effect now."""
        return self._limiter.rate

    @rate.setter
    def rate(self, value: float) -> None:
        raise AttributeError("a scheduled limiter's rate follows its schedule")

    @property
    def steps(self) -> tuple[tuple[float, float], ...]:
        """The schedule: (seconds since the first call, rate) pairs."""
        return self._steps

    def rate_at(self, seconds: float) -> float:
        """The scheduled rate ``seconds`` after the first call."""
        current = self._steps[0][1]
        for at, rate in self._steps:
            if seconds < at:
                break
            current = rate
        return current

    def admit(self) -> bool:
        """Apply the step due now, then ask the limiter."""
        now = self._clock()
        if self._origin is None:
            self._origin = now
        rate = self.rate_at(now - self._origin)
        if rate != self._limiter.rate:
            self._limiter.rate = rate
        return self._limiter.admit()

    def reset(self) -> None:
        """Back to the first step; the schedule restarts at the next call."""
        self._origin = None
        self._limiter.rate = self._steps[0][1]
        self._limiter.reset()


def parse_schedule(text: str) -> tuple[tuple[float, float], ...]:
    """``"0:40,10:20,20:60"`` -> ((0, 40), (10, 20), (20, 60)): seconds, calls/s.

    Raises ValueError, naming the bad step, for anything else.
    """
    steps: list[tuple[float, float]] = []
    for part in text.split(","):
        at, sep, rate = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            step = (float(at), float(rate))
        except ValueError:
            raise ValueError(f"bad quota step {part.strip()!r}: expected SECONDS:RATE") from None
        if not (math.isfinite(step[0]) and step[0] >= 0):
            raise ValueError(f"bad quota step {part.strip()!r}: time must be 0 or more")
        steps.append(step)
    return tuple(steps)


def make_limiter(
    kind: LimiterKind,
    rate: float,
    *,
    burst: float | None = None,
    schedule: Sequence[tuple[float, float]] = (),
    clock: Clock = time.monotonic,
) -> Limiter:
    """A limiter of ``kind`` at ``rate`` calls/s, following ``schedule`` if given.

    ``burst`` is for ``bucket`` only (default: one second's worth, at least 1).
    With a schedule, ``rate`` is replaced by its steps.
    """
    _check_rate(rate)
    limiter: Limiter
    if kind == "bucket":
        limiter = BucketLimiter(
            rate, max(1.0, round(rate)) if burst is None else burst, clock=clock
        )
    elif burst is not None:
        raise ValueError(f"a burst applies to the bucket kind, not to {kind!r}")
    elif kind == "window":
        limiter = FixedWindowLimiter(rate, clock=clock)
    elif kind == "sliding":
        limiter = SlidingWindowLimiter(rate, clock=clock)
    else:
        raise ValueError(f"unknown limiter kind {kind!r}: choose from {', '.join(LIMITER_KINDS)}")
    if schedule:
        return ScheduledLimiter(limiter, schedule, clock=clock)
    return limiter
