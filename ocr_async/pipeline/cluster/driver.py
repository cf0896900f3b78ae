"""ClusterRun: a run spread over a Dask cluster, driven and written from this machine.

This machine lists the inputs (the same sources, the same duplicate and
``--resume`` keying as :func:`~ocr_async.pipeline.batch.run_batch`) and
hands them out in chunks, one Dask task each
(:func:`~ocr_async.pipeline.cluster.worker.run_chunk`), at most a few per
worker thread at a time, so that memory stays flat however many inputs
there are. The workers send; their records come back through the run's
mailbox on the scheduler (:mod:`~ocr_async.pipeline.cluster.board`) as
they finish, and are written here, to the one sink, with the summary and
progress of a local run.

**No input gets two records.** A chunk whose worker dies is run again by
Dask on another worker; it skips what the first attempt delivered (the
mailbox keeps each chunk's delivered sources, and drops a repeat), so only
the calls in flight on the dead worker are made twice. This writer drops
any record whose source it already wrote, too. A chunk that Dask gives up
on (its workers died :data:`~distributed` ``allowed-failures`` times) or
that raised gets a failed record (code ``worker_failed``, retryable, so
``--resume --retry-failed`` sends it again) for each of its inputs that
has none.

**Stopping.** A stop request takes no new inputs and asks the workers to do
the same (they look every second); the calls in flight finish within the
grace period and their records are written. A second stop cancels the
chunks. If this process is killed, the scheduler drops its client, and its
workers see the run gone within a second and stop; ``--resume`` carries
on from the output, with a new run. If the scheduler is lost, the run
cannot go on: :class:`ClusterLostError` (an ``OSError``, exit 3), the
records written kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, cast

from distributed import Client, Future

from ocr_async.auth import UAK_ID_ENV, UAK_SECRET_ENV, StaticToken
from ocr_async.errors import ConfigurationError
from ocr_async.models import ErrorInfo, ImageFile, Record, RecordSink, SourceItem
from ocr_async.options import Credentials, Options
from ocr_async.pipeline.batch import BatchSummary, StopRequest
from ocr_async.pipeline.cluster.board import (
    board_close_run,
    board_collect,
    board_finish_chunk,
    board_open_run,
    board_stop_run,
)
from ocr_async.pipeline.cluster.worker import (
    ChunkOutcome,
    WorkerFigures,
    WorkSpec,
    key_of,
    release_run,
    run_chunk,
)
from ocr_async.pipeline.sourceset import SourceSet
from ocr_async.shared_quota import store_key
from ocr_async.wording import counted

__all__ = [
    "CONNECT_TIMEOUT",
    "WAIT_FOR_WORKERS",
    "WORKER_FAILED",
    "ClusterLostError",
    "ClusterRun",
    "ClusterUnavailableError",
]

log = logging.getLogger(__name__)

#: Seconds to reach the scheduler (Dask retries the connection until then).
CONNECT_TIMEOUT: Final = 10.0
#: Seconds to wait for the first worker.
WAIT_FOR_WORKERS: Final = 60.0
#: The error code of an input whose chunk Dask gave up on.
WORKER_FAILED: Final = "worker_failed"
# Records taken from the mailbox in one call, and how long a call waits.
_COLLECT_MOST: Final = 256
_COLLECT_WAIT: Final = 0.5
# Seconds closing the Dask client may take (it waits for a lost scheduler).
_CLOSE_TIMEOUT: Final = 5.0


class _Dask(Protocol):
    """What this module uses of an asynchronous ``distributed.Client``, typed."""

    id: str

    async def run_on_scheduler(self, function: Callable[..., Any], *args: Any) -> Any: ...

    async def run(
        self, function: Callable[..., Any], *args: Any, on_error: Literal["return"]
    ) -> dict[str, Any]: ...

    def submit(
        self, function: Callable[..., Any], *args: Any, key: str, pure: bool, retries: int
    ) -> Future[Any]: ...

    async def cancel(self, futures: list[Future[Any]]) -> None: ...

    async def nthreads(self) -> dict[str, int]: ...

    async def wait_for_workers(self, n_workers: int, timeout: float) -> None: ...

    async def close(self) -> None: ...


class ClusterUnavailableError(ConfigurationError):
    """The Dask scheduler cannot be reached, or no worker joined it: nothing was sent."""


class ClusterLostError(OSError):
    """The Dask scheduler was lost mid-run: the run cannot go on (the records written stay)."""


class ClusterRun:
    """One run over the Dask cluster at ``address``, written here.

    ::

        async with ClusterRun("tcp://scheduler:8786", credentials, options) as cluster:
            summary = await cluster.run(items, sink)

    Entering connects and waits for a worker (raising
    :class:`ClusterUnavailableError`); :meth:`run` takes what
    :func:`~ocr_async.pipeline.batch.run_batch` takes. ``credentials`` must
    hold a token, or a User Access Key from the environment (each worker
    then issues its own tokens); they travel to the workers inside the
    tasks' arguments only (see :class:`~ocr_async.pipeline.cluster.worker.WorkSpec`).
    ``chunk_size`` inputs go to a worker at a time (default: half the
    concurrency, at least 4).
    """

    def __init__(
        self,
        address: str,
        credentials: Credentials,
        options: Options,
        *,
        chunk_size: int | None = None,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = address
        self._credentials = credentials
        self._options = options
        self._chunk_size = chunk_size or max(4, options.concurrency // 2)
        self._env = os.environ if env is None else env
        self._clock = clock
        self._dask: _Dask | None = None
        self._id = uuid.uuid4().hex[:12]
        #: Each worker's figures at the end, by its address.
        self.figures: dict[str, WorkerFigures] = {}
        self.workers = 0
        self._released = False
        self._lost = False

    def __repr__(self) -> str:
        return f"ClusterRun({self._address!r}, run={self._id!r})"

    @property
    def run_id(self) -> str:
        """The run's name on the scheduler and in its task keys."""
        return self._id

    async def __aenter__(self) -> Self:
        try:
            # distributed's Client is untyped: _Dask says what is used of it.
            connecting = cast(Any, Client)(
                self._address, asynchronous=True, timeout=CONNECT_TIMEOUT
            )
            dask = cast(_Dask, await connecting)
        except (OSError, ValueError) as exc:
            raise ClusterUnavailableError(
                f"the Dask scheduler at {self._address} cannot be reached "
                f"({type(exc).__name__}: {exc}); start it, or run without --cluster"
            ) from None
        try:
            await dask.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
        except (OSError, TimeoutError):
            await dask.close()
            raise ClusterUnavailableError(
                f"no Dask worker joined the scheduler at {self._address} within "
                f"{WAIT_FOR_WORKERS:g} s; start one (dask worker {self._address})"
            ) from None
        await dask.run_on_scheduler(board_open_run, self._id, dask.id)
        self._dask = dask
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        dask, self._dask = self._dask, None
        if dask is None:
            return
        try:
            await self._release(dask)
        finally:
            # A scheduler that is gone must not hold the end of the run up;
            # and the reconnection this cancels is not news (the run said
            # what happened, in one line), though Dask logs it as an error.
            quiet = _quieted("distributed.client") if self._lost else contextlib.nullcontext()
            with quiet, contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await dask.close()

    async def _release(self, dask: _Dask) -> None:
        """End the run on the scheduler and the workers; keep the workers' figures."""
        if self._released:
            return
        self._released = True
        try:
            await dask.run_on_scheduler(board_close_run, self._id)
            # Each worker closes its client and leaves the quota; its figures come back.
            answers = await dask.run(release_run, self._id, on_error="return")
            self.figures = {a: f for a, f in answers.items() if isinstance(f, WorkerFigures)}
        except Exception as error:  # the records are written; a summary line is lost
            log.warning("cluster: could not release the run on the workers: %s", error)

    async def run(
        self,
        items: AsyncIterable[SourceItem],
        sink: RecordSink,
        *,
        on_record: Callable[[Record], None] | None = None,
        on_skip: Callable[[str, str], None] | None = None,
        already_done: SourceSet | None = None,
        stop: StopRequest | None = None,
    ) -> BatchSummary:
        """Recognize every item on the cluster; write one record each to ``sink``, here."""
        if self._dask is None:
            raise RuntimeError("ClusterRun is not open: use 'async with ClusterRun(...)'")
        dask = self._dask
        spec = await self._work_spec()
        threads_by_worker = await dask.nthreads()
        self.workers = len(threads_by_worker)
        threads = sum(threads_by_worker.values()) or 1
        driving = _Driving(
            dask, self._address, spec, self._chunk_size, 2 * threads, sink, on_record,
            on_skip, already_done, stop or StopRequest(), self._clock,
        )  # fmt: skip
        try:
            return await driving.run(items)
        finally:
            if driving.lost is None:
                await self._release(dask)
            else:
                self._released = self._lost = True  # nobody is left to tell

    def describe_rate(self) -> str:
        """The summary's rate line: what the workers sent, together."""
        figures = list(self.figures.values())
        if not figures or not any(f.sent for f in figures):
            return f"rate: no calls sent ({counted(self.workers, 'worker')})"
        sent = sum(f.sent for f in figures)
        refused = sum(f.throttled for f in figures)
        rate = sum(f.settled_rate for f in figures)
        how = Counter(f.sharing for f in figures)
        estimates = [f.quota_estimate for f in figures if f.quota_estimate is not None]
        sharing = {
            "scheduler": "shared through the scheduler",
            "redis": "shared over Redis",
            "alone": "each worker alone",
            "none": "no rate control",
        }[how.most_common(1)[0][0]]
        quota = f"; quota estimated near {max(estimates):.1f} calls/s" if estimates else ""
        return (
            f"rate: {counted(len(figures), 'worker')} sending, settled at {rate:.1f} calls/s "
            f"in all ({sharing}{quota}); {counted(sent, 'call')} sent, {refused} refused "
            "for the limit"
        )

    async def _work_spec(self) -> WorkSpec:
        credentials = self._credentials
        spec = WorkSpec(
            run=self._id,
            group=store_key(credentials.appkey),
            # A Redis URL, if any, is for the workers: this process sends nothing.
            options=self._options,
            base_url=credentials.base_url,
            appkey=credentials.appkey,
        )
        uak = credentials.user_access_key
        if uak is not None:
            uak_id = self._env.get(UAK_ID_ENV, "").strip()
            secret = self._env.get(UAK_SECRET_ENV, "").strip()
            if uak_id != uak.uak_id or not secret:
                raise ConfigurationError(
                    f"a cluster run issues tokens on its workers from {UAK_ID_ENV} and "
                    f"{UAK_SECRET_ENV}: set both, or give a token"
                )
            return replace(spec, user_access_key=(uak_id, secret, uak.oauth_url))
        if isinstance(credentials.tokens, StaticToken):
            return replace(spec, token=await credentials.tokens.get_token())
        raise ConfigurationError(
            "a cluster run sends its workers a token or a User Access Key; "
            "a token provider of your own cannot travel to them"
        )


