"""Rate control: a fair token bucket and one shared, self-tuning controller.

NHN publishes no numeric call limit for General OCR; result codes 4000006
(:class:`~ocr_async.errors.RateLimitedError`) and 5000503
(:class:`~ocr_async.errors.TemporarilyUnavailableError`) are the only signals
(``spec/API-FACTS.md``, "Limits"). So the quota has to be found by probing,
and every probe past it costs a refused call. One :class:`RateController` is
shared by all workers, so they probe together and back off together instead
of each retrying on a timer of its own, which wastes calls and oscillates.

The client's loop for one request is::

    while True:
        ticket = await controller.acquire()   # paced; waits out any pause
        try:
            result = await send(request)
        except THROTTLE_ERRORS:
            controller.on_throttled(ticket)   # and round again, no sleep
            continue
        except ApiError:
            controller.on_success(ticket)     # answered: not refused for rate
            raise
        controller.on_success(ticket)
        return result

A call refused for the limit goes back through :meth:`RateController.acquire`
and waits its turn with everyone else: the shared pacer already knows how
fast it is safe to go, and an independent backoff would only fight it.

Nothing here does I/O. Time comes from an injected ``clock`` and waiting from
an injected ``sleep``, so tests run on a virtual clock without waiting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from ocr_async.errors import ConfigurationError, RateLimitedError, TemporarilyUnavailableError

__all__ = [
    "BETA",
    "DOUBLING_TIME",
    "HISTORY_SIZE",
    "INITIAL_RATE",
    "MARGIN",
    "MIN_RATE",
    "PAUSE",
    "RECOVERY_TIME",
    "THROTTLE_ERRORS",
    "RateController",
    "RateEvent",
    "RateSample",
    "Ticket",
    "TokenBucket",
]

#: Seconds, monotonic: ``time.monotonic`` or an event loop's ``time``.
Clock = Callable[[], float]
#: Waits the given seconds: ``asyncio.sleep`` or a test's fake.
Sleep = Callable[[float], Awaitable[None]]

#: The answers that mean "too fast": 4000006 (call limit) and 5000503 (the
#: upstream's own 429). Any other answer was not refused for rate.
THROTTLE_ERRORS: Final = (RateLimitedError, TemporarilyUnavailableError)

# The constants of the adaptive mode, in one place. RateController's
# docstring gives the reasoning; the figures quoted there come from the
# discrete-event simulation in tests/test_limits.py.
#: Multiplicative decrease: after a throttle, the rate drops to BETA x the
#: quota estimate. Botocore (and TCP CUBIC, RFC 8312) use 0.7.
BETA: Final = 0.9
#: Seconds CUBIC takes to climb from the cut back to the quota estimate (its
#: K), the same for every quota.
RECOVERY_TIME: Final = 6.0
#: The quota estimate sits this fraction below the rate of the refused call.
MARGIN: Final = 0.02
#: Seconds every worker holds back after a throttle.
PAUSE: Final = 0.05
#: Where a controller with no quota known starts, in calls/s.
INITIAL_RATE: Final = 10.0
#: Seconds in which slow start doubles the rate, until the first throttle.
DOUBLING_TIME: Final = 1.0
#: The floor, in calls/s (botocore's TokenBucket._MIN_RATE).
MIN_RATE: Final = 0.5
#: Samples kept in :attr:`RateController.history`.
HISTORY_SIZE: Final = 1024

# Growth is capped at twice what workers really send (botocore's
# ClientRateLimiter._MAX_RATE_ADJUST_SCALE): a rate nobody uses is untested,
# and unbounded it would become a burst the moment work arrives.
_MAX_GROWTH_OVER_SENT: Final = 2.0
# The send rate behind that cap is measured over this many seconds.
_SENT_WINDOW: Final = 2.0
# settled_rate averages this many seconds of successes: long enough to read
# steadily through CUBIC's sawtooth, short enough to follow a changed quota.
_SETTLED_WINDOW: Final = 10.0
# Growth samples are thinned to one per this many seconds so that the bounded
# history covers minutes rather than the last few hundred calls.
_SAMPLE_INTERVAL: Final = 0.25
# The head of the queue re-reads the rate at least this often, so a raised
# rate is noticed by a waiter who went to sleep under a low one.
_MAX_NAP: Final = 0.5
# Exact in virtual time, not in floats: a token this close to whole counts as
# whole, or a waiter could sleep 1e-16 s over and over.
_EPSILON: Final = 1e-9


class TokenBucket:
    """A pacer: ``rate`` tokens a second, at most ``burst`` saved up.

    :meth:`acquire` takes one token, waiting through the injected ``sleep``
    until there is one. Waiters are served first come, first served: they
    queue, and only the one at the head sleeps, until its token falls due;
    once served it hands the head to the next. So a thousand waiters cost one
    timer, not a thousand that all wake and race (no thundering herd), and
    nobody can be overtaken (no starvation). Each step is O(1).

    A queue with one sleeper, rather than each caller reserving a departure
    time in advance, is deliberate: a rate cut or a :meth:`pause` must apply
    to callers who are already waiting, and a reserved slot could not be taken
    back. The head re-reads the rate and the pause every time it wakes.

    The bucket starts full. ``rate`` and ``burst`` may change at any time.
    Not thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _check_rate(rate, "rate")
        _check_burst(burst)
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        # When tokens were last counted. During a pause it lies in the future:
        # no token accrues before then, which is what holds every worker back.
        self._stamp = clock()
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self._rate:g}, burst={self._burst:g})"

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        _check_rate(value, "rate")
        # Count what accrued at the old rate first, or the time since the last
        # count would be credited at the new one (botocore's bucket does too).
        self._refill(self._clock())
        self._rate = value

    @property
    def burst(self) -> float:
        """The most tokens saved up: calls that may leave back to back."""
        return self._burst

    @burst.setter
    def burst(self, value: float) -> None:
        _check_burst(value)
        self._refill(self._clock())
        self._burst = value
        self._tokens = min(self._tokens, value)

    @property
    def tokens(self) -> float:
        """Tokens available now (0 while paused)."""
        now = self._clock()
        self._refill(now)
        return self._tokens if now >= self._stamp else 0.0

    @property
    def waiting(self) -> int:
        """How many callers are queued in :meth:`acquire`."""
        return len(self._waiters)

    @property
    def paused_until(self) -> float:
        """The clock time before which no token is handed out (now if none)."""
        return max(self._stamp, self._clock())

    def pause(self, seconds: float) -> None:
        """Hand out no token to anyone for ``seconds`` from now.

        The bucket is frozen: nothing accrues during the pause and savings are
        cut to one token, so the workers do not come back as a burst. Pauses
        do not add up; the later end wins.
        """
        now = self._clock()
        self._refill(now)
        self._tokens = min(self._tokens, 1.0)
        self._stamp = max(self._stamp, now + max(seconds, 0.0))

    def try_acquire(self) -> bool:
        """Take a token if one is free now and nobody is queued; never wait."""
        return not self._waiters and self._take(self._clock())

    async def acquire(self) -> float:
        """Wait for a token and take it; return the clock time it was taken.

        A cancelled waiter leaves the queue without costing anyone their place.
        """
        if not self._waiters:
            now = self._clock()
            if self._take(now):
                return now
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            if self._waiters[0] is not waiter:
                await waiter  # whoever is served before us hands the head over
            while True:
                now = self._clock()
                if self._take(now):
                    return now
                await self._sleep(min(self._wait_time(now), _MAX_NAP))
        finally:
            if self._waiters[0] is waiter:
                self._waiters.popleft()
            else:  # cancelled while queued behind others
                self._waiters.remove(waiter)
            if self._waiters and not self._waiters[0].done():
                self._waiters[0].set_result(None)

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now

    def _take(self, now: float) -> bool:
        self._refill(now)
        if now >= self._stamp and self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(self._tokens - 1.0, 0.0)
            return True
        return False

    def _wait_time(self, now: float) -> float:
        # The caller refilled at ``now``. While paused, _stamp is the pause's
        # end, and the tokens stand still until then.
        missing = max(1.0 - self._tokens, 0.0)
        return max(self._stamp - now, 0.0) + missing / self._rate


