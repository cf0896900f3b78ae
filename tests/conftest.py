"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes import FakeClock, ListSink, Sleeps
from hostile_server import Hostile, running_hostile


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    """The hostile API and OAuth server (tests/hostile_server.py), on loopback."""
    async with running_hostile() as server:
        yield server


# --- the core and the pipeline (fakes from tests/fakes.py) ---------------------------


@pytest.fixture
def list_sink() -> ListSink:
    """A record sink that keeps every record written to it."""
    return ListSink()


@pytest.fixture
def fake_clock() -> FakeClock:
    """A monotonic clock at 1000 s that moves only when told."""
    return FakeClock()


@pytest.fixture
def sleeps(fake_clock: FakeClock) -> Sleeps:
    """An injected sleep that records each wait and moves ``fake_clock`` by it."""
    return Sleeps(fake_clock)