class _Driving:
    """One run's hand-out, collection and writing (the state of :meth:`ClusterRun.run`)."""

    def __init__(
        self,
        dask: _Dask,
        address: str,
        spec: WorkSpec,
        chunk_size: int,
        in_flight: int,
        sink: RecordSink,
        on_record: Callable[[Record], None] | None,
        on_skip: Callable[[str, str], None] | None,
        already_done: SourceSet | None,
        stop: StopRequest,
        clock: Callable[[], float],
    ) -> None:
        self._dask = dask
        self._address = address
        self._spec = spec
        self._run = spec.run
        self._chunk_size = chunk_size
        self._slots = asyncio.Semaphore(in_flight)
        self._sink = sink
        self._on_record = on_record
        self._on_skip = on_skip
        self._already_done = already_done
        self._stop = stop
        self._clock = clock
        self.summary = BatchSummary()
        self._written = SourceSet()
        self._received: Counter[int] = Counter()
        self._arrived = asyncio.Condition()
        self._chunks: dict[int, Future[Any]] = {}
        self._settling: set[asyncio.Task[None]] = set()
        self._listed = asyncio.Event()
        self._stopping = asyncio.Event()
        #: Why the run cannot go on (the scheduler lost, the sink failing), once it happened.
        self._failure: BaseException | None = None
        self._failed = asyncio.Event()
        #: What a call to the scheduler raised when it was lost, or None.
        self.lost: BaseException | None = None

    async def run(self, items: AsyncIterable[SourceItem]) -> BatchSummary:
        started = self._clock()
        collector = asyncio.create_task(self._guarded(self._collect()), name="ocr-cluster-collect")
        watcher = asyncio.create_task(self._guarded(self._watch_stop()), name="ocr-cluster-stop")
        work = asyncio.create_task(self._work(items, collector), name="ocr-cluster-work")
        failed = asyncio.create_task(self._failed.wait())
        try:
            # Done when every chunk is settled and every record written, or
            # at the first failure that stops the run.
            await asyncio.wait({work, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tasks = [collector, watcher, work, failed, *self._settling]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.summary.elapsed_s = self._clock() - started
        if self._failure is not None:
            raise self._failure
        source_error = work.result() if work.done() and not work.cancelled() else None
        if source_error is not None:
            raise source_error
        return self.summary

    async def _work(
        self, items: AsyncIterable[SourceItem], collector: asyncio.Task[None]
    ) -> BaseException | None:
        """Hand out every item, settle every chunk, write every record; what the items raised."""
        source_error: BaseException | None = None
        try:
            await self._hand_out(items)
        except ClusterLostError:
            return None  # the run fails with it
        except Exception as exc:
            source_error = exc  # the inputs handed out still get their records
        self._listed.set()
        while self._settling:
            await asyncio.wait(set(self._settling))
        await collector  # the last records, then it ends
        return source_error

    async def _guarded(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
            self._failed.set()

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        """A call to the scheduler; one that fails has lost it, and the run cannot go on."""
        try:
            return await self._dask.run_on_scheduler(function, self._run, *args)
        except Exception as exc:
            raise self._lose(exc) from None

    def _lose(self, exc: BaseException) -> ClusterLostError:
        if self.lost is None:
            self.lost = exc
        lost = ClusterLostError(
            f"lost the Dask scheduler at {self._address} ({type(exc).__name__}: {exc}); "
            "the records written are kept: --resume finishes the run on a running cluster"
        )
        self._fail(lost)
        return lost

    # -- handing out -------------------------------------------------------------------

    async def _hand_out(self, items: AsyncIterable[SourceItem]) -> None:
        seen = SourceSet()
        chunk: list[SourceItem] = []
        number = 0
        async for item in items:
            if self._stopping.is_set():
                break
            # Known by its key, as in a local run: a manifest row's id, else its source.
            if self._already_done is not None and item.key in self._already_done:
                self.summary.already_done += 1
                continue
            if not seen.add(item.key):
                self.summary.duplicates += 1  # sending it again would pay twice for one answer
                if self._on_skip is not None:
                    why = "input" if item.id is None else f"id {item.id!r}"
                    self._on_skip(item.source, f"duplicate {why}: already taken in this run")
                continue
            chunk.append(_for_workers(item))
            if len(chunk) == self._chunk_size:
                await self._submit(number, chunk)
                number, chunk = number + 1, []
        if chunk and not self._stopping.is_set():
            await self._submit(number, chunk)

    async def _submit(self, number: int, chunk: list[SourceItem]) -> None:
        await self._slots.acquire()
        if self._stopping.is_set():
            self._slots.release()
            return
        try:
            future = self._dask.submit(
                run_chunk,
                self._spec,
                number,
                chunk,
                key=f"ocr-async-{self._run}-{number}",
                pure=False,
                retries=1,
            )
        except Exception as exc:
            self._slots.release()
            raise self._lose(exc) from None
        self._chunks[number] = future
        task = asyncio.create_task(self._settle(number, future, chunk))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, number: int, future: Future[Any], chunk: list[SourceItem]) -> None:
        try:
            outcome: ChunkOutcome | None = cast(ChunkOutcome, await future)
            failure: BaseException | None = None
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            outcome, failure = None, exc  # the chunk was cancelled (a second stop)
        except Exception as exc:
            outcome, failure = None, exc
        try:
            # Lost, the scheduler says nothing more, and the chunk's failure
            # is the run's: its inputs get no record, for --resume to send.
            delivered = await self._call(board_finish_chunk, number)
            if outcome is not None and outcome.aborted and self.summary.aborted is None:
                self.summary.aborted = outcome.aborted
                await self._stop_workers()
            if failure is not None and not self._stop.immediate.is_set():
                await self._fail_missing(number, len(delivered), chunk, failure)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._chunks.pop(number, None)
            self._slots.release()

    async def _fail_missing(
        self, number: int, delivered: int, chunk: list[SourceItem], failure: BaseException
    ) -> None:
        # Its delivered records first: only the inputs without one fail.
        async with self._arrived:
            await self._arrived.wait_for(lambda: self._received[number] >= delivered)
        reason = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
        log.warning("cluster: chunk %d failed on the cluster (%s)", number, reason)
        for item in chunk:
            if item.key in self._written or f"{item.key}#page=1" in self._written:
                continue  # a multi-page input's records are its pages
            error = ErrorInfo(
                WORKER_FAILED,
                f"{item.source}: its worker failed and Dask gave up on it ({reason}); "
                "it may have been sent; --resume --retry-failed sends it again",
                False,
                True,
            )
            record = Record(item.source, False, self._spec.options.fixed_endpoint, 0, 0.0,
                            None, None, error, id=item.id, metadata=item.metadata)  # fmt: skip
            await self._write(record)

    # -- collecting and writing ----------------------------------------------------------

    async def _collect(self) -> None:
        while True:
            done = self._listed.is_set() and not self._settling
            batch: list[tuple[int, bytes]] = await self._call(
                board_collect, 0.0 if done else _COLLECT_WAIT, _COLLECT_MOST
            )
            for number, blob in batch:
                record = pickle.loads(blob)  # our own workers' records
                await self._write(record)
                self._received[number] += 1
            if batch:
                async with self._arrived:
                    self._arrived.notify_all()
            if done and not batch:
                return

    async def _write(self, record: Record) -> None:
        key = key_of(record)
        if (self._already_done is not None and key in self._already_done) or (
            not self._written.add(key)
        ):
            return  # written already: a repeat after a worker died
        await self._sink.write(record)
        self.summary.add(record)
        if self._on_record is not None:
            self._on_record(record)

    # -- stopping ----------------------------------------------------------------------

    async def _watch_stop(self) -> None:
        await self._stop.graceful.wait()
        self.summary.interrupted = True
        await self._stop_workers()
        grace = self._spec.options.grace
        with contextlib.suppress(TimeoutError):
            # The workers hear of it within a second, then have the grace period.
            await asyncio.wait_for(self._stop.immediate.wait(), grace + 2.0)
        self._stop.immediate.set()
        futures = list(self._chunks.values())
        if futures:
            await self._dask.cancel(futures)

    async def _stop_workers(self) -> None:
        self._stopping.set()
        await self._call(board_stop_run)


@contextlib.contextmanager
def _quieted(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _for_workers(item: SourceItem) -> SourceItem:
    """The item as a worker reads it: a file by its absolute path; the same source name."""
    image = item.image
    if isinstance(image, ImageFile) and not os.path.isabs(image.path):
        return replace(item, image=ImageFile(os.path.abspath(image.path)))
    return item
