"""Where records go: a JSONL file (or stdout), one line per input, as they finish.

Lines are written by one writer task that takes everything finished since
its last write and writes and flushes it in one go (group commit): a crash
loses at most the records still queued, never a written one, and a fast run
does not pay one thread hop per line.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, Self

import aiofiles

from ocr_async.models import Record
from ocr_async.sanitize import strict_json

__all__ = ["JsonlSink", "OutputExistsError", "RecordSink", "encode_record"]

# Records whose text is longer than this are encoded in a worker thread. A
# record's JSON is about 15 times its text (each word carries its box) and
# encodes at about 50 MB/s: up to here that is 3 ms on the event loop; the
# record of a 64 MB answer would hold it for over a second.
_ENCODE_INLINE_TEXT = 10_000


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for."""


class _AsyncBinaryFile(Protocol):
    async def write(self, data: bytes, /) -> int: ...
    async def flush(self) -> None: ...
    async def close(self) -> None: ...


class RecordSink(Protocol):
    """Anything that takes finished records."""

    async def write(self, record: Record) -> None:
        """Take one record."""
        ...


def encode_record(record: Record | Mapping[str, Any]) -> bytes:
    """One JSONL line: strict JSON (RFC 8259), UTF-8, newline-terminated.

    Non-ASCII text stays readable. A value that strict JSON cannot hold (NaN
    or Infinity, a lone surrogate, from a server or a mis-encoded name) is
    replaced as :func:`~ocr_async.sanitize.strict_json` says (null, U+FFFD)
    rather than written as Python would, or failing the record.
    """
    document = record.to_json() if isinstance(record, Record) else record
    try:
        return _line(document)
    except ValueError:  # a non-finite number, or a lone surrogate (UnicodeEncodeError)
        # Walked only then: nearly every record is written in one C call.
        return _line(strict_json(document))


def _line(document: Mapping[str, Any]) -> bytes:
    line = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (line + "\n").encode("utf-8")


class JsonlSink:
    """Streams records to a JSONL file, or to stdout when the path is ``-``.

    Refuses to replace an existing file unless ``overwrite`` is set (or
    ``append`` is, which adds to it). Use as an async context manager, or
    call :meth:`open` and :meth:`close`.
    """

    def __init__(self, path: str, *, overwrite: bool = False, append: bool = False) -> None:
        self.path = path
        self._overwrite = overwrite
        self._append = append
        self._handle: _AsyncBinaryFile | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.written = 0

    async def open(self) -> None:
        """Open the output; raises :class:`OutputExistsError` or ``OSError``."""
        if self.path == "-":
            self._handle = aiofiles.stdout_bytes
        else:
            # 'x' makes the existence check and the creation one atomic step.
            mode: Literal["ab", "wb", "xb"] = (
                "ab" if self._append else "wb" if self._overwrite else "xb"
            )
            try:
                self._handle = await aiofiles.open(self.path, mode)
            except FileExistsError:
                raise OutputExistsError(
                    f"{self.path} already exists: pass --overwrite to replace it"
                ) from None
        self._writer = asyncio.create_task(self._write_loop(), name="jsonl-writer")

    async def write(self, record: Record) -> None:
        """Queue one record for writing; raises if the writer has failed."""
        if self._writer is None:
            raise RuntimeError("JsonlSink is not open")
        if self._writer.done():
            self._writer.result()  # re-raises the writer's error (disk full, ...)
            raise RuntimeError("JsonlSink is closed")
        if record.text is not None and len(record.text) > _ENCODE_INLINE_TEXT:
            line = await asyncio.to_thread(encode_record, record)
        else:
            line = encode_record(record)
        self._queue.put_nowait(line)

    async def close(self) -> None:
        """Write everything queued, flush and close. Safe to call twice."""
        if self._writer is not None:
            self._queue.put_nowait(None)
            writer, self._writer = self._writer, None
            await writer
        if self._handle is not None and self.path != "-":
            await self._handle.close()
        self._handle = None

    async def _write_loop(self) -> None:
        assert self._handle is not None
        while True:
            batch: list[bytes] = []
            closing = False
            item = await self._queue.get()
            while True:
                if item is None:
                    closing = True
                else:
                    batch.append(item)
                if self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._handle.write(b"".join(batch))
                await self._handle.flush()
                self.written += len(batch)
            if closing:
                return

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
