"""``--text-dir``: one ``.txt`` per recognized image, mirroring the input tree.

A record's ``source`` is turned into a path inside the chosen folder:
``scans/box1/p1.png`` becomes ``DIR/scans/box1/p1.png.txt`` (the image's own
extension is kept, so ``p1.png`` and ``p1.jpg`` never share a file), a page
``scan.tiff#page=2`` becomes ``DIR/scan.tiff.page2.txt``, and a URL
``https://host/a/b.png`` becomes ``DIR/host/a/b.png.txt``.

Whatever the source name, nothing is written outside the folder: a leading
``/`` is dropped, ``..`` components are replaced, and the final location is
checked after resolving symlinks; a path that would still land outside is
refused and logged, never written.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ocr_async.models import Record
from ocr_async.sink import RecordSink
from ocr_async.sources import is_url

__all__ = ["TextDirSink", "text_path"]

log = logging.getLogger(__name__)

_PAGE = re.compile(r"#page=(\d+)$")
# Characters that mean something to a file system, or to nobody: replaced.
_UNSAFE = re.compile(r'[\x00-\x1f<>:"\\|?*]')


def _safe_part(part: str) -> str:
    part = _UNSAFE.sub("_", part).strip()
    if part in ("", ".", ".."):
        return "_" if part != ".." else "__"
    return part


def _parts(source: str) -> list[str]:
    if is_url(source):
        url = urlsplit(source)
        return [url.hostname or "_", *unquote(url.path).split("/")]
    # Only "/" separates: a backslash is part of a name on POSIX, and the
    # \xNN escapes of undecodable names must stay in one piece.
    return source.split("/")


def text_path(root: Path, source: str) -> Path:
    """Where the text of ``source`` goes below ``root`` (not checked for symlinks)."""
    page = _PAGE.search(source)
    if page is not None:
        source = source[: page.start()]
    parts = [_safe_part(p) for p in _parts(source) if p not in ("", ".")]
    if not parts:
        parts = ["_"]
    name = parts[-1] + (f".page{page.group(1)}" if page else "") + ".txt"
    return root.joinpath(*parts[:-1], name)


def _inside(root: Path, path: Path) -> bool:
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return os.path.commonpath([real_root, real]) == real_root


def _write_text(root: Path, source: str, text: str) -> bool:
    path = text_path(root, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkdir followed any symlink already inside root: check where it led.
    if not _inside(root, path):
        log.warning("not writing the text of %s: %s is outside %s", source, path, root)
        return False
    path.write_text(text + "\n" if text else "", encoding="utf-8")
    return True


class TextDirSink:
    """Passes every record on to ``inner`` and writes each successful text below ``root``."""

    def __init__(self, inner: RecordSink, root: Path) -> None:
        self._inner = inner
        self._root = root
        self.written = 0

    async def write(self, record: Record) -> None:
        """Write the record, then its text (successes only: a failure has none)."""
        await self._inner.write(record)
        if (
            record.ok
            and record.text is not None
            and await asyncio.to_thread(_write_text, self._root, record.source, record.text)
        ):
            self.written += 1
