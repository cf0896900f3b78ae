"""Three processes on one quota: shared through Redis, and each alone.

    python -m benchmarks.shared_quota                    # 20 s runs, about 3 minutes
    python -m benchmarks.shared_quota --quick            # 10 s runs, about a minute
    python -m benchmarks.shared_quota --baseline 5c69a6f # and that commit's sharing beside

``--kind window`` (or ``sliding``) puts the emulator's other limiters in
front instead of the bucket, and ``--burst`` changes the bucket's burst
(1: no burst at all, as nginx ``limit_req`` without one); ``--no-churn``
leaves out the run with members joining and leaving; ``--repeat N`` runs
each shared row N times (its goodput follows the quota the group measured,
which differs from run to run: the table shows it).

``--baseline REV`` runs the shared rows (and the churn) a second time with
the package as it was at ``REV`` (``git archive``, imported from a
temporary directory by the children), in the same run, against the same
emulator: before and after, side by side, on the same noisy machine.

Every member is a child process (``python -c``) using the library: an
:class:`~ocr_async.OcrClient` whose rate controller joins a
:class:`~ocr_async.shared_quota.SharedQuota` (the CLI's ``--shared-quota``
does the same), or stays alone for the peer
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
  sent, shared beside alone;
* the group's congestion events (its epoch: cuts for everyone), or the sum
  of each process's own events when alone;
* the machine's load (1-minute average) before and after each row: the
  machine is shared, and the figures move with it.

Every row starts with an empty Redis: a group started again within
``STATE_TTL`` begins from the quota it measured last, which is right for a
run started again but would carry one row's quota into the next.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
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
        events = shared.epoch if shared is not None else controller.congestion_events
        estimate = shared.quota_estimate if shared is not None else controller.quota_estimate
        if shared is not None:
            await shared.close()
        print(json.dumps({"start": t0, "end": end, "answered": len(stamps), "stamps": stamps,
                          "sent": controller.sent, "cpu": cpu() - cpu0, "events": events,
                          "estimate": estimate, "timeline": timeline}), flush=True)

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
    events: int
    timeline: tuple[tuple[float, float], ...]
    stamps: tuple[float, ...]
    #: The quota as measured at the end, calls/s: the group's when shared
    #: (the same for every member), this process's own when alone.
    estimate: float | None = None


@dataclass(frozen=True)
class Code:
    """The package the children import: this tree's, or a commit's, unpacked."""

    label: str
    #: The directory the children start in (``python -c`` imports from it first).
    cwd: str | None = None


@dataclass(frozen=True)
class Result:
    """One row: three members on one quota, shared or alone."""

    quota: float
    #: What the limiter lets through at once: a bucket's burst, a window's second.
    allowance: float
    shared: bool
    code: Code
    members: tuple[Member, ...]
    requests: int
    refused: int
    load: tuple[float, float]

    @property
    def span(self) -> float:
        return max(m.end for m in self.members) - min(m.start for m in self.members)

    @property
    def goodput(self) -> float:
        return sum(m.answered for m in self.members) / (self.quota * self.span + self.allowance)

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

    @property
    def measured(self) -> str:
        """The quota measured at the end: the group's, or each process's own."""
        estimates = [m.estimate for m in self.members]
        if self.shared:
            return "-" if estimates[0] is None else f"{estimates[0]:.1f}/s"
        return " / ".join("-" if e is None else f"{e:.0f}" for e in estimates)

    def part(self, member: Member) -> float:
        return member.answered / sum(m.answered for m in self.members)

    @property
    def events(self) -> int:
        """The group's events (one epoch for all), or every process's own, added up."""
        if self.shared:
            return max(m.events for m in self.members)
        return sum(m.events for m in self.members)


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


@contextlib.contextmanager
def baseline(rev: str) -> Iterator[Code]:
    """The package as it was at ``rev``, unpacked into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="ocr-async-baseline-") as where:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, "ocr_async"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as unpacked:
            unpacked.extractall(where, filter="data")
        short = subprocess.run(
            ["git", "rev-parse", "--short", rev], check=True, capture_output=True, text=True
        ).stdout.strip()
        yield Code(short, where)


