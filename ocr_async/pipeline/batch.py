"""The pipeline: sources -> a fixed pool of workers -> one record per input -> sink.

Memory stays flat however many inputs there are: one producer feeds a queue
bounded at the pool size, and a fixed number of workers take from it. There
is never a task, a future or a list per input. The pages of a multi-page
input (a PDF, a TIFF) fan out: its worker makes them one at a time and each
page after the first is sent by a task of its own, so that one long PDF
keeps every connection busy; sends in flight, and the images they hold,
stay at most the pool size whatever the mix.

Every input that a worker takes ends as exactly one record, whatever goes
wrong with it. An :class:`~ocr_async.errors.AuthError` is the exception to
"one bad item never stops a batch": every other request would be refused the
same way, so the run stops taking inputs, finishes what is in flight and
reports it; a resumed run picks up the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from ocr_async.client import OcrClient
from ocr_async.errors import AuthError, ConfigurationError, OcrError
from ocr_async.models import (
    ErrorInfo,
    FinishedPage,
    PageSink,
    Payload,
    Recognition,
    Record,
    RecordSink,
    SourceItem,
)
from ocr_async.options import EndpointChoice, Options
from ocr_async.pipeline.fdlimit import fit_concurrency
from ocr_async.pipeline.sourceset import SourceSet
from ocr_async.precheck import Precheck
from ocr_async.wording import counted, outcome_lines, skip_lines

__all__ = ["BatchSummary", "Recognizer", "StopRequest", "run_batch"]

log = logging.getLogger(__name__)


class Recognizer(Protocol):
    """What the pipeline needs of a client: :class:`ocr_async.OcrClient` is one."""

    async def send(self, payload: Payload) -> Recognition:
        """Recognize one pre-checked image, or raise an :class:`OcrError`."""
        ...


@dataclass(slots=True)
class BatchSummary:
    """What a run did, for the closing summary and the exit code."""

    ok: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    #: Requests sent beyond the first for each image.
    retries: int = 0
    #: Folder entries passed over (not images by extension); not records.
    skipped: int = 0
    #: Inputs given twice in this run; only the first was sent.
    duplicates: int = 0
    #: Inputs whose final record an earlier run wrote (``--resume``).
    already_done: int = 0
    #: True when a stop request (Ctrl-C, SIGTERM) ended the run early.
    interrupted: bool = False
    elapsed_s: float = 0.0
    #: Why the run stopped early (an auth refusal), or None.
    aborted: str | None = None

    @property
    def records(self) -> int:
        """Records written."""
        return self.ok + self.failed.total()

    @property
    def images_per_s(self) -> float:
        """Records per second of wall time."""
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, record: Record) -> None:
        """Count one finished record."""
        self.retries += max(0, record.attempts - 1)
        if record.ok:
            self.ok += 1
        else:
            assert record.error is not None
            self.failed[str(record.error.code)] += 1

    def describe(self) -> str:
        """A few human lines for stderr."""
        lines = outcome_lines(
            self.ok,
            self.failed,
            counted(self.retries, "retry", "retries"),
            f"{self.images_per_s:.1f} images/s over {self.elapsed_s:.1f} s",
        )
        lines += skip_lines("skipped", self.skipped, self.duplicates, self.already_done)
        if self.interrupted:
            lines.append("interrupted: inputs not yet taken are left for --resume")
        if self.aborted:
            lines.append(f"stopped early: {self.aborted}")
        return "\n".join(lines)


def _failure_record(payload: Payload, error: ErrorInfo, attempts: int, elapsed_ms: float) -> Record:
    return Record(
        source=payload.source,
        ok=False,
        endpoint=payload.endpoint,
        attempts=attempts,
        elapsed_ms=elapsed_ms,
        text=None,
        result=None,
        error=error,
        transform=payload.transform,
        id=payload.id,
        metadata=payload.metadata,
        sha256=payload.sha256,
    )


def _error_info(exc: OcrError) -> ErrorInfo:
    # Refused credentials say nothing about the image: once they are fixed,
    # the same input may well succeed, so --retry-failed takes it.
    retry_later = exc.retryable or isinstance(exc, AuthError)
    return ErrorInfo(exc.code, exc.message, exc.local, retry_later)


async def _recognize_one(
    client: Recognizer, payload: Payload, clock: Callable[[], float]
) -> tuple[Record, Exception | None]:
    if payload.error is not None:
        return _failure_record(payload, _error_info(payload.error), 0, 0.0), payload.error
    started = clock()
    try:
        recognition = await client.send(payload)
    except OcrError as exc:
        elapsed = (clock() - started) * 1000.0
        return _failure_record(payload, _error_info(exc), exc.attempts, elapsed), exc
    except ConfigurationError as exc:
        # The token provider cannot get a token (the OAuth server refused the
        # User Access Key): not about this image, and fatal for the run.
        info = ErrorInfo("credentials", str(exc), True, True)
        return _failure_record(payload, info, 0, (clock() - started) * 1000.0), exc
    except Exception as exc:
        # A bug of ours must cost one record, not the batch.
        log.exception("unexpected error on %s", payload.source)
        info = ErrorInfo("internal_error", f"{type(exc).__name__}: {exc}", True, False)
        return _failure_record(payload, info, 0, (clock() - started) * 1000.0), None
    result = recognition.result
    record = Record(
        source=payload.source,
        ok=True,
        endpoint=payload.endpoint,
        attempts=recognition.attempts,
        elapsed_ms=recognition.elapsed_ms,
        text=result.text,
        result=result.raw,
        error=None,
        transform=payload.transform,
        id=payload.id,
        metadata=payload.metadata,
        sha256=payload.sha256,
        parsed=result,
    )
    return record, None


class StopRequest:
    """Asks a running batch to stop: the first request is graceful, a second immediate.

    Graceful: no new inputs are taken, requests in flight may finish (for at
    most the grace period) and their records are written. Immediate: requests
    in flight are abandoned and get no record; a resumed run sends them again.
    """

    def __init__(self) -> None:
        self.graceful = asyncio.Event()
        self.immediate = asyncio.Event()

    def request(self) -> None:
        """Escalate one step: from running to graceful, from graceful to immediate."""
        if self.graceful.is_set():
            self.immediate.set()
        self.graceful.set()


async def run_batch(
    client: Recognizer,
    items: AsyncIterable[SourceItem],
    sink: RecordSink,
    *,
    options: Options | None = None,
    concurrency: int | None = None,
    endpoint: EndpointChoice | None = None,
    on_record: Callable[[Record], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    already_done: SourceSet | None = None,
    stop: StopRequest | None = None,
    clock: Callable[[], float] = time.monotonic,
    pages: PageSink | None = None,
) -> BatchSummary:
    """Recognize every item with ``options.concurrency`` workers; write one record each.

    ``options`` (by default the client's, for an :class:`~ocr_async.OcrClient`)
    says how many workers, which endpoint (``"auto"``: per image), whether
    to convert or shrink images first, and the grace period of a stop;
    ``concurrency`` and ``endpoint`` are shorthand for changing it. A
    multi-page input (a PDF, a converted TIFF) gives one record per page;
    its pages are made one at a time, as they are sent.

    Inputs whose :attr:`~ocr_async.models.SourceItem.key` (the id of a
    manifest row, else the source) is in ``already_done`` (from a resumed
    output) and inputs seen earlier in this run are skipped and counted,
    and ``on_skip`` hears of each duplicate; a page in ``already_done`` is
    skipped before it is made (a PDF page is never rendered). ``stop`` ends
    the run early (see :class:`StopRequest`), between two pages of an input too.

    ``pages`` (ALTO, hOCR, searchable PDF files) gets each image or page
    with its record and the image sent (:class:`~ocr_async.models.FinishedPage`),
    before the record goes to ``sink``.

    The concurrency is lowered, with a warning, when the open-file limit
    has no room for that many connections (see :mod:`ocr_async.pipeline.fdlimit`).

    Returns the summary. Raises what ``items`` raises (an unreadable URL
    list, say) after the records of everything already taken are written.
    """
    if options is None:
        options = client.options if isinstance(client, OcrClient) else Options()
    options = options.with_changes(concurrency=concurrency, endpoint=endpoint)
    concurrency, lowered = fit_concurrency(options.concurrency)
    if lowered is not None:
        log.warning("%s", lowered)
    grace = options.grace
    precheck = Precheck(options)
    summary = BatchSummary()
    queue: asyncio.Queue[SourceItem | None] = asyncio.Queue(maxsize=concurrency)
    stopping = asyncio.Event()
    started = clock()
    seen = SourceSet()
    source_error: list[BaseException] = []

    async def produce() -> None:
        try:
            async for item in items:
                if stopping.is_set():
                    break
                # Known by its key: its id (a manifest row), else its source.
                if already_done is not None and item.key in already_done:
                    summary.already_done += 1
                elif not seen.add(item.key):
                    # Sending it again would pay twice for one answer.
                    summary.duplicates += 1
                    if on_skip is not None:
                        why = "input" if item.id is None else f"id {item.id!r}"
                        on_skip(item.source, f"duplicate {why}: already taken in this run")
                else:
                    await queue.put(item)
        except Exception as exc:
            # Kept for later: the items already taken still get their records.
            source_error.append(exc)
        # Not in a 'finally': once cancelled, no worker is left to take these.
        for _ in range(concurrency):
            await queue.put(None)

    def done_before(item: SourceItem, source: str) -> bool:
        # Pages are named after their file (<source>#page=<n>) and keyed after
        # it (<key>#page=<n>): a resumed run checks each, and the pre-check
        # stage asks before it makes one (a PDF page is never rendered).
        if already_done is None or source == item.source:
            return False  # the input itself was checked when it was taken
        if item.key + source.removeprefix(item.source) in already_done:
            summary.already_done += 1
            return True
        return False

    # A slot is taken before an image is read or a page rendered, and given
    # back once its record is written: images in memory stay at most this many.
    slots = asyncio.Semaphore(concurrency)

    async def work() -> None:
        # This worker's pages beyond the first of an input, sent alongside:
        # one long PDF then fills every slot, not one.
        async with asyncio.TaskGroup() as alongside:
            while (item := await queue.get()) is not None:
                if stopping.is_set():
                    continue  # left for a resumed run; drain so the producer can finish
                stream = precheck.payloads(item, skip=functools.partial(done_before, item))
                async with contextlib.aclosing(stream):
                    first = True
                    # After a stop request the other pages are left for a resumed run.
                    while not stopping.is_set():
                        await slots.acquire()
                        try:
                            payload = await anext(stream, None)
                        except BaseException:
                            slots.release()
                            raise
                        if payload is None:
                            slots.release()
                            break
                        if first:
                            first = False
                            await send_in_slot(item, payload)
                        else:
                            alongside.create_task(send_in_slot(item, payload))

    async def send_in_slot(item: SourceItem, payload: Payload) -> None:
        try:
            await finish(item, payload)
        finally:
            slots.release()

    async def finish(item: SourceItem, payload: Payload) -> None:
        record, error = await _recognize_one(client, payload, clock)
        if pages is not None:
            # Before the record: a record written means its page files are there.
            await pages.write_page(FinishedPage(item.source, record, payload))
        await sink.write(record)
        summary.add(record)
        if on_record is not None:
            on_record(record)
        if isinstance(error, AuthError | ConfigurationError) and not stopping.is_set():
            summary.aborted = f"the API refused the credentials ({error})"
            stopping.set()

    async def supervise(tasks: list[asyncio.Task[None]]) -> None:
        assert stop is not None
        await stop.graceful.wait()
        summary.interrupted = True
        stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.immediate.wait(), grace)
        for task in tasks:
            task.cancel()  # the group takes a cancelled child as finished

    supervisor: asyncio.Task[None] | None = None
    try:
        # A failing sink (disk full) fails its worker; the group then cancels
        # the rest, since no further record could be written anyway.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(produce(), name="ocr-producer")]
            tasks += [group.create_task(work(), name=f"ocr-worker-{n}") for n in range(concurrency)]
            if stop is not None:
                supervisor = asyncio.create_task(supervise(tasks), name="ocr-stop")
    except BaseExceptionGroup as failure:
        first: BaseException = failure
        while isinstance(first, BaseExceptionGroup):  # a worker's own group nests one
            first = first.exceptions[0]
        raise first from None
    finally:
        if supervisor is not None:
            supervisor.cancel()
        summary.elapsed_s = clock() - started
    if source_error:
        raise source_error[0]
    return summary
