"""Fakes shared by the tests of the core and the pipeline: a sink, a clock, sleeps, a transport.

Plain classes, imported where needed (as tests/hostile_server.py is);
tests/conftest.py hands out fresh ones as fixtures. Nothing here waits or
opens a socket: time moves when a test says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocr_async.models import Record
from ocr_async.protocol import PreparedRequest
from ocr_async.sanitize import Redactor
from ocr_async.transport import Answer


class ListSink:
    """A record sink that keeps every record, in the order written."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    async def write(self, record: Record) -> None:
        self.records.append(record)


class FakeClock:
    """A monotonic clock that moves only when told (or when :class:`Sleeps` sleeps)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Sleeps:
    """An injected sleep that records the waits and never waits; moves ``clock`` if given."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.waits: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._clock is not None:
            self._clock.now += seconds


@dataclass
class Post:
    """One request a :class:`FakeTransport` was asked to send, as it was asked."""

    request: PreparedRequest
    answer_limit: int
    redactor: Redactor


@dataclass
class FakeTransport:
    """A transport that answers each post with the next scripted answer, or raises it."""

    script: list[Answer | Exception]
    posts: list[Post] = field(default_factory=list)
    opened: int = 0
    closed: int = 0

    async def post(
        self, request: PreparedRequest, *, answer_limit: int, redactor: Redactor
    ) -> Answer:
        self.posts.append(Post(request, answer_limit, redactor))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def open(self) -> None:
        self.opened += 1

    async def aclose(self) -> None:
        self.closed += 1
