"""The pre-check stage: every input read, checked and made ready to send, in one place.

Between a source and its request, for a file, bytes or a URL alike::

    SourceItem --read--> bytes --pages--> page(s) --shrink--> --endpoint--> --check--> Payload

* **read**: a file is read here, and only here, bounded by the request
  limit (or, with ``convert``/``shrink``, by :attr:`Options.read_limit`): a
  file larger than that is refused from its size alone, so a stray 4 GB
  scan is never read into memory. Bytes are taken as they are; a URL is
  never fetched (the API does that) and goes on as a URL.
* **pages** (``convert``): TIFF, BMP, WebP and GIF become PNG, a multi-page
  TIFF one page each, named ``<source>#page=<n>`` (its identity for
  ``--resume`` too). A PDF (by its first bytes, or a name ending in
  ``.pdf``; no flag needed) gives its pages the same names, each rendered
  by :mod:`ocr_async.pdfpages` when its turn comes: one page at a time,
  never the whole document, and a page the caller says is done already
  (``skip``) is never rendered. A PDF file is read by PDFium as it needs
  it, so its size is not bounded by the request limit; one that cannot be
  opened (encrypted, broken, empty) is one payload with its error.
* **shrink** (``shrink``): an image over the limit is re-encoded to fit.
* **endpoint** (``endpoint="auto"``): chosen from the aspect ratio.
* **check**: :mod:`ocr_async.protocol` refuses, as the server would, what
  it would refuse (empty, not JPEG/PNG, a cut-off PNG, a body over the
  limit, a URL with a bad scheme or port).

What comes out is one :class:`~ocr_async.models.Payload` per image, ready
to send, or carrying the local error that stops it, as a stream
(:meth:`Precheck.payloads`): nothing here raises for a bad input, and
nothing is sent for one. The bytes a payload carries are the bytes that
are sent, so their content hash (:func:`content_sha256`) is taken at the
end of this stage, in the same call that read or made them.

Reading, decoding and checking run in a worker thread; decoding large
images is bounded to a few at a time. A thread hop costs the event loop
more than reading a small file does, so plain files (no convert, shrink or
auto endpoint) go cheaper: one of at most 64 KiB is read and checked on the
event loop, as long as such reads stay fast (one slower than 2 ms, a slow
or network disk, sends every later file to the threads), and files read in
threads share hops when many workers ask at once (:class:`_FileReads`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import hashlib
import os
import stat
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, replace
from typing import Final, Generic, TypeVar

from ocr_async import protocol
from ocr_async.errors import LocalCheckError, OcrError, SourceError
from ocr_async.imaging import (
    ConvertedPage,
    Transform,
    aspect_ratio,
    choose_endpoint,
    convert_to_png,
    shrink_to_fit,
)
from ocr_async.inputs import display_path
from ocr_async.models import Endpoint, ImageBytes, ImageFile, ImageUrl, Payload, SourceItem
from ocr_async.options import Options
from ocr_async.pdfpages import PDF_SIGNATURE, PdfPages, is_pdf_name

__all__ = ["Precheck", "content_sha256", "read_image_file"]

_FD_LIMIT: Final = {errno.EMFILE: "process's", errno.ENFILE: "system's"}
#: In-memory images up to this size are checked and hashed on the event loop
#: (some 35 us); larger ones in a worker thread.
_HASH_INLINE_LIMIT: Final = 64 * 1024
#: Bytes read at a time past a file's size as its stat told it.
_CHUNK: Final = 64 * 1024
#: Files read and checked in one thread hop, at most.
_READ_BATCH: Final = 16
#: Files up to this size are read and checked on the event loop...
_READ_INLINE_LIMIT: Final = _HASH_INLINE_LIMIT
#: ...until one such read takes longer than this, in seconds.
_SLOW_READ: Final = 0.002

T = TypeVar("T")


class Precheck:
    """The pre-check stage for one run: what ``options`` asks of every input.

    Reads ``endpoint``, ``convert``, ``shrink``, ``max_bytes`` and
    ``read_limit`` of the options. Safe to share between tasks.
    """

    __slots__ = ("_clock", "_decoders", "_inline", "_options", "_reads")

    def __init__(self, options: Options, *, clock: Callable[[], float] = time.perf_counter) -> None:
        self._options = options
        self._clock = clock
        # Whether small files are still read on the event loop.
        self._inline = True
        self._reads: _FileReads[Payload | _Pdf] = _FileReads(os.cpu_count() or 2, _READ_BATCH)
        # Decoding large images costs memory: only this many at once, whatever
        # the number of workers waiting on the network.
        self._decoders = asyncio.Semaphore(os.cpu_count() or 2)

    @property
    def options(self) -> Options:
        """The options the stage follows."""
        return self._options

    async def prepare(self, item: SourceItem, *, endpoint: Endpoint | None = None) -> list[Payload]:
        """The payloads for one input: one, or one per page; errors included, never raised.

        ``endpoint`` overrides the options' endpoint for this input. Every
        page is made at once: for a long PDF, iterate :meth:`payloads`.
        """
        return [payload async for payload in self.payloads(item, endpoint=endpoint)]

    def payloads(
        self,
        item: SourceItem,
        *,
        endpoint: Endpoint | None = None,
        skip: Callable[[str], bool] | None = None,
    ) -> AsyncGenerator[Payload, None]:
        """The payloads for one input, one page at a time; errors included, never raised.

        ``endpoint`` overrides the options' endpoint for this input. A page
        whose source ``skip`` answers True for (one done by an earlier run)
        is left out: a PDF's is never rendered. The input's own source is
        asked too (for a one-page PDF, its only page). The item's ``id`` and
        ``metadata`` ride on every payload, for its records. Close the
        iterator (``contextlib.aclosing``) when leaving it early: an open PDF
        is closed then.
        """
        stream = self._payloads(item, endpoint, skip)
        if item.id is None and item.metadata is None:
            return stream
        return _with_identity(stream, item)

    async def _payloads(
        self, item: SourceItem, endpoint: Endpoint | None, skip: Callable[[str], bool] | None
    ) -> AsyncGenerator[Payload, None]:
        options = self._options
        chosen = endpoint or options.fixed_endpoint
        auto = endpoint is None and options.auto_endpoint
        image = item.image
        if item.error is not None or image is None:
            # Nothing to send (a bad manifest row): its error is its record.
            error = item.error or SourceError("no_image", f"{item.source}: nothing to send")
            yield Payload(item.source, chosen, error=error)
            return
        # A URL is fetched by the API, never by us: it goes as it is; with
        # --endpoint auto it goes to /general, its shape being unknown here.
        if isinstance(image, ImageUrl):
            yield _url_payload(item.source, image.url, chosen)
            return
        prepared: Payload | list[Payload] | _Pdf
        if _is_pdf(image):
            prepared = _Pdf(image.data if isinstance(image, ImageBytes) else image.path)
        elif not (auto or options.convert or options.shrink):
            if isinstance(image, ImageBytes):
                if len(image.data) <= _HASH_INLINE_LIMIT:
                    prepared = _checked(item.source, image.data, chosen, options.max_bytes)
                else:
                    # Hashing a large image would hold the event loop: a thread.
                    prepared = await asyncio.to_thread(
                        _checked, item.source, image.data, chosen, options.max_bytes
                    )
            else:
                read = functools.partial(
                    _read_checked, item.source, image.path, chosen, options.max_bytes
                )
                small = self._read_small(image.path, read) if self._inline else None
                prepared = small if small is not None else await self._reads.run(read)
        else:
            limit = options.read_limit if (options.convert or options.shrink) else options.max_bytes
            async with self._decoders:
                prepared = await asyncio.to_thread(self._transformed, item, chosen, auto, limit)
        if isinstance(prepared, _Pdf):
            pages = self._pdf_pages(item.source, prepared, chosen, auto, skip)
            async with contextlib.aclosing(pages):  # closed with this stream, not later
                async for payload in pages:
                    yield payload
            return
        for payload in [prepared] if isinstance(prepared, Payload) else prepared:
            if skip is None or not skip(payload.source):
                yield payload

    def _read_small(
        self, path: str | os.PathLike[str], read: Callable[..., Payload | _Pdf]
    ) -> Payload | _Pdf | None:
        """``read(info)`` on the event loop if the file is small; None: read it in a thread."""
        started = self._clock()
        try:
            info = _regular_file(path)
        except (OSError, SourceError):
            return None  # the thread's read tells what is wrong, as for any file
        if info.st_size > _READ_INLINE_LIMIT:
            return None
        try:
            return read(info)
        finally:
            if self._clock() - started > _SLOW_READ:
                # A slow disk (or a network one) would stall every request
                # in flight: from now on, threads only.
                self._inline = False

    def _transformed(
        self, item: SourceItem, endpoint: Endpoint, auto: bool, limit: int
    ) -> list[Payload] | _Pdf:
        # Runs in a worker thread: read, then every step, then the checks.
        image = item.image
        assert isinstance(image, ImageFile | ImageBytes)  # a URL or nothing never comes here
        try:
            data = image.data if isinstance(image, ImageBytes) else _read(image.path, limit)
            if data.startswith(PDF_SIGNATURE):
                return _Pdf(data)
            pages: list[ConvertedPage | None] = (
                list(convert_to_png(data)) if self._options.convert else [None]
            )
        except OcrError as exc:
            return [Payload(item.source, endpoint, error=exc)]
        return [self._page(item.source, data, page, endpoint, auto) for page in pages]

    async def _pdf_pages(
        self,
        source: str,
        pdf: _Pdf,
        endpoint: Endpoint,
        auto: bool,
        skip: Callable[[str], bool] | None,
    ) -> AsyncGenerator[Payload, None]:
        # Opening reads the cross-reference table, rendering decodes a page:
        # both in a worker thread, one page at a time.
        try:
            document = await asyncio.to_thread(
                _open_pdf, source, pdf.document, self._options.max_bytes, self._options.pdf_dpi
            )
        except OcrError as exc:
            yield Payload(source, endpoint, error=exc)
            return
        try:
            for number in range(1, document.page_count + 1):
                if skip is not None and skip(document.source_of(number)):
                    continue
                async with self._decoders:
                    payload = await asyncio.to_thread(
                        self._pdf_page, document, number, endpoint, auto
                    )
                yield payload
        finally:
            await asyncio.to_thread(document.close)

    def _pdf_page(self, document: PdfPages, number: int, endpoint: Endpoint, auto: bool) -> Payload:
        page = document.render(number)
        # Its page number rides on a failed page's record too: resume knows
        # a page by it (pipeline.resume.record_identity).
        numbered = Transform.build(rendered=page) if page.pages > 1 else None
        if page.error is not None:
            return Payload(page.source, endpoint, transform=numbered, error=page.error)
        try:
            chosen = choose_endpoint(page.data) if auto else endpoint
        except OcrError as exc:
            return Payload(page.source, endpoint, transform=numbered, error=exc)
        transform = Transform.build(
            rendered=page,
            endpoint_chosen=chosen if auto else None,
            aspect_ratio=aspect_ratio(page.data) if auto else None,
        )
        return _checked(page.source, page.data, chosen, self._options.max_bytes, transform)

    def _page(
        self,
        source: str,
        data: bytes,
        page: ConvertedPage | None,
        endpoint: Endpoint,
        auto: bool,
    ) -> Payload:
        options = self._options
        if page is not None:
            data = page.data
            if page.pages > 1:
                source = f"{source}#page={page.page}"
        try:
            shrunk = shrink_to_fit(data, options.max_bytes) if options.shrink else None
            if shrunk is not None:
                data = shrunk.data
            chosen = choose_endpoint(data) if auto else endpoint
        except OcrError as exc:
            return Payload(source, endpoint, error=exc)
        transform = Transform.build(
            converted=page,
            shrunk=shrunk,
            endpoint_chosen=chosen if auto else None,
            aspect_ratio=aspect_ratio(data) if auto else None,
        )
        return _checked(source, data, chosen, options.max_bytes, transform)


class _FileReads(Generic[T]):
    """Calls run in worker threads, several to a hop when many are waiting.

    At most ``hops`` worker-thread calls run at once; a call asked for
    while they all run waits, and the next hop to finish takes up to
    ``batch`` of the waiting calls in one go. A lone call goes at once, in
    its own hop, as with ``asyncio.to_thread``; under load the hops, and
    the event-loop wake-ups that come with each, are shared. The calls
    must not raise for a bad input (they return its error): an exception
    is handed to its own caller all the same.
    """

    def __init__(self, hops: int, batch: int) -> None:
        self._hops = hops
        self._batch = batch
        self._running = 0
        self._waiting: list[tuple[Callable[[], T], asyncio.Future[T]]] = []

    async def run(self, call: Callable[[], T]) -> T:
        """``call()``, run in a worker thread: its result, or its exception."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, future))
        if self._running < self._hops:
            self._running += 1
            # The hop is tied to no caller: a caller cancelled while its
            # call runs only stops waiting for it.
            _background(asyncio.create_task(self._hop()))
        return await future

    async def _hop(self) -> None:
        batch: list[tuple[Callable[[], T], asyncio.Future[T]]] = []
        try:
            while self._waiting:
                batch = self._waiting[: self._batch]
                del self._waiting[: self._batch]
                outcomes = await asyncio.to_thread(_call_each, [call for call, _ in batch])
                for (_, future), (result, error) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue  # its caller was cancelled
                    if error is not None:
                        future.set_exception(error)
                    else:
                        future.set_result(result)  # type: ignore[arg-type]
        except BaseException:
            # The loop is going away (this hop was cancelled): nobody may be
            # left waiting for a call that no hop will run.
            for _, future in batch + self._waiting if self._running == 1 else batch:
                future.cancel()
            raise
        finally:
            self._running -= 1


