"""The limiter matrix: ocr-async's rate control against every common kind of call limit.

    python -m benchmarks.limiters                # the full matrix, about 35 minutes
    python -m benchmarks.limiters --quick        # a subset, a few minutes
    python -m benchmarks.limiters --write-doc    # also put the tables and plot in docs/
    python -m benchmarks.limiters --simulate     # the same cells on virtual time, seconds
    python -m benchmarks.limiters --sweep        # the figures behind the controller's constants

Each row puts one limiter in front of the emulator on 127.0.0.1 and runs
``ocr-async run`` over as many images as the quota allows in the row's time,
three ways side by side: adaptive (the default), ``--no-adapt`` (backoff
alone) and ``--rps`` set to the true quota. Limiters: the emulator's own
kinds (a token bucket with a burst of 5, a fixed one-second window,
HAProxy's sliding count), nginx ``limit_req`` with no burst and with
``burst=10 nodelay``, and HAProxy 2.6 ``http_req_rate(1s)``; every one
answers over-limit calls with the 4000006 envelope in an HTTP 200. Then the
quota schedule 40 -> 20 -> 60 (plotted), two processes sharing one quota,
and ``--rps`` against no limit at all. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    Emulator,
    Sample,
    Stats,
    child_env,
    emulator_process,
    haproxy_process,
    machine,
    make_image_folder,
    nginx_process,
    ocr_async_run,
    run_child,
    sampling,
)

#: Seconds the emulator takes to answer an accepted call. Short, so that
#: 8 workers can reach 200 calls/s (8 / 0.03 = 267/s): the quota, not the
#: concurrency, is what each row measures.
LATENCY = 0.03
#: The emulator bucket's burst, as in the case issue 9 reported.
BUCKET_BURST = 5
#: nginx ``burst=10 nodelay``.
NGINX_BURST = 10
STEPS: tuple[tuple[float, float], ...] = ((0.0, 40.0), (10.0, 20.0), (20.0, 60.0))
#: A refused call never fails an image here: the runs measure the rate.
MAX_THROTTLED = "100000"

CLIENTS: dict[str, tuple[str, ...]] = {"ocr-async": (), "--no-adapt": ("--no-adapt",)}
RPS = "--rps quota"

_SUMMARY = re.compile(
    r"(\d+) records: (\d+) ok, (\d+) failed; (\d+) retries; ([0-9.]+) images/s over ([0-9.]+) s"
)

# --- limiters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One kind of limiter: how to put it in front of the emulator."""

    key: str
    label: str
    #: Calls it lets through at once on top of the rate (a bucket's burst).
    allowance: Callable[[float], float]
    #: ``ocr-async serve`` flags of the emulator's own limiter, or None for a proxy.
    serve: Callable[[float], tuple[str, ...]] | None = None


KINDS: dict[str, Kind] = {
    "bucket": Kind(
        "bucket",
        f"emulator token bucket, burst {BUCKET_BURST}",
        lambda q: BUCKET_BURST,
        lambda q: ("--quota-rps", f"{q:g}", "--quota-burst", str(BUCKET_BURST)),
    ),
    # A window or a sliding count has no slack but its first second: the
    # reference is the quota times the seconds, which an even pacer meets.
    "window": Kind(
        "window",
        "emulator fixed 1 s window",
        lambda q: 0.0,
        lambda q: ("--quota-rps", f"{q:g}", "--quota-kind", "window"),
    ),
    "sliding": Kind(
        "sliding",
        "emulator sliding 1 s count (refused calls count)",
        lambda q: 0.0,
        lambda q: ("--quota-rps", f"{q:g}", "--quota-kind", "sliding"),
    ),
    "nginx": Kind("nginx", "nginx limit_req, no burst", lambda q: 1),
    "nginx-burst": Kind(
        "nginx-burst", f"nginx limit_req burst={NGINX_BURST} nodelay", lambda q: NGINX_BURST + 1
    ),
    "haproxy": Kind("haproxy", "HAProxy 2.6 http_req_rate(1s)", lambda q: 0.0),
}


