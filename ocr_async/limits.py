"""Rate control: a fair token bucket and one shared controller that measures the quota.

NHN publishes no numeric call limit for General OCR; result codes 4000006
(:class:`~ocr_async.errors.RateLimitedError`) and 5000503
(:class:`~ocr_async.errors.TemporarilyUnavailableError`), and a gateway's
HTTP 429 (:class:`~ocr_async.errors.TooManyRequestsError`), are the only
signals (``spec/API-FACTS.md``, "Limits"), and nobody says what kind of
limiter sends them. So the quota has to be found by probing, and every probe
past it costs a refused call. One :class:`RateController` is shared by all
workers, so they probe together and back off together instead of each
retrying on a timer of its own, which wastes calls and oscillates.

The client's loop for one request is::

    while True:
        ticket = await controller.acquire()   # paced; waits out any pause
        try:
            result = await send(request)
        except THROTTLE_ERRORS as exc:        # and round again, no sleep
            controller.on_throttled(ticket, retry_after=exc.retry_after)
            continue
        except ApiError:
            controller.on_success(ticket)     # answered: not refused for rate
            raise
        controller.on_success(ticket)
        return result

A call refused for the limit goes back through :meth:`RateController.acquire`
and waits its turn with everyone else: the shared pacer already knows how
fast it is safe to go, and an independent backoff would only fight it. A
``Retry-After`` pauses every worker.

**The design: measure, hold, probe.** A limiter that refuses is saturated,
and a saturated limiter lets through exactly its quota, so what got
through while refusals happen measures the quota directly, as BBR measures
a bottleneck from the delivery rate rather than from loss. The controller
never guesses a new rate from the old one (no multiplicative decrease);
each refusal that opens an event measures the quota again:

* *Start-up.* From :data:`INITIAL_RATE`, double every
  :data:`DOUBLING_TIME` while workers wait for their turn (when nobody
  waits, the workers set the pace and the climb stands still, so a run
  bounded by its concurrency never builds a rate nobody uses). At the first
  refusal the limit was met a call or two before: the estimate is the rate
  two calls back. Calls that saved up while every worker was in flight
  (:data:`SLOW_START_BURST`, a tenth of a second's worth) leave together
  until then: answers that come back in a clump go out again in one, not
  one per timer. While workers queue nothing saves up, so the climb and its
  overshoot are as before; after the first refusal the bucket holds one
  call and a half again.
* *Hold.* The rate holds :data:`MARGIN` under the estimate, for at least
  :data:`MIN_HOLD` seconds and :data:`PROBE_CALLS` calls, or longer if the
  last probe was costly: its refusals divided by :data:`PROBE_COST` calls,
  at most :data:`MAX_HOLD` seconds' worth. A probe costs about one refusal
  on a bucket but several on a fixed window, which stays shut to the end
  of its second; this keeps probes at about 2 % of calls on either.
* *Probe.* Then the rate climbs along ``1 + (t / PROBE_TIME) ** 3``: flat
  at first, twice the hold after :data:`PROBE_TIME`, three times after
  1.26 s, until a refusal. It is measured where it lands:

  - if no more got through since the last cut than the old estimate
    allows, the quota has not moved, and what ran the probe past it was
    the limiter's slack: a bucket's savings from the hold (the probe met the
    quota that many calls before the refusal), or a window's or sliding
    count's second as a whole (what got through in the last second). The
    estimate becomes the smaller of those, and never falls below the old one.
    What got through is counted twice, and the larger count taken: over the
    last second, and per second of the probe itself, from the end of the
    hold to the refused call (every call between got through). The second
    count is what raises an estimate that landed low (a start-up refused
    under the quota, a quota raised by less than the raise below needs):
    the last second is then mostly the hold, 5 % under the old estimate,
    and its count stays near it, so the probes settled at 191 calls/s on a
    200/s bucket measured at 150, and three processes sharing it at 180 to
    186; the probe's own calls left at and above the old estimate, and all
    got through;
  - if more got through than the old quota allows (by 0.1 s of it and two
    calls), the quota was raised and the probe found it: the estimate is the
    rate the probe had passed the savings earlier.
* *Refused at the hold* (the quota fell, another process probed, or
  jitter): the limiter has been full since the last cut, so the share of
  calls it let through since then, times the rate they left at, is the
  quota; four calls' worth of prior keeps one unlucky refusal from
  counting as a halving. No cut goes below :data:`MAX_CUT` of the rate.
* *Bursts and tails are one event.* Refusals of calls sent before the last
  cut (the in-flight burst) add one call's time (1 / estimate) each to the
  pause everyone waits out: on HAProxy's sliding count every refused call
  counts against the quota, so a burst of refusals must be waited out, not
  hammered. Refusals of calls sent after the cut but before anything got
  through since (a fixed window still shut, a sliding count still high)
  double the pause each instead of cutting again, up to 1 s in all.

**The figures behind the constants.** ``python -m benchmarks.limiters
--sweep`` prints them: the discrete-event simulation
(:mod:`ocr_async.emulator.simulation`, seeded, on virtual time; 64 workers,
24-36 ms answers, up to 1 ms of jitter in front of the limiter), changing
one constant at a time from the chosen set. Goodput is over the whole run,
start-up included, against the quota times the run's time plus its burst;
"doubled" is the median (and worst) time to 95 % of a quota doubled at 8
moments of the cycle.

=====================  ============================================  ==============================
constant (chosen)      with it                                       instead
=====================  ============================================  ==============================
DOUBLING_TIME 0.15 s   bucket 200/s, 10 s: goodput 0.934; no-burst   0.25 s: 0.922; 0.800
                       40/s, 60 s: 0.832
INITIAL_RATE 10/s      the same: 0.934; 0.832                        5/s: 0.922; 0.775
MARGIN 0.05            window 40/s, 60 s: 4.3 % refused; quota 40    0.03: 4.8 %; 1.8 s and 0.36;
                       -> 20 -> 60 up in 0.85 s, two processes'      but goodput 1-2 % higher
                       smaller share 0.49 (seeded test cases)
PROBE_TIME 1 s         doubled bucket 40/s: 1.6 s (2.2 s)            1.5 s: 1.8 s (2.7 s)
PROBE_COST 2 %         window 40/s, 60 s: 4.3 % refused              no cost rule: 6.1 % (but a
                                                                     doubled window at 20/s is
                                                                     found in 1.1 s, not 3.8 s)
MAX_HOLD 4 s           doubled window 20/s: 3.8 s (5.1 s)            no cap: 5.6 s (9.5 s)
_SHARE_PRIOR 4 calls   window 40/s: 4.3 % refused; sliding count     1 call: 4.3 % and 0.791 (but
                       200/s, 10 s: 0.886                            5/s, 10 s: 13.8 %, not 18 %)
_RAISE_SECONDS 0.1 s   doubled bucket 40/s: 1.6 s (2.2 s)            0.5 s: 3.7 s (4.3 s)
_CLIMB_BACK 2 calls    no-burst 40/s: 0.832; sliding count 200/s:    0 calls: 0.798; 3.1 %
                       1.7 % refused
CATCH_UP 0.5 token     ``--rps 50`` delivers 49.9/s (benchmark)      1 token: 47.6/s (the old
                                                                     pacer, docs/benchmarks.md)
=====================  ============================================  ==============================

The window's 4.3 % on that seed was 3.7 % before the probe's own count
(below); over six seeds it is 4.3 % against 4.4 % before, and the other
cells of the matrix move by a point at most (``docs/benchmarks.md``).

What bounds it, in the same simulation: at 5 calls/s a 10 s run has 50
calls and the start-up climb, overshooting a bucket's saved burst, costs
about 8 of them (18 % refused; the goodput is still 0.97). A limiter with no
burst refuses any call closer than 1/quota to the one before, so a
millisecond of jitter (4 % of the gap at 40/s, 20 % at 200/s) caps it near
83 % and 80 %. A fixed window costs a few refusals per probe (4.3 % at
40/s). Two processes that start together share a quota evenly, but nothing
pulls unequal shares together: one started a second later can be held to
10 % (one controller for all of them, :mod:`ocr_async.shared_quota`, is the
fix).
``python -m benchmarks.limiters`` measures the same against the emulator,
nginx and HAProxy (``docs/benchmarks.md``).

**Fixed rate** (``--rps``): the same pacer at the given rate, scheduled
against the clock: :data:`CATCH_UP` lets a worker woken late leave the next
one less to wait, so the rate asked for is the rate sent, and no two calls
leave at once.

**Shared by many processes** (:mod:`ocr_async.shared_quota`): one quota
called from several processes or machines needs one controller, not N that
probe it N times over. The seam is small, and pacing stays local: a
:class:`QuotaCoordinator` set as :attr:`RateController.coordinator` hears of
every congestion event this controller opens (:meth:`QuotaCoordinator.on_cut`,
with the quota it measured on its own calls, a :class:`Cut`), and sets this
controller's part of the one shared schedule with :meth:`RateController.follow`
(a :class:`Share`: the rate at a moment and the curve it climbs from there,
start-up doubling or the probe's cubic). Between two shares the controller
runs that curve itself, so a probe climbs smoothly rather than in steps of a
heartbeat, and with the coordinator gone (``coordinator = None``) it simply
carries on from where the last share left it: plain local control.

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
from typing import Final, Literal, Protocol

from ocr_async.errors import (
    ConfigurationError,
    RateLimitedError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
)

__all__ = [
    "CATCH_UP",
    "DOUBLING_TIME",
    "HISTORY_SIZE",
    "INITIAL_RATE",
    "MARGIN",
    "MAX_CUT",
    "MAX_HOLD",
    "MAX_RETRY_AFTER",
    "MIN_HOLD",
    "MIN_RATE",
    "PROBE_CALLS",
    "PROBE_COST",
    "PROBE_TIME",
    "SLOW_START_BURST",
    "THROTTLE_ERRORS",
    "WINDOW",
    "Cut",
    "CutKind",
    "QuotaCoordinator",
    "RateController",
    "RateEvent",
    "RateSample",
    "Share",
    "Ticket",
    "TokenBucket",
    "share_let_through",
]

#: Seconds, monotonic: ``time.monotonic`` or an event loop's ``time``.
Clock = Callable[[], float]
#: Waits the given seconds: ``asyncio.sleep`` or a test's fake.
Sleep = Callable[[float], Awaitable[None]]

#: The answers that mean "too fast": 4000006 (call limit), 5000503 (the
#: upstream's own 429) and a gateway's HTTP 429. Any other answer was not
#: refused for rate.
THROTTLE_ERRORS: Final = (RateLimitedError, TemporarilyUnavailableError, TooManyRequestsError)

# The constants, in one place; the module docstring gives the figures that
# chose them.
#: Where the start-up climb begins, in calls/s.
INITIAL_RATE: Final = 10.0
#: Seconds in which the start-up climb doubles the rate.
DOUBLING_TIME: Final = 0.15
#: Seconds of calls at the climbing rate that may leave together in the
#: start-up climb, if they saved up while nobody was waiting.
SLOW_START_BURST: Final = 0.1
#: The rate holds this fraction under the quota estimate.
MARGIN: Final = 0.05
#: Seconds after which a probe has doubled the rate it left the hold at
#: (the time constant of its cubic, ``1 + (t / PROBE_TIME) ** 3``).
PROBE_TIME: Final = 1.0
#: Calls sent at the hold, at least, before probing above it.
PROBE_CALLS: Final = 50.0
#: Seconds of calls at the hold at most, however costly the last probe was
#: (but never fewer than PROBE_CALLS).
MAX_HOLD: Final = 4.0
#: The share of calls probes may cost: the hold lasts the last probe's
#: refusals divided by this, in calls.
PROBE_COST: Final = 0.02
#: The shortest hold, in seconds.
MIN_HOLD: Final = 1.0
#: No cut goes below this fraction of the rate the refused call left at.
MAX_CUT: Final = 0.5
#: Seconds over which calls sent are counted to measure a limiter that
#: judges each second as a whole.
WINDOW: Final = 1.0
#: Tokens of lateness the pacer makes up: a worker woken late by the timer
#: leaves the next one less to wait, so the rate asked for is the rate sent.
CATCH_UP: Final = 0.5
#: The floor, in calls/s (botocore's TokenBucket._MIN_RATE).
MIN_RATE: Final = 0.5
#: The longest ``Retry-After`` honoured, in seconds.
MAX_RETRY_AFTER: Final = 300.0
#: Samples kept in :attr:`RateController.history`.
HISTORY_SIZE: Final = 1024

# The start-up climb met the limit this many calls before the refused one.
_CLIMB_BACK: Final = 2
# A probe that let through this many calls, and this many seconds of the
# old quota, more than the old quota allows since the last cut found a
# raised quota rather than a bucket's savings or a window's slack.
_RAISE_CALLS: Final = 2.0
_RAISE_SECONDS: Final = 0.1
# Pseudo-calls let through at a hold refusal, so that a few calls do not
# decide the share alone.
_SHARE_PRIOR: Final = 4.0
# The longest pause a burst of refusals can build up, in seconds.
_MAX_PAUSE: Final = 1.0
# A tail of refusals doubles the pause at most this many times.
_MAX_DOUBLINGS: Final = 6
# The bucket's burst once paced: one call, and the lateness made up.
_PACED_BURST: Final = 1.0 + CATCH_UP
# Calls whose rate is remembered for looking back from a refusal.
_RECENT_RATES: Final = 1024
# settled_rate averages this many seconds of successes.
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

    The bucket starts full, or with ``tokens``. ``rate`` and ``burst`` may
    change at any time.
    Not thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        *,
        tokens: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        _check_rate(rate, "rate")
        _check_burst(burst)
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst if tokens is None else min(max(tokens, 0.0), burst)
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


#: Where the refused call left, for a :class:`Cut`: in the start-up climb,
#: above the hold (a probe), or at the rate held as safe.
CutKind = Literal["start-up", "probe", "hold"]


@dataclass(frozen=True, slots=True)
class Cut:
    """A congestion event a controller opened, as its :class:`QuotaCoordinator` hears it.

    ``estimate`` is the quota it measured from what got through of its own
    calls (its part of a shared quota), ``hold_rate`` the rate it now holds
    at, in calls/s. The hold lasts ``hold_seconds`` (:data:`MIN_HOLD`) and
    ``hold_calls`` calls (:data:`PROBE_CALLS`, more after a costly probe),
    whichever ends later, before probing again: a coordinator counts those
    calls over everyone's, not this controller's alone. ``slow_start`` says
    the refusal ended the start-up climb. ``t`` is the controller's clock.
    ``kind`` says where the refused call left (``slow_start`` is
    ``kind == "start-up"``), and ``refused_rate`` the rate it left at;
    ``let_through`` and ``refused`` count this controller's calls since the
    last event (this refusal included) that got through and were refused:
    the sample a refusal at the hold measured its share from. A coordinator
    measures the group from them: the start-up's climb back counts the
    group's calls, not this controller's, and a refusal at the hold is
    evidence about this controller's part of the quota.
    """

    t: float
    estimate: float
    hold_rate: float
    hold_seconds: float
    hold_calls: float
    slow_start: bool
    kind: CutKind
    refused_rate: float
    let_through: int
    refused: int


@dataclass(frozen=True, slots=True)
class Share:
    """A controller's part of a shared schedule, set by :meth:`RateController.follow`.

    Before ``since`` (the controller's clock) the rate holds at ``base``
    calls/s; from then on it climbs from ``base``: doubling every
    :data:`DOUBLING_TIME` while ``slow_start``, else along the probe's cubic
    ``1 + (t / PROBE_TIME) ** 3``. ``estimate`` is this controller's part
    of the quota as last measured (None before the first refusal anywhere).
    """

    base: float
    since: float
    slow_start: bool
    estimate: float | None

    def rate_at(self, t: float) -> float:
        """The rate this schedule reaches at clock time ``t``."""
        x = t - self.since
        if x <= 0:
            return self.base
        if self.slow_start:
            return float(self.base * 2.0 ** (x / DOUBLING_TIME))
        return self.base * (1.0 + (x / PROBE_TIME) ** 3)


class QuotaCoordinator(Protocol):
    """What a :class:`RateController` tells whoever shares its quota with others.

    The controller paces on its own; the coordinator only hears of the
    congestion events it opens, and answers (later, from its own task) with
    :meth:`RateController.follow`. ``on_cut`` is called synchronously from
    :meth:`RateController.on_throttled`: it must not block, and must not
    raise.
    """

    def on_cut(self, cut: Cut) -> None:
        """A refusal opened a congestion event here, and this is what it measured."""
        ...


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

    def span(self, now: float) -> float:
        """The window, or the time since the origin until a whole window has passed."""
        return max(min(self._window, now - self._origin), _EPSILON)

    def rate(self, now: float) -> float:
        self._trim(now)
        if now - self._origin <= 0:
            return math.inf if self._times else 0.0
        return len(self._times) / self.span(now)

    def _trim(self, now: float) -> None:
        edge = now - self._window
        while self._times and self._times[0] <= edge:
            self._times.popleft()


class RateController:
    """The one rate controller shared by every worker of a client.

    **Fixed** (``fixed_rps=R``): calls leave at ``R`` a second, scheduled
    against the clock (a worker woken late leaves the next less to wait, so
    ``R`` is what is sent), never two at once. A refusal still pauses every
    worker for one call's time; the rate never moves.

    **Adaptive** (``fixed_rps=None``): the start-up climb, then holds just
    under the measured quota and probes above it; the module docstring
    gives the design and the figures behind its constants.

    Both modes: several refusals for calls sent before a cut, or refused
    before anything got through after it, are one congestion event: they
    lengthen the pause instead of cutting again. :meth:`acquire` stamps each
    ticket with the current epoch for that.

    Use it from one event loop. ``clock`` and ``sleep`` are injectable.
    """

    def __init__(
        self,
        fixed_rps: float | None = None,
        *,
        initial_rate: float = INITIAL_RATE,
        min_rate: float = MIN_RATE,
        max_rate: float = math.inf,
        margin: float = MARGIN,
        history_size: int = HISTORY_SIZE,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if fixed_rps is not None:
            _check_rate(fixed_rps, "fixed_rps")
        _check_rate(initial_rate, "initial_rate")
        _check_rate(min_rate, "min_rate")
        if not max_rate >= min_rate:
            raise ConfigurationError("max_rate must not be below min_rate")
        if not 0 <= margin < 1:
            raise ConfigurationError("margin must be at least 0 and below 1")
        if history_size < 1:
            raise ConfigurationError("history_size must be at least 1")
        self._fixed = fixed_rps
        self._min_rate = min_rate
        self._max_rate = max_rate
        self._margin = margin
        self._clock = clock
        now = clock()
        start = fixed_rps if fixed_rps is not None else self._clamp(initial_rate)
        # One token to start with: a full bucket would let the first callers
        # leave back to back, which a strict limiter refuses.
        burst = _PACED_BURST if fixed_rps is not None else self._slow_start_burst(start)
        self._bucket = TokenBucket(start, burst, tokens=1.0, clock=clock, sleep=sleep)
        self._slow_start = fixed_rps is None
        self._estimate: float | None = None
        # The rate climbs from _ramp_base since _ramp_since: doubling in the
        # start-up climb, along the probe's cubic after a hold.
        self._ramp_base = start
        self._ramp_since = now
        # After a cut the rate holds at _hold_rate until _hold_until and
        # until _hold_calls have been sent, then probes upward.
        self._hold_rate = start
        self._hold_until = now
        self._hold_calls = PROBE_CALLS
        self._epoch = 0
        self._cut_at = now
        # Since the last cut: calls sent, refused, and refusals of a tail
        # (refused before anything got through).
        self._epoch_sent = 0
        self._epoch_refused = 0
        self._tail = 0
        # When this epoch's probe left the hold, and the calls sent by then
        # (None while holding, or before any probe).
        self._probe_from: tuple[float, int] | None = None
        # Refusals since the last event, all kinds: what the last probe cost.
        self._cycle_refused = 0
        # How long a refusal takes to come back (a decaying maximum).
        self._refusal_latency = 0.0
        self._recent_sends: deque[float] = deque()
        self._recent_rates: deque[tuple[float, float]] = deque(maxlen=_RECENT_RATES)
        self._sent_meter = _RateMeter(WINDOW, now)
        self._refused_meter = _RateMeter(WINDOW, now)
        self._settled_meter = _RateMeter(_SETTLED_WINDOW, now)
        self._sent = 0
        self._queued = 0
        self._successes = 0
        self._throttled = 0
        self._events = 0
        self._coordinator: QuotaCoordinator | None = None
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
        asked_at = self._clock()
        self._update(asked_at)
        if self._bucket.try_acquire():
            # A token was free: no wait, though a real clock has moved on by
            # the time the bucket reads it (so its time would not tell).
            sent_at = asked_at
        else:
            sent_at = await self._bucket.acquire()
            self._queued += 1
        rate = self._bucket.rate
        self._sent += 1
        self._epoch_sent += 1
        self._recent_sends.append(sent_at)
        self._recent_rates.append((sent_at, rate))
        self._sent_meter.add(sent_at)
        return Ticket(epoch=self._epoch, sent_at=sent_at, rate=rate)

    def on_success(self, ticket: Ticket) -> None:
        """Report that the API answered the call of ``ticket``.

        Any answer but a refusal for the rate counts, failures such as
        4000501 included: the call got through the limiter. Report nothing
        for a call that got no answer (a timeout, a reset): it says nothing
        about the quota.
        """
        now = self._clock()
        self._successes += 1
        self._settled_meter.add(now)
        self._update(now)

    def on_throttled(self, ticket: Ticket, retry_after: float | None = None) -> bool:
        """Report a refusal for the rate (4000006, 5000503, HTTP 429) of ``ticket``.

        ``retry_after`` is the server's ``Retry-After`` in seconds: nobody
        sends before it has passed (at most :data:`MAX_RETRY_AFTER`).
        Returns True when this opened a congestion event (adaptive: the
        quota was measured again and the rate cut; both modes: every worker
        paused), False when it belonged to the last one, which only made the
        pause longer. Either way, acquire a new ticket and send again.
        """
        now = self._clock()
        self._throttled += 1
        self._cycle_refused += 1
        self._refusal_latency = max(now - ticket.sent_at, self._refusal_latency * 0.9)
        self._refused_meter.add(ticket.sent_at)
        if retry_after is not None and retry_after > 0:
            self._bucket.pause(min(retry_after, MAX_RETRY_AFTER))
        if ticket.epoch != self._epoch:
            # Sent before the last cut, which already answered it. On a
            # limiter that counts refused calls it is one more call to wait
            # out; elsewhere the next call could not pass sooner anyway.
            self._extend_pause(now, self._pause_step())
            return False
        self._epoch_refused += 1
        if self._epoch > 0 and self._let_through(now) <= 0:
            # Nothing has got through since the last cut: a fixed window
            # shut until its second ends, or a count of refused calls still
            # high. Cutting again would only measure that; wait it out
            # instead, doubling the wait with each refusal of the tail.
            self._tail += 1
            self._extend_pause(now, self._pause_step() * 2.0 ** min(self._tail, _MAX_DOUBLINGS))
            return False
        ended_climb = self._slow_start
        # The sample this refusal is measured on, before the cut resets it.
        let_through, refused = max(self._let_through(now), 0), self._epoch_refused
        kind: CutKind = "hold"
        if self._fixed is None:
            kind = self._cut(now, ticket)
        self._new_epoch(now)
        self._events += 1
        self._bucket.pause(self._pause_step())
        self._record(now, "pause" if self._fixed is not None else "cut")
        if self._coordinator is not None and self._estimate is not None:
            hold_seconds = self._hold_until - now
            self._coordinator.on_cut(
                Cut(
                    now,
                    self._estimate,
                    self._hold_rate,
                    hold_seconds,
                    self._hold_calls,
                    ended_climb,
                    kind,
                    ticket.rate,
                    let_through,
                    refused,
                )
            )
        return True

    # -- sharing a quota with other processes ---------------------------------

    @property
    def coordinator(self) -> QuotaCoordinator | None:
        """Who shares this quota with other processes, or None (local control).

        Set by the coordinator when it joins (:mod:`ocr_async.shared_quota`),
        and back to None when it leaves or loses its store: the controller then
        carries on alone from its last :class:`Share`. Adaptive mode only.
        """
        return self._coordinator

    @coordinator.setter
    def coordinator(self, value: QuotaCoordinator | None) -> None:
        if value is not None and self._fixed is not None:
            raise ConfigurationError("a shared quota needs the adaptive rate controller, not --rps")
        self._coordinator = value

    def follow(self, share: Share, *, event: bool = False) -> None:
        """Pace from now on along ``share``: this controller's part of a shared schedule.

        ``event`` says the share answers a congestion event another process
        opened: refusals of calls sent before it then count as that event
        (as after a cut of this controller's own) instead of opening one
        more. The hold is by time alone: the coordinator counted the calls.
        """
        if self._fixed is not None:
            raise ConfigurationError("a fixed rate follows no shared schedule")
        now = self._clock()
        if event:
            self._new_epoch(now)
        self._slow_start = share.slow_start
        self._estimate = share.estimate
        self._hold_rate = self._ramp_base = self._clamp(share.base)
        self._hold_until = self._ramp_since = share.since
        self._hold_calls = 0.0
        self._bucket.rate = self._clamp(share.rate_at(now))
        self._bucket.burst = _PACED_BURST
        if share.slow_start:
            self._ramp_base, self._ramp_since = self._bucket.rate, now
        if event:
            self._record(now, "cut")

    # -- what the controller reports ------------------------------------------

    @property
    def fixed_rps(self) -> float | None:
        """The fixed rate asked for, or None when adaptive."""
        return self._fixed

    @property
    def current_rate(self) -> float:
        """The rate calls are paced at now, in calls/s."""
        self._update(self._clock())
        return self._bucket.rate

    @property
    def settled_rate(self) -> float:
        """Calls answered per second over the last 10 s: the goodput.

        It is the figure to print as the rate a run settled at.
        """
        rate = self._settled_meter.rate(self._clock())
        return 0.0 if math.isinf(rate) else rate

    @property
    def quota_estimate(self) -> float | None:
        """The quota as last measured, in calls/s: the rate holds just under it.

        None until the first refusal, and always None with a fixed rate.
        """
        return self._estimate

    @property
    def slow_start(self) -> bool:
        """Whether the adaptive controller is still climbing to its first limit."""
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
    def queued(self) -> int:
        """Tickets that waited for the pacer: callers who wanted to send sooner.

        A coordinator reads it as demand: a process whose workers queue here
        could use more of a shared quota; one whose workers do not, cannot.
        """
        return self._queued

    @property
    def successes(self) -> int:
        """Answers reported through :meth:`on_success`."""
        return self._successes

    @property
    def throttled(self) -> int:
        """Refusals reported, those folded into an earlier event included."""
        return self._throttled

    @property
    def congestion_events(self) -> int:
        """Refusals that opened an event: cuts (adaptive) or pauses (fixed)."""
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

    def _new_epoch(self, now: float) -> None:
        """Open an epoch: refusals of calls sent before now belong to the last event."""
        self._epoch += 1
        self._cut_at = now
        self._epoch_sent = self._epoch_refused = self._tail = self._cycle_refused = 0
        self._probe_from = None
        self._recent_sends.clear()

    @staticmethod
    def _slow_start_burst(rate: float) -> float:
        # Until the first refusal, calls saved up while everyone was in
        # flight may leave together: answers that come back in a clump go
        # out in one, instead of one per timer over the next milliseconds.
        # Nothing saves up while workers queue, so the climb is as before.
        return max(_PACED_BURST, rate * SLOW_START_BURST)

    def _clamp(self, rate: float) -> float:
        return min(max(rate, self._min_rate), self._max_rate)

    def _pause_step(self) -> float:
        # One call's time at the quota: on a bucket or a window that just
        # refused, the next call could not pass sooner anyway.
        return 1.0 / (self._estimate or self._bucket.rate)

    def _extend_pause(self, now: float, seconds: float) -> None:
        self._bucket.pause(min(self._bucket.paused_until - now + seconds, _MAX_PAUSE))

    def _update(self, now: float) -> None:
        """Move the rate along its schedule: start-up doubling, or hold then probe."""
        if self._fixed is not None:
            return
        rate = self._bucket.rate
        if not self._slow_start and (now < self._hold_until or self._epoch_sent < self._hold_calls):
            # Holding, until both its time and its calls are done: a pause
            # sends nothing, so it does not count as holding.
            self._ramp_since = now
            return
        if not self._slow_start and self._probe_from is None:
            self._probe_from = (now, self._epoch_sent)
        if self._bucket.waiting == 0:
            # Nobody is waiting for a token: the workers, not the rate, set
            # the pace, and a rate nobody uses is untested. The climb stands
            # still until they wait again.
            self._ramp_base, self._ramp_since = rate, now
            return
        x = now - self._ramp_since
        if self._slow_start:
            target = self._ramp_base * 2.0 ** (x / DOUBLING_TIME)
        else:
            target = self._ramp_base * (1.0 + (x / PROBE_TIME) ** 3)
        new = self._clamp(target)
        if new > rate:
            self._bucket.rate = new
            if self._slow_start and self._coordinator is None:
                self._bucket.burst = self._slow_start_burst(new)
            if now - self._last_sample >= _SAMPLE_INTERVAL:
                self._record(now, "grow")

    def _rate_before(self, ticket: Ticket, calls: int) -> float:
        """The rate of the call sent ``calls`` before ``ticket``'s."""
        rates = self._recent_rates
        index = len(rates) - 1
        while index > 0 and rates[index][0] > ticket.sent_at:
            index -= 1
        return rates[max(index - calls, 0)][1] if rates else ticket.rate

    def _let_through(self, now: float) -> int:
        """Calls sent since the last cut that were not refused, as far as known.

        A refusal comes back within milliseconds, an answer only after the
        engine ran: a call sent longer ago than refusals take to come back,
        and not refused, got through.
        """
        edge = now - 2.0 * self._refusal_latency
        recent = self._recent_sends
        while recent and recent[0] <= edge:
            recent.popleft()
        return self._epoch_sent - len(recent) - self._epoch_refused

    def _probe_rate(self, ticket: Ticket) -> float:
        """Calls let through per second from the probe's start to the refused ``ticket``."""
        if self._probe_from is None or ticket.sent_at <= self._probe_from[0]:
            return 0.0
        since, sent = self._probe_from
        # Every call sent between the two got through: a refusal of one
        # would have opened the event first.
        later = 0
        rates = self._recent_rates
        while later < len(rates) and rates[-1 - later][0] > ticket.sent_at:
            later += 1
        passed = self._epoch_sent - sent - later - 1
        return max(passed, 0) / (ticket.sent_at - since)

    def _cut(self, now: float, ticket: Ticket) -> CutKind:
        """Measure the quota again from this refusal, and hold just under it; say where it left."""
        refused_rate = ticket.rate
        previous = self._estimate
        let_through = max(self._let_through(now), 0)
        elapsed = now - self._cut_at
        kind: CutKind
        if self._slow_start or previous is None:
            # The climb met the limit a call or two before this one.
            kind = "start-up"
            estimate = self._rate_before(ticket, _CLIMB_BACK)
        elif refused_rate > self._hold_rate * (1.0 + _EPSILON):
            kind = "probe"
            # Refused while probing above the hold. On a bucket the probe
            # first spent what the hold left unused (its savings), so it met
            # the quota that many calls before this one; a window or a
            # sliding count judges the last second as a whole, so the calls
            # sent in it are the figure there.
            saved = (previous - self._hold_rate) * max(self._hold_until - self._cut_at, 0.0)
            before = self._rate_before(ticket, math.ceil(saved) + 1)
            if let_through <= previous * (elapsed + _RAISE_SECONDS) + _RAISE_CALLS:
                span = self._sent_meter.span(now)
                passed = self._sent_meter.count(now) - self._refused_meter.count(now)
                # The probe's own calls count too: after an estimate that
                # landed low, the last second is mostly the hold under it,
                # and its count alone would keep the estimate there.
                estimate = max(previous, min(before, max(passed / span, self._probe_rate(ticket))))
            else:
                # More got through since the last cut than the old quota
                # allows, by over half a second's worth: it was raised, and
                # the probe found the new one.
                estimate = before
        else:
            # Refused at the rate held as safe: the quota is lower, and the
            # limiter has been full since the last cut, so the share of
            # calls it let through since then, times the rate they left at,
            # is its rate.
            kind = "hold"
            estimate = refused_rate * share_let_through(let_through, self._epoch_refused)
        estimate = max(estimate, refused_rate * MAX_CUT, self._min_rate)
        self._hold_calls = PROBE_CALLS
        if not self._slow_start:
            # A probe costs the refusals it takes to find the limit again:
            # about one on a bucket, a few on a fixed window that stays shut
            # to the end of its second. Holding for that many calls per
            # PROBE_COST keeps the share of calls probes cost the same on
            # every kind of limiter.
            cost = self._cycle_refused / PROBE_COST
            longest = max(PROBE_CALLS, estimate * MAX_HOLD)
            self._hold_calls = min(max(PROBE_CALLS, cost), longest)
        self._estimate = estimate
        self._slow_start = False
        self._hold_rate = self._clamp(estimate * (1.0 - self._margin))
        self._hold_until = now + MIN_HOLD
        self._ramp_base, self._ramp_since = self._hold_rate, self._hold_until
        self._bucket.rate = self._hold_rate
        self._bucket.burst = _PACED_BURST
        return kind

    def _record(self, now: float, event: RateEvent) -> None:
        self._history.append(RateSample(now, self._bucket.rate, event))
        if event == "grow":
            self._last_sample = now


def share_let_through(let_through: float, refused: float) -> float:
    """The share of calls a full limiter lets through, measured on a sample.

    ``let_through`` calls got through and ``refused`` were refused since the
    last congestion event. Four calls' worth of prior (as if that many more
    had got through) keeps one unlucky refusal early in a hold from counting
    as a halving. Times the rate the calls left at, it is
    the quota: how a refusal at the hold measures it.
    """
    return (let_through + _SHARE_PRIOR) / (let_through + refused + _SHARE_PRIOR)


def _check_rate(value: float, name: str) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigurationError(f"{name} must be a positive number of calls per second")


def _check_burst(value: float) -> None:
    if not (value >= 1 and math.isfinite(value)):
        raise ConfigurationError("burst must be at least 1 token")
