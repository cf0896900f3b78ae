"""Where records go: a JSONL file (or stdout), one line per input, as they finish.

Lines are written by one writer task that takes everything finished since
its last write and writes and flushes it in one go (group commit): a crash
loses at most the records still queued, never a written one, and a fast run
does not pay one thread hop per line. Writing and flushing a batch is one
call in a worker thread, not one each: a hop costs the event loop some
20-50 microseconds on this project's 2-core test machine, as much as
encoding a record (docs/benchmarks.md, "Client overhead").

One run at a time: a :class:`JsonlSink` holds an :class:`OutputLock` from
open to close, so a second run on the same output stops at once instead of
interleaving lines with the first (see :class:`OutputLock`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from ocr_async.models import Record
from ocr_async.sanitize import strict_json

__all__ = [
    "JsonlSink",
    "OutputExistsError",
    "OutputLock",
    "OutputLockError",
    "encode_record",
]

# What a lock file holds; anything else is somebody else's file, left alone.
_LOCK_CONTENT = re.compile(rb"(ocr-async pid \d+\n)?")

# Records whose text is longer than this are encoded in a worker thread. A
# record's JSON is about 15 times its text (each word carries its box) and
# encodes at about 50 MB/s: up to here that is 3 ms on the event loop; the
# record of a 64 MB answer would hold it for over a second.
_ENCODE_INLINE_TEXT = 10_000


class OutputExistsError(FileExistsError):
    """The output file exists and overwriting was not asked for."""


class OutputLockError(OSError):
    """The output's lock could not be taken: another run holds it, or its lock file is not ours."""


class OutputLock:
    """An exclusive lock on an output file for a whole run.

    The lock is ``flock(2)`` on a file beside the output, ``OUT.lock``,
    rather than on the output itself, because ``--resume --retry-failed``
    replaces the output by a rename: a lock on the old file would not keep
    a second run off the new one. The lock file sits beside the file the
    output names once symlinks are resolved, so two spellings of one output
    meet on one lock. It holds the holder's process id, for the message a
    second run prints, and is removed on release. The kernel drops the lock
    when its process dies, even by ``kill -9``; the file such a death leaves
    behind is taken over by the next run.

    Stdout (``-``) and an output that exists but is not a regular file (a
    pipe, ``/dev/stdout``) take no lock: there is nothing to keep apart.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        #: The lock file, while the lock is held.
        self.lock_path: str | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock at once or raise :class:`OutputLockError`; no-op if held or not needed.

        Blocking file I/O, but it never waits for the lock. Raises ``OSError``
        when the lock file cannot be created.
        """
        if self._fd is not None or self.path == "-":
            return
        target = os.path.realpath(self.path)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISREG(os.stat(target).st_mode):
                return
        if not os.path.isdir(os.path.dirname(target)):
            return  # no folder to write in: opening the output says so
        lock_path = f"{target}.lock"
        # A holder releasing at this very moment removes the file we just
        # opened: then the lock taken is on a file nobody else will see, so
        # open the path again.
        for _ in range(10):
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                self._lock(fd, lock_path)
            except BaseException:
                os.close(fd)
                raise
            if _names(lock_path, fd):
                break
            os.close(fd)
        else:
            raise OutputLockError(
                errno.EAGAIN, f"{self.path}: its lock file {lock_path} keeps changing"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"ocr-async pid {os.getpid()}\n".encode())
        self._fd, self.lock_path = fd, lock_path

    def _lock(self, fd: int, lock_path: str) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            content = os.pread(fd, 64, 0)
            holder = re.search(rb"pid (\d+)", content)
            by = f" (pid {holder.group(1).decode()})" if holder else ""
            raise OutputLockError(
                errno.EBUSY,
                f"{self.path} is in use by another ocr-async run{by}: wait for it to "
                f"finish, or write to another output (lock file {lock_path})",
            ) from None
        if not _LOCK_CONTENT.fullmatch(os.pread(fd, 64, 0)):
            raise OutputLockError(
                errno.EEXIST,
                f"{lock_path} exists and is not an ocr-async lock file: "
                f"move it away to write {self.path}",
            )

    def release(self) -> None:
        """Remove the lock file and drop the lock. Safe to call when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Removed while still held, and only if it is still ours.
            if self.lock_path is not None and _names(self.lock_path, fd):
                os.unlink(self.lock_path)
        except OSError:
            pass  # a lock file left behind is harmless: the next run takes it over
        finally:
            os.close(fd)  # drops the lock
            self.lock_path = None


def _names(path: str, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (opened.st_dev, opened.st_ino)


class _BinaryFile(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


def _write_and_flush(handle: _BinaryFile, data: bytes) -> None:
    # Runs in a worker thread: one hop for the whole batch.
    handle.write(data)
    handle.flush()


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
    ``append`` is, which adds to it). Holds the output's :class:`OutputLock`
    from :meth:`open` to :meth:`close`; pass ``lock`` when it was taken
    earlier (to read the file before opening it for writing), and the sink
    releases it on close. Use as an async context manager, or call
    :meth:`open` and :meth:`close`.
    """

    def __init__(
        self,
        path: str,
        *,
        overwrite: bool = False,
        append: bool = False,
        lock: OutputLock | None = None,
    ) -> None:
        self.path = path
        self._overwrite = overwrite
        self._append = append
        self._lock = lock if lock is not None else OutputLock(path)
        self._handle: _BinaryFile | None = None
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self.written = 0

    async def open(self) -> None:
        """Lock and open the output.

        Raises :class:`OutputLockError` when another run holds the output,
        :class:`OutputExistsError`, or ``OSError``.
        """
        await asyncio.to_thread(self._lock.acquire)
        try:
            self._handle = await self._open_handle()
        except BaseException:
            self._lock.release()
            raise
        self._writer = asyncio.create_task(self._write_loop(), name="jsonl-writer")

    async def _open_handle(self) -> _BinaryFile:
        if self.path == "-":
            return sys.stdout.buffer
        # 'x' makes the existence check and the creation one atomic step.
        mode: Literal["ab", "wb", "xb"] = (
            "ab" if self._append else "wb" if self._overwrite else "xb"
        )
        try:
            return await asyncio.to_thread(open, self.path, mode)
        except FileExistsError:
            raise OutputExistsError(
                f"{self.path} already exists: pass --overwrite to replace it"
            ) from None

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
        """Write everything queued, flush, close and unlock. Safe to call twice."""
        try:
            if self._writer is not None:
                self._queue.put_nowait(None)
                writer, self._writer = self._writer, None
                await writer
        finally:
            try:
                if self._handle is not None and self.path != "-":
                    await asyncio.to_thread(self._handle.close)
            finally:
                self._handle = None
                self._lock.release()

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
                await asyncio.to_thread(_write_and_flush, self._handle, b"".join(batch))
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
