"""Run the benchmarks against the emulator and print a table of ratios.

    python -m benchmarks.run            # full sizes
    python -m benchmarks.run --quick    # small sizes, well under two minutes

Each section measures ocr-async and its reference in the same run.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.harness import (
    emulator_process,
    emulator_stats,
    make_image_folder,
    ocr_async_run,
    reset_emulator,
    run_child,
)


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    section: str
    measure: str
    value: float
    reference: float
    ratio: float
    target: str
    note: str = ""


def concurrency_efficiency(quick: bool, scratch: Path) -> list[Row]:
    """Images/s against the ideal C/L with a 100 ms emulator."""
    count, concurrency, latency = (640 if quick else 3000), 64, 0.1
    folder = make_image_folder(scratch / "eff", count)
    with emulator_process("--latency", str(latency)) as base_url:
        run = run_child(
            ocr_async_run(
                base_url,
                str(folder),
                "-o",
                str(scratch / "eff.jsonl"),
                "--overwrite",
                "--concurrency",
                str(concurrency),
            )
        )
        calls = emulator_stats(base_url)["requests"]
    assert calls == count, calls
    rate, ideal = run.summary_rate, concurrency / latency
    return [
        Row(
            "1 concurrency efficiency",
            f"images/s, {count} images, C={concurrency}, L={latency * 1000:.0f} ms",
            rate,
            ideal,
            rate / ideal,
            ">= 0.95",
            f"{count / run.wall_s:.0f}/s counting interpreter start-up; "
            f"peak RSS {run.peak_rss_mb:.0f} MB",
        )
    ]


def memory_flatness(quick: bool, scratch: Path) -> list[Row]:
    """Peak RSS of a long URL run against a short one."""
    small, large = (2_000, 20_000) if quick else (10_000, 200_000)
    with emulator_process() as base_url:
        results = {}
        for n in (small, large):
            urls = scratch / f"urls-{n}.txt"
            with urls.open("w") as handle:
                for i in range(n):
                    handle.write(f"{base_url}/samples/hello.png?n={i}\n")
            reset_emulator(base_url)
            results[n] = run_child(
                ocr_async_run(
                    base_url,
                    "--urls",
                    str(urls),
                    "-o",
                    str(scratch / f"mem-{n}.jsonl"),
                    "--overwrite",
                    "--concurrency",
                    "64",
                )
            )
            assert emulator_stats(base_url)["requests"] == n
    a, b = results[small], results[large]
    return [
        Row(
            "5 memory",
            f"peak RSS MB, {large:,} URLs vs {small:,}",
            b.peak_rss_mb,
            a.peak_rss_mb,
            b.peak_rss_mb / a.peak_rss_mb,
            "<= 1.2, < 150 MB",
            f"{large / b.wall_s:.0f} images/s on the long run",
        )
    ]


SECTIONS: dict[str, Callable[[bool, Path], list[Row]]] = {
    "efficiency": concurrency_efficiency,
    "memory": memory_flatness,
}


def main() -> None:
    """Run the chosen sections and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (under two minutes)")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run these")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ocr-async-bench-") as scratch:
        for name in args.only or SECTIONS:
            rows.extend(SECTIONS[name](args.quick, Path(scratch)))
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {__import__('os').cpu_count()} cores"
    )
    print("| section | measure | ocr-async | reference | ratio | target | note |")
    print("| --- | --- | ---: | ---: | ---: | --- | --- |")
    for row in rows:
        print(
            f"| {row.section} | {row.measure} | {row.value:.1f} | {row.reference:.1f} | "
            f"{row.ratio:.3f} | {row.target} | {row.note} |"
        )
    print(f"({time.perf_counter() - started:.0f} s in all)")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
