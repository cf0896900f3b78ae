"""Fixtures shared by several test modules."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
from fakes import FakeClock, ListSink, Sleeps
from hostile_server import Hostile, running_hostile

from ocr_async.cli import main
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


@pytest.fixture
def cli_emulator(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> RunningEmulator:
    """The shared emulator, its credentials in the environment; the test runs in tmp_path.

    For command-line tests: ``ocr-async run`` finds the emulator as a user's
    shell would give it, and relative paths (manifest rows, outputs) land in
    the test's own folder.
    """
    monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
    monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
    monkeypatch.setenv("NHN_OCR_BASE_URL", emulator.base_url)
    monkeypatch.delenv("NHN_OCR_TOKEN_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    return emulator


async def run_cli(*argv: str) -> int:
    """``ocr-async ARGV...`` in a thread (it runs its own event loop); its exit code."""
    return await asyncio.to_thread(main, list(argv))


#: Every setting the client reads from the environment.
CREDENTIAL_VARIABLES: Final = (
    "NHN_OCR_APPKEY",
    "NHN_OCR_TOKEN",
    "NHN_OCR_TOKEN_FILE",
    "NHN_OCR_BASE_URL",
    "NHN_UAK_ID",
    "NHN_UAK_SECRET",
    "NHN_OAUTH_URL",
)


@pytest.fixture
def no_credentials_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the client's settings in the environment: the test sets what it means."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# -- Prometheus metrics as a scrape reads them ---------------------------------

#: A scrape's samples: (name, sorted labels) to value.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """The samples of a Prometheus text exposition, read by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# -- Redis (the shared quota's store) ------------------------------------------
# Debian's redis-server on a free loopback port, one per test (tests stop it
# on purpose), no persistence. Tests that use it skip when it is absent.


@dataclass
class RedisServer:
    """A redis-server child process listening on 127.0.0.1."""

    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Terminate it (SIGTERM) and wait: the store is gone."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def free_port() -> int:
    """A loopback port free just now (above the ones the emulator fixture takes)."""
    return find_free_port(20000, 60000)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis() -> RedisServer:
    """Start a redis-server, or skip the test when there is none."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    for _ in range(5):  # the free port may be taken between the probe and the bind
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"]  # fmt: skip
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if _answers_ping(port):
                return RedisServer(port, process)
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        process.wait()
    raise RuntimeError("redis-server did not start")


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server on loopback for this test; stopped after it."""
    server = start_redis()
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


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