@dataclass(frozen=True, slots=True)
class Ticket:
    """One departure, handed back to the controller with its outcome.

    ``epoch`` is the number of congestion events the controller had reacted
    to when the call left; ``rate`` the pacing rate it left at; ``sent_at``
    the clock time. A throttle on a ticket of an older epoch is about a call
    sent before the last cut, which that cut already answered.
    """

    epoch: int
    sent_at: float
    rate: float


#: Why a history sample was taken: the controller started; the rate grew (at
#: most one sample per 0.25 s); a throttle cut the rate (and paused); a
#: throttle paused a fixed-rate controller.
RateEvent = Literal["start", "grow", "cut", "pause"]


@dataclass(frozen=True, slots=True)
class RateSample:
    """One point of :attr:`RateController.history`: the rate at clock time ``t``."""

    t: float
    rate: float
    event: RateEvent


class _RateMeter:
    """Events per second over the last ``window`` seconds, exactly.

    A deque of timestamps, O(1) amortised per event; at 2000 calls/s a 10 s
    window holds 20,000 floats, which is nothing.
    """

    def __init__(self, window: float, origin: float) -> None:
        self._window = window
        self._origin = origin
        self._times: deque[float] = deque()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def count(self, now: float) -> int:
        """Events in the last ``window`` seconds."""
        self._trim(now)
        return len(self._times)

    def rate(self, now: float) -> float:
        self._trim(now)
        # Until a whole window has passed, divide by the time that has.
        span = min(self._window, now - self._origin)
        if span <= 0:
            return math.inf if self._times else 0.0
        return len(self._times) / span

    def _trim(self, now: float) -> None:
        edge = now - self._window
        while self._times and self._times[0] <= edge:
            self._times.popleft()