def flush(redis_url: str) -> None:
    """Empty the store: every row starts a new group."""
    import redis  # the cluster extra; imported here so --help needs nothing

    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()


def spawn(
    redis_url: str, base_url: str, *, images: int, start_at: float, stop_at: float, code: Code
) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", CHILD, redis_url, base_url, APPKEY, TOKEN,
            str(images), str(CONCURRENCY), repr(start_at), repr(stop_at)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=code.cwd)


def collect(child: subprocess.Popen[str], timeout: float) -> Member:
    out, _ = child.communicate(timeout=timeout)
    if child.returncode != 0:
        raise RuntimeError(f"a member exited {child.returncode}")
    raw: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    timeline = tuple((float(t), float(f)) for t, f in raw["timeline"])
    stamps = tuple(float(t) for t in raw["stamps"])
    return Member(
        raw["start"],
        raw["end"],
        raw["answered"],
        raw["sent"],
        raw["cpu"],
        raw["events"],
        timeline,
        stamps,
        raw.get("estimate"),
    )


def three_on_one(
    emulator: Emulator, redis_url: str, quota: float, allowance: float, seconds: float, code: Code
) -> Result:
    """Three members, quota x seconds images between them, shared or not."""
    emulator.reset()
    if redis_url:
        flush(redis_url)
    load = os.getloadavg()[0]
    start_at = time.monotonic() + 2.0  # every child imported and waiting
    images = round(quota * seconds / MEMBERS)
    children = [
        spawn(
            redis_url, emulator.base_url, images=images, start_at=start_at, stop_at=1e18, code=code
        )
        for _ in range(MEMBERS)
    ]
    members = tuple(collect(child, timeout=seconds * 4 + 60) for child in children)
    stats = emulator.stats()
    loads = (load, os.getloadavg()[0])
    shared = bool(redis_url)
    return Result(
        quota, allowance, shared, code, members, stats.requests, stats.rate_limited, loads
    )


@dataclass(frozen=True)
class Churn:
    """Seconds until shares settle after each change, and the run's figures."""

    code: Code
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


def churn(
    emulator: Emulator, redis_url: str, quota: float, allowance: float, seconds: float, code: Code
) -> Churn:
    """A and B from 0; C joins at 1/4; A leaves at 1/2; B is killed at 3/4; C ends the run."""
    emulator.reset()
    flush(redis_url)
    zero = time.monotonic() + 2.0
    at = [zero + seconds * q for q in (0.25, 0.5, 0.75)]
    url = emulator.base_url
    a = spawn(redis_url, url, images=0, start_at=zero, stop_at=at[1], code=code)
    b = spawn(redis_url, url, images=0, start_at=zero, stop_at=1e18, code=code)
    c = spawn(redis_url, url, images=0, start_at=at[0], stop_at=zero + seconds, code=code)
    time.sleep(max(at[2] - time.monotonic(), 0))
    b.send_signal(signal.SIGKILL)
    b.wait()
    first, third = collect(a, seconds + 60), collect(c, seconds + 60)
    stats = emulator.stats()
    answered = stats.answered_ok
    span = third.end - first.start
    # When A left: its own last answer (it leaves just after), seen by C.
    return Churn(
        code=code,
        joined=settled([first.timeline, third.timeline], third.start, 1 / 3),
        left=settled([third.timeline], first.end, 1 / 2),
        killed=settled([third.timeline], at[2], 1.0),
        goodput=answered / (quota * span + allowance),
        refused_share=stats.rate_limited / max(stats.requests, 1),
    )


