"""``--text-dir``: one ``.txt`` per recognized image, mirroring the input tree.

``scans/box1/p1.png`` becomes ``DIR/scans/box1/p1.png.txt``, a page
``scan.tiff#page=2`` becomes ``DIR/scan.tiff.page2.txt``, and a URL
``https://host/a/b.png`` becomes ``DIR/host/a/b.png.txt``: the mapping and
the writing are :mod:`ocr_async.outputs.mirror`'s, shared with the ALTO,
hOCR and searchable-PDF folders, so names stay apart and nothing is ever
written outside the folder (no symlink inside it is followed). Two sources
that still meet on one file are caught when the second is written: it is
not written, and a warning says so.

A text that cannot be written (a symlink or a file in the way, a name too
long, a full disk) never stops the run: its record is written as usual, a
warning names the problem, and :attr:`TextDirSink.failed` counts it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ocr_async.models import Record, RecordSink
from ocr_async.outputs.mirror import WrittenFiles, mirrored_path, write_mirrored

__all__ = ["TextDirSink", "text_path"]

log = logging.getLogger(__name__)


def text_path(root: Path, source: str) -> Path:
    """Where the text of ``source`` goes below ``root``."""
    return mirrored_path(root, source, ".txt")


def _write_text(root: Path, source: str, text: str, written: WrittenFiles) -> str | None:
    """Write the text of ``source``; None when written, else why not."""
    data = (text + "\n" if text else "").encode("utf-8")
    return write_mirrored(root, source, data, ".txt", written)


class TextDirSink:
    """Passes every record on to ``inner`` and writes each successful text below ``root``."""

    def __init__(self, inner: RecordSink, root: Path) -> None:
        self._inner = inner
        self._root = root
        self._written_files = WrittenFiles()
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
