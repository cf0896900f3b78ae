"""Shared machinery: an emulator in its own process, timed child runs, inputs.

Every figure is measured on this machine in the same run as the figures it is
compared with, so the ratios hold even when the machine is shared and noisy.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocr_async.emulator import make_png

TOKEN = "bench-token"
APPKEY = "bench-appkey"


def free_port(lo: int = 10000, hi: int = 12000) -> int:
    """A free loopback port in the range imageUrl may name."""
    for port in range(lo, hi + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


@contextlib.contextmanager
def emulator_process(*extra: str) -> Iterator[str]:
    """``ocr-async serve`` in a child process; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ocr_async", "serve", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the emulator did not start") from None
                time.sleep(0.05)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


def emulator_stats(base_url: str) -> dict[str, object]:
    """The emulator's counters."""
    import json

    with urllib.request.urlopen(f"{base_url}/_emulator/stats", timeout=5) as answer:
        stats: dict[str, object] = json.load(answer)
    return stats


def reset_emulator(base_url: str) -> None:
    """Zero the emulator's counters."""
    request = urllib.request.Request(f"{base_url}/_emulator/reset", method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


@dataclass(frozen=True)
class ChildRun:
    """One measured child process."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stderr: str

    @property
    def summary_rate(self) -> float:
        """images/s as the run's own summary reports it (start-up excluded)."""
        import re

        match = re.search(r"([0-9.]+) images/s", self.stderr)
        if match is None:
            raise ValueError(f"no summary in: {self.stderr[-500:]}")
        return float(match.group(1))


def run_child(argv: Sequence[str], *, stdin_path: Path | None = None) -> ChildRun:
    """Run a command; wall time and peak RSS of that child alone (os.wait4)."""
    env = dict(os.environ, NHN_OCR_TOKEN=TOKEN, NHN_OCR_APPKEY=APPKEY)
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdin_path:
            stdin.close()  # type: ignore[union-attr]
    err = process.stderr.read().decode() if process.stderr else ""
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{argv[:4]} exited {process.returncode}: {err[-2000:]}")
    return ChildRun(wall, usage.ru_maxrss / 1024, process.returncode, err)


def make_image_folder(root: Path, count: int) -> Path:
    """``count`` small PNGs with embedded text, 1,000 per subfolder."""
    for n in range(count):
        folder = root / f"d{n // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{n:06d}.png").write_bytes(make_png(f"bench {n}"))
    return root


def ocr_async_run(base_url: str, *args: str) -> list[str]:
    """The argv of an ``ocr-async run`` against ``base_url``."""
    return [sys.executable, "-m", "ocr_async", "run", "--base-url", base_url, *args]
