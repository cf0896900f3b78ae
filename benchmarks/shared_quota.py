"""Three processes on one quota: shared through Redis, and each alone.

    python -m benchmarks.shared_quota            # 20 s runs, about 2 minutes
    python -m benchmarks.shared_quota --quick    # 10 s runs, about a minute

Every member is a child process (``python -c``) using the library: an
:class:`~ocr_async.OcrClient` whose rate controller joins a
:class:`~ocr_async.shared_quota.SharedQuota` (the CLI's ``--shared-quota``
is not wired yet: this is what it will do), or stays alone for the peer
rows. They send to ``ocr-async serve`` with a token-bucket quota (burst 5,
30 ms answers) on 127.0.0.1, and to Debian's ``redis-server`` on a free
loopback port. The children start together, at a moment on the shared
monotonic clock.

Measured:

* combined goodput: images answered over the quota times the run (first
  send to last answer, all members) plus the burst; refused: the
  emulator's 4000006 answers over its calls;
* a member joining and one leaving (and one killed with SIGKILL) mid-run:
  seconds until every member's fraction of the global rate is within 0.05
  of an even split, from each member's own samples (every 0.1 s);
* the cost of sharing: each child's CPU seconds (user + system) per call
  sent, shared beside alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import APPKEY, TOKEN
from benchmarks.harness import Emulator, emulator_process, machine

LATENCY = 0.03
BURST = 5
MEMBERS = 3
CONCURRENCY = 16

#: One member: joins at ``start_at`` (CLOCK_MONOTONIC, shared by every
#: process), sends ``images`` (0: until ``stop_at``), prints one JSON line.
CHILD = """
import asyncio, json, resource, sys, time
from ocr_async import OcrClient
from ocr_async.retry import RetryPolicy
from ocr_async.emulator import make_png
from ocr_async.shared_quota import SharedQuota

redis_url, base_url, appkey, token = sys.argv[1:5]
images, concurrency = int(sys.argv[5]), int(sys.argv[6])
start_at, stop_at = float(sys.argv[7]), float(sys.argv[8])


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> None:
    png = make_png("shared quota")
    await asyncio.sleep(max(start_at - time.monotonic(), 0))
    async with OcrClient(appkey=appkey, token=token, base_url=base_url,
                         concurrency=concurrency,
                         retry=RetryPolicy(max_throttled=10**6)) as client:
        controller = client.rate_controller
        shared = None
        t0 = time.monotonic()
        if redis_url:
            shared = SharedQuota(redis_url, appkey)
            await shared.start(controller)
        cpu0 = cpu()  # after joining: the steady cost per call, not the connect
        timeline = []

        async def watch() -> None:
            while True:
                timeline.append((time.monotonic(), shared.fraction if shared else 1.0))
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        left = [images if images else 10**9]
        stamps = []

        async def worker() -> None:
            while left[0] > 0 and time.monotonic() < stop_at:
                left[0] -= 1
                await client.recognize(png)
                stamps.append(time.monotonic())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        end = time.monotonic()
        watcher.cancel()
        if shared is not None:
            await shared.close()
        print(json.dumps({"start": t0, "end": end, "answered": len(stamps), "stamps": stamps,
                          "sent": controller.sent, "cpu": cpu() - cpu0,
                          "timeline": timeline}), flush=True)

asyncio.run(main())
"""


@dataclass(frozen=True)
class Member:
    """What one child reported."""

    start: float
    end: float
    answered: int
    sent: int
    cpu: float
    timeline: tuple[tuple[float, float], ...]
    stamps: tuple[float, ...]


@dataclass(frozen=True)
class Result:
    """One row: three members on one quota, shared or alone."""

    quota: float
    shared: bool
    members: tuple[Member, ...]
    requests: int
    refused: int

    @property
    def span(self) -> float:
        return max(m.end for m in self.members) - min(m.start for m in self.members)

    @property
    def goodput(self) -> float:
        return sum(m.answered for m in self.members) / (self.quota * self.span + BURST)

    @property
    def overlap_goodput(self) -> float:
        """Answers per second while all three were sending, over the quota.

        From 1 s after the last member started to 1 s before the first
        finished: the rate the three held together, without the tail of a
        member left with more to do (which the whole-run figure counts).
        """
        lo = max(m.start for m in self.members) + 1.0
        hi = min(m.end for m in self.members) - 1.0
        if hi <= lo:
            return float("nan")
        answers = sum(1 for m in self.members for t in m.stamps if lo <= t < hi)
        return answers / (self.quota * (hi - lo))

    @property
    def refused_share(self) -> float:
        return self.refused / max(self.requests, 1)

    @property
    def cpu_per_call(self) -> float:
        return sum(m.cpu for m in self.members) / max(sum(m.sent for m in self.members), 1)

    def part(self, member: Member) -> float:
        return member.answered / sum(m.answered for m in self.members)


@contextlib.contextmanager
def redis_process() -> Iterator[str]:
    """Debian's redis-server on a free loopback port, no persistence; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--loglevel", "warning"]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def spawn(
    redis_url: str, base_url: str, *, images: int, start_at: float, stop_at: float
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", CHILD, redis_url, base_url, APPKEY, TOKEN,
            str(images), str(CONCURRENCY), repr(start_at), repr(stop_at)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def collect(child: subprocess.Popen[str], timeout: float) -> Member:
    out, _ = child.communicate(timeout=timeout)
    if child.returncode != 0:
        raise RuntimeError(f"a member exited {child.returncode}")
    raw: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    timeline = tuple((float(t), float(f)) for t, f in raw["timeline"])
    stamps = tuple(float(t) for t in raw["stamps"])
    return Member(
        raw["start"], raw["end"], raw["answered"], raw["sent"], raw["cpu"], timeline, stamps
    )


