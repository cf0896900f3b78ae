"""What runs on a Dask worker: a chunk of inputs through the pre-check and this worker's client.

:func:`run_chunk` is the task the driver submits, one per chunk. It runs on
the worker's event loop (Dask awaits coroutine tasks there), so every chunk
a worker process runs for one run shares one :class:`_WorkerRun`: one
:class:`~ocr_async.OcrClient` (one connection pool, one token, one rate
controller), one membership of the shared quota, and one line to the
run's mailbox on the scheduler. The chunk itself is
:func:`~ocr_async.pipeline.batch.run_batch`, exactly as a local run: the
pre-check (reading, ``--convert``, ``--shrink``: the CPU work, which is why
it runs here), one record per input, the pool of workers. Its sink hands
each record to the mailbox before the next input is taken.

A chunk that runs again (its first worker died) first asks the mailbox
which of its sources were delivered, and skips them: only the calls that
were in flight on the dead worker are made twice.

The run's state on a worker closes when the driver says the run is over
(:func:`release_run`, through ``Client.run``), when a look at the mailbox
says the run is gone (its driver was killed, say), or after
:data:`IDLE_TTL` seconds without a chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Final

from distributed import get_client

from ocr_async.auth import StaticToken, TokenProvider, UserAccessKeyTokens
from ocr_async.client import OcrClient, QuotaGroup
from ocr_async.models import Record, SourceItem
from ocr_async.options import Options
from ocr_async.pipeline.batch import StopRequest, run_batch
from ocr_async.pipeline.cluster.board import (
    Delivery,
    RunStatus,
    board_chunk_done,
    board_deliver,
    board_run_status,
)
from ocr_async.pipeline.cluster.quota import SchedulerCall, SchedulerStore
from ocr_async.pipeline.resume import record_key
from ocr_async.pipeline.sourceset import SourceSet
from ocr_async.shared_quota import SharedQuota
from ocr_async.wording import counted

__all__ = [
    "IDLE_TTL",
    "STATUS_EVERY",
    "ChunkOutcome",
    "WorkSpec",
    "WorkerFigures",
    "key_of",
    "release_run",
    "run_chunk",
]

log = logging.getLogger(__name__)

#: Seconds between a worker's looks at its run's status (Ctrl-C, a driver gone).
STATUS_EVERY: Final = 1.0
#: Seconds a run's state stays open on a worker without a chunk.
IDLE_TTL: Final = 60.0


@dataclass(frozen=True, slots=True)
class WorkSpec:
    """What every worker needs to send for a run: shipped with each chunk.

    The credentials travel inside the task's pickled arguments (over Dask's
    comms: ``tls://`` encrypts them) and nowhere else: never in a task's
    key, and never in this repr, which Dask writes to its logs when a task
    fails. ``token`` is a token issued on the driver; ``user_access_key``
    (ID, secret, OAuth URL) lets each worker issue and renew its own.
    """

    run: str
    #: The group's key: the app key, hashed (``store_key``).
    group: str
    options: Options
    base_url: str
    appkey: str = field(repr=False)
    token: str | None = field(default=None, repr=False)
    user_access_key: tuple[str, str, str] | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"WorkSpec(run={self.run!r}, base_url={self.base_url!r})"

    def tokens(self) -> TokenProvider:
        """The token provider for this worker."""
        if self.user_access_key is not None:
            uak_id, secret, oauth_url = self.user_access_key
            return UserAccessKeyTokens(uak_id, secret, oauth_url=oauth_url)
        assert self.token is not None
        return StaticToken(self.token)


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What a chunk did, for the driver: records delivered, and why it stopped early."""

    records: int
    aborted: str | None = None
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    """One worker process's rate figures for a run, for the driver's summary."""

    sent: int
    throttled: int
    settled_rate: float
    #: The group's quota as this worker last heard it (or its own, alone).
    quota_estimate: float | None
    sharing: str


def key_of(record: Record) -> str:
    """What ``--resume`` and duplicate detection know the record's input (or page) by.

    :attr:`SourceItem.key <ocr_async.models.SourceItem.key>`: a manifest
    row's id, else the source; a page's with ``#page=N``
    (:func:`~ocr_async.pipeline.resume.record_key`, as a resumed run reads it).
    """
    transform = None if record.transform is None else record.transform.to_json()
    return record_key({"source": record.source, "id": record.id, "transform": transform})


class _Deliveries:
    """Hands records to the run's mailbox, a batch a call: what gathers while one is on its way."""

    def __init__(self, call: SchedulerCall, run: str) -> None:
        self._call = call
        self._run = run
        self._pending: list[Delivery] = []
        self._lock = asyncio.Lock()
        self.status: RunStatus = "run"

    async def deliver(self, chunk: int, record: Record) -> None:
        """Return once ``record`` is in the mailbox (sent by this call or one before it)."""
        self._pending.append((chunk, key_of(record), pickle.dumps(record, protocol=5)))
        async with self._lock:
            if not self._pending:
                return  # the call before this one carried it
            batch, self._pending = self._pending, []
            try:
                self.status = await self._call(board_deliver, self._run, batch)
            except BaseException:
                self._pending[:0] = batch  # the next one tries again; this chunk fails
                raise


class _ChunkSink:
    def __init__(self, deliveries: _Deliveries, chunk: int) -> None:
        self._deliveries = deliveries
        self._chunk = chunk

    async def write(self, record: Record) -> None:
        await self._deliveries.deliver(self._chunk, record)


