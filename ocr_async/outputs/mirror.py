r"""A file per record below an output folder, mirroring its source, never outside the folder.

``--text-dir``, ``--alto``, ``--hocr`` and ``--searchable-pdf`` all write
one file per input or page into a folder that mirrors the inputs' paths;
this module is the one mapping and the one safe way of writing, shared by
all of them.

The mapping: a record's ``source`` becomes a path inside the folder, with
the output's suffix added: ``scans/box1/p1.png`` becomes
``DIR/scans/box1/p1.png.txt`` (the image's own extension is kept, so
``p1.png`` and ``p1.jpg`` never share a file), a page ``scan.tiff#page=2``
becomes ``DIR/scan.tiff.page2.txt``, and a URL ``https://host/a/b.png``
becomes ``DIR/host/a/b.png.txt``.

Names stay apart: a character that means something to some file system
(``<>:"\|?*``, control characters) is written ``%XX``, and so is ``%``
itself, so ``a?b.png`` (``a%3Fb.png.txt``) and ``a_b.png`` never share a
file; so are ``.`` and ``..`` as whole names, and spaces and dots at the end
of a name, which Windows file systems drop. Sources that still meet on one
file (``./a.png`` and ``a.png``, a URL and a path alike, two names that
differ only in case on a disk that ignores case) are caught when the second
is written (:func:`write_mirrored`): the file is the same one, by device and
inode, as one written earlier in the run. The second is then not written.

Nothing is written outside the folder: a leading ``/`` is dropped, and the
path below it is walked one folder at a time with ``O_NOFOLLOW``
(:func:`open_folder`), so a symlink inside it is never followed, neither to
create folders nor to write. Writers get a reason back instead of an
exception (:func:`why_not`): a file that cannot be written never stops a run.

Two ways of writing: :func:`write_mirrored` rewrites a file in place (and
refuses a symlink or anything but a regular file in its way);
:func:`replace_in_folder` writes a new file beside the old name and renames
it over, so that a reader (or a count of the files present) never sees half
a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

from ocr_async.inputs import is_url
from ocr_async.pipeline.sourceset import SourceSet

__all__ = [
    "WrittenFiles",
    "mirrored_parts",
    "mirrored_path",
    "open_folder",
    "replace_in_folder",
    "why_not",
    "write_mirrored",
]

_T = TypeVar("_T")

_PAGE = re.compile(r"#page=(\d+)$")
# Meaningful to some file system, or to nobody; and the escape itself.
_UNSAFE = re.compile(r'[\x00-\x1f<>:"\\|?*%]|[ .]+$')
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO named like the file fails at once instead of waiting.
_FILE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WHY: dict[int, str] = {
    errno.ELOOP: "a symlink is in the way (never followed inside the folder)",
    errno.ENOTDIR: "a file is in the way of a folder",
    errno.EISDIR: "a folder is in the way of the file",
    errno.ENAMETOOLONG: "the name is too long for the file system",
    errno.ENXIO: "a pipe or device is in the way of the file",
}


def _escape(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8"))


def _safe_part(part: str) -> str:
    if part in (".", ".."):
        return part.replace(".", "%2E")
    return _UNSAFE.sub(_escape, part)


def _parts(source: str) -> list[str]:
    if is_url(source):
        url = urlsplit(source)
        return [url.hostname or "_", *unquote(url.path).split("/")]
    # Only "/" separates: a backslash is part of a name on POSIX (and the
    # \\ and \xNN escapes of a source are escaped again, never split).
    return source.split("/")


def mirrored_parts(source: str) -> list[str]:
    """The folders and the file name (without a suffix) ``source`` maps to, each safe."""
    page = _PAGE.search(source)
    if page is not None:
        source = source[: page.start()]
    parts = [p for p in _parts(source) if p not in ("", ".")] or ["_"]
    name = parts[-1] + (f".page{page.group(1)}" if page else "")
    return [_safe_part(p) for p in [*parts[:-1], name]]


def mirrored_path(root: Path, source: str, suffix: str) -> Path:
    """Where the file of ``source`` with ``suffix`` (``.txt``, ``.xml`` ...) goes below ``root``."""
    parts = mirrored_parts(source)
    return root.joinpath(*parts[:-1], parts[-1] + suffix)


class WrittenFiles:
    """The files written in this run, by (device, inode); thread-safe."""

    def __init__(self) -> None:
        self._files = SourceSet()
        self._lock = threading.Lock()

    def add(self, info: os.stat_result) -> bool:
        """Remember a file; False when it was written earlier in the run."""
        with self._lock:
            return self._files.add(f"{info.st_dev}:{info.st_ino}")


def open_folder(root: Path, folders: list[str]) -> int:
    """A descriptor of ``root/folders...``, created as needed, no symlink followed below root."""
    root.mkdir(parents=True, exist_ok=True)
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for folder in folders:
            with contextlib.suppress(FileExistsError):
                os.mkdir(folder, dir_fd=directory)
            inner = os.open(folder, _DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = inner
    except BaseException:
        os.close(directory)
        raise
    return directory


def why_not(exc: OSError) -> str:
    """Why a file could not be written, in words."""
    return _WHY.get(exc.errno or 0, exc.strerror or type(exc).__name__)


def write_mirrored(
    root: Path, source: str, data: bytes, suffix: str, written: WrittenFiles
) -> str | None:
    """Write the file of ``source`` in place; None when written, else why not.

    A file that another source wrote earlier in the run (by ``written``)
    is left as it is.
    """
    parts = mirrored_parts(source)
    try:
        directory = open_folder(root, parts[:-1])
        try:
            descriptor = os.open(parts[-1] + suffix, _FILE, 0o666, dir_fd=directory)
        finally:
            os.close(directory)
        with os.fdopen(descriptor, "wb") as handle:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                return "something that is not a regular file is in the way of the file"
            if not written.add(info):
                return "another input's file was written to this name earlier in this run"
            handle.truncate(0)  # only now: a refused write leaves the old file
            handle.write(data)
    except OSError as exc:
        return why_not(exc)
    return None


def replace_in_folder(directory: int, name: str, write: Callable[[BinaryIO], _T]) -> _T:
    """Write ``name`` in the folder ``directory`` whole or not at all; what ``write`` returns.

    ``write`` fills a new hidden file beside it, which is then renamed over
    ``name`` (a symlink there is replaced, never followed). On any failure
    the new file is removed and the old one, if any, is left as it was.
    Raises what ``write`` or the file system raises.
    """
    temporary = f".{name}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, _NEW_FILE, 0o666, dir_fd=directory)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            result = write(handle)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
    return result