def three_on_one(emulator: Emulator, redis_url: str, quota: float, seconds: float) -> Result:
    """Three members, quota x seconds images between them, shared or not."""
    emulator.reset()
    start_at = time.monotonic() + 2.0  # every child imported and waiting
    images = round(quota * seconds / MEMBERS)
    children = [
        spawn(redis_url, emulator.base_url, images=images, start_at=start_at, stop_at=1e18)
        for _ in range(MEMBERS)
    ]
    members = tuple(collect(child, timeout=seconds * 4 + 60) for child in children)
    stats = emulator.stats()
    return Result(quota, bool(redis_url), members, stats.requests, stats.rate_limited)


@dataclass(frozen=True)
class Churn:
    """Seconds until shares settle after each change, and the run's figures."""

    joined: float
    left: float
    killed: float
    goodput: float
    refused_share: float


def settled(timelines: Sequence[Sequence[tuple[float, float]]], since: float, even: float) -> float:
    """Seconds after ``since`` until every timeline's fraction is within 0.05 of ``even``."""
    latest = 0.0
    for timeline in timelines:
        after = [(t, f) for t, f in timeline if t >= since]
        hit = next((t for t, f in after if abs(f - even) <= 0.05), None)
        if hit is None:
            return float("inf")
        latest = max(latest, hit - since)
    return latest


def churn(emulator: Emulator, redis_url: str, quota: float, seconds: float) -> Churn:
    """A and B from 0; C joins at 1/4; A leaves at 1/2; B is killed at 3/4; C ends the run."""
    emulator.reset()
    zero = time.monotonic() + 2.0
    at = [zero + seconds * q for q in (0.25, 0.5, 0.75)]
    a = spawn(redis_url, emulator.base_url, images=0, start_at=zero, stop_at=at[1])
    b = spawn(redis_url, emulator.base_url, images=0, start_at=zero, stop_at=1e18)
    c = spawn(redis_url, emulator.base_url, images=0, start_at=at[0], stop_at=zero + seconds)
    time.sleep(max(at[2] - time.monotonic(), 0))
    b.send_signal(signal.SIGKILL)
    b.wait()
    first, third = collect(a, seconds + 60), collect(c, seconds + 60)
    stats = emulator.stats()
    answered = stats.answered_ok
    span = third.end - first.start
    # When A left: its own last answer (it leaves just after), seen by C.
    return Churn(
        joined=settled([first.timeline, third.timeline], third.start, 1 / 3),
        left=settled([third.timeline], first.end, 1 / 2),
        killed=settled([third.timeline], at[2], 1.0),
        goodput=answered / (quota * span + BURST),
        refused_share=stats.rate_limited / max(stats.requests, 1),
    )


def render(results: Sequence[Result], churns: Sequence[tuple[float, Churn]]) -> str:
    lines = [
        f"Machine: {machine()}.",
        "",
        "| quota | three processes | combined goodput, whole run | while all three ran "
        "| refused | parts of the answers | each ran (s) | client CPU per call |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        parts = " / ".join(f"{r.part(m):.2f}" for m in r.members)
        mode = "one shared quota (Redis)" if r.shared else "each alone (peer)"
        ran = " / ".join(f"{m.end - m.start:.1f}" for m in r.members)
        lines.append(
            f"| {r.quota:g}/s | {mode} | {r.goodput:.1%} | {r.overlap_goodput:.1%} "
            f"| {r.refused_share:.1%} | {parts} | {ran} | {r.cpu_per_call * 1e6:.0f} µs |"
        )
    lines += [
        "",
        "| quota | a member joins: settled in | one leaves | one killed (SIGKILL) "
        "| goodput over the run | refused |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for quota, c in churns:
        lines.append(
            f"| {quota:g}/s | {c.joined:.1f} s | {c.left:.1f} s | {c.killed:.1f} s "
            f"| {c.goodput:.1%} | {c.refused_share:.1%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 s runs instead of 20 s")
    parser.add_argument("--quotas", default="40,200", help="quotas in calls/s, comma-separated")
    args = parser.parse_args(argv)
    seconds = 10.0 if args.quick else 20.0
    quotas = [float(q) for q in args.quotas.split(",")]
    results: list[Result] = []
    churns: list[tuple[float, Churn]] = []
    with redis_process() as redis_url:
        for quota in quotas:
            flags = ("--latency", f"{LATENCY:g}", "--quota-rps", f"{quota:g}",
                     "--quota-burst", str(BURST))  # fmt: skip
            with emulator_process(*flags) as emulator:
                for url in (redis_url, ""):
                    result = three_on_one(emulator, url, quota, seconds)
                    ends = ", ".join(f"{m.end - m.start:.1f}" for m in result.members)
                    print(
                        f"  {quota:g}/s shared={result.shared}: goodput {result.goodput:.3f}, "
                        f"refused {result.refused_share:.3f}; members ran {ends} s",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.append(result)
                if quota == quotas[0]:
                    churns.append((quota, churn(emulator, redis_url, quota, 2 * seconds)))
    print(render(results, churns))


if __name__ == "__main__":
    main()
