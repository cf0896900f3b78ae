"""The retry policy as a table: after this failure, with these counters, do that."""

from __future__ import annotations

import pytest

from ocr_async.errors import (
    AnswerTooLargeError,
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    HttpStatusError,
    InvalidRequestError,
    InvalidTokenError,
    MalformedResponseError,
    OcrError,
    RateLimitedError,
    RequestTimeoutError,
    ServerFailureError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
)
from ocr_async.limits import MAX_RETRY_AFTER
from ocr_async.retry import (
    Decision,
    GiveUp,
    RenewToken,
    Repace,
    RetryPolicy,
    Tried,
    Wait,
    decide,
)

POLICY = RetryPolicy(max_attempts=3, max_throttled=4, initial_wait=0.5, max_wait=3.0, jitter=0.5)


def no_jitter(low: float, high: float) -> float:
    return low


def full_jitter(low: float, high: float) -> float:
    return high


def with_retry_after(error: OcrError, seconds: float) -> OcrError:
    error.retry_after = seconds
    return error


# (error, counters before deciding (this attempt counted), paced) -> (decision, counters after)
CASES = [
    # --- transient failures back off, within max_attempts ---------------------------------
    pytest.param(
        ServerFailureError(5005001, "engine"),
        Tried(attempts=1),
        False,
        Wait(0.5),
        Tried(attempts=1, backed_off=1),
        id="server-failure-waits-initial",
    ),
    pytest.param(
        RequestTimeoutError("timeout", "slow"),
        Tried(attempts=2, backed_off=1),
        True,
        Wait(1.0),
        Tried(attempts=2, backed_off=2),
        id="timeout-doubles-even-when-paced",
    ),
    pytest.param(
        ConnectionFailedError("connection", "reset"),
        Tried(attempts=3, backed_off=2),
        False,
        GiveUp(),
        Tried(attempts=3, backed_off=2),
        id="third-attempt-is-the-last",
    ),
    pytest.param(
        MalformedResponseError("bad_response", "html"),
        Tried(attempts=2, throttled=1),
        False,
        Wait(0.5),
        Tried(attempts=2, throttled=1, backed_off=1),
        id="refusals-for-rate-do-not-count-against-max-attempts",
    ),
    pytest.param(
        HttpStatusError(502, "gateway"),
        Tried(attempts=1, backed_off=5),
        False,
        Wait(3.0),
        Tried(attempts=1, backed_off=6),
        id="waits-are-capped-at-max-wait",
    ),
    # --- final failures give up at once --------------------------------------------------
    pytest.param(
        InvalidRequestError(4000003, "type"),
        Tried(attempts=1),
        False,
        GiveUp(),
        Tried(attempts=1),
        id="invalid-request-is-final",
    ),
    pytest.param(
        AuthError(4010001, "appkey"),
        Tried(attempts=1),
        True,
        GiveUp(),
        Tried(attempts=1),
        id="auth-refusal-is-final",
    ),
    pytest.param(
        HttpStatusError(404, "not here"),
        Tried(attempts=1),
        False,
        GiveUp(),
        Tried(attempts=1),
        id="http-404-is-final",
    ),
    pytest.param(
        AnswerTooLargeError("answer_too_large", "bomb"),
        Tried(attempts=1),
        False,
        GiveUp(),
        Tried(attempts=1),
        id="an-answer-over-the-cap-is-final",
    ),
    # --- a refused token: renewed once, only with attempts left ---------------------------
    pytest.param(
        InvalidTokenError(4010006, "token"),
        Tried(attempts=1),
        False,
        RenewToken(),
        Tried(attempts=1, renewed_token=True),
        id="refused-token-is-renewed",
    ),
    pytest.param(
        InvalidTokenError(4010006, "token"),
        Tried(attempts=2, renewed_token=True),
        False,
        GiveUp(),
        Tried(attempts=2, renewed_token=True),
        id="renewed-only-once-per-image",
    ),
    pytest.param(
        InvalidTokenError(4010006, "token"),
        Tried(attempts=3),
        False,
        GiveUp(),
        Tried(attempts=3),
        id="no-renewal-without-an-attempt-to-use-it",
    ),
    # --- refusals for the rate ---------------------------------------------------------------
    pytest.param(
        RateLimitedError(4000006, "limit"),
        Tried(attempts=1),
        True,
        Repace(),
        Tried(attempts=1, throttled=1),
        id="paced-4000006-goes-back-through-the-controller",
    ),
    pytest.param(
        TooManyRequestsError(429, "gateway"),
        Tried(attempts=5, throttled=2),
        True,
        Repace(),
        Tried(attempts=5, throttled=3),
        id="paced-429-too",
    ),
    pytest.param(
        TemporarilyUnavailableError(5000503, "busy"),
        Tried(attempts=9, throttled=3),
        True,
        GiveUp(),
        Tried(attempts=9, throttled=4),
        id="refusals-have-their-own-budget",
    ),
    pytest.param(
        RateLimitedError(4000006, "limit"),
        Tried(attempts=1),
        False,
        Wait(0.5),
        Tried(attempts=1, throttled=1, backed_off=1),
        id="unpaced-refusal-backs-off",
    ),
    pytest.param(
        with_retry_after(TooManyRequestsError(429, "gateway"), 7.0),
        Tried(attempts=1),
        False,
        Wait(7.0),
        Tried(attempts=1, throttled=1, backed_off=1),
        id="retry-after-is-a-floor",
    ),
    pytest.param(
        with_retry_after(ServerFailureError(5000001, "down"), 0.1),
        Tried(attempts=1),
        False,
        Wait(0.5),
        Tried(attempts=1, backed_off=1),
        id="retry-after-below-the-backoff-changes-nothing",
    ),
    pytest.param(
        with_retry_after(TooManyRequestsError(429, "gateway"), 86400.0),
        Tried(attempts=1),
        False,
        Wait(MAX_RETRY_AFTER),
        Tried(attempts=1, throttled=1, backed_off=1),
        id="retry-after-is-capped",
    ),
    pytest.param(
        with_retry_after(TooManyRequestsError(429, "gateway"), 30.0),
        Tried(attempts=1),
        True,
        Repace(),
        Tried(attempts=1, throttled=1),
        id="paced-retry-after-is-the-controllers-to-honour",
    ),
]


