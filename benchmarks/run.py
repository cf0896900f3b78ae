"""Run the benchmarks against the emulator on loopback and print a table of ratios.

    python -m benchmarks.run                  # full sizes, several minutes
    python -m benchmarks.run --quick          # small sizes, under two minutes
    python -m benchmarks.run --plot docs/images/benchmark-rate.png

Each section measures ocr-async and its reference in the same run, in turns.
See docs/benchmarks.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from benchmarks.harness import (
    Emulator,
    Measurement,
    Sample,
    emulator_process,
    image_paths,
    interleaved,
    machine,
    make_image_folder,
    make_linked_folder,
    measure,
    nginx_process,
    ocr_async_run,
    peer_run,
    run_child,
    sampling,
    stub_process,
    time_to_first_request,
    write_lines,
)
from benchmarks.peers import curl_argv
from ocr_async.emulator import EmulatorConfig

# --- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal on a row's ratio or on its value, e.g. ``ratio >= 0.95``."""

    on: Literal["ratio", "value"]
    op: Literal[">=", "<="]
    bound: float

    def met(self, row: Row) -> bool:
        """Whether ``row`` reaches this target."""
        x = row.ratio if self.on == "ratio" else row.value
        return x >= self.bound if self.op == ">=" else x <= self.bound

    def __str__(self) -> str:
        return f"{self.on} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Row:
    """One line of the table: a value, what it is compared with, and their ratio."""

    section: str
    measure: str
    value: float
    reference: float
    targets: tuple[Target, ...] = ()
    note: str = ""

    @property
    def ratio(self) -> float:
        """``value / reference``."""
        return self.value / self.reference if self.reference else float("nan")

    @property
    def verdict(self) -> str:
        """``yes``, ``NO``, or a dash for rows that only give context."""
        if not self.targets:
            return "-"
        return "yes" if all(target.met(self) for target in self.targets) else "NO"


