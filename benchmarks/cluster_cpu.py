"""A CPU-bound run on one local process, and spread over Dask workers on this machine.

    python -m benchmarks.cluster_cpu                  # 24 photos, 2 rounds: about 4 minutes
    python -m benchmarks.cluster_cpu --images 12 --rounds 1

The inputs are large photos made with Pillow (4000 x 3000, noise over a
gradient, JPEG quality 92: about 9 MB each, which compresses as badly as a
real photo). Every run sends them with ``--shrink --max-bytes 2000000``, so
each is decoded, re-encoded at falling JPEG quality and downscaled before
it is sent: about a second of CPU per photo. ``ocr-async serve`` answers
(no quota, 50 ms answers), on 127.0.0.1.

Three ways, in turn, each round (the order alternates, so that the noise of
a machine shared with others falls on all of them):

* ``local``: one ``ocr-async run`` process;
* ``dask 1 worker`` and ``dask 2 workers``: ``ocr-async run --cluster``, with
  ``dask scheduler`` and ``dask worker --nthreads 2 --no-nanny`` processes.

Measured: images/s as the run's summary says it (start-up excluded), and
CPU seconds per image: of the run's own process, and of the workers.

Then the ceiling of the driver and the scheduler, which every record goes
through: ``--small N`` small PNGs (no ``--shrink``, no quota) over two
workers, and each one's CPU per record. What this predicts for more
machines is in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import cpu_seconds, emulator_process, machine, ocr_async_run, run_child
from ocr_async.emulator import find_free_port

SHRINK = ["--shrink", "--max-bytes", "2000000"]
SIZE = (4000, 3000)


def make_photos(folder: Path, count: int) -> Path:
    """``count`` photo-like JPEGs: noise over a gradient (Pillow only)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    gradient = Image.linear_gradient("L").resize(SIZE)
    for n in range(count):
        channels = [
            Image.blend(Image.effect_noise(SIZE, 40 + 5 * band), gradient, 0.4) for band in range(3)
        ]
        photo = Image.merge("RGB", channels)
        photo.save(folder / f"photo-{n:03d}.jpg", "JPEG", quality=92)
    return folder


@dataclass(frozen=True)
class Result:
    """One run of one way."""

    rate: float
    client_cpu: float
    worker_cpu: float


@contextlib.contextmanager
def dask_cluster(workers: int, logs: Path) -> Iterator[tuple[str, list[int], int]]:
    """A scheduler and ``workers`` workers (``--nthreads 2 --no-nanny``), on loopback."""
    port = find_free_port(20000, 60000)
    address = f"tcp://127.0.0.1:{port}"
    processes: list[subprocess.Popen[bytes]] = []

    def start(name: str, *argv: str, ready: str) -> subprocess.Popen[bytes]:
        log = logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "dask", *argv], stdout=out, stderr=subprocess.STDOUT
            )
        processes.append(process)
        deadline = time.monotonic() + 60
        while ready not in log.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start: {log.read_text()[-1000:]}")
            time.sleep(0.05)
        return process

    try:
        scheduler = start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                          "--no-dashboard", ready="Scheduler at:")  # fmt: skip
        pids = [
            start(f"worker{n}", "worker", address, "--nthreads", "2", "--no-nanny",
                  "--host", "127.0.0.1", "--no-dashboard", ready="Registered to:").pid
            for n in range(workers)
        ]  # fmt: skip
        yield address, pids, scheduler.pid
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(
    base_url: str, photos: Path, output: Path, count: int, *extra: str
) -> tuple[float, float]:
    """(images/s, CPU seconds of the run's process) for one ``ocr-async run``."""
    before = children_cpu()
    run = run_child(ocr_async_run(base_url, output, str(photos), "--no-progress", *SHRINK, *extra))
    cpu = children_cpu() - before
    lines = output.read_bytes().count(b"\n")
    if lines != count or run.returncode != 0:
        raise RuntimeError(f"{lines} of {count} records, exit {run.returncode}: {run.stderr}")
    return run.summary()[0], cpu


def local(base_url: str, photos: Path, work: Path, count: int) -> Result:
    rate, cpu = one_run(base_url, photos, work / "local.jsonl", count)
    return Result(rate, cpu / count, 0.0)


