"""A 10,000-row manifest: run, resume after re-signing, dry run, verify, metrics scrapes.

    python -m benchmarks.manifest                  # 10,000 rows, 0.02 s latency, 32 in flight
    python -m benchmarks.manifest --rows 2000      # quicker

Half the rows name small PNG files, half name URLs the emulator serves
itself (``/samples/hello.png?n=N&sig=...``, a pre-signed URL's shape); one
row in 500 has no id (a bad row: one error record, nothing sent). The
emulator runs in this process on loopback, with ``--latency`` per answer;
each step is the real command line in a child process (``python -m
ocr_async``), timed from start to exit:

1. ``run --manifest`` with ``--metrics-port``, scraped every 0.25 s while
   it runs (the time each scrape takes is reported);
2. the output cut to its first 70 % (as a crash would leave it), every URL
   signed again, ``run --resume``: only the rows without a record are sent;
3. every URL signed once more, ``run --resume``: nothing is sent;
4. ``run --dry-run`` on a new output (every row pre-checked, files read and
   hashed) and ``run --dry-run --resume`` on the full one;
5. ``verify --manifest``.

The requests counted are the emulator's: the dry runs and the last resume
must send none.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from ocr_async.emulator import (
    EmulatorConfig,
    find_free_port,
    make_png,
    running_emulator,
)

APPKEY = "bench-appkey"
TOKEN = "bench-token"


def write_manifest(path: Path, rows: int, url: str, signature: str) -> None:
    lines = []
    for n in range(rows):
        row: dict[str, Any] = {"id": f"doc-{n:05d}", "batch": n // 1000, "n": n}
        if n % 500 == 499:
            del row["id"]  # a bad row
        if n % 2:
            row["url"] = f"{url}?n={n}&sig={signature}"
        else:
            row["path"] = f"files/{n:05d}.png"
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")


async def run_cli(
    folder: Path, env: dict[str, str], *argv: str, stdout: Path | None = None
) -> tuple[float, int, str]:
    """Wall seconds, exit code and stderr of ``python -m ocr_async ARGV``; stdout kept if asked."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ocr_async", *argv,
        cwd=folder, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    wall = time.perf_counter() - started
    if stdout is not None:
        await asyncio.to_thread(stdout.write_bytes, out)
    return wall, process.returncode or 0, err.decode()


async def scrape_while(
    port: int, running: asyncio.Task[tuple[float, int, str]]
) -> list[dict[str, float]]:
    """Scrape the metrics endpoint every 0.25 s while ``running`` runs."""
    url = f"http://127.0.0.1:{port}/metrics"
    scrapes: list[dict[str, float]] = []
    async with aiohttp.ClientSession() as session:
        while not running.done():
            started = time.perf_counter()
            try:
                async with session.get(url) as answer:
                    text = await answer.text()
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
                continue
            took = time.perf_counter() - started
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text)
                for s in family.samples
            }
            ok = samples.get(("ocr_async_records_total", (("code", ""), ("outcome", "ok"))), 0)
            scrapes.append(
                {
                    "seconds": took,
                    "bytes": len(text),
                    "series": len(samples),
                    "in_flight": samples.get(("ocr_async_requests_in_flight", ()), 0),
                    "records_ok": ok,
                    "rate": samples.get(("ocr_async_rate_calls_per_second", ()), 0),
                }
            )
            await asyncio.sleep(0.25)
    return scrapes


