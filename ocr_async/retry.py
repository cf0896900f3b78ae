"""Retry decisions as data: after a failed attempt, what to do next.

A pure function decides, from the policy, what happened so far to this
image and the error just raised, one of four things:

* :class:`Wait`: sleep this long, then send again (exponential backoff with
  jitter, never shorter than the server's ``Retry-After``);
* :class:`RenewToken`: the token was refused (4010006): ask the provider for
  a new one, then send again at once;
* :class:`Repace`: refused for the rate (4000006, 5000503, HTTP 429) while a
  rate controller paces the requests: go back through it, with no wait of
  our own (the controller already pauses every worker);
* :class:`GiveUp`: raise the error.

The client's loop carries the decision out (:meth:`ocr_async.OcrClient.send`);
nothing here sleeps, sends or mutates an exception, so every rule is
tested as a table (tests/test_retry_policy.py). The waits' randomness comes
in through ``uniform``, so tests pin it.

The budgets: at most :attr:`RetryPolicy.max_attempts` requests per image,
not counting refusals for the rate, which have their own budget
(:attr:`RetryPolicy.max_throttled`): with the rate controller they are
paced, not hammered, and an image must not fail merely because the run is
at the quota.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from ocr_async.errors import ConfigurationError, InvalidTokenError, OcrError
from ocr_async.limits import MAX_RETRY_AFTER, THROTTLE_ERRORS

__all__ = [
    "Decision",
    "GiveUp",
    "RenewToken",
    "Renewal",
    "Repace",
    "RetryPolicy",
    "Tried",
    "Wait",
    "decide",
]

#: Draws a number from ``[a, b]``: ``random.uniform`` or a test's fixed choice.
Uniform = Callable[[float, float], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently to try again.

    Waits grow as ``initial_wait * 2**n`` up to ``max_wait``, plus a random
    jitter of up to ``jitter`` seconds so that many workers refused at the
    same moment do not all come back at the same moment.
    """

    #: Requests per image at most, the first included, not counting
    #: call-limit refusals (4000006, 5000503).
    max_attempts: int = 5
    #: Call-limit refusals per image at most.
    max_throttled: int = 20
    initial_wait: float = 0.5
    max_wait: float = 20.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        if self.max_throttled < 1:
            raise ConfigurationError("max_throttled must be at least 1")
        if self.initial_wait < 0 or self.max_wait < 0 or self.jitter < 0:
            raise ConfigurationError("retry waits must not be negative")

    def backoff(self, failures: int, uniform: Uniform = random.uniform) -> float:
        """Seconds to wait after the ``failures``-th backed-off failure of an image."""
        exponential = self.initial_wait * 2.0 ** (failures - 1)
        return min(exponential, self.max_wait) + uniform(0.0, self.jitter)


@dataclass(frozen=True, slots=True)
class Tried:
    """What happened so far to one image: the counters the policy decides from."""

    #: Attempts made, this one included (requests sent, or tried to send).
    attempts: int = 0
    #: Of those, refusals for the rate.
    throttled: int = 0
    #: Backoff waits taken.
    backed_off: int = 0
    #: Whether a new token was already asked for (once per image at most).
    renewed_token: bool = False

    def attempt(self) -> Tried:
        """The counters once one more attempt is made."""
        # Built directly: dataclasses.replace costs more than the whole decision.
        return Tried(self.attempts + 1, self.throttled, self.backed_off, self.renewed_token)


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep ``seconds``, then send again."""

    seconds: float


@dataclass(frozen=True, slots=True)
class RenewToken:
    """Ask the token provider for a new token, then send again at once."""


@dataclass(frozen=True, slots=True)
class Repace:
    """Go back through the rate controller (which paces and pauses), then send again."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Raise the error: retrying cannot help, or the budget is spent."""


Decision = Wait | RenewToken | Repace | GiveUp


@dataclass(frozen=True, slots=True)
class Renewal:
    """A decision with the counters it leaves behind."""

    decision: Decision
    tried: Tried


def decide(
    policy: RetryPolicy,
    tried: Tried,
    error: OcrError,
    *,
    paced: bool,
    uniform: Uniform = random.uniform,
) -> Renewal:
    """What to do after ``error`` ended the attempt counted in ``tried``.

    ``paced`` says a rate controller paces every request: refusals for the
    rate then go back through it (:class:`Repace`) instead of backing off.
    Returns the decision and the counters after it.
    """
    if isinstance(error, THROTTLE_ERRORS):
        tried = replace(tried, throttled=tried.throttled + 1)
        if tried.throttled >= policy.max_throttled:
            return Renewal(GiveUp(), tried)
        if paced:
            return Renewal(Repace(), tried)
        return _backoff(policy, tried, error, uniform)
    spent = tried.attempts - tried.throttled >= policy.max_attempts
    if isinstance(error, InvalidTokenError):
        # Worth exactly one more try, and only with a new token.
        if spent or tried.renewed_token:
            return Renewal(GiveUp(), tried)
        return Renewal(RenewToken(), replace(tried, renewed_token=True))
    if spent or not error.retryable:
        return Renewal(GiveUp(), tried)
    return _backoff(policy, tried, error, uniform)


def _backoff(policy: RetryPolicy, tried: Tried, error: OcrError, uniform: Uniform) -> Renewal:
    tried = replace(tried, backed_off=tried.backed_off + 1)
    wait = policy.backoff(tried.backed_off, uniform)
    if error.retry_after is not None:
        # A server's Retry-After is a floor, not a hint.
        wait = max(wait, min(error.retry_after, MAX_RETRY_AFTER))
    return Renewal(Wait(wait), tried)
