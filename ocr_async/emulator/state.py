"""The emulator's state: its settings and its live counters.

:class:`EmulatorConfig` says how the emulator behaves, :class:`EmulatorStats`
what it did. The handlers (:mod:`.handlers`) and the OAuth endpoint
(:mod:`.oauth`) both read the one and count into the other; tests read the
counters back through :data:`STATS_KEY` or
:attr:`~.server.RunningEmulator.stats`. Nothing here handles a request, so
this module imports none of the modules that do: they import it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from aiohttp import web

from ocr_async.emulator.engine import FallbackEngine, TextEngine
from ocr_async.emulator.faults import FaultPlan
from ocr_async.emulator.limiters import (
    LIMITER_KINDS,
    FixedWindowLimiter,
    Limiter,
    LimiterKind,
    ScheduledLimiter,
    make_limiter,
)
from ocr_async.protocol import DEFAULT_MAX_BYTES

__all__ = ["CONFIG_KEY", "STATS_KEY", "EmulatorConfig", "EmulatorStats"]

# Engine threads by default: one per core, at most 2. Each real engine call
# keeps a core busy (onnxruntime and tesseract are told to use one thread).
_DEFAULT_ENGINE_WORKERS: Final = max(1, min(2, os.cpu_count() or 1))


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """How the emulator behaves; the defaults accept anything well formed.

    ``appkey`` None accepts any app key. Tokens: with ``tokens`` and ``uak``
    both None any non-empty token is accepted; ``tokens`` lists static tokens
    that are always accepted; ``uak`` (User Access Key ID -> secret) turns on
    the OAuth endpoint, whose live tokens are accepted too, and with
    ``tokens`` None they are the only ones (so a test can prove a client
    really uses OAuth). Without ``uak`` the OAuth routes answer 404.
    ``quota_rps`` None means no call limit; ``quota_kind`` says how calls are
    counted against it (:data:`~.limiters.LIMITER_KINDS`); ``quota_burst``
    (bucket only) defaults to ``max(1, round(quota_rps))``;
    ``quota_schedule`` (seconds from the first call, rate) pairs change the
    rate over time, the first at 0 (``quota_rps`` may then be left out).
    ``clock`` drives the quota and token
    expiry, so tests can step time instead of sleeping. ``fault`` receives
    the 1-based number of each call that passed auth and quota and may
    return a result code to answer instead (e.g. ``lambda n: 5000503 if n %
    3 == 0 else None``); ``faults`` is a seeded plan of random failures,
    transport failures included (:mod:`.faults`).
    """

    appkey: str | None = None
    tokens: frozenset[str] | None = field(default=None, repr=False)
    #: Largest accepted request body, and largest image downloaded from a URL.
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Seconds awaited before each OCR answer (for calls past the quota).
    latency: float = 0.0
    quota_rps: float | None = None
    quota_burst: int | None = None
    quota_kind: LimiterKind = "bucket"
    quota_schedule: tuple[tuple[float, float], ...] = ()
    #: Off by default: only loopback image URLs are fetched, so a test can
    #: never make the emulator reach out to the network.
    allow_remote_urls: bool = False
    #: The real service gives up after 20 s (4000503).
    download_timeout: float = 20.0
    engine: TextEngine = field(default_factory=FallbackEngine)
    #: Threads that run the engine off the event loop (engines that are not
    #: ``inline``): at most this many recognitions at once, others queue.
    engine_workers: int = _DEFAULT_ENGINE_WORKERS
    clock: Callable[[], float] = time.monotonic
    fault: Callable[[int], int | None] | None = None
    faults: FaultPlan | None = None
    #: User Access Key ID -> secret; kept out of the repr.
    uak: Mapping[str, str] | None = field(default=None, repr=False)
    #: ``expires_in`` of issued tokens (NHN: 60..86,400 s; any positive here).
    token_lifetime: float = 86400.0
    #: Send ``expires_in`` as a string, as NHN's documentation types it.
    expires_in_as_string: bool = False

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes}")
        if self.latency < 0:
            raise ValueError(f"latency must not be negative, not {self.latency}")
        if self.engine_workers < 1:
            raise ValueError(f"engine_workers must be at least 1, not {self.engine_workers}")
        if self.download_timeout <= 0:
            raise ValueError(f"download_timeout must be positive, not {self.download_timeout}")
        if self.quota_rps is not None and self.quota_rps <= 0:
            raise ValueError(f"quota_rps must be positive, not {self.quota_rps}")
        if self.quota_burst is not None and self.quota_burst < 1:
            raise ValueError(f"quota_burst must be at least 1, not {self.quota_burst}")
        if self.quota_kind not in LIMITER_KINDS:
            raise ValueError(f"quota_kind must be one of {', '.join(LIMITER_KINDS)}")
        if self.quota_burst is not None and self.quota_kind != "bucket":
            raise ValueError("quota_burst applies to the bucket quota_kind only")
        if self.quota_schedule:
            # Checked here, with the limiter's own rules, rather than at the
            # first call.
            object.__setattr__(self, "quota_schedule", tuple(self.quota_schedule))
            ScheduledLimiter(FixedWindowLimiter(1.0), self.quota_schedule, clock=self.clock)
            if self.quota_rps is None:
                object.__setattr__(self, "quota_rps", self.quota_schedule[0][1])
        if not (math.isfinite(self.token_lifetime) and self.token_lifetime > 0):
            raise ValueError(f"token_lifetime must be positive, not {self.token_lifetime}")
        if self.uak is not None:
            for key_id, secret in self.uak.items():
                # HTTP Basic cannot carry ':' in the user ID (RFC 7617).
                if not key_id or ":" in key_id or not secret:
                    raise ValueError("uak needs non-empty IDs without ':' and non-empty secrets")
            # A private read-only copy: the caller's dict cannot change it later.
            object.__setattr__(self, "uak", MappingProxyType(dict(self.uak)))

    @property
    def burst(self) -> int | None:
        """The bucket size in effect, or None when there is no quota or no bucket."""
        if self.quota_rps is None or self.quota_kind != "bucket":
            return None
        return self.quota_burst if self.quota_burst is not None else max(1, round(self.quota_rps))

    def make_limiter(self) -> Limiter | None:
        """A new limiter for the quota, or None when there is none."""
        if self.quota_rps is None:
            return None
        return make_limiter(
            self.quota_kind,
            self.quota_rps,
            burst=self.burst,
            schedule=self.quota_schedule,
            clock=self.clock,
        )


@dataclass(slots=True)
class EmulatorStats:
    """Live counters; tests and benchmarks read them to prove what happened.

    ``requests`` counts every OCR POST. ``by_code`` counts the envelopes
    answered (written, or attempted to be) by result code; calls whose
    answer a transport fault replaced, and slow calls whose client left
    first, are not in it. ``answered_ok`` counts success envelopes (code 0)
    written in full to a connection still open: the recognitions a client
    can have seen. ``disconnected`` counts answers not written because the
    client had gone. ``faults`` counts injected faults by kind name
    (:class:`~ocr_async.emulator.faults.FaultKind` values), as decided.
    ``oversize`` counts 4131000 answers, ``rate_limited`` 4000006 answers,
    ``bytes_received`` request body bytes actually read (an oversized chunked
    body counts the ``max_bytes + 1`` read before giving up), ``downloads``
    image URL fetches attempted. ``in_flight`` is the number of OCR calls
    being handled now and ``peak_in_flight`` its maximum, which shows how
    much concurrency a client really used. OAuth: ``tokens_issued``,
    ``tokens_revoked``, ``oauth_refused`` (error answers of the OAuth
    routes) and ``tokens_rejected_expired`` (OCR calls refused 4010006
    because their issued token had expired).
    """

    requests: int = 0
    answered_ok: int = 0
    by_code: dict[int, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    disconnected: int = 0
    rate_limited: int = 0
    oversize: int = 0
    bytes_received: int = 0
    downloads: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    tokens_issued: int = 0
    tokens_revoked: int = 0
    tokens_rejected_expired: int = 0
    oauth_refused: int = 0

    def reset(self) -> None:
        """Zero every counter (``in_flight`` stays true: calls may be running)."""
        self.requests = self.answered_ok = self.disconnected = 0
        self.rate_limited = self.oversize = 0
        self.bytes_received = self.downloads = 0
        self.tokens_issued = self.tokens_revoked = self.tokens_rejected_expired = 0
        self.oauth_refused = 0
        self.by_code.clear()
        self.faults.clear()
        self.peak_in_flight = self.in_flight

    def to_json(self) -> dict[str, Any]:
        """The counters as served by ``GET /_emulator/stats``."""
        return {
            "requests": self.requests,
            "answered_ok": self.answered_ok,
            "by_code": {str(code): n for code, n in sorted(self.by_code.items())},
            "faults": dict(sorted(self.faults.items())),
            "disconnected": self.disconnected,
            "rate_limited": self.rate_limited,
            "oversize": self.oversize,
            "bytes_received": self.bytes_received,
            "downloads": self.downloads,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "tokens_issued": self.tokens_issued,
            "tokens_revoked": self.tokens_revoked,
            "tokens_rejected_expired": self.tokens_rejected_expired,
            "oauth_refused": self.oauth_refused,
        }


#: Where :func:`~.handlers.create_app` keeps the live :class:`EmulatorStats`.
STATS_KEY: Final = web.AppKey("ocr_async.emulator.stats", EmulatorStats)
#: Where :func:`~.handlers.create_app` keeps its :class:`EmulatorConfig`.
CONFIG_KEY: Final = web.AppKey("ocr_async.emulator.config", EmulatorConfig)
