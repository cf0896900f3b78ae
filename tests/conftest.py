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


# -- Redis (the shared quota's store) ------------------------------------------
# Debian's redis-server on a free loopback port, one per test (tests stop it
# on purpose), no persistence. Tests that use it skip when it is absent.

import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402


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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