@pytest.mark.parametrize(("error", "before", "paced", "decision", "after"), CASES)
def test_decide(
    error: OcrError, before: Tried, paced: bool, decision: Decision, after: Tried
) -> None:
    step = decide(POLICY, before, error, paced=paced, uniform=no_jitter)
    assert (step.decision, step.tried) == (decision, after)


def test_jitter_is_added_to_every_backoff() -> None:
    step = decide(
        POLICY, Tried(attempts=1), ServerFailureError(-1, "x"), paced=False, uniform=full_jitter
    )
    assert step.decision == Wait(0.5 + POLICY.jitter)


def test_deciding_changes_neither_the_error_nor_the_counters() -> None:
    error = InvalidTokenError(4010006, "token")
    before = Tried(attempts=1)
    decide(POLICY, before, error, paced=False)
    assert (error.retryable, error.attempts, before) == (False, 0, Tried(attempts=1))


def test_an_attempt_counts_one_more() -> None:
    assert Tried(attempts=2, throttled=1).attempt() == Tried(attempts=3, throttled=1)


@pytest.mark.parametrize(
    "settings",
    [{"max_attempts": 0}, {"max_throttled": 0}, {"initial_wait": -1.0}, {"jitter": -0.1}],
)
def test_bad_policies_are_configuration_errors(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**settings)  # type: ignore[arg-type]


def test_with_attempts_is_a_copy() -> None:
    error = HttpStatusError(503, "busy")
    error.retry_after = 2.0
    copied = error.with_attempts(4)
    assert (type(copied), copied.status, copied.retryable, copied.retry_after) == (
        HttpStatusError,
        503,
        True,
        2.0,
    )
    assert (copied.attempts, error.attempts) == (4, 0)
    assert str(copied) == str(error)
