"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hostile_server import Hostile, running_hostile


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    """The hostile API and OAuth server (tests/hostile_server.py), on loopback."""
    async with running_hostile() as server:
        yield server
