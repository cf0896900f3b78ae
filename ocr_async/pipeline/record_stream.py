"""``recognize_many``: the batch pipeline as an async iterator of records.

For programs that consume results as they come: a pipeline stage, a queue
consumer, a notebook. It is :func:`ocr_async.pipeline.batch.run_batch` with a sink
that hands each record to the iterator, so it has the same fixed pool of
workers, the same bounded memory and the same one-record-per-input rule::

    async for record in recognize_many(["a.png", "b.jpg", "https://..."]):
        print(record.source, record.ok, record.text)

Records come in the order they finish, not the order of the inputs; each
record's ``source`` says which input it is for. A slow consumer slows the
workers down (the hand-over queue is bounded), so nothing piles up.

Stopping early (``break``, :meth:`RecordStream.aclose`, leaving ``async
with``, or the consuming task being cancelled) cancels the requests in
flight, closes the client if the stream opened it, and leaves no task
behind. ``async with recognize_many(...) as records:`` makes that happen at
the end of the block; after a bare ``break`` it happens as soon as the event
loop finalizes the abandoned iterator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from ocr_async.auth import TokenProvider
from ocr_async.client import OcrClient
from ocr_async.errors import ConfigurationError
from ocr_async.inputs import InputLike, as_source_item
from ocr_async.models import Record, SourceItem
from ocr_async.options import Credentials, EndpointChoice, Options, resolve_credentials
from ocr_async.pipeline.batch import BatchSummary, Recognizer, run_batch
from ocr_async.pipeline.manifest import bad_row, entry_from_fields
from ocr_async.retry import RetryPolicy

__all__ = ["RecordStream", "SourceLike", "recognize_many"]


#: What :func:`recognize_many` takes, one per input: what the client takes,
#: a :class:`SourceItem` (see :func:`ocr_async.inputs.as_source_item`), or a
#: manifest row as a mapping (``{"id": ..., "path" or "url": ..., ...}``).
SourceLike = InputLike | Mapping[str, Any]


@dataclass(slots=True)
class _Outcome:
    """Shared by a stream and its generator (never a reference between them)."""

    summary: BatchSummary | None = None


class _QueueSink:
    """A record sink that hands records to the consumer through a bounded queue."""

    def __init__(self, queue: asyncio.Queue[Record | None]) -> None:
        self._queue = queue

    async def write(self, record: Record) -> None:
        """Wait until the consumer has room, then hand the record over."""
        await self._queue.put(record)


class RecordStream(AsyncIterator[Record]):
    """The async iterator of records that :func:`recognize_many` returns.

    Iterate it once. It is also an async context manager whose exit stops
    the work at once (see :meth:`aclose`).
    """

    def __init__(self, records: AsyncGenerator[Record, None], outcome: _Outcome) -> None:
        # The generator must not refer back to this object: when a consumer
        # abandons the stream after 'break', both are freed at once and the
        # event loop's finalizer closes the generator, which cleans up.
        self._records = records
        self._outcome = outcome

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Record:
        return await self._records.__anext__()

    async def aclose(self) -> None:
        """Stop: cancel the requests in flight and close what the stream opened.

        Records not yet yielded are dropped. Safe to call more than once,
        and after the stream has ended.
        """
        await self._records.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def summary(self) -> BatchSummary | None:
        """What the run did (counts, retries, duplicates), once every record was yielded.

        None while records are still coming, and after an early stop.
        """
        return self._outcome.summary


def recognize_many(
    sources: Iterable[SourceLike] | AsyncIterable[SourceLike],
    *,
    client: Recognizer | None = None,
    options: Options | None = None,
    appkey: str | None = None,
    token: str | TokenProvider | None = None,
    base_url: str | None = None,
    concurrency: int | None = None,
    endpoint: EndpointChoice | None = None,
    convert: bool | None = None,
    shrink: bool | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
) -> RecordStream:
    """Recognize every input with ``concurrency`` workers; yield a record as each finishes.

    ``sources`` is an iterable or async iterable of paths, URLs, image bytes,
    :class:`~ocr_async.ImageFile`, :class:`~ocr_async.ImageBytes`,
    :class:`~ocr_async.ImageUrl` or :class:`~ocr_async.SourceItem`
    (so :func:`ocr_async.pipeline.sources.iter_inputs` can walk folders for it). It is
    read lazily, as workers free up; a plain iterable is read on the event
    loop, so it must not block.

    A mapping is a manifest row, with the rules of ``--manifest``
    (:mod:`ocr_async.pipeline.manifest`): an ``id`` and a ``path`` or a
    ``url``; every other field is its ``metadata``, which must be
    JSON-serialisable (strict: no NaN). Its record carries ``id`` and
    ``metadata``; a bad row gets one failed record (``bad_manifest_row``)
    named ``row <n>``, and the stream goes on.

    Each record's ``source`` is the URL as given, the path as given, an
    ``ImageBytes`` name, or ``bytes:<n>`` for unnamed bytes (``n`` counts
    inputs from 0). A source given twice is sent once and gives one record;
    so is an id given twice (the first row wins).
    A bad input (missing, empty, not an image, refused by the API, timed
    out) gives a failed record; it never raises.

    How the run behaves is one :class:`~ocr_async.Options` (``options``, by
    default the client's or the defaults); ``concurrency``, ``endpoint``
    (``"auto"`` picks per image), ``convert``, ``shrink``, ``timeout`` and
    ``retry`` are shorthand for changing it. A page of a converted
    multi-page TIFF or of a PDF gets its own record, named ``<source>#page=<n>``.

    Pass ``client`` (an open :class:`~ocr_async.OcrClient`, which is then
    left open) or the settings to build one: ``appkey`` (default: env
    ``NHN_OCR_APPKEY``), ``token`` (default: a User Access Key from
    ``NHN_UAK_ID``/``NHN_UAK_SECRET``, else ``NHN_OCR_TOKEN`` or
    ``NHN_OCR_TOKEN_FILE``) and ``base_url`` (default: env
    ``NHN_OCR_BASE_URL``, else the NHN host), as
    :func:`~ocr_async.resolve_credentials` resolves them. The stream opens
    that client when iteration starts and closes it when the stream ends.

    Raises :class:`~ocr_async.ConfigurationError` at once when settings are
    missing or wrong, and from the iterator when the API refuses the
    credentials (after yielding the records of what was in flight; inputs
    not yet taken get no record). An exception raised by ``sources`` itself
    comes out of the iterator after the records of the inputs already taken.
    """
    if options is None:
        options = client.options if isinstance(client, OcrClient) else Options()
    options = options.with_changes(
        concurrency=concurrency,
        endpoint=endpoint,
        convert=convert,
        shrink=shrink,
        timeout=timeout,
        retry=retry,
    )
    credentials: Credentials | None = None
    if client is None:
        credentials = resolve_credentials(appkey=appkey, token=token, base_url=base_url)
        client = owned = OcrClient(
            appkey=credentials.appkey,
            token=credentials.tokens,
            base_url=credentials.base_url,
            options=options,
        )
    else:
        if any(value is not None for value in (appkey, token, base_url, timeout, retry)):
            raise TypeError("pass either client= or the settings to build one, not both")
        owned = None
    outcome = _Outcome()
    records = _records(
        _source_items(sources),
        client,
        owned=owned,
        credentials=credentials,
        options=options,
        outcome=outcome,
    )
    return RecordStream(records, outcome)


async def _source_items(
    sources: Iterable[SourceLike] | AsyncIterable[SourceLike],
) -> AsyncGenerator[SourceItem, None]:
    number = 0
    if isinstance(sources, AsyncIterable):
        async for given in sources:
            yield _source_item(given, number)
            number += 1
    else:
        for given in sources:
            yield _source_item(given, number)
            number += 1


def _source_item(given: SourceLike, number: int) -> SourceItem:
    if not isinstance(given, Mapping):
        return as_source_item(given, number)
    where = f"row {number}"
    item = entry_from_fields(given, where)
    if item.metadata:
        try:
            # Strict JSON, as the record is written: no NaN, no sets, no objects.
            json.dumps(item.metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            why = f"the row's other fields are not JSON ({exc}): its metadata cannot be written"
            return bad_row(where, why, id=item.id)
    return item


async def _records(
    items: AsyncGenerator[SourceItem, None],
    client: Recognizer,
    *,
    owned: OcrClient | None,
    credentials: Credentials | None,
    options: Options,
    outcome: _Outcome,
) -> AsyncGenerator[Record, None]:
    # Bounded: workers wait for the consumer rather than queueing records.
    # None marks the end, whether the batch finished or failed.
    queue: asyncio.Queue[Record | None] = asyncio.Queue(maxsize=options.concurrency)

    async def feed() -> BatchSummary:
        try:
            return await run_batch(client, items, _QueueSink(queue), options=options)
        finally:
            if not _cancelling():
                await queue.put(None)

    async with contextlib.AsyncExitStack() as stack:
        if credentials is not None:
            stack.push_async_callback(credentials.aclose)
        if owned is not None:
            await stack.enter_async_context(owned)
        batch = asyncio.create_task(feed(), name="ocr-recognize-many")
        try:
            while (record := await queue.get()) is not None:
                yield record
            summary = await batch  # raises what the batch raised (a failing source)
            if summary.aborted:
                raise ConfigurationError(f"stopped early: {summary.aborted}")
            outcome.summary = summary
        finally:
            if not batch.done():
                batch.cancel()
            # The workers' requests are torn down before the client closes.
            await asyncio.wait({batch})
            if not batch.cancelled():
                batch.exception()  # retrieved: after an early stop nobody wants it
            await items.aclose()  # now, not whenever the garbage collector gets to it


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