@contextlib.contextmanager
def front(
    kind: Kind, quota: float, schedule: Sequence[tuple[float, float]] = ()
) -> Iterator[tuple[str, Emulator]]:
    """The limiter in front of a fresh emulator: (URL to send to, the emulator)."""
    flags: tuple[str, ...] = ("--latency", f"{LATENCY:g}")
    if kind.serve is not None:
        flags += kind.serve(quota)
    if schedule:
        flags += ("--quota-schedule", ",".join(f"{at:g}:{rate:g}" for at, rate in schedule))
    with emulator_process(*flags) as emulator:
        if kind.key == "nginx":
            with nginx_process(emulator.base_url, quota, 0) as nginx:
                yield nginx.base_url, emulator
        elif kind.key == "nginx-burst":
            with nginx_process(emulator.base_url, quota, NGINX_BURST) as nginx:
                yield nginx.base_url, emulator
        elif kind.key == "haproxy":
            with haproxy_process(emulator.base_url, round(quota)) as url:
                yield url, emulator
        else:
            yield emulator.base_url, emulator


# --- one run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one ``ocr-async run`` achieved, from its own closing lines."""

    client: str
    images: int
    ok: int = 0
    #: Calls refused and sent again (the summary's retries: every one a refusal here).
    refused: int = 0
    #: Seconds from the start of its work to its last answer (start-up of the
    #: rate controller included, interpreter start-up not).
    elapsed: float = math.nan
    #: The run overstayed its time limit and was killed.
    timed_out: bool = False
    samples: tuple[Sample, ...] = field(default=(), repr=False)

    @property
    def calls(self) -> int:
        """Calls sent: one per image plus one per refusal."""
        return self.ok + self.refused

    def goodput(self, quota: float, allowance: float) -> float:
        """Calls answered against what the limiter allowed in the run's time."""
        return self.ok / (quota * self.elapsed + allowance)

    @property
    def refused_share(self) -> float:
        """Refused calls over calls sent."""
        return self.refused / self.calls if self.calls else math.nan


def client_flags(client: str, quota: float) -> tuple[str, ...]:
    """The flags of one of the three clients."""
    if client == RPS:
        return ("--rps", f"{quota:g}")
    return CLIENTS[client]


def run_client(
    client: str,
    url: str,
    folder: Path,
    images: int,
    out: Path,
    *,
    quota: float,
    concurrency: int,
    limit: float,
    emulator: Emulator | None = None,
) -> Run:
    """One ``ocr-async run`` over ``folder``; killed after ``limit`` seconds."""
    argv = ocr_async_run(
        url,
        out,
        "--concurrency",
        str(concurrency),
        "--max-throttled",
        MAX_THROTTLED,
        *client_flags(client, quota),
        str(folder),
    )
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(sampling(emulator, 0.25)) if emulator else None
        try:
            child = run_child(argv, timeout=limit)
        except RuntimeError as exc:
            if "was killed" not in str(exc):
                raise
            return Run(client, images, timed_out=True)
    match = _SUMMARY.search(child.stderr)
    if match is None:
        raise RuntimeError(f"no summary from {client}: {child.stderr[-500:]}")
    samples = tuple(sampler.samples) if sampler else ()
    return Run(
        client,
        images,
        int(match.group(2)),
        int(match.group(4)),
        float(match.group(6)),
        samples=samples,
    )


# --- the matrix -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One cell of the matrix and the runs of its clients."""

    kind: str
    quota: float
    seconds: float
    concurrency: int
    runs: tuple[Run, ...]

    @property
    def images(self) -> int:
        """Images in the row: the quota times its seconds."""
        return round(self.quota * self.seconds)

    def target(self) -> float:
        """The goodput target: 95 %, 90 % for 10 s runs at 5 calls/s."""
        return 0.90 if self.quota <= 5 and self.seconds <= 10 else 0.95

    def met(self) -> bool:
        """Whether ocr-async met the goodput and refusal targets."""
        run = self.runs[0]
        allowance = KINDS[self.kind].allowance(self.quota)
        return (
            not run.timed_out
            and run.goodput(self.quota, allowance) >= self.target()
            and run.refused_share <= 0.03
        )