def render(results: Sequence[Result], churns: Sequence[tuple[float, Churn]]) -> str:
    lines = [
        f"Machine: {machine()}.",
        "",
        "| quota | three processes | combined goodput, whole run | while all three ran "
        "| refused | events | quota measured at the end | parts of the answers | each ran (s) "
        "| client CPU per call | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        parts = " / ".join(f"{r.part(m):.2f}" for m in r.members)
        mode = f"shared ({r.code.label})" if r.shared else "each alone (peer)"
        ran = " / ".join(f"{m.end - m.start:.1f}" for m in r.members)
        lines.append(
            f"| {r.quota:g}/s | {mode} | {r.goodput:.1%} | {r.overlap_goodput:.1%} "
            f"| {r.refused_share:.1%} | {r.events} | {r.measured} | {parts} | {ran} "
            f"| {r.cpu_per_call * 1e6:.0f} µs | {r.load[0]:.1f}-{r.load[1]:.1f} |"
        )
    lines += [
        "",
        "| quota | code | a member joins: settled in | one leaves | one killed (SIGKILL) "
        "| goodput over the run | refused |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for quota, c in churns:
        lines.append(
            f"| {quota:g}/s | {c.code.label} | {c.joined:.1f} s | {c.left:.1f} s "
            f"| {c.killed:.1f} s | {c.goodput:.1%} | {c.refused_share:.1%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10 s runs instead of 20 s")
    parser.add_argument("--quotas", default="40,200", help="quotas in calls/s, comma-separated")
    parser.add_argument(
        "--kind", choices=("bucket", "window", "sliding"), default="bucket", help="the limiter"
    )
    parser.add_argument(
        "--burst", type=float, default=BURST, help=f"the bucket's burst (default {BURST})"
    )
    parser.add_argument("--no-churn", action="store_true", help="leave out the churn run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each shared row this many times (the figure moves with the quota measured)",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also run the shared rows with the package as it was at this commit",
    )
    args = parser.parse_args(argv)
    seconds = 10.0 if args.quick else 20.0
    quotas = [float(q) for q in args.quotas.split(",")]
    results: list[Result] = []
    churns: list[tuple[float, Churn]] = []
    here = Code("this tree")
    with contextlib.ExitStack() as stack:
        codes = [here]
        if args.baseline:
            codes.append(stack.enter_context(baseline(args.baseline)))
        redis_url = stack.enter_context(redis_process())
        for quota in quotas:
            flags = ["--latency", f"{LATENCY:g}", "--quota-rps", f"{quota:g}",
                     "--quota-kind", args.kind]  # fmt: skip
            if args.kind == "bucket":
                flags += ["--quota-burst", f"{args.burst:g}"]
            # A window or a sliding count lets a whole second's calls through at once.
            allowance = args.burst if args.kind == "bucket" else quota
            with emulator_process(*flags) as emulator:
                runs = [(redis_url, code) for code in codes] * args.repeat + [("", here)]
                for url, code in runs:
                    result = three_on_one(emulator, url, quota, allowance, seconds, code)
                    ends = ", ".join(f"{m.end - m.start:.1f}" for m in result.members)
                    mode = f"shared ({code.label})" if result.shared else "alone"
                    print(
                        f"  {quota:g}/s {mode}: goodput {result.goodput:.3f}, "
                        f"refused {result.refused_share:.3f}, events {result.events}, "
                        f"measured {result.measured}; "
                        f"members ran {ends} s; load {result.load[0]:.1f}-{result.load[1]:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )
                    results.append(result)
                if quota == quotas[0] and not args.no_churn:
                    for code in codes:
                        run = churn(emulator, redis_url, quota, allowance, 2 * seconds, code)
                        churns.append((quota, run))
    limiter = f"bucket, burst {args.burst:g}" if args.kind == "bucket" else args.kind
    print(f"Limiter: {limiter}.")
    print(render(results, churns))


if __name__ == "__main__":
    main()