def _number(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 10_000 else f"{x:,.0f}"


def render(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| section | measure | value | reference | ratio | target | met | note |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for row in rows:
        targets = " and ".join(str(t) for t in row.targets) or "-"
        lines.append(
            f"| {row.section} | {row.measure} | {_number(row.value)} | "
            f"{_number(row.reference)} | {row.ratio:.3f} | {targets} | {row.verdict} | "
            f"{row.note} |"
        )
    return "\n".join(lines)


# --- what every section shares ----------------------------------------------------------


@dataclass
class Context:
    """Sizes for this mode, a scratch folder, and inputs made once and shared."""

    quick: bool
    scratch: Path
    plot: Path | None = None
    _folders: dict[int, Path] = field(default_factory=dict)

    @property
    def repeats(self) -> int:
        """Turns per comparison: the median of three in full mode, one in quick."""
        return 1 if self.quick else 3

    def size(self, quick: int, full: int) -> int:
        """The quick or the full size."""
        return quick if self.quick else full

    def images(self, count: int) -> Path:
        """A folder of ``count`` small PNGs, made once per run."""
        if count not in self._folders:
            self._folders[count] = make_image_folder(self.scratch / f"images-{count}", count)
        return self._folders[count]

    def image_list(self, count: int, limit: int | None = None) -> Path:
        """The files of :meth:`images` (the first ``limit`` of them), one a line."""
        paths = image_paths(self.images(count))[:limit]
        return write_lines(self.scratch / f"images-{count}-{len(paths)}.txt", paths)


# --- 1. concurrency efficiency ----------------------------------------------------------

EFFICIENCY_LATENCY = 0.1
EFFICIENCY_CONCURRENCY = 64


def concurrency_efficiency(ctx: Context) -> list[Row]:
    """Images/s against the ideal C/L, with the bare aiohttp loop beside it."""
    count, c, latency = ctx.size(1000, 3000), EFFICIENCY_CONCURRENCY, EFFICIENCY_LATENCY
    folder, paths, out = ctx.images(count), ctx.image_list(count), ctx.scratch / "eff.jsonl"
    with emulator_process("--latency", str(latency)) as emulator:
        ours = ocr_async_run(emulator.base_url, out, "--concurrency", str(c), str(folder))
        bare = peer_run("aiohttp", emulator.base_url, paths, out, c)
        best = interleaved(
            {
                "ocr-async": lambda: measure(emulator, count, ours),
                "aiohttp": lambda: measure(emulator, count, bare),
            },
            ctx.repeats,
        )
    ideal = c / latency
    section = "1 efficiency"
    setting = f"{count:,} images, C={c}, L={latency * 1000:.0f} ms"
    return [
        Row(
            section,
            f"ocr-async images/s vs C/L ({setting})",
            best["ocr-async"].rate,
            ideal,
            (Target("ratio", ">=", 0.95),),
            f"{best['ocr-async'].wall_rate:.0f}/s with interpreter start-up; "
            f"emulator CPU {best['ocr-async'].server_cpu_ms:.2f} ms/call",
        ),
        Row(
            section,
            "bare aiohttp loop images/s vs C/L (same setting: the stack's ceiling here)",
            best["aiohttp"].rate,
            ideal,
            note=f"emulator CPU {best['aiohttp'].server_cpu_ms:.2f} ms/call",
        ),
    ]


# --- 2. client overhead -----------------------------------------------------------------

OVERHEAD_CONCURRENCY = 16


def client_overhead(ctx: Context) -> list[Row]:
    """Images/s with no latency: ocr-async against three peers, same images and multipart."""
    count, c = ctx.size(1000, 3000), OVERHEAD_CONCURRENCY
    curl_count = ctx.size(200, 1000)
    folder, paths, out = ctx.images(count), ctx.image_list(count), ctx.scratch / "over.jsonl"
    curl_paths = ctx.image_list(count, curl_count)
    with emulator_process() as emulator:
        url = emulator.base_url
        ours = ocr_async_run(url, out, "--concurrency", str(c), str(folder))
        contenders: dict[str, Callable[[], Measurement]] = {
            "ocr-async": lambda: measure(emulator, count, ours),
            "aiohttp": lambda: measure(emulator, count, peer_run("aiohttp", url, paths, out, c)),
            "requests": lambda: measure(emulator, count, peer_run("requests", url, paths, out, c)),
            "curl": lambda: measure(
                emulator,
                curl_count,
                curl_argv(url, curl_paths, c),
                summary=False,
                stdout=ctx.scratch / "curl.jsonl",
            ),
        }
        best = interleaved(contenders, ctx.repeats, once=("requests", "curl"))
    ours_rate = best["ocr-async"].rate
    section = "2 overhead"
    setting = f"no latency, C={c}"
    return [
        Row(
            section,
            f"ocr-async vs bare aiohttp loop, images/s ({count:,} images, {setting})",
            ours_rate,
            best["aiohttp"].rate,
            (Target("ratio", ">=", 0.85),),
            f"emulator CPU/call: ocr-async {best['ocr-async'].server_cpu_ms:.2f} ms, "
            f"aiohttp {best['aiohttp'].server_cpu_ms:.2f} ms",
        ),
        Row(
            section,
            f"ocr-async vs xargs -P {c} curl, images/s ({curl_count:,} images for curl)",
            ours_rate,
            best["curl"].rate,
            (Target("ratio", ">=", 3.0),),
            "curl: one process per image, wall time",
        ),
        Row(
            section,
            f"ocr-async vs requests + ThreadPoolExecutor({c}), images/s",
            ours_rate,
            best["requests"].rate,
        ),
    ]


# --- 3 and 4. an unknown quota ----------------------------------------------------------

QUOTA = 50.0
QUOTA_LATENCY = 0.1
QUOTA_CONCURRENCY = 64
#: The clients compared under a quota, and their flags.
QUOTA_CLIENTS: dict[str, tuple[str, ...]] = {
    "ocr-async (adaptive)": (),
    "tenacity only (--no-adapt)": ("--no-adapt",),
    f"ocr-async --rps {QUOTA:g}": ("--rps", f"{QUOTA:g}"),
}
#: nginx variants: (label, burst). A limit_req with no burst refuses any two
#: calls closer than 1/rate; real gateways allow some burst.
NGINX_VARIANTS: tuple[tuple[str, int], ...] = (("no burst", 0), ("burst=10 nodelay", 10))


@dataclass(frozen=True)
class QuotaRun:
    """What one client achieved against a limiter."""

    client: str
    images: int
    ok: int
    calls: int
    refused: int
    elapsed_s: float
    samples: tuple[Sample, ...] = ()


def quota_run(
    emulator: Emulator, client: str, target_url: str, folder: Path, count: int, out: Path
) -> QuotaRun:
    """One client over ``count`` images at ``target_url`` (the emulator or nginx)."""
    emulator.reset()
    argv = ocr_async_run(
        target_url, out, "--concurrency", str(QUOTA_CONCURRENCY), *QUOTA_CLIENTS[client]
    )
    with sampling(emulator) as sampler:
        run = run_child([*argv, str(folder)])
    stats = emulator.stats()
    return QuotaRun(
        client,
        count,
        stats.answered_ok,
        stats.requests,
        stats.rate_limited,
        run.summary()[1],
        tuple(sampler.samples),
    )


def quota_rows(section: str, where: str, runs: Sequence[QuotaRun], allowance: float) -> list[Row]:
    """Goodput against what the limiter allows, and the share of calls refused.

    In ``s`` seconds a limiter of rate ``r`` and burst ``b`` lets through at
    most ``r s + b`` calls: that is the reference, so a short run cannot
    score over 1 by spending the saved-up burst.
    """
    rows: list[Row] = []
    for run in runs:
        adaptive = run.client == "ocr-async (adaptive)"
        failed = f"; {run.images - run.ok} images failed" if run.ok < run.images else ""
        rows += [
            Row(
                section,
                f"{run.client} {where}: calls answered vs quota x time + burst",
                run.ok,
                QUOTA * run.elapsed_s + allowance,
                (Target("ratio", ">=", 0.95),) if adaptive else (),
                f"{run.ok / run.elapsed_s:.1f} calls/s over {run.elapsed_s:.1f} s{failed}",
            ),
            Row(
                section,
                f"{run.client} {where}: calls refused (4000006) vs calls sent",
                run.refused,
                run.calls,
                (Target("ratio", "<=", 0.05),) if adaptive else (),
            ),
        ]
    return rows


def unknown_quota(ctx: Context) -> list[Row]:
    """The emulator's own quota: 50 calls/s, burst 50; three clients."""
    count = ctx.size(300, 1500)
    folder, out = ctx.images(count), ctx.scratch / "quota.jsonl"
    flags = ("--latency", str(QUOTA_LATENCY), "--quota-rps", f"{QUOTA:g}")
    with emulator_process(*flags) as emulator:
        url = emulator.base_url
        runs = [quota_run(emulator, client, url, folder, count, out) for client in QUOTA_CLIENTS]
    if ctx.plot is not None:
        from benchmarks.plot import plot_rates  # matplotlib only when a plot is asked for

        plot_rates(
            {run.client: run.samples for run in runs},
            QUOTA,
            ctx.plot,
            f"{count:,} images, quota {QUOTA:g} calls/s (emulator), "
            f"C={QUOTA_CONCURRENCY}, L={QUOTA_LATENCY * 1000:.0f} ms",
        )
    burst = EmulatorConfig(quota_rps=QUOTA).burst or 1
    return quota_rows("3 unknown quota", f"(emulator, burst {burst})", runs, burst)


def nginx_limiter(ctx: Context) -> list[Row]:
    """nginx ``limit_req`` at 50 r/s in front of the emulator: the same clients as in 3."""
    count = ctx.size(300, 1500)
    folder, out = ctx.images(count), ctx.scratch / "nginx.jsonl"
    # Quick mode: ocr-async alone. The tenacity-only client's long backoffs
    # against a strict limiter would take half the quick budget by themselves.
    clients = [*QUOTA_CLIENTS][:1] if ctx.quick else [*QUOTA_CLIENTS]
    rows: list[Row] = []
    with emulator_process("--latency", str(QUOTA_LATENCY)) as emulator:
        for label, burst in NGINX_VARIANTS:
            runs: list[QuotaRun] = []
            for client in clients:
                with nginx_process(emulator.base_url, QUOTA, burst) as nginx:
                    run = quota_run(emulator, client, nginx.base_url, folder, count, out)
                    calls, refused = nginx.calls()
                # nginx's own log counts what it refused; the emulator saw the rest.
                runs.append(QuotaRun(client, count, run.ok, calls, refused, run.elapsed_s))
            rows += quota_rows("4 nginx", f"(nginx {label})", runs, burst + 1)
    return rows


# --- 5. memory --------------------------------------------------------------------------


def memory_flatness(ctx: Context) -> list[Row]:
    """Peak RSS of a long URL run against a short one."""
    small, large = ctx.size(1_000, 10_000), ctx.size(10_000, 200_000)
    peaks: dict[int, float] = {}
    rates: dict[int, float] = {}
    with emulator_process() as emulator:
        for n in (small, large):
            urls = write_lines(
                ctx.scratch / f"urls-{n}.txt",
                (f"{emulator.base_url}/samples/hello.png?n={i}" for i in range(n)),
            )
            out = ctx.scratch / f"mem-{n}.jsonl"
            argv = ocr_async_run(emulator.base_url, out, "--concurrency", "64", "--urls", str(urls))
            emulator.reset()
            run = run_child(argv)
            if (ok := emulator.stats().answered_ok) != n:
                raise RuntimeError(f"memory run: {ok} of {n} answered ok")
            peaks[n], rates[n] = run.peak_rss_mb, run.summary()[0]
    return [
        Row(
            "5 memory",
            f"peak RSS MB, {large:,} URLs vs {small:,}",
            peaks[large],
            peaks[small],
            (Target("ratio", "<=", 1.2), Target("value", "<=", 150)),
            f"{rates[large]:.0f} images/s on the long run",
        )
    ]


# --- 6. start-up ------------------------------------------------------------------------

STARTUP_FILES = 100_000


def startup(ctx: Context) -> list[Row]:
    """Seconds from process start to the first request, 100,000 files against one."""
    big = make_linked_folder(ctx.scratch / "startup-big", STARTUP_FILES)
    one = make_linked_folder(ctx.scratch / "startup-one", 1)
    record, out = ctx.scratch / "first-request", ctx.scratch / "startup.jsonl"
    delays: dict[Path, list[float]] = {big: [], one: []}
    with stub_process(record) as url:
        for _ in range(3):
            for folder, found in delays.items():
                found.append(time_to_first_request(ocr_async_run(url, out, str(folder)), record))
    return [
        Row(
            "6 start-up",
            f"s to first request: flat folder of {STARTUP_FILES:,} files vs 1 file",
            statistics.median(delays[big]),
            statistics.median(delays[one]),
            (Target("value", "<=", 1.0),),
            "median of 3; files are hard links to two small PNGs",
        )
    ]


SECTIONS: dict[str, Callable[[Context], list[Row]]] = {
    "efficiency": concurrency_efficiency,
    "overhead": client_overhead,
    "quota": unknown_quota,
    "nginx": nginx_limiter,
    "memory": memory_flatness,
    "startup": startup,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the chosen sections and print the table."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Benchmarks of ocr-async against the emulator on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (under two minutes)")
    parser.add_argument(
        "--only", choices=sorted(SECTIONS), action="append", help="run only these sections"
    )
    parser.add_argument("--plot", type=Path, help="write section 3's rate plot (PNG) here")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ocr-async-bench-") as scratch:
        ctx = Context(args.quick, Path(scratch), args.plot)
        for name in args.only or SECTIONS:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            rows.extend(SECTIONS[name](ctx))
    elapsed = time.perf_counter() - started
    print(f"machine: {machine()}")
    print(f"mode: {'quick' if args.quick else 'full'}; {elapsed:.0f} s in all\n")
    print(render(rows))
    if args.json:
        document = [asdict(row) | {"ratio": row.ratio, "met": row.verdict} for row in rows]
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