class _WorkerRun:
    """One run's client, quota membership and mailbox line, in one worker process."""

    def __init__(
        self, spec: WorkSpec, call: SchedulerCall, scheduler: str = "the Dask scheduler"
    ) -> None:
        self.spec = spec
        self.call = call
        self.deliveries = _Deliveries(call, spec.run)
        self.chunks: set[StopRequest] = set()
        self.status: RunStatus = "run"
        self._tokens = spec.tokens()
        options = spec.options
        #: The quota shared through the scheduler (without --shared-quota).
        self.quota: SharedQuota | None = None
        group: QuotaGroup | None = None
        if options.shared_quota is None and options.adapt_rate and options.rps is None:
            store = SchedulerStore(call, spec.group, address=scheduler)
            group = self.quota = SharedQuota(store)
        self.client = OcrClient(
            appkey=spec.appkey,
            token=self._tokens,
            base_url=spec.base_url,
            options=options,
            shared_quota=group,
        )
        self._idle_since = time.monotonic()
        self._watcher: asyncio.Task[None] | None = None
        self.closed = False

    async def open(self) -> None:
        await self.client.__aenter__()
        self._watcher = asyncio.create_task(self._watch(), name=f"ocr-run {self.spec.run}")

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _RUNS.pop(self.spec.run, None)
        if self._watcher is not None and self._watcher is not asyncio.current_task():
            self._watcher.cancel()
        for stop in self.chunks:  # nobody will write their records any more
            stop.request()
            stop.request()
        if self.quota is not None:
            await self.quota.close()
        await self.client.close()
        if isinstance(self._tokens, UserAccessKeyTokens):
            await self._tokens.aclose()

    def figures(self) -> WorkerFigures:
        controller = self.client.rate_controller
        shared = self.client.shared_quota
        sharing = "none" if controller is None else "alone"
        estimate = controller.quota_estimate if controller is not None else None
        if isinstance(shared, SharedQuota) and shared.sharing:
            sharing = "scheduler" if shared is self.quota else "redis"
            estimate = shared.quota_estimate
        return WorkerFigures(
            sent=controller.sent if controller else 0,
            throttled=controller.throttled if controller else 0,
            settled_rate=controller.settled_rate if controller else 0.0,
            quota_estimate=estimate,
            sharing=sharing,
        )

    def take(self, stop: StopRequest) -> None:
        self.chunks.add(stop)
        if self.status == "stop" or self.deliveries.status == "stop":
            stop.request()

    def release(self, stop: StopRequest) -> None:
        self.chunks.discard(stop)
        if not self.chunks:
            self._idle_since = time.monotonic()

    async def _watch(self) -> None:
        # The driver's Ctrl-C, or the driver gone: heard within a second.
        while True:
            await asyncio.sleep(STATUS_EVERY)
            try:
                async with asyncio.timeout(STATUS_EVERY * 5):
                    self.status = await self.call(board_run_status, self.spec.run)
            except Exception as exc:  # look again; a failing delivery says more
                log.debug("run %s: no status from the scheduler: %s", self.spec.run, exc)
                continue
            if self.status == "stop":
                for stop in self.chunks:
                    if not stop.graceful.is_set():
                        stop.request()
            idle = not self.chunks and time.monotonic() - self._idle_since > IDLE_TTL
            if self.status == "gone" and self.chunks:
                log.warning(
                    "ocr-async run %s: its driver is gone; stopping its %s "
                    "(their inputs are left for --resume)",
                    self.spec.run,
                    counted(len(self.chunks), "chunk"),
                )
            if self.status == "gone" or idle:
                await self.close()
                return


#: Each run's state in this worker process.
_RUNS: dict[str, _WorkerRun] = {}
_OPENING: dict[str, asyncio.Lock] = {}


async def _worker_run(spec: WorkSpec) -> _WorkerRun:
    lock = _OPENING.setdefault(spec.run, asyncio.Lock())
    async with lock:
        run = _RUNS.get(spec.run)
        if run is None or run.closed:
            client = get_client()
            # The scheduler's address, for the worker's log (a pooled call names it .addr).
            rpc = client.scheduler
            address = getattr(rpc, "address", None) or getattr(rpc, "addr", None)
            run = _WorkerRun(spec, client.run_on_scheduler, str(address or "the Dask scheduler"))
            await run.open()
            _RUNS[spec.run] = run
        return run


async def _items(items: Iterable[SourceItem]) -> AsyncIterator[SourceItem]:
    for item in items:
        yield item


async def run_chunk(spec: WorkSpec, chunk: int, items: list[SourceItem]) -> ChunkOutcome:
    """Recognize ``items`` on this worker, each record to the run's mailbox (the Dask task)."""
    run = await _worker_run(spec)
    delivered = await run.call(board_chunk_done, spec.run, chunk)
    done = SourceSet(max(len(delivered), 16))
    for key in delivered:
        done.add(key)
    stop = StopRequest()
    run.take(stop)
    try:
        summary = await run_batch(
            run.client,
            _items(items),
            _ChunkSink(run.deliveries, chunk),
            options=spec.options,
            already_done=done,
            stop=stop,
        )
    finally:
        run.release(stop)
    return ChunkOutcome(
        records=summary.records, aborted=summary.aborted, interrupted=summary.interrupted
    )


async def release_run(run: str) -> WorkerFigures | None:
    """Close the run's state in this worker process; its figures (None: it had none).

    Called by the driver on every worker at the end (``Client.run``).
    """
    state = _RUNS.get(run)
    _OPENING.pop(run, None)
    if state is None:
        return None
    figures = state.figures()
    with contextlib.suppress(Exception):
        await state.close()
    return figures
