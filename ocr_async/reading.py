"""Read one image file from disk, refusing early what could never be sent.

The only place that opens image files. A file larger than the limit is
refused from its size alone, so a stray 4 GB scan is never read into memory.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import stat

from ocr_async.errors import LocalCheckError, SourceError

__all__ = ["display_path", "read_image_file", "source_path"]

# The escapes display_path writes: a doubled backslash, or a byte.
_ESCAPE = re.compile(r"(\\\\|\\x[0-9a-f]{2})")

_FD_LIMIT = {errno.EMFILE: "process's", errno.ENFILE: "system's"}


def display_path(path: str | os.PathLike[str]) -> str:
    r"""A path as text that is always valid UTF-8, and different for every path.

    Names that are not valid UTF-8 (undecodable bytes arrive from the OS as
    lone surrogates) are shown with ``\xNN`` escapes, so the record and the
    terminal stay readable and the same file always gets the same name. A
    backslash in a name is doubled, ``\\``, so that a name with the byte
    0xFF (``\xff``) and one that holds the four characters ``\xff``
    (``\\xff``) stay two inputs. :func:`source_path` reverses it.
    """
    raw = os.fsencode(path)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def source_path(source: str) -> str:
    r"""The path that :func:`display_path` showed as ``source``, ready to open.

    ``\\`` becomes one backslash and ``\xNN`` that byte (as the OS's
    surrogate escape when it is not valid UTF-8); a backslash that starts
    neither stays as it is.
    """
    if "\\" not in source:
        return source
    raw = bytearray()
    for number, part in enumerate(_ESCAPE.split(source)):
        if number % 2 == 0:
            raw += part.encode("utf-8", "surrogateescape")
        else:
            raw += b"\\" if part == "\\\\" else bytes([int(part[2:], 16)])
    return os.fsdecode(bytes(raw))


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


async def read_image_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The file's bytes, or a typed error.

    Raises :class:`SourceError` when the file cannot be read and
    :class:`LocalCheckError` (4131000) when it is larger than ``max_bytes``
    (checked on the size first, then on what was read, in case it grew).

    Stat, open, read and close run in one worker-thread call: one thread
    hop per file instead of four, which the event loop feels at hundreds of
    files a second (docs/benchmarks.md, 1).
    """
    return await asyncio.to_thread(_read_image_file, path, max_bytes)


def _read_image_file(path: str | os.PathLike[str], max_bytes: int) -> bytes:
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


def _too_large(path: str | os.PathLike[str], size: int, max_bytes: int) -> LocalCheckError:
    return LocalCheckError(
        4131000,
        f"MAX_UPLOAD_SIZE_EXCEEDED: {display_path(path)} is {size} bytes, "
        f"over the {max_bytes}-byte limit (not sent)",
    )
