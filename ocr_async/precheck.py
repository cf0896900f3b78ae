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
  ``--resume`` too). A PDF's pages will come in at this step
  (:mod:`ocr_async.pipeline.pdf_pages` names them the same way).
* **shrink** (``shrink``): an image over the limit is re-encoded to fit.
* **endpoint** (``endpoint="auto"``): chosen from the aspect ratio.
* **check**: :mod:`ocr_async.protocol` refuses, as the server would, what
  it would refuse (empty, not JPEG/PNG, a cut-off PNG, a body over the
  limit, a URL with a bad scheme or port).

What comes out is one :class:`~ocr_async.models.Payload` per image, ready
to send, or carrying the local error that stops it: nothing here raises
for a bad input, and nothing is sent for one. The bytes a payload carries
are the bytes that are sent, so their content hash (:func:`content_sha256`)
is taken at the end of this stage, in the same worker-thread call.

Reading, decoding and checking run in one worker-thread call per input (one
thread hop per file, which the event loop feels at hundreds of files a
second); decoding large images is bounded to a few at a time.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
from dataclasses import replace
from typing import Final

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

__all__ = ["Precheck", "content_sha256", "read_image_file"]

_FD_LIMIT: Final = {errno.EMFILE: "process's", errno.ENFILE: "system's"}
#: In-memory images up to this size are checked and hashed on the event loop
#: (some 35 us); larger ones in a worker thread.
_HASH_INLINE_LIMIT: Final = 64 * 1024


class Precheck:
    """The pre-check stage for one run: what ``options`` asks of every input.

    Reads ``endpoint``, ``convert``, ``shrink``, ``max_bytes`` and
    ``read_limit`` of the options. Safe to share between tasks.
    """

    __slots__ = ("_decoders", "_options")

    def __init__(self, options: Options) -> None:
        self._options = options
        # Decoding large images costs memory: only this many at once, whatever
        # the number of workers waiting on the network.
        self._decoders = asyncio.Semaphore(os.cpu_count() or 2)

    @property
    def options(self) -> Options:
        """The options the stage follows."""
        return self._options

    async def prepare(self, item: SourceItem, *, endpoint: Endpoint | None = None) -> list[Payload]:
        """The payloads for one input: one, or one per page; errors included, never raised.

        ``endpoint`` overrides the options' endpoint for this input. The
        item's ``id`` and ``metadata`` ride on every payload, for its records.
        """
        payloads = await self._prepare(item, endpoint)
        if item.id is None and item.metadata is None:
            return payloads
        return [replace(p, id=item.id, metadata=item.metadata) for p in payloads]

    async def _prepare(self, item: SourceItem, endpoint: Endpoint | None) -> list[Payload]:
        options = self._options
        chosen = endpoint or options.fixed_endpoint
        auto = endpoint is None and options.auto_endpoint
        image = item.image
        if item.error is not None or image is None:
            # Nothing to send (a bad manifest row): its error is its record.
            error = item.error or SourceError("no_image", f"{item.source}: nothing to send")
            return [Payload(item.source, chosen, error=error)]
        # A URL is fetched by the API, never by us: it goes as it is; with
        # --endpoint auto it goes to /general, its shape being unknown here.
        if isinstance(image, ImageUrl):
            return [_url_payload(item.source, image.url, chosen)]
        if not (auto or options.convert or options.shrink):
            if isinstance(image, ImageBytes):
                if len(image.data) <= _HASH_INLINE_LIMIT:
                    return [_checked(item.source, image.data, chosen, options.max_bytes)]
                # Hashing a large image would hold the event loop: a thread.
                return [
                    await asyncio.to_thread(
                        _checked, item.source, image.data, chosen, options.max_bytes
                    )
                ]
            return [
                await asyncio.to_thread(
                    _read_checked, item.source, image.path, chosen, options.max_bytes
                )
            ]
        limit = options.read_limit if (options.convert or options.shrink) else options.max_bytes
        async with self._decoders:
            return await asyncio.to_thread(self._transformed, item, chosen, auto, limit)

    def _transformed(
        self, item: SourceItem, endpoint: Endpoint, auto: bool, limit: int
    ) -> list[Payload]:
        # Runs in a worker thread: read, then every step, then the checks.
        image = item.image
        assert isinstance(image, ImageFile | ImageBytes)  # a URL or nothing never comes here
        try:
            data = image.data if isinstance(image, ImageBytes) else _read(image.path, limit)
            pages: list[ConvertedPage | None] = (
                list(convert_to_png(data)) if self._options.convert else [None]
            )
        except OcrError as exc:
            return [Payload(item.source, endpoint, error=exc)]
        return [self._page(item.source, data, page, endpoint, auto) for page in pages]

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
    that reads or converts the bytes, never on the event loop.
    """
    return hashlib.sha256(data).hexdigest()


def _read_checked(
    source: str, path: str | os.PathLike[str], endpoint: Endpoint, max_bytes: int
) -> Payload:
    try:
        data = _read(path, max_bytes)
    except OcrError as exc:
        return Payload(source, endpoint, error=exc)
    return _checked(source, data, endpoint, max_bytes)


async def read_image_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The file's bytes, or a typed error: the stage's reader, for other callers.

    Raises :class:`SourceError` when the file cannot be read and
    :class:`LocalCheckError` (4131000) when it is larger than ``max_bytes``
    (checked on the size first, then on what was read, in case it grew).
    Stat, open, read and close run in one worker-thread call.
    """
    return await asyncio.to_thread(_read, path, max_bytes)


def _read(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise SourceError("not_a_file", f"{display_path(path)}: is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise SourceError("not_a_file", f"{display_path(path)}: not a regular file")
        if info.st_size > max_bytes:
            raise _too_large(path, info.st_size, max_bytes)
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
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
