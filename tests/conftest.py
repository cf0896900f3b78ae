"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import pytest
from hostile_server import Hostile, running_hostile

from ocr_async.emulator import EmulatorConfig, RunningEmulator, find_free_port, running_emulator


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    """The hostile API and OAuth server (tests/hostile_server.py), on loopback."""
    async with running_hostile() as server:
        yield server


# --- the emulator --------------------------------------------------------------------
# One well-behaved API for the tests that talk to one: it accepts TOKEN with
# APPKEY and nothing else, so every answer also proves the client sent both.
# A module that needs its credentials in the environment, or other settings,
# builds on these (emulator_config(latency=...), or a fixture of the same
# name that asks for this one).

#: The bearer token the shared emulator accepts (distinct, so a leak is easy to spot).
TOKEN: Final = "emulator-TOKEN-5f2a9c"
#: The app key the shared emulator accepts.
APPKEY: Final = "emulator-appkey"


def emulator_config(**overrides: Any) -> EmulatorConfig:
    """The shared emulator's settings (only TOKEN with APPKEY), changed by ``overrides``."""
    settings: dict[str, Any] = {"tokens": frozenset({TOKEN}), "appkey": APPKEY, **overrides}
    return EmulatorConfig(**settings)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator on loopback that accepts only TOKEN with APPKEY.

    Its port is in the range the API fetches ``imageUrl`` from (10000-12000),
    so its ``/samples/`` route can stand in for images on the web.
    """
    port = find_free_port(10000, 12000)
    async with running_emulator(emulator_config(), port=port) as running:
        yield running
