r"""``--text-dir``: one ``.txt`` per recognized image, mirroring the input tree.

A record's ``source`` is turned into a path inside the chosen folder:
``scans/box1/p1.png`` becomes ``DIR/scans/box1/p1.png.txt`` (the image's own
extension is kept, so ``p1.png`` and ``p1.jpg`` never share a file), a page
``scan.tiff#page=2`` becomes ``DIR/scan.tiff.page2.txt``, and a URL
``https://host/a/b.png`` becomes ``DIR/host/a/b.png.txt``.

Names stay apart: a character that means something to some file system
(``<>:"\|?*``, control characters) is written ``%XX``, and so is ``%``
itself, so ``a?b.png`` (``a%3Fb.png.txt``) and ``a_b.png`` never share a
file; so are ``.`` and ``..`` as whole names, and spaces and dots at the end
of a name, which Windows file systems drop. Sources that still meet on one
file (``./a.png`` and ``a.png``, a URL and a path alike, two names that
differ only in case on a disk that ignores case) are caught when the second
is written: the file is the same one, by device and inode, as a text written
earlier in the run. The second text is then not written, and a warning says
so.

Nothing is written outside the folder: a leading ``/`` is dropped, and the
path below DIR is walked one folder at a time with ``O_NOFOLLOW``, so a
symlink inside DIR is never followed, neither to create folders nor to
write. A text that cannot be written (a symlink or a file in the way, a name
too long, a full disk) never stops the run: its record is written as usual,
a warning names the problem, and :attr:`TextDirSink.failed` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import stat
import threading
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ocr_async.inputs import is_url
from ocr_async.models import Record, RecordSink
from ocr_async.pipeline.sourceset import SourceSet

__all__ = ["TextDirSink", "text_path"]

log = logging.getLogger(__name__)

_PAGE = re.compile(r"#page=(\d+)$")
# Meaningful to some file system, or to nobody; and the escape itself.
_UNSAFE = re.compile(r'[\x00-\x1f<>:"\\|?*%]|[ .]+$')
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO named like a text file fails at once instead of waiting.
_TEXT_FILE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
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


def _relative_parts(source: str) -> list[str]:
    page = _PAGE.search(source)
    if page is not None:
        source = source[: page.start()]
    parts = [p for p in _parts(source) if p not in ("", ".")] or ["_"]
    name = parts[-1] + (f".page{page.group(1)}" if page else "")
    return [_safe_part(p) for p in [*parts[:-1], name]]


def text_path(root: Path, source: str) -> Path:
    """Where the text of ``source`` goes below ``root``."""
    parts = _relative_parts(source)
    return root.joinpath(*parts[:-1], parts[-1] + ".txt")


class _WrittenFiles:
    """The text files written in this run, by (device, inode); thread-safe."""

    def __init__(self) -> None:
        self._files = SourceSet()
        self._lock = threading.Lock()

    def add(self, info: os.stat_result) -> bool:
        with self._lock:
            return self._files.add(f"{info.st_dev}:{info.st_ino}")


def _open_folder(root: Path, folders: list[str]) -> int:
    """A descriptor of ``root/folders...``, created as needed, no symlink followed below root."""
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


def _write_text(root: Path, source: str, text: str, written: _WrittenFiles) -> str | None:
    """Write the text of ``source``; None when written, else why not."""
    parts = _relative_parts(source)
    data = (text + "\n" if text else "").encode("utf-8")
    try:
        root.mkdir(parents=True, exist_ok=True)
        directory = _open_folder(root, parts[:-1])
        try:
            descriptor = os.open(parts[-1] + ".txt", _TEXT_FILE, 0o666, dir_fd=directory)
        finally:
            os.close(directory)
        with os.fdopen(descriptor, "wb") as handle:
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode):
                return "something that is not a regular file is in the way of the file"
            if not written.add(info):
                return "another input's text was written to this file in this run"
            handle.truncate(0)  # only now: a refused write leaves the old text
            handle.write(data)
    except OSError as exc:
        return _WHY.get(exc.errno or 0, exc.strerror or type(exc).__name__)
    return None


class TextDirSink:
    """Passes every record on to ``inner`` and writes each successful text below ``root``."""

    def __init__(self, inner: RecordSink, root: Path) -> None:
        self._inner = inner
        self._root = root
        self._written_files = _WrittenFiles()
        #: Text files written.
        self.written = 0
        #: Texts that could not be written (each was warned about).
        self.failed = 0

    async def write(self, record: Record) -> None:
        """Write the record, then its text (successes only: a failure has none)."""
        await self._inner.write(record)
        if not record.ok or record.text is None:
            return
        why = await asyncio.to_thread(
            _write_text, self._root, record.source, record.text, self._written_files
        )
        if why is None:
            self.written += 1
        else:
            self.failed += 1
            log.warning(
                "text of %s not written to %s: %s",
                record.source,
                text_path(self._root, record.source),
                why,
            )

    def describe(self) -> str:
        """One line for the summary."""
        line = f"text files: {self.written} written to {self._root}"
        if self.failed:
            line += f", {self.failed} not written (see the warnings above; their records are fine)"
        return line
