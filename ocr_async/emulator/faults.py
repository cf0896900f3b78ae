"""Seeded fault injection: the failures a real network and gateway produce.

A :class:`FaultPlan` decides, for each OCR call that passed auth and quota,
whether it fails and how. The decision for call number ``n`` is a pure
function of ``(seed, n, rate, kinds)``:

- the same plan gives the same sequence of faults for calls 1, 2, 3, ...
  in every run, process and Python version (it only uses
  :meth:`random.Random.random` after a string seed, which the standard
  library promises to keep stable);
- which *request* gets number ``n`` is arrival order, so under concurrency
  the faulted requests can differ between runs, but the number of faults of
  each kind over the first ``N`` calls cannot;
- raising ``rate`` with the same seed only adds faults: the calls faulted
  at rate 0.1 are also faulted at rate 0.2 (with the same kinds);
- ``POST /_emulator/reset`` restarts the numbering, so the sequence replays.

Pure module: no I/O. The emulator acts the faults out (:mod:`.handlers`,
:mod:`.connection`).
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "ENVELOPE_FAULTS",
    "FAULT_KIND_NAMES",
    "TRANSPORT_FAULTS",
    "FaultKind",
    "FaultPlan",
    "parse_fault_kinds",
]


class FaultKind(enum.Enum):
    """One way a call can fail; the value is its name in stats and on the CLI."""

    #: The request is read, then the connection is closed without an answer.
    DROP = "drop"
    #: HTTP 502 with an HTML page, as a gateway in front of the API answers.
    HTTP_502_HTML = "502"
    #: 200 with the full answer's ``Content-Length``, half the body, then the
    #: connection closes: a torn body (the client sees a payload error).
    TRUNCATED_JSON = "truncated"
    #: 200 with half the JSON and a matching, shorter ``Content-Length``:
    #: complete at the HTTP level, but not a JSON document.
    CUT_JSON = "cut"
    #: The envelope with 5000503 (API_TEMPORARILY_UNAVAILABLE).
    UNAVAILABLE = "unavailable"
    #: The envelope with -1 ("Unknown error.").
    UNKNOWN = "unknown"
    #: ``slow_seconds`` of silence before the normal answer, so a client with
    #: a shorter timeout gives up first.
    SLOW = "slow"


#: Faults that replace the answer with a failure envelope (result code).
ENVELOPE_FAULTS: Final[Mapping[FaultKind, int]] = {
    FaultKind.UNAVAILABLE: 5000503,
    FaultKind.UNKNOWN: -1,
}
#: Faults that damage or withhold the HTTP answer itself.
TRANSPORT_FAULTS: Final = frozenset(
    {FaultKind.DROP, FaultKind.HTTP_502_HTML, FaultKind.TRUNCATED_JSON, FaultKind.CUT_JSON}
)

#: Every name :func:`parse_fault_kinds` accepts, mapped to its kind.
FAULT_KIND_NAMES: Final[Mapping[str, FaultKind]] = {
    **{kind.value: kind for kind in FaultKind},
    **{kind.name.lower(): kind for kind in FaultKind},
    "http_502": FaultKind.HTTP_502_HTML,
    "torn": FaultKind.TRUNCATED_JSON,
    "5000503": FaultKind.UNAVAILABLE,
    "-1": FaultKind.UNKNOWN,
    "timeout": FaultKind.SLOW,
}


def parse_fault_kinds(text: str) -> tuple[FaultKind, ...]:
    """The kinds named in a comma-separated list, e.g. ``"drop,502,slow"``.

    Names are case-insensitive; ``-`` and ``_`` are the same; ``all`` means
    every kind. Repeats are dropped, the first order kept. Raises
    ``ValueError`` naming the valid choices (the CLI shows it as a usage
    error).
    """
    kinds: list[FaultKind] = []
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError(f"no fault kind given: choose from {_choices()}")
    for name in names:
        if name == "all":
            found: Iterable[FaultKind] = FaultKind
        else:
            kind = FAULT_KIND_NAMES.get(name) or FAULT_KIND_NAMES.get(name.replace("-", "_"))
            if kind is None:
                raise ValueError(f"unknown fault kind {name!r}: choose from {_choices()}")
            found = (kind,)
        kinds.extend(kind for kind in found if kind not in kinds)
    return tuple(kinds)


def _choices() -> str:
    return ", ".join(kind.value for kind in FaultKind) + " or all"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Fail a share ``rate`` (0..1) of OCR calls, with kinds drawn from ``kinds``.

    Kinds are equally likely. See the module docstring for what is
    deterministic. ``slow_seconds`` is how long a ``SLOW`` call stays silent
    (the emulator stops waiting early if the client leaves).
    """

    rate: float
    seed: int = 0
    kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    slow_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:  # also refuses NaN
            raise ValueError(f"fault rate must be between 0 and 1, not {self.rate}")
        kinds = tuple(self.kinds)
        if not kinds:
            raise ValueError("a fault plan needs at least one fault kind")
        if not all(isinstance(kind, FaultKind) for kind in kinds):
            raise ValueError(f"fault kinds must be FaultKind members, not {kinds!r}")
        if not (math.isfinite(self.slow_seconds) and self.slow_seconds >= 0):
            raise ValueError(f"slow_seconds must not be negative, not {self.slow_seconds}")
        object.__setattr__(self, "kinds", kinds)

    def decide(self, call: int) -> FaultKind | None:
        """The fault for the ``call``-th call (1-based), or None to answer normally."""
        if self.rate <= 0.0:
            return None
        # A string seed is hashed with SHA-512 (seeding version 2), so the
        # stream does not depend on PYTHONHASHSEED; random() is the one draw
        # whose sequence Python promises to keep across versions.
        rng = random.Random(f"ocr-async-fault:{self.seed}:{call}")
        if rng.random() >= self.rate:
            return None
        return self.kinds[min(int(rng.random() * len(self.kinds)), len(self.kinds) - 1)]