@dataclass
class Context:
    """Scratch space and image folders, made once per count."""

    scratch: Path
    folders: dict[int, Path] = field(default_factory=dict)

    def images(self, count: int) -> Path:
        """A folder of ``count`` small PNGs."""
        if count not in self.folders:
            self.folders[count] = make_image_folder(self.scratch / f"images-{count}", count)
        return self.folders[count]


def limit_for(seconds: float, client: str) -> float:
    """How long a run may take: backoff alone can take several times the quota's time."""
    return (6.0 if client == "--no-adapt" else 3.0) * seconds + 30.0


def matrix_row(
    ctx: Context, kind: str, quota: float, seconds: float, concurrency: int, clients: Sequence[str]
) -> Row:
    """Run ``clients`` in turn against a fresh limiter each."""
    images = round(quota * seconds)
    folder, out = ctx.images(images), ctx.scratch / "out.jsonl"
    runs: list[Run] = []
    for client in clients:
        with front(KINDS[kind], quota) as (url, _):
            runs.append(
                run_client(
                    client,
                    url,
                    folder,
                    images,
                    out,
                    quota=quota,
                    concurrency=concurrency,
                    limit=limit_for(seconds, client),
                )
            )
    print(
        f"  {kind} {quota:g}/s {seconds:g} s C={concurrency}: {_brief(runs, quota, kind)}",
        file=sys.stderr,
        flush=True,
    )
    return Row(kind, quota, seconds, concurrency, tuple(runs))


def _brief(runs: Sequence[Run], quota: float, kind: str) -> str:
    allowance = KINDS[kind].allowance(quota)
    return "; ".join(
        f"{r.client} {'timed out' if r.timed_out else f'{r.goodput(quota, allowance):.3f}'}"
        f" {r.refused_share:.1%} refused"
        for r in runs
    )


# --- the quota schedule -----------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """One client's run over the schedule, and how fast it followed each step."""

    run: Run
    #: Calls answered over what the schedule allowed in the run's time.
    goodput: float
    #: Seconds after each change until a 1 s window reached 95 % of the new quota.
    reach: tuple[float, ...]


def scheduled_allowance(steps: Sequence[tuple[float, float]], seconds: float) -> float:
    """Calls a schedule allows in its first ``seconds``."""
    total = 0.0
    for (at, rate), (end, _) in zip(steps, [*steps[1:], (math.inf, 0.0)], strict=True):
        total += rate * max(0.0, min(end, seconds) - at)
    return total


def first_call(samples: Sequence[Sample]) -> float:
    """When the emulator saw the first call (where its schedule starts)."""
    return next((s.t for s in samples if s.stats.requests > 0), samples[0].t if samples else 0.0)


def time_to_reach(samples: Sequence[Sample], since: float, rate: float) -> float:
    """Seconds after ``since`` until the calls let through in a 1 s window first reach ``rate``."""
    times = [s.t for s in samples]
    passed = [s.stats.requests - s.stats.rate_limited for s in samples]
    for i, t in enumerate(times):
        if t < since + 1.0:
            continue
        j = max(k for k in range(i + 1) if times[k] <= t - 1.0)
        if (passed[i] - passed[j]) / (t - times[j]) >= rate:
            return t - 0.5 - since  # the window's middle
    return math.inf