def on_dask(base_url: str, photos: Path, work: Path, count: int, workers: int) -> Result:
    with dask_cluster(workers, work) as (address, pids, _):
        before = sum(cpu_seconds(pid) for pid in pids)
        rate, cpu = one_run(base_url, photos, work / f"dask{workers}.jsonl", count,
                            "--cluster", address)  # fmt: skip
        workers_cpu = sum(cpu_seconds(pid) for pid in pids) - before
    return Result(rate, cpu / count, workers_cpu / count)


@dataclass(frozen=True)
class Ceiling:
    """Small images over two workers: where the driver and the scheduler stand."""

    count: int
    rate: float
    driver_cpu_ms: float
    scheduler_cpu_ms: float
    workers_cpu_ms: float


def ceiling(base_url: str, work: Path, count: int) -> Ceiling:
    from ocr_async.emulator import make_png

    folder = work / "small"
    folder.mkdir()
    for n in range(count):
        (folder / f"{n:05d}.png").write_bytes(make_png(f"small {n}"))
    output = work / "small.jsonl"
    with dask_cluster(2, work) as (address, pids, scheduler):
        before = [cpu_seconds(pid) for pid in pids], cpu_seconds(scheduler)
        before_driver = children_cpu()
        run = run_child(ocr_async_run(base_url, output, str(folder), "--no-progress",
                                      "--cluster", address))  # fmt: skip
        driver = children_cpu() - before_driver
        workers = sum(cpu_seconds(pid) for pid in pids) - sum(before[0])
        sched = cpu_seconds(scheduler) - before[1]
    if output.read_bytes().count(b"\n") != count:
        raise RuntimeError(f"small run: {run.stderr[-1000:]}")
    per = 1000 / count
    return Ceiling(count, run.summary()[0], driver * per, sched * per, workers * per)


def render(results: dict[str, list[Result]], count: int, rounds: int) -> str:
    lines = [
        f"Machine: {machine()}.",
        "",
        f"{count} photos of {SIZE[0]} x {SIZE[1]} (about 9 MB each), `--shrink --max-bytes "
        f"2000000`; median of {rounds} round(s).",
        "",
        "| run | images/s (median) | each round | CPU per image: the run's process "
        "| CPU per image: the workers |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        rate = statistics.median(r.rate for r in runs)
        each = " / ".join(f"{r.rate:.2f}" for r in runs)
        client = statistics.median(r.client_cpu for r in runs)
        workers = statistics.median(r.worker_cpu for r in runs)
        shown = f"{workers:.2f} s" if workers else "(in the run's process)"
        lines.append(f"| {name} | {rate:.2f} | {each} | {client:.2f} s | {shown} |")
    return "\n".join(lines)


def render_ceiling(found: Ceiling) -> str:
    return "\n".join([
        f"{found.count} small PNGs, no quota, two workers: {found.rate:.0f} images/s. "
        "CPU per record:",
        "",
        "| the driver (this machine) | the scheduler | the workers, together |",
        "| --- | --- | --- |",
        f"| {found.driver_cpu_ms:.2f} ms | {found.scheduler_cpu_ms:.2f} ms "
        f"| {found.workers_cpu_ms:.2f} ms |",
    ])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--small", type=int, default=2000, help="0: skip the ceiling")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ocr-cluster-cpu-") as tmp:
        work = Path(tmp)
        photos = make_photos(work / "photos", args.images)
        with emulator_process("--latency", "0.05") as emulator:
            url, count = emulator.base_url, args.images
            ways = {
                "local, one process": lambda: local(url, photos, work, count),
                "dask, 1 worker": lambda: on_dask(url, photos, work, count, 1),
                "dask, 2 workers": lambda: on_dask(url, photos, work, count, 2),
            }
            results: dict[str, list[Result]] = {name: [] for name in ways}
            for round_ in range(args.rounds):
                order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
                for name in order:
                    results[name].append(ways[name]())
                    print(f"round {round_ + 1}: {name}: {results[name][-1]}", file=sys.stderr)
            found = ceiling(url, work, args.small) if args.small else None
    print(render(results, args.images, args.rounds))
    if found is not None:
        print()
        print(render_ceiling(found))


if __name__ == "__main__":
    main()