async def bench(rows: int, latency: float, concurrency: int) -> dict[str, Any]:
    config = EmulatorConfig(tokens=frozenset({TOKEN}), appkey=APPKEY, latency=latency)
    port = find_free_port(10000, 12000)
    results: dict[str, Any] = {"rows": rows, "latency_s": latency, "concurrency": concurrency}
    with tempfile.TemporaryDirectory(prefix="ocr-manifest-") as tmp:
        folder = Path(tmp)
        (folder / "files").mkdir()
        for n in range(0, rows, 2):
            (folder / "files" / f"{n:05d}.png").write_bytes(make_png(f"row {n}"))
        async with running_emulator(config, port=port) as emulator:
            env = {
                **os.environ,
                "NHN_OCR_APPKEY": APPKEY,
                "NHN_OCR_TOKEN": TOKEN,
                "NHN_OCR_BASE_URL": emulator.base_url,
            }
            url = emulator.sample_url("hello.png")
            manifest = folder / "rows.jsonl"
            write_manifest(manifest, rows, url, "first")
            common = ["--manifest", "rows.jsonl", "--concurrency", str(concurrency)]

            async def step(name: str, *argv: str, stdout: Path | None = None) -> None:
                before = emulator.stats.requests
                wall, code, err = await run_cli(folder, env, *argv, stdout=stdout)
                results[name] = {
                    "wall_s": round(wall, 2),
                    "exit": code,
                    "requests": emulator.stats.requests - before,
                }
                print(f"{name}: {results[name]}", file=sys.stderr)
                if code not in (0, 1):
                    print(err, file=sys.stderr)

            # 1. The run, scraped while it runs.
            metrics_port = find_free_port(20000, 60000)
            before = emulator.stats.requests
            running = asyncio.create_task(
                run_cli(folder, env, "run", *common, "-o", "out.jsonl",
                        "--metrics-port", str(metrics_port))
            )  # fmt: skip
            scrapes = await scrape_while(metrics_port, running)
            wall, code, _ = await running
            records = len((folder / "out.jsonl").read_text().splitlines())
            results["run"] = {
                "wall_s": round(wall, 2),
                "exit": code,
                "requests": emulator.stats.requests - before,
                "records": records,
                "records_per_s": round(records / wall, 1),
            }
            print(f"run: {results['run']}", file=sys.stderr)
            taken = sorted(s["seconds"] for s in scrapes)
            results["metrics"] = {
                "scrapes": len(scrapes),
                "scrape_ms_median": round(1000 * taken[len(taken) // 2], 2) if taken else None,
                "scrape_ms_max": round(1000 * taken[-1], 2) if taken else None,
                "series": max((s["series"] for s in scrapes), default=0),
                "bytes": max((s["bytes"] for s in scrapes), default=0),
                "in_flight_max": max((s["in_flight"] for s in scrapes), default=0),
            }
            print(f"metrics: {results['metrics']}", file=sys.stderr)

            # 2. A crash after 70 %, every URL signed again, resume.
            out = folder / "out.jsonl"
            lines = out.read_text().splitlines(keepends=True)
            full = "".join(lines)
            out.write_text("".join(lines[: len(lines) * 7 // 10]))
            write_manifest(manifest, rows, url, "second")
            await step("resume_after_resigning", "run", *common, "-o", "out.jsonl", "--resume")
            # 3. Signed once more: everything is done.
            write_manifest(manifest, rows, url, "third")
            await step("resume_all_done", "run", *common, "-o", "out.jsonl", "--resume")

            # 4. Dry runs: a new output (everything pre-checked), and the full one.
            await step(
                "dry_run", "run", *common, "-o", "new.jsonl", "--dry-run",
                stdout=folder / "plan.jsonl",
            )  # fmt: skip
            results["dry_run"]["listed"] = len((folder / "plan.jsonl").read_text().splitlines())
            await step("dry_run_resume", "run", *common, "-o", "out.jsonl", "--dry-run", "--resume")

            # 5. Verify, against the manifest as it now stands.
            await step(
                "verify", "verify", "--manifest", "rows.jsonl", "-o", "out.jsonl",
                stdout=folder / "findings.jsonl",
            )  # fmt: skip
            found = (folder / "findings.jsonl").read_text().splitlines()
            results["verify"]["findings"] = len(found)
            results["output_bytes"] = len(full.encode())
    return results


def main() -> None:
    """Run the benchmark; print the figures as JSON on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results = asyncio.run(bench(args.rows, args.latency, args.concurrency))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
