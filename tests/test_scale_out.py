"""Beyond one process, end to end: ``ocr-async run`` processes sharing one quota, and Dask runs.

Each process stands for a machine: the ``ocr-async run`` processes, the
``dask scheduler`` and each ``dask worker`` (``--no-nanny``, so that
``kill -9`` kills it for good) are started as separate processes on
127.0.0.1; Redis is the ``redis_server`` fixture (Debian's redis-server);
the emulator, with a quota in front, runs in this process and counts what
it was sent. Every assertion is on counts (records, members, refusals),
never on how long something took: a kill waits for records to be written,
not for a moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import APPKEY, TOKEN, RedisServer, emulator_config, free_port

from ocr_async.emulator import RunningEmulator, make_png, running_emulator

pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(90)


def process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NHN_", "OCR_ASYNC_"))}
    env.update(NHN_OCR_TOKEN=TOKEN, NHN_OCR_APPKEY=APPKEY, **extra)
    # The tests may run against another checkout (PYTHONPATH): keep it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


def images(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        (folder / f"{n:04d}.png").write_bytes(make_png(f"{folder.name} {n}"))
    return folder


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def written(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def until(condition: Any, seconds: float = 30.0) -> None:
    """Poll ``condition()`` until it holds; fail after a generous deadline."""
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.05)


@dataclass
class Run:
    """An ``ocr-async run`` process, its output and its stderr."""

    process: asyncio.subprocess.Process
    output: Path
    log: Path

    @property
    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    async def finish(self, seconds: float = 60.0) -> int:
        async with asyncio.timeout(seconds):
            return await self.process.wait()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


async def start_run(tmp_path: Path, name: str, *argv: str, **env: str) -> Run:
    output, log = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.err"
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ocr_async", "run", *argv, "--output", str(output),
            "--no-progress", cwd=tmp_path, env=process_env(**env),
            stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    return Run(process, output, log)


@pytest.fixture
async def quota() -> AsyncIterator[RunningEmulator]:
    """The emulator behind a 40 calls/s quota."""
    config = emulator_config(quota_rps=40.0, quota_burst=5, latency=0.02)
    async with running_emulator(config) as emulator:
        yield emulator


# -- one quota, several ocr-async run processes -----------------------------------------


async def test_three_runs_share_one_quota(
    quota: RunningEmulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    folder = images(tmp_path / "three", 60)
    argv = [str(folder), "--base-url", quota.base_url, "--shared-quota", redis_server.url, "-v"]
    runs = [await start_run(tmp_path, f"run{n}", *argv) for n in range(3)]
    codes = [await run.finish() for run in runs]
    stats = quota.stats
    assert codes == [0, 0, 0]
    assert [len(records(run.output)) for run in runs] == [60, 60, 60]
    joined = [re.search(r"joined .* one of (\d+); share", run.stderr) for run in runs]
    assert all(joined)
    assert max(int(m.group(1)) for m in joined if m) == 3  # the last one joined two others
    assert all("shared quota: " in run.stderr.splitlines()[-1] for run in runs)  # the summary
    assert stats.answered_ok == 180
    # One controller for the three: a start-up and a probe or two refused.
    assert stats.rate_limited <= 0.15 * stats.requests


async def test_a_run_killed_with_sigkill_gives_its_share_to_the_others(
    quota: RunningEmulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    folder = images(tmp_path / "kill", 150)
    argv = [str(folder), "--base-url", quota.base_url, "--shared-quota", redis_server.url, "-v"]
    victim = await start_run(tmp_path, "victim", *argv)
    survivors = [await start_run(tmp_path, f"survivor{n}", *argv) for n in range(2)]
    runs = [victim, *survivors]
    # All three in, and the victim sending: then it dies without leaving.
    await until(lambda: all("one of" in run.stderr for run in runs))
    await until(lambda: written(victim.output) >= 10)
    victim.kill()
    assert await victim.finish() == -signal.SIGKILL
    codes = [await run.finish() for run in survivors]
    assert codes == [0, 0]
    assert [len(records(run.output)) for run in survivors] == [150, 150]
    for run in survivors:
        # Its lease lapsed, and the -v watch saw the group shrink to two,
        # each now pacing at about half of the group's rate.
        shares = re.findall(r"shared quota: 2 members now; this process's share (\d+)%", run.stderr)
        assert shares, run.stderr[-2000:]
        assert int(shares[0]) >= 34  # more than its third


async def test_redis_stopped_mid_run_loses_no_record(
    quota: RunningEmulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    folder = images(tmp_path / "lost", 100)
    argv = [str(folder), "--base-url", quota.base_url, "--shared-quota", redis_server.url]
    runs = [await start_run(tmp_path, f"run{n}", *argv) for n in range(2)]
    await until(lambda: all(written(run.output) >= 20 for run in runs))
    redis_server.stop()
    codes = [await run.finish() for run in runs]
    assert codes == [0, 0]
    for run in runs:
        sources = [r["source"] for r in records(run.output)]
        assert len(sources) == len(set(sources)) == 100
        assert all(r["ok"] for r in records(run.output))
        assert run.stderr.count("lost the store") == 1  # warned once
    assert quota.stats.answered_ok >= 200


# -- runs spread over a Dask cluster -------------------------------------------------------


@dataclass
class DaskCluster:
    """A scheduler and its workers, each a process on 127.0.0.1."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def text(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *argv],
            env=process_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )


def _wait_for(log: Path, text: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):  # 30 s
        if text in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"{log.name}: exited: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{log.name}: no {text!r}: {log.read_text()[-2000:]}")


@pytest.fixture
def dask_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """``dask scheduler`` and two ``dask worker --no-nanny --nthreads 2``, on loopback."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = [tmp_path / "scheduler.log"]
    scheduler = _start(
        ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], logs[0]
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        _wait_for(logs[0], "Scheduler at:", scheduler)
        for n in range(2):
            logs.append(tmp_path / f"worker{n}.log")
            argv = ["worker", address, "--no-nanny", "--nthreads", "2", "--host", "127.0.0.1",
                    "--no-dashboard"]  # fmt: skip
            workers.append(_start(argv, logs[-1]))
        for worker, log in zip(workers, logs[1:], strict=True):
            _wait_for(log, "Registered to:", worker)
        yield DaskCluster(address, scheduler, workers, logs)
    finally:
        for process in [*workers, scheduler]:
            if process.poll() is None:
                process.kill()
            process.wait()


def one_record_each(path: Path, count: int) -> list[dict[str, Any]]:
    found = records(path)
    sources = [r["source"] for r in found]
    assert len(sources) == len(set(sources)) == count, "not exactly one record per input"
    return found


async def test_a_dask_run_with_a_worker_killed_mid_run_writes_one_record_per_input(
    quota: RunningEmulator, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    folder = images(tmp_path / "dask", 300)
    run = await start_run(tmp_path, "dask", str(folder), "--base-url", quota.base_url,
                          "--cluster", dask_cluster.address)  # fmt: skip
    # Both workers busy (chunks of 8, two at a time each), then one dies.
    await until(lambda: written(run.output) >= 80)
    dask_cluster.workers[0].kill()
    assert await run.finish() == 0, run.stderr
    found = one_record_each(run.output, 300)
    assert all(r["ok"] for r in found)
    # Only the calls in flight on the dead worker may have been made twice
    # (at most its two chunks of 8), not the inputs its chunks had finished.
    assert quota.stats.answered_ok - 300 <= 2 * 8
    summary = run.stderr
    assert "300 records: 300 ok, 0 failed" in summary
    assert "shared through the scheduler" in summary
    # The token travelled inside the tasks' arguments only.
    assert TOKEN not in dask_cluster.text()
    assert TOKEN not in summary


async def test_a_dask_run_resumed_after_its_client_was_killed(
    quota: RunningEmulator, dask_cluster: DaskCluster, tmp_path: Path
) -> None:
    folder = images(tmp_path / "resume", 300)
    argv = [str(folder), "--base-url", quota.base_url, "--cluster", dask_cluster.address]
    first = await start_run(tmp_path, "out", *argv)
    await until(lambda: written(first.output) >= 80)
    first.kill()
    assert await first.finish() == -signal.SIGKILL
    kept = len(records(first.output))
    again = await start_run(tmp_path, "out", *argv, "--resume")
    assert await again.finish() == 0, again.stderr
    found = one_record_each(again.output, 300)
    assert all(r["ok"] for r in found)
    assert f"{kept} records kept" in again.stderr
    assert f"skipped {kept} inputs already done by an earlier run" in again.stderr
    # Once its client was gone, nothing more of the killed run was handed
    # out: the calls beyond the records are at most its chunks in flight
    # (two per worker thread, 8 inputs each), which its workers stop within
    # a second (tests/test_cluster.py).
    assert quota.stats.answered_ok - 300 <= 2 * 4 * 8
    assert TOKEN not in dask_cluster.text()