def schedule_row(ctx: Context, clients: Sequence[str], concurrency: int = 64) -> list[StepResult]:
    """The quota 40 -> 20 -> 60 calls/s on the emulator's bucket, each client in turn."""
    seconds = 40.0
    images = round(scheduled_allowance(STEPS, seconds))
    folder, out = ctx.images(images), ctx.scratch / "steps.jsonl"
    results: list[StepResult] = []
    for client in clients:
        with front(KINDS["bucket"], STEPS[0][1], STEPS) as (url, emulator):
            run = run_client(
                client,
                url,
                folder,
                images,
                out,
                quota=STEPS[0][1],
                concurrency=concurrency,
                limit=limit_for(seconds, client),
                emulator=emulator,
            )
        if run.timed_out:
            results.append(StepResult(run, math.nan, ()))
            continue
        origin = first_call(run.samples)
        reach = tuple(
            time_to_reach(run.samples, origin + at, 0.95 * rate) for at, rate in STEPS[1:]
        )
        allowed = scheduled_allowance(STEPS, run.elapsed) + BUCKET_BURST
        results.append(StepResult(run, run.ok / allowed, reach))
        print(
            f"  steps {client}: goodput {run.ok / allowed:.3f}, refused "
            f"{run.refused_share:.1%}, reach {reach}",
            file=sys.stderr,
            flush=True,
        )
    return results


# --- two processes on one quota ---------------------------------------------------------


@dataclass(frozen=True)
class PairResult:
    """Two processes at once on one quota."""

    client: str
    runs: tuple[Run, Run]
    quota: float

    @property
    def shares(self) -> tuple[float, float]:
        """Each process's calls answered per second, as a share of the quota."""
        a, b = self.runs
        return a.ok / a.elapsed / self.quota, b.ok / b.elapsed / self.quota


def interrupted_run(client: str, argv: Sequence[str], after: float) -> Run:
    """Start ``argv``, stop it with Ctrl-C after ``after`` seconds, read its closing lines.

    ocr-async stops taking new images and prints its summary: the images
    answered per second while it ran.
    """
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            list(argv),
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            time.sleep(after)
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    match = _SUMMARY.search(text)
    if match is None:
        raise RuntimeError(f"no summary from {client}: {text[-500:]}")
    return Run(
        client, int(match.group(1)), int(match.group(2)), int(match.group(4)), float(match.group(6))
    )


def pair_row(ctx: Context, client: str, quota: float = 40.0, seconds: float = 30.0) -> PairResult:
    """Two ``ocr-async run`` processes, each with its own controller, on one bucket.

    Both start together with more images than the quota allows in
    ``seconds``, and both are stopped after ``seconds``: each one's rate is
    what it got while the other ran too.
    """
    images = round(quota * seconds)
    folder = ctx.images(images)
    runs: list[Run] = []
    with front(KINDS["bucket"], quota) as (url, _):
        threads = []
        for n in range(2):
            argv = ocr_async_run(
                url,
                ctx.scratch / f"pair-{n}.jsonl",
                "--concurrency",
                "32",
                "--max-throttled",
                MAX_THROTTLED,
                *client_flags(client, quota),
                str(folder),
            )

            def work(argv: Sequence[str] = argv) -> None:
                runs.append(interrupted_run(client, argv, seconds))

            threads.append(threading.Thread(target=work))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    pair = PairResult(client, (runs[0], runs[1]), quota)
    print(f"  two processes, {client}: shares {pair.shares}", file=sys.stderr, flush=True)
    return pair


# --- --rps against no limit -------------------------------------------------------------


def rps_row(ctx: Context, rps: float, seconds: float = 10.0) -> tuple[float, float]:
    """(asked, delivered) calls/s of ``--rps`` with no limiter."""
    images = round(rps * seconds)
    folder, out = ctx.images(images), ctx.scratch / "rps.jsonl"
    with emulator_process("--latency", f"{LATENCY:g}") as emulator:
        run = run_client(
            RPS,
            emulator.base_url,
            folder,
            images,
            out,
            quota=rps,
            concurrency=64,
            limit=limit_for(seconds, RPS),
        )
    # The first call leaves at once: N calls span N - 1 intervals.
    delivered = (run.ok - 1) / run.elapsed
    print(f"  --rps {rps:g}: {delivered:.2f} calls/s", file=sys.stderr, flush=True)
    return rps, delivered