def _call_each(calls: list[Callable[[], T]]) -> list[tuple[T | None, BaseException | None]]:
    # In a worker thread: one call's exception is its own, not the others'.
    outcomes: list[tuple[T | None, BaseException | None]] = []
    for call in calls:
        try:
            outcomes.append((call(), None))
        except Exception as exc:
            outcomes.append((None, exc))
    return outcomes


_TASKS: set[asyncio.Task[None]] = set()


def _background(task: asyncio.Task[None]) -> None:
    # The loop keeps only a weak reference to a task: hold it until it ends.
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _with_identity(
    stream: AsyncGenerator[Payload, None], item: SourceItem
) -> AsyncGenerator[Payload, None]:
    async with contextlib.aclosing(stream):
        async for payload in stream:
            yield replace(payload, id=item.id, metadata=item.metadata)


@dataclass(frozen=True, slots=True)
class _Pdf:
    """An input found to be a PDF: its path (PDFium reads it as needed) or its bytes."""

    document: str | os.PathLike[str] | bytes


def _is_pdf(image: ImageFile | ImageBytes) -> bool:
    # By name: a PDF file is never read whole (it may be far larger than a
    # request); other files are read, and a PDF among them is known by its
    # first bytes (_read_checked, _transformed).
    if isinstance(image, ImageBytes):
        return image.data.startswith(PDF_SIGNATURE) or is_pdf_name(image.name)
    return is_pdf_name(os.fspath(image.path))