class RateController:
    """The one rate controller shared by every worker of a client.

    **Fixed** (``fixed_rps=R``): a plain :class:`TokenBucket` at ``R`` with a
    burst of one, so no second ever sees more than ``R + 1`` calls leave. A
    throttle still pauses all workers for :data:`PAUSE`; the rate never moves.

    **Adaptive** (``fixed_rps=None``) finds the quota itself:

    * *Unpaced start* (``initial_rate=None``, what :class:`~ocr_async.OcrClient`
      uses): as botocore does, the bucket stays off until the first throttle,
      so a service with no limit in reach is driven by the concurrency
      bound alone, at full speed. The first throttle starts slow start from
      the answers of the last second (calls that got through: a fair first
      guess at the quota, at worst an underestimate that doubling corrects).
    * *Slow start.* Nothing is known, so start at ``initial_rate`` and double
      every :data:`DOUBLING_TIME` seconds, as TCP slow start does, until the
      first throttle: a quota of 2000 calls/s is found in about 8 s, one of 5
      at once.
    * *Congestion avoidance: CUBIC*, as botocore's adaptive retry mode applies
      it to client-side rate limiting (botocore/retries/adaptive.py,
      throttling.py ``CubicCalculator``). On a throttle the quota estimate
      ``w_max`` is set and the rate drops to ``BETA * w_max``; from then on,
      with ``t`` the seconds since the cut and ``K`` = :data:`RECOVERY_TIME`,
      ``rate = w_max * (1 - (1 - BETA) * (1 - t / K) ** 3)``: concave back to
      ``w_max`` in ``K`` seconds, a long flat stretch just under the quota,
      then convex growth that probes past it and finds a raised quota (twice
      the old one in about 20 s) without knowing it was raised.

    Where this departs from botocore, and why (all figures from the
    simulation in tests/test_limits.py: 64 workers, a token bucket or a
    one-second window on the server's side):

    * ``BETA`` 0.9, not 0.7. A quota is a limiter, not a queue: there is no
      backlog to drain after a throttle, only a rate to step under. The cubic
      loses about ``(1 - BETA) / 4`` of the quota per cycle in its concave
      part, so 0.7 costs up to 7.5%; 0.9 costs 2.5% (simulated against a
      limiter with no burst: 92-93% of the quota at 0.7, 96% at 0.9). The
      price is slower convergence to a fair share when other clients use the
      same app key.
    * A recovery time ``K`` of 6 s for every quota, where botocore's constant
      ``C = 0.4`` calls/s**3 gives ``K = cbrt(w_max * (1 - BETA) / C)``: 1.5 s
      at 5 calls/s, 11 s at 2000. Each congestion event costs about one
      refused call and a pause whatever the quota, so at 5 calls/s botocore's
      1.5 s cycles put 16% of calls into refusals (2.3% here); with K fixed,
      every quota gets the same few cycles a minute.
    * ``w_max`` is the rate the refused call was paced at, less
      :data:`MARGIN`, not the measured send rate: that call proves the quota
      lies below its rate, and a plateau placed exactly there would make every
      cycle end in a refusal as soon as it is reached.

    Both modes: several throttles for calls sent before a cut are one
    congestion event. :meth:`acquire` stamps each ticket with the current
    epoch; :meth:`on_throttled` cuts (and pauses) only for a ticket of the
    current epoch and then opens a new one, so a burst of 4000006 answers for
    calls already in flight causes one cut, not a collapse.

    Use it from one event loop. ``clock`` and ``sleep`` are injectable.
    """

    def __init__(
        self,
        fixed_rps: float | None = None,
        *,
        initial_rate: float | None = INITIAL_RATE,
        min_rate: float = MIN_RATE,
        max_rate: float = math.inf,
        beta: float = BETA,
        recovery_time: float = RECOVERY_TIME,
        margin: float = MARGIN,
        pause: float = PAUSE,
        history_size: int = HISTORY_SIZE,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if fixed_rps is not None:
            _check_rate(fixed_rps, "fixed_rps")
        if initial_rate is not None:
            _check_rate(initial_rate, "initial_rate")
        _check_rate(min_rate, "min_rate")
        if not max_rate >= min_rate:
            raise ConfigurationError("max_rate must not be below min_rate")
        if not 0 < beta < 1:
            raise ConfigurationError("beta must be between 0 and 1")
        if not (recovery_time > 0 and math.isfinite(recovery_time)):
            raise ConfigurationError("recovery_time must be a positive number of seconds")
        if not 0 <= margin < 1:
            raise ConfigurationError("margin must be at least 0 and below 1")
        if not (pause >= 0 and math.isfinite(pause)):
            raise ConfigurationError("pause must be a number of seconds, 0 or more")
        if history_size < 1:
            raise ConfigurationError("history_size must be at least 1")
        self._fixed = fixed_rps
        self._min_rate = min_rate
        self._max_rate = max_rate
        self._beta = beta
        self._recovery = recovery_time
        self._margin = margin
        self._pause = pause
        self._clock = clock
        now = clock()
        self._unpaced = fixed_rps is None and initial_rate is None
        first = INITIAL_RATE if initial_rate is None else initial_rate
        start = fixed_rps if fixed_rps is not None else min(max(first, min_rate), max_rate)
        # Burst 1: calls leave evenly spaced. Saved-up tokens would only let
        # workers arrive together, which is what a server's limiter punishes.
        self._bucket = TokenBucket(start, 1.0, clock=clock, sleep=sleep)
        self._epoch = 0
        self._slow_start = fixed_rps is None
        self._w_max: float | None = None
        self._last_cut = now
        self._last_grow = now
        self._sent_meter = _RateMeter(_SENT_WINDOW, now)
        self._settled_meter = _RateMeter(_SETTLED_WINDOW, now)
        self._answered_meter = _RateMeter(1.0, now)
        self._sent_recent = _RateMeter(1.0, now)
        self._sent = 0
        self._successes = 0
        self._throttled = 0
        self._events = 0
        self._history: deque[RateSample] = deque(maxlen=history_size)
        self._last_sample = -math.inf
        self._record(now, "start")

    def __repr__(self) -> str:
        mode = "adaptive" if self._fixed is None else f"fixed_rps={self._fixed:g}"
        return f"RateController({mode}, rate={self.current_rate:.4g})"

    # -- the three calls a worker makes ---------------------------------------

    async def acquire(self) -> Ticket:
        """Wait for this worker's turn to send; return the ticket to report.

        Waits behind every earlier caller (first come, first served), at the
        current rate, and through any pause. Call it again before a retry.
        """
        if self._unpaced:
            sent_at = self._clock()
        else:
            sent_at = await self._bucket.acquire()
        self._sent += 1
        self._sent_meter.add(sent_at)
        self._sent_recent.add(sent_at)
        return Ticket(epoch=self._epoch, sent_at=sent_at, rate=self.current_rate)

    def on_success(self, ticket: Ticket) -> None:
        """Report that the API answered the call of ``ticket``.

        Any answer but a throttle counts, failures such as 4000501 included:
        the call got through the limiter. Report nothing for a call that got
        no answer (a timeout, a reset): it says nothing about the quota.
        """
        now = self._clock()
        self._successes += 1
        self._settled_meter.add(now)
        self._answered_meter.add(now)
        if self._fixed is not None or self._unpaced:
            return
        rate = self._bucket.rate
        if self._slow_start:
            target = rate * 2.0 ** ((now - self._last_grow) / DOUBLING_TIME)
        else:
            assert self._w_max is not None
            x = 1.0 - (now - self._last_cut) / self._recovery
            target = self._w_max * (1.0 - (1.0 - self._beta) * x**3)
        self._last_grow = now
        # A success never lowers the rate (the cubic starts where the cut left
        # it and only rises), and growth stops at twice what is really sent.
        ceiling = max(rate, _MAX_GROWTH_OVER_SENT * self._sent_meter.rate(now))
        new = min(target, ceiling, self._max_rate)
        if new > rate:
            self._bucket.rate = new
            if now - self._last_sample >= _SAMPLE_INTERVAL:
                self._record(now, "grow")

    def on_throttled(self, ticket: Ticket) -> bool:
        """Report 4000006 or 5000503 for the call of ``ticket``.

        Returns True when this opened a congestion event (adaptive: the rate
        was cut; both modes: every worker paused), False when the ticket
        predates the last event, which already accounted for it. Either way,
        acquire a new ticket and send again.
        """
        now = self._clock()
        self._throttled += 1
        if ticket.epoch != self._epoch:
            return False
        self._epoch += 1
        self._events += 1
        if self._unpaced:
            self._start_pacing(now)
        elif self._fixed is None:
            self._cut(now, ticket.rate)
        self._bucket.pause(self._pause)
        self._record(now, "pause" if self._fixed is not None else "cut")
        return True

    # -- what the controller reports ------------------------------------------

    @property
    def fixed_rps(self) -> float | None:
        """The fixed rate asked for, or None when adaptive."""
        return self._fixed

    @property
    def current_rate(self) -> float:
        """The rate calls are paced at now, in calls/s (infinite while unpaced)."""
        return math.inf if self._unpaced else self._bucket.rate

    @property
    def settled_rate(self) -> float:
        """Calls answered per second over the last 10 s: the goodput.

        It reads steadily through CUBIC's sawtooth; it is the figure to print
        as the rate a run settled at.
        """
        rate = self._settled_meter.rate(self._clock())
        return 0.0 if math.isinf(rate) else rate

    @property
    def quota_estimate(self) -> float | None:
        """CUBIC's ``w_max``: the plateau, just under the last refused rate.

        None until the first throttle, and always None with a fixed rate.
        """
        return self._w_max

    @property
    def slow_start(self) -> bool:
        """Whether the adaptive controller is still looking for its first limit."""
        return self._slow_start

    @property
    def epoch(self) -> int:
        """The current epoch: congestion events so far. Tickets carry it."""
        return self._epoch

    @property
    def paused_until(self) -> float:
        """The clock time before which nobody sends (now, when not paused)."""
        return self._bucket.paused_until

    @property
    def sent(self) -> int:
        """Tickets handed out: calls sent, retries included."""
        return self._sent

    @property
    def successes(self) -> int:
        """Answers reported through :meth:`on_success`."""
        return self._successes

    @property
    def throttled(self) -> int:
        """Throttles reported, those folded into an earlier event included."""
        return self._throttled

    @property
    def congestion_events(self) -> int:
        """Throttles that opened an event: cuts (adaptive) or pauses (fixed)."""
        return self._events

    @property
    def waiting(self) -> int:
        """Workers queued in :meth:`acquire`."""
        return self._bucket.waiting

    @property
    def history(self) -> tuple[RateSample, ...]:
        """The latest samples of the rate, oldest first, for plots and logs.

        At most ``history_size`` of them: the oldest go first. Cuts and pauses
        are always recorded, growth at most every 0.25 s.
        """
        return tuple(self._history)

    # -- internals ------------------------------------------------------------

    def _start_pacing(self, now: float) -> None:
        # The first limit met while unpaced. The calls sent in the last
        # second, less this refused one, bound the quota from above (they
        # were too many); the answers of the last second are a fair guess
        # too, and the larger one is taken as if a call had been refused at
        # that rate: CUBIC cuts below it and probes from there. Only with no
        # figure at all does slow start begin from the initial rate.
        self._unpaced = False
        estimate = max(
            float(self._answered_meter.count(now)), float(self._sent_recent.count(now) - 1)
        )
        if estimate > 0:
            self._cut(now, estimate)
            return
        self._slow_start = True
        self._last_grow = now
        self._bucket.rate = min(max(INITIAL_RATE, self._min_rate), self._max_rate)

    def _cut(self, now: float, refused_rate: float) -> None:
        w_max = max(refused_rate * (1.0 - self._margin), self._min_rate)
        self._w_max = w_max
        self._last_cut = now
        self._last_grow = now
        self._slow_start = False
        self._bucket.rate = min(max(w_max * self._beta, self._min_rate), self._max_rate)

    def _record(self, now: float, event: RateEvent) -> None:
        self._history.append(RateSample(now, self.current_rate, event))
        if event == "grow":
            self._last_sample = now


def _check_rate(value: float, name: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of calls per second")


def _check_burst(value: float) -> None:
    if not (value >= 1 and math.isfinite(value)):
        raise ConfigurationError("burst must be at least 1 token")