# --- the report -------------------------------------------------------------------------


@dataclass
class Report:
    """Everything one invocation measured."""

    rows: list[Row] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    pairs: list[PairResult] = field(default_factory=list)
    rps: list[tuple[float, float]] = field(default_factory=list)


def _cell(run: Run | None, quota: float, allowance: float) -> str:
    if run is None:
        return "- | -"
    if run.timed_out:
        return "killed | -"
    return f"{run.goodput(quota, allowance):.3f} | {run.refused_share:.1%}"


def render_matrix(rows: Sequence[Row]) -> str:
    """The matrix as a Markdown table: goodput and refused share per client."""
    lines = [
        "| limiter | quota | run | C | ocr-async | refused | met | --no-adapt | refused "
        "| --rps quota | refused |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        by = {run.client: run for run in row.runs}
        allowance = KINDS[row.kind].allowance(row.quota)
        lines.append(
            f"| {KINDS[row.kind].label} | {row.quota:g}/s | {row.seconds:g} s | "
            f"{row.concurrency} | {_cell(by.get('ocr-async'), row.quota, allowance)} | "
            f"{'yes' if row.met() else 'NO'} | "
            f"{_cell(by.get('--no-adapt'), row.quota, allowance)} | "
            f"{_cell(by.get(RPS), row.quota, allowance)} |"
        )
    return "\n".join(lines)


def render_steps(results: Sequence[StepResult]) -> str:
    """The schedule table."""
    lines = [
        "| client | goodput | refused | 40 -> 20: s to 95 % | 20 -> 60: s to 95 % | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for result in results:
        run = result.run
        if run.timed_out:
            lines.append(f"| {run.client} | killed | - | - | - | - |")
            continue
        down, up = result.reach
        met = result.goodput >= 0.95 and run.refused_share <= 0.03 and max(down, up) <= 3.0
        verdict = _verdict(met, run.client)
        lines.append(
            f"| {run.client} | {result.goodput:.3f} | {run.refused_share:.1%} | "
            f"{down:.1f} | {up:.1f} | {verdict} |"
        )
    return "\n".join(lines)


def _verdict(met: bool, client: str) -> str:
    # Targets are ocr-async's: the other clients are there to compare.
    if client != "ocr-async":
        return "-"
    return "yes" if met else "NO"


def render_pairs(pairs: Sequence[PairResult]) -> str:
    """The two-process table."""
    lines = [
        "| clients | together | first | second | refused | met |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for pair in pairs:
        if any(run.timed_out for run in pair.runs):
            lines.append(f"| 2 x {pair.client} | killed | - | - | - | - |")
            continue
        a, b = pair.shares
        refused = sum(r.refused for r in pair.runs) / sum(r.calls for r in pair.runs)
        met = a + b >= 0.9 and min(a, b) >= 0.35 and refused <= 0.03
        lines.append(
            f"| 2 x {pair.client} | {a + b:.3f} | {a:.3f} | {b:.3f} | {refused:.1%} | "
            f"{_verdict(met, pair.client)} |"
        )
    return "\n".join(lines)


def render_rps(rows: Sequence[tuple[float, float]]) -> str:
    """The ``--rps`` table."""
    lines = ["| --rps | delivered | ratio | met |", "| ---: | ---: | ---: | --- |"]
    for asked, got in rows:
        met = abs(got / asked - 1) <= 0.01
        lines.append(f"| {asked:g} | {got:.2f} | {got / asked:.4f} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


def render(report: Report) -> str:
    """Every table of the report, in Markdown."""
    parts = []
    if report.rows:
        parts += [
            "Goodput (calls answered / (quota x seconds + burst)) and calls refused:",
            "",
            render_matrix(report.rows),
        ]
    if report.steps:
        parts += [
            "",
            "Quota 40 -> 20 -> 60 calls/s (emulator bucket, burst 5, C=64):",
            "",
            render_steps(report.steps),
        ]
    if report.pairs:
        parts += [
            "",
            "Two processes at once on one quota of 40 calls/s (emulator bucket, "
            "burst 5, C=32 each); shares of the quota:",
            "",
            render_pairs(report.pairs),
        ]
    if report.rps:
        parts += ["", "`--rps` with no limiter (calls/s over the run):", "", render_rps(report.rps)]
    return "\n".join(parts)


def load_report(path: Path) -> Report:
    """A :class:`Report` saved with ``--json``, to render again without running."""
    raw = json.loads(path.read_text(encoding="utf-8"))

    def run(data: dict[str, Any]) -> Run:
        samples = tuple(Sample(s["t"], Stats(**s["stats"])) for s in data.get("samples", ()))
        return Run(
            data["client"],
            data["images"],
            data["ok"],
            data["refused"],
            float(data["elapsed"]),
            data["timed_out"],
            samples,
        )

    return Report(
        rows=[
            Row(
                r["kind"],
                r["quota"],
                r["seconds"],
                r["concurrency"],
                tuple(run(x) for x in r["runs"]),
            )
            for r in raw["rows"]
        ],
        steps=[
            StepResult(run(s["run"]), float(s["goodput"]), tuple(float(x) for x in s["reach"]))
            for s in raw["steps"]
        ],
        pairs=[
            PairResult(p["client"], (run(p["runs"][0]), run(p["runs"][1])), p["quota"])
            for p in raw["pairs"]
        ],
        rps=[(float(a), float(b)) for a, b in raw["rps"]],
    )


def plot_steps(results: Sequence[StepResult], path: Path) -> None:
    """Calls let through and refused per second over the schedule, per client."""
    from benchmarks.plot import plot_rates  # matplotlib only when a plot is asked for

    runs = {}
    for result in results:
        if result.run.samples:
            origin = first_call(result.run.samples)
            runs[result.run.client] = tuple(
                Sample(s.t - origin, s.stats) for s in result.run.samples if s.t >= origin - 0.5
            )
    plot_rates(
        runs,
        STEPS,
        path,
        "Quota 40 -> 20 -> 60 calls/s (emulator token bucket, burst 5), C=64, "
        f"L={LATENCY * 1000:.0f} ms",
    )


_BEGIN = "<!-- limiters:begin -->"
_END = "<!-- limiters:end -->"


def write_doc(doc: Path, text: str) -> None:
    """Replace what lies between the markers in ``doc`` with ``text``."""
    content = doc.read_text(encoding="utf-8")
    start, end = content.index(_BEGIN) + len(_BEGIN), content.index(_END)
    doc.write_text(f"{content[:start]}\n{text}\n{content[end:]}", encoding="utf-8")


# --- what runs ----------------------------------------------------------------------------


ALL_CLIENTS = ("ocr-async", "--no-adapt", RPS)


def full(ctx: Context, report: Report) -> None:
    """The default matrix: about 35 minutes."""
    for kind in KINDS:
        for quota in (5.0, 40.0, 200.0):
            report.rows.append(matrix_row(ctx, kind, quota, 10.0, 64, ALL_CLIENTS))
        report.rows.append(matrix_row(ctx, kind, 40.0, 10.0, 8, ALL_CLIENTS))
        # A minute of backoff alone adds little to its 10 s rows: left out for time.
        report.rows.append(matrix_row(ctx, kind, 40.0, 60.0, 64, ("ocr-async", RPS)))
    report.steps = schedule_row(ctx, ALL_CLIENTS)
    report.pairs = [pair_row(ctx, "ocr-async"), pair_row(ctx, "--no-adapt")]
    report.rps = [rps_row(ctx, 50.0), rps_row(ctx, 200.0)]


def quick(ctx: Context, report: Report) -> None:
    """A subset: every limiter at 40 calls/s for 10 s, the schedule, the pair, --rps 50."""
    for kind in KINDS:
        report.rows.append(matrix_row(ctx, kind, 40.0, 10.0, 64, ("ocr-async",)))
    report.steps = schedule_row(ctx, ("ocr-async",))
    report.pairs = [pair_row(ctx, "ocr-async", seconds=20.0)]
    report.rps = [rps_row(ctx, 50.0)]


def simulate_matrix() -> str:
    """The matrix's cells on virtual time (:mod:`ocr_async.emulator.simulation`)."""
    from ocr_async.emulator.limiters import make_limiter
    from ocr_async.emulator.simulation import simulate

    models = {
        "bucket": ("bucket", float(BUCKET_BURST)),
        "window": ("window", None),
        "sliding": ("sliding", None),
        "nginx": ("bucket", 1.0),
        "nginx-burst": ("bucket", float(NGINX_BURST + 1)),
        "haproxy": ("sliding", None),
    }
    lines = ["| limiter | quota | run | goodput | refused |", "| --- | ---: | ---: | ---: | ---: |"]
    for kind, (model, burst) in models.items():
        for quota in (5.0, 40.0, 200.0):
            for seconds in (10.0, 60.0):
                sim = simulate(
                    lambda clock, m=model, q=quota, b=burst: make_limiter(  # type: ignore[misc]
                        m, q, burst=b, clock=clock
                    ),
                    images=round(quota * seconds),
                    latency=(LATENCY * 0.8, LATENCY * 1.2),
                    transit=(0.0, 0.001),
                )
                good = round(quota * seconds) / (quota * sim.elapsed + KINDS[kind].allowance(quota))
                lines.append(
                    f"| {KINDS[kind].label} | {quota:g}/s | {seconds:g} s | {good:.3f} | "
                    f"{sim.reject_share():.1%} |"
                )
    return "\n".join(lines)


def _sim_cell(
    kind: str, quota: float, seconds: float, burst: float | None, controller: dict[str, float]
) -> tuple[float, float]:
    """(goodput over the whole run, refused share) of one simulated cell."""
    from ocr_async.emulator.limiters import make_limiter
    from ocr_async.emulator.simulation import simulate

    sim = simulate(
        lambda clock: make_limiter(kind, quota, burst=burst, clock=clock),  # type: ignore[arg-type]
        images=round(quota * seconds),
        latency=(LATENCY * 0.8, LATENCY * 1.2),
        transit=(0.0, 0.001),
        controller=controller,
    )
    return round(quota * seconds) / (quota * sim.elapsed + (burst or quota)), sim.reject_share()


def _sim_raise(
    kind: str, quota: float, burst: float | None, controller: dict[str, float]
) -> tuple[float, float]:
    """(median, worst) seconds to 95 % of a doubled quota, over 8 moments of the raise."""
    import statistics

    from ocr_async.emulator.limiters import make_limiter
    from ocr_async.emulator.simulation import simulate

    found = []
    for k in range(8):
        at = 20 + k * 0.37
        steps = ((0.0, quota), (at, 2 * quota))
        sim = simulate(
            lambda clock, steps=steps: make_limiter(  # type: ignore[misc]
                kind,  # type: ignore[arg-type]
                quota,
                burst=burst,
                schedule=steps,
                clock=clock,
            ),
            duration=at + 10,
            latency=(LATENCY * 0.8, LATENCY * 1.2),
            controller=controller,
        )
        found.append(sim.time_to_reach(sim.sends[0].t + at, 0.95 * 2 * quota))
    return statistics.median(found), max(found)


def sweep() -> str:
    """The figures behind the constants in ocr_async.limits: one changed at a time."""
    import ocr_async.limits as limits

    variants: list[tuple[str, dict[str, float], dict[str, float]]] = [
        ("as chosen", {}, {}),
        ("MARGIN 0.03", {}, {"margin": 0.03}),
        ("DOUBLING_TIME 0.25", {"DOUBLING_TIME": 0.25}, {}),
        ("INITIAL_RATE 5", {}, {"initial_rate": 5.0}),
        ("PROBE_TIME 1.5", {"PROBE_TIME": 1.5}, {}),
        ("no PROBE_COST rule", {"PROBE_COST": 1.0}, {}),
        ("MAX_HOLD unbounded", {"MAX_HOLD": 1e9}, {}),
        ("_SHARE_PRIOR 1", {"_SHARE_PRIOR": 1.0}, {}),
        ("_RAISE_SECONDS 0.5", {"_RAISE_SECONDS": 0.5}, {}),
        ("_CLIMB_BACK 0", {"_CLIMB_BACK": 0}, {}),
    ]
    lines = [
        "| variant | bucket 5, 200/s 10 s | window 40/s 60 s | sliding 200/s 10 s "
        "| no burst 40/s 60 s | bucket 5, 5/s 10 s | doubled, bucket 40/s | doubled, window 20/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, constants, controller in variants:
        saved = {name: getattr(limits, name) for name in constants}
        for name, value in constants.items():
            setattr(limits, name, value)
        try:
            cells = [
                _sim_cell("bucket", 200.0, 10.0, 5.0, controller),
                _sim_cell("window", 40.0, 60.0, None, controller),
                _sim_cell("sliding", 200.0, 10.0, None, controller),
                _sim_cell("bucket", 40.0, 60.0, 1.0, controller),
                _sim_cell("bucket", 5.0, 10.0, 5.0, controller),
            ]
            raises = [
                _sim_raise("bucket", 40.0, 5.0, controller),
                _sim_raise("window", 20.0, None, controller),
            ]
        finally:
            for name, value in saved.items():
                setattr(limits, name, value)
        text = " | ".join(f"{g:.3f}, {r:.1%}" for g, r in cells)
        found = " | ".join(f"{m:.1f} s, {w:.1f} s at worst" for m, w in raises)
        lines.append(f"| {label} | {text} | {found} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the matrix (or its quick subset) and print the tables."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.limiters", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a subset, a few minutes")
    parser.add_argument(
        "--simulate", action="store_true", help="the same cells on virtual time instead"
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="on virtual time, the figures behind ocr_async.limits' constants",
    )
    parser.add_argument(
        "--write-doc",
        action="store_true",
        help="put the tables in docs/benchmarks.md and the plot in docs/images/",
    )
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="render the tables (and with --write-doc the doc) from an earlier --json",
    )
    args = parser.parse_args(argv)
    if args.simulate:
        print(simulate_matrix())
        return
    if args.sweep:
        print(sweep())
        return
    if args.render:
        report = load_report(args.render)
        header = json.loads(args.render.read_text(encoding="utf-8")).get("header", "")
    else:
        started = time.perf_counter()
        load_before = os.getloadavg()
        report = Report()
        with tempfile.TemporaryDirectory(prefix="ocr-async-limiters-") as scratch:
            ctx = Context(Path(scratch))
            (quick if args.quick else full)(ctx, report)
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()
        header = (
            f"Machine: {machine()}. Load average (1 min) {load_before[0]:.2f} at the start, "
            f"{load_after[0]:.2f} at the end. Mode: {'quick' if args.quick else 'full'}, "
            f"{elapsed / 60:.0f} min. Emulator latency {LATENCY * 1000:.0f} ms."
        )
    text = f"{header}\n\n{render(report)}"
    print(text)
    root = Path(__file__).resolve().parent.parent
    if args.write_doc:
        if report.steps:
            plot_steps(report.steps, root / "docs/images/limiters-steps.png")
        write_doc(root / "docs/benchmarks.md", text)
    if args.json:
        document = asdict(report) | {"header": header}
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