def _open_pdf(
    source: str, document: str | os.PathLike[str] | bytes, max_bytes: int, dpi: int
) -> PdfPages:
    if not isinstance(document, bytes):
        # The file's own errors (missing, a folder, no permission) are told
        # as for any file; PDFium would call each of them "cannot be read".
        try:
            _regular_file(document)
            os.close(os.open(document, os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            raise _source_error(document, exc) from None
    return PdfPages(document, source=source, max_bytes=max_bytes, dpi=dpi)


def _url_payload(source: str, url: str, endpoint: Endpoint) -> Payload:
    try:
        protocol.check_image_url(url)
    except LocalCheckError as exc:
        return Payload(source, endpoint, error=exc)
    return Payload(source, endpoint, url=url)


def _checked(
    source: str,
    data: bytes,
    endpoint: Endpoint,
    max_bytes: int,
    transform: Transform | None = None,
) -> Payload:
    """The payload for image bytes, after the checks the server would make."""
    kept = None if transform is None or transform.empty else transform
    try:
        kind = protocol.check_image_bytes(data)
        protocol.check_body_size(kind, len(data), max_bytes)
    except LocalCheckError as exc:
        return Payload(source, endpoint, transform=kept, error=exc)
    # Of the very bytes sent, in the call that made them (a worker thread,
    # but for small in-memory images): see content_sha256.
    return Payload(
        source, endpoint, image=data, kind=kind, transform=kept, sha256=content_sha256(data)
    )


def content_sha256(data: bytes | bytearray | memoryview) -> str:
    """The sha256 of ``data`` as 64 lower-case hex digits, as ``sha256sum`` prints it.

    Every payload that carries bytes carries their hash, and so does its
    record: pipelines deduplicate and audit by it (the same scan under two
    names, a file changed between two runs). It is taken of what is sent,
    so after ``convert`` or ``shrink`` it is the hash of the PNG or JPEG
    that went out, not of the file on disk; a URL has none (the API fetches
    those bytes, not us). OpenSSL's sha256 runs at about 1.9 GB/s (2.8 ms
    for 5 MiB) and releases the GIL, so it runs in the worker-thread call
    that reads or converts the bytes; only for 64 KiB or less (some 35 us)
    is it taken on the event loop, with the read or the check.
    """
    return hashlib.sha256(data).hexdigest()


def _read_checked(
    source: str,
    path: str | os.PathLike[str],
    endpoint: Endpoint,
    max_bytes: int,
    info: os.stat_result | None = None,
) -> Payload | _Pdf:
    try:
        data = _read(path, max_bytes, info)
    except OcrError as exc:
        return Payload(source, endpoint, error=exc)
    if data.startswith(PDF_SIGNATURE):
        return _Pdf(data)
    return _checked(source, data, endpoint, max_bytes)


async def read_image_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The file's bytes, or a typed error: the stage's reader, for other callers.

    Raises :class:`SourceError` when the file cannot be read and
    :class:`LocalCheckError` (4131000) when it is larger than ``max_bytes``
    (checked on the size first, then on what was read, in case it grew).
    Stat, open, read and close run in one worker-thread call.
    """
    return await asyncio.to_thread(_read, path, max_bytes)


def _regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """``path``'s stat; :class:`SourceError` when it is not a regular file."""
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise SourceError("not_a_file", f"{display_path(path)}: is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise SourceError("not_a_file", f"{display_path(path)}: not a regular file")
    return info


def _read(
    path: str | os.PathLike[str], max_bytes: int, info: os.stat_result | None = None
) -> bytes:
    """The file's bytes, at most ``max_bytes``; ``info`` is its stat if just taken."""
    try:
        if info is None:
            info = _regular_file(path)
        if info.st_size > max_bytes:
            raise _too_large(path, info.st_size, max_bytes)
        limit = max_bytes + 1
        # Asked for by its size (a read of max_bytes would first allocate
        # that much: 5 MiB for a 128-byte file), then on to the end in
        # chunks, in case it grew or the read came back short.
        with open(path, "rb", buffering=0) as handle:
            data = handle.read(min(info.st_size + 1, limit))
            while len(data) < limit and (more := handle.read(min(limit - len(data), _CHUNK))):
                data += more
    except OSError as exc:
        raise _source_error(path, exc) from None
    if len(data) > max_bytes:
        raise _too_large(path, len(data), max_bytes)
    return data


def _source_error(path: str | os.PathLike[str], exc: OSError) -> SourceError:
    name = display_path(path)
    if isinstance(exc, FileNotFoundError):
        # A dangling symlink also lands here: lstat succeeds, stat does not.
        if os.path.islink(path):
            return SourceError("broken_symlink", f"{name}: symlink target does not exist")
        return SourceError("not_found", f"{name}: no such file")
    if isinstance(exc, PermissionError):
        return SourceError("permission_denied", f"{name}: permission denied")
    if exc.errno == errno.ELOOP:
        return SourceError("symlink_loop", f"{name}: too many levels of symbolic links")
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        # Says nothing about the file: once descriptors are free again it
        # reads fine, so --resume --retry-failed takes it.
        error = SourceError(
            "too_many_open_files",
            f"{name}: too many open files (the {_FD_LIMIT[exc.errno]} limit); "
            "retryable, with --resume --retry-failed",
        )
        error.retryable = True
        return error
    return SourceError("unreadable", f"{name}: {exc.strerror or type(exc).__name__}")


def _too_large(path: str | os.PathLike[str], size: int, max_bytes: int) -> LocalCheckError:
    return LocalCheckError(
        4131000,
        f"MAX_UPLOAD_SIZE_EXCEEDED: {display_path(path)} is {size} bytes, "
        f"over the {max_bytes}-byte limit (not sent)",
    )
