"""Runs spread over Dask: the scheduler's board, a worker's quota membership, the driver.

The board (ocr_async.pipeline.cluster.board) is plain objects with the time
given; a worker's SharedQuota over a SchedulerStore is tested with its
scheduler calls made directly on the board; the driver and the workers run
on an in-process Dask cluster (``LocalCluster(processes=False)``), against
the emulator. The same run with real processes, killed workers and a
killed driver is in tests/test_scale_out.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import APPKEY, TOKEN
from fakes import ListSink

from ocr_async.auth import StaticToken
from ocr_async.emulator import RunningEmulator, make_png
from ocr_async.limits import RateController
from ocr_async.models import ImageFile, SourceItem
from ocr_async.options import Credentials, Options
from ocr_async.pipeline.batch import StopRequest, run_batch
from ocr_async.pipeline.sourceset import SourceSet
from ocr_async.shared_quota import SharedQuota

distributed = pytest.importorskip("distributed")

from ocr_async.pipeline.cluster import (  # noqa: E402
    WORKER_FAILED,
    ClusterLostError,
    ClusterRun,
    SchedulerStore,
)
from ocr_async.pipeline.cluster import worker as cluster_worker  # noqa: E402
from ocr_async.pipeline.cluster.board import (  # noqa: E402
    RUN_TTL,
    STATE_TTL,
    Mailbox,
    QuotaBoard,
)

GROUP = "ocr-async:quota:{test}"


def beat(board: QuotaBoard, member: str, want: float, now: float, lease: float = 3.0) -> Any:
    return board.beat(
        GROUP, member, want=want, lease=lease, initial=10.0, margin=0.05, hold=1.0, now=now
    )


# -- the quota on the scheduler ---------------------------------------------------------


def test_the_rate_is_split_max_min_fairly_on_the_demands() -> None:
    board = QuotaBoard()
    beat(board, "a", -1.0, 100.0)
    beat(board, "b", -1.0, 100.0)
    beat(board, "idle", 0.0, 100.0)
    light = beat(board, "light", 1.0, 100.0)  # wants 1 call/s of the 10
    a = beat(board, "a", -1.0, 100.0)
    assert light[7] == a[7] == 4  # members
    assert light[6] == pytest.approx(0.1)  # what it wants
    assert a[6] == pytest.approx(0.45)  # the rest, shared by the two that want more
    assert beat(board, "idle", 0.0, 100.0)[6] == 0.0  # an idle member holds nothing


def test_a_cut_applies_once_per_epoch() -> None:
    board = QuotaBoard()
    beat(board, "a", -1.0, 100.0)
    first = board.cut(GROUP, "a", known_epoch=0, estimate=40.0, hold=1.0, margin=0.05, now=101.0)
    second = board.cut(GROUP, "b", known_epoch=0, estimate=20.0, hold=1.0, margin=0.05, now=101.0)
    assert first[8]  # applied once;
    assert not second[8]  # the other refusal of the burst follows it
    assert first[1] == second[1] == 1
    assert second[5] == 40.0
    assert second[3] == pytest.approx(38.0)  # held 5 % under the estimate
    assert second[4] == pytest.approx(102.0)  # until the hold ends, then probes


def test_lapsed_leases_return_their_share_and_a_new_run_starts_from_the_estimate() -> None:
    board = QuotaBoard()
    beat(board, "a", -1.0, 100.0)
    beat(board, "b", -1.0, 100.0)
    board.cut(GROUP, "a", known_epoch=0, estimate=40.0, hold=1.0, margin=0.05, now=100.5)
    alone = beat(board, "a", -1.0, 103.5)  # b's lease (3 s) lapsed
    assert (alone[7], alone[6]) == (1, 1.0)
    assert board.leave(GROUP, "a") == 0
    again = beat(board, "c", -1.0, 200.0)  # a new run on the same app key
    assert not again[2]  # not a start-up climb: it holds under the quota measured last
    assert again[3] == pytest.approx(38.0)
    forgotten = beat(board, "d", -1.0, 200.0 + STATE_TTL + 1)
    assert forgotten[2]  # after STATE_TTL, a fresh start
    assert forgotten[5] is None


# -- the mailbox on the scheduler ---------------------------------------------------------


def test_a_chunk_run_again_skips_what_it_delivered_and_a_repeat_is_dropped() -> None:
    box = Mailbox()
    box.open("r", "driver", 0.0)
    assert box.deliver("r", [(0, "a.png", b"A"), (0, "b.png", b"B")]) == "run"
    # The worker died; the chunk runs again elsewhere, skipping what arrived.
    assert box.chunk_done("r", 0) == ["a.png", "b.png"]
    box.deliver("r", [(0, "b.png", b"B again"), (0, "c.png", b"C")])  # b was in flight
    assert box.finish_chunk("r", 0) == ["a.png", "b.png", "c.png"]
    box.deliver("r", [(0, "d.png", b"a zombie, late")])  # the chunk is settled
    taken = asyncio.run(box.collect("r", 0.0, 1.0, 100))
    assert taken == [(0, b"A"), (0, b"B"), (0, b"C")]


def test_a_run_is_gone_when_its_driver_is() -> None:
    box = Mailbox()
    box.open("r", "driver", 0.0)
    assert box.status("r", {"driver": object()}, 1.0) == "run"
    box.stop("r")
    assert box.status("r", {"driver": object()}, 1.0) == "stop"
    assert box.deliver("r", [(0, "a.png", b"A")]) == "stop"
    assert box.status("r", {"another": object()}, 2.0) == "gone"  # its client disconnected
    assert box.deliver("r", [(0, "b.png", b"B")]) == "gone"
    box.open("s", "driver", 0.0)
    assert box.status("s", {"driver": object()}, RUN_TTL + 1) == "gone"  # no collect for long


async def test_collect_waits_for_the_first_record() -> None:
    box = Mailbox()
    box.open("r", "driver", 0.0)
    waiting = asyncio.create_task(box.collect("r", 10.0, 0.0, 100))
    await asyncio.sleep(0)
    assert not waiting.done()
    box.deliver("r", [(3, "a.png", b"A")])
    assert await asyncio.wait_for(waiting, 5) == [(3, b"A")]


# -- a worker's membership ---------------------------------------------------------------


def direct(board: QuotaBoard, fail: list[bool] | None = None) -> Callable[..., Any]:
    """A scheduler call made on ``board`` in this process (failing while ``fail[0]``)."""
    from ocr_async.pipeline.cluster import board as module

    async def call(function: Callable[..., Any], *args: Any) -> Any:
        if fail and fail[0]:
            raise OSError("the scheduler is unreachable")
        saved = module.QUOTAS
        module.QUOTAS = board
        try:
            result = function(*args)
            return await result if inspect.isawaitable(result) else result
        finally:
            module.QUOTAS = saved

    return call


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def test_two_members_pace_at_their_parts_of_one_schedule() -> None:
    board = QuotaBoard()
    controllers = [RateController(), RateController()]
    members = [
        SharedQuota(SchedulerStore(direct(board), GROUP), member=f"m{n}", heartbeat=0.05)
        for n in (0, 1)
    ]
    for member, controller in zip(members, controllers, strict=True):
        await member.start(controller)

    async def busy(controller: RateController) -> None:
        # Workers queueing at the pacer: the member could use more than it has.
        while True:
            controller.on_success(await controller.acquire())

    load = [asyncio.create_task(busy(c)) for c in controllers for _ in range(4)]
    try:
        await until(lambda: all(m.members == 2 for m in members))
        await until(lambda: all(0.4 < m.fraction < 0.6 for m in members))
        assert all(m.sharing for m in members)
        assert all(c.coordinator is m for c, m in zip(controllers, members, strict=True))
    finally:
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        for member in members:
            await member.close()
    assert all(c.coordinator is None for c in controllers)
    assert board.leave(GROUP, "nobody") == 0  # both left at once


async def test_a_member_whose_scheduler_fails_paces_alone_warns_once_then_rejoins(
    caplog: pytest.LogCaptureFixture,
) -> None:
    board, fail = QuotaBoard(), [False]
    controller = RateController()
    store = SchedulerStore(direct(board, fail), GROUP, address="tcp://scheduler:8786")
    member = SharedQuota(store, heartbeat=0.02, lease=0.06, reconnects=10)
    await member.start(controller)
    try:
        fail[0] = True
        await until(lambda: controller.coordinator is None)
        await asyncio.sleep(0.1)  # several failed heartbeats
        fail[0] = False
        await until(lambda: controller.coordinator is member)
    finally:
        await member.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "lost the store at tcp://scheduler:8786 (OSError)" in warnings[0].getMessage()
    assert "carrying on with this process's own rate control" in warnings[0].getMessage()


# -- the credentials shipped to the workers ------------------------------------------


def test_the_work_spec_keeps_the_credentials_out_of_its_repr() -> None:
    spec = cluster_worker.WorkSpec(
        run="r1",
        group=GROUP,
        options=Options(shared_quota="redis://:pw-1234@store:6379/0"),
        base_url="http://127.0.0.1:1",
        appkey=APPKEY,
        token=TOKEN,
    )
    shown = repr(spec) + repr((spec, 0, []))  # what Dask logs of a task that failed
    assert TOKEN not in shown
    assert "pw-1234" not in shown
    assert APPKEY not in shown


# -- driver and workers on an in-process cluster ----------------------------------------


@pytest.fixture
async def local_cluster() -> AsyncIterator[Any]:
    async with distributed.LocalCluster(
        processes=False, n_workers=2, threads_per_worker=2, dashboard_address="127.0.0.1:0",
        asynchronous=True,
    ) as local:  # fmt: skip
        yield local


@pytest.fixture
def cluster(local_cluster: Any) -> str:
    address: str = local_cluster.scheduler_address
    return address


def credentials(emulator: RunningEmulator) -> Credentials:
    return Credentials(emulator.base_url, APPKEY, StaticToken(TOKEN))


async def items(paths: list[Path]) -> AsyncIterator[SourceItem]:
    for path in paths:
        yield SourceItem(path.name, ImageFile(path))


def pngs(folder: Path, count: int) -> list[Path]:
    folder.mkdir()
    paths = []
    for n in range(count):
        path = folder / f"{n:03d}.png"
        path.write_bytes(make_png(f"page {n}"))
        paths.append(path)
    return paths


async def test_a_cluster_run_writes_one_record_per_input_as_a_local_run_does(
    cluster: str, emulator: RunningEmulator, tmp_path: Path, list_sink: ListSink
) -> None:
    paths = pngs(tmp_path / "in", 30)
    done = SourceSet()
    done.add("000.png")  # resumed: written by an earlier run
    seen: list[str] = []
    async with ClusterRun(
        cluster, credentials(emulator), Options(concurrency=4), chunk_size=4
    ) as run:
        summary = await run.run(
            items([*paths, paths[5]]),  # one given twice
            list_sink,
            on_record=lambda record: seen.append(record.source),
            already_done=done,
        )
    sources = [r.source for r in list_sink.records]
    assert sorted(sources) == [p.name for p in paths[1:]]
    assert all(r.ok and r.text == f"page {int(r.source[:3])}" for r in list_sink.records)
    assert sorted(seen) == sorted(sources)
    assert (summary.ok, summary.already_done, summary.duplicates) == (29, 1, 1)
    assert emulator.stats.answered_ok == 29
    # Both workers live in this process here, so they share one client.
    assert "shared through the scheduler" in run.describe_rate()
    assert "29 calls sent" in run.describe_rate()


async def test_a_cluster_run_knows_manifest_rows_by_their_id_as_a_local_run_does(
    cluster: str, emulator: RunningEmulator, tmp_path: Path, list_sink: ListSink
) -> None:
    # Two rows name one file under two ids: two inputs, not a duplicate; a
    # row whose id an earlier run wrote is done, whatever its path now.
    paths = pngs(tmp_path / "in", 3)

    async def rows() -> AsyncIterator[SourceItem]:
        for row_id, path in (("a", paths[0]), ("b", paths[0]), ("c", paths[1]), ("a", paths[2])):
            yield SourceItem(path.name, ImageFile(path), id=row_id, metadata={"row": row_id})
        yield SourceItem("d.png", ImageFile(paths[2]), id="done")

    done = SourceSet()
    done.add(SourceItem("elsewhere.png", None, id="done").key)
    async with ClusterRun(
        cluster, credentials(emulator), Options(concurrency=4), chunk_size=2
    ) as run:
        summary = await run.run(rows(), list_sink, already_done=done)
    written = sorted((r.id, r.source, r.metadata) for r in list_sink.records)
    assert written == [
        ("a", "000.png", {"row": "a"}),
        ("b", "000.png", {"row": "b"}),
        ("c", "001.png", {"row": "c"}),
    ]
    assert (summary.ok, summary.duplicates, summary.already_done) == (3, 1, 1)


async def test_a_chunk_dask_gives_up_on_gets_a_failed_record_for_each_input_without_one(
    cluster: str,
    emulator: RunningEmulator,
    tmp_path: Path,
    list_sink: ListSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = pngs(tmp_path / "in", 8)
    real = run_batch

    async def failing(client: Any, chunk: Any, sink: Any, **kwargs: Any) -> Any:
        taken = [item async for item in chunk]
        if any(item.source == "005.png" for item in taken):
            raise RuntimeError("the chunk's worker failed")

        async def again() -> AsyncIterator[SourceItem]:
            for item in taken:
                yield item

        return await real(client, again(), sink, **kwargs)

    monkeypatch.setattr(cluster_worker, "run_batch", failing)
    async with ClusterRun(
        cluster, credentials(emulator), Options(concurrency=4), chunk_size=4
    ) as run:
        summary = await run.run(items(paths), list_sink)
    by_source = {r.source: r for r in list_sink.records}
    assert sorted(by_source) == [p.name for p in paths]  # one record each
    failed = {s for s, r in by_source.items() if not r.ok}
    assert failed == {"004.png", "005.png", "006.png", "007.png"}
    error = by_source["005.png"].error
    assert error is not None
    assert (error.code, error.retryable) == (WORKER_FAILED, True)
    assert summary.failed[WORKER_FAILED] == 4


async def test_a_stop_takes_no_new_chunks_and_the_run_says_it_was_interrupted(
    cluster: str, emulator: RunningEmulator, tmp_path: Path, list_sink: ListSink
) -> None:
    paths = pngs(tmp_path / "in", 40)
    stop = StopRequest()

    def on_record(record: Any) -> None:
        if len(list_sink.records) == 3:
            stop.request()

    async with ClusterRun(
        cluster, credentials(emulator), Options(concurrency=2, grace=5.0), chunk_size=2
    ) as run:
        summary = await run.run(items(paths), list_sink, on_record=on_record, stop=stop)
    assert summary.interrupted
    assert 3 <= len(list_sink.records) < 40  # the rest is left for --resume
    sources = [r.source for r in list_sink.records]
    assert len(sources) == len(set(sources))


async def test_a_worker_stops_the_chunks_of_a_run_whose_driver_is_gone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cluster_worker, "STATUS_EVERY", 0.01)
    answers = ["run", "gone"]

    async def call(function: Callable[..., Any], *args: Any) -> Any:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    spec = cluster_worker.WorkSpec(
        run="r", group=GROUP, options=Options(adapt_rate=False), base_url="http://x",
        appkey=APPKEY, token=TOKEN,
    )  # fmt: skip
    state = cluster_worker._WorkerRun(spec, call)
    await state.open()
    chunk = StopRequest()
    state.take(chunk)
    await until(lambda: state.closed)
    assert chunk.graceful.is_set()
    assert chunk.immediate.is_set()
    assert "its driver is gone; stopping its 1 chunk" in caplog.text


@pytest.fixture
async def doomed_cluster() -> AsyncIterator[Any]:
    """An in-process cluster whose workers give up soon once their scheduler is gone."""
    local = await distributed.LocalCluster(
        processes=False, n_workers=2, threads_per_worker=2, dashboard_address="127.0.0.1:0",
        asynchronous=True, death_timeout=1,
    )  # fmt: skip
    try:
        yield local
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1):
                await local.close()


async def test_a_scheduler_lost_mid_run_stops_the_run_with_a_clear_error(
    doomed_cluster: Any, emulator: RunningEmulator, tmp_path: Path, list_sink: ListSink
) -> None:
    local_cluster = doomed_cluster
    paths = pngs(tmp_path / "in", 40)
    lost = asyncio.Event()

    def on_record(record: Any) -> None:
        if len(list_sink.records) == 5:
            lost.set()

    async def lose_it() -> None:
        await lost.wait()
        await local_cluster.scheduler.close()

    async def the_run() -> None:
        async with ClusterRun(
            local_cluster.scheduler_address, credentials(emulator), Options(concurrency=2),
            chunk_size=2,
        ) as run:  # fmt: skip
            await run.run(items(paths), list_sink, on_record=on_record)

    killer = asyncio.create_task(lose_it())
    with pytest.raises(ClusterLostError, match=r"lost the Dask scheduler at .*--resume"):
        await asyncio.wait_for(the_run(), 60)
    await killer
    sources = [r.source for r in list_sink.records]
    assert len(sources) == len(set(sources)) >= 5  # what was written stays, once each
    assert all(r.ok for r in list_sink.records)  # no input blamed on a worker
