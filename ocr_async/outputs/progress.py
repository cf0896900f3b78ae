"""The progress bar on stderr: shown only when stderr is a terminal.

stdout stays clean for pipes (``--output -``), and a log file never fills
with carriage returns.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from typing import TextIO

from tqdm import tqdm

from ocr_async.inputs import is_url
from ocr_async.models import Record
from ocr_async.pdfpages import PdfPages, is_pdf_name, pdf_support
from ocr_async.pipeline.sources import WALKED_EXTENSIONS, walk_folder

__all__ = ["Progress", "count_images"]


def count_images(inputs: Iterable[str], extensions: frozenset[str] = WALKED_EXTENSIONS) -> int:
    """How many records a run over these names will write (for the ETA).

    Walks the folders as the run does (:func:`~ocr_async.pipeline.sources.walk_folder`,
    the same symlink rules), so the total is what the run takes. A PDF
    counts its pages (read from its cross-reference table, nothing
    rendered); a multi-page TIFF counts once. Blocking: run it in a thread.
    """
    total = 0
    for given in inputs:
        if is_url(given) or not os.path.isdir(given):
            total += _records_of(given)
            continue
        for found in walk_folder(given, extensions):
            total += sum(_records_of(entry.path) for entry in found if entry.skipped is None)
    return total


def _records_of(path: str) -> int:
    if is_url(path) or not is_pdf_name(path) or pdf_support() is not None:
        return 1
    try:
        with PdfPages(path) as pdf:
            return pdf.page_count
    except Exception:  # the run gives it one error record
        return 1


class Progress:
    """A rate-and-ETA bar fed one record at a time."""

    def __init__(self, *, enabled: bool, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        self._bar = tqdm(
            total=None,
            unit="img",
            file=stream,
            disable=not enabled,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self._failed = 0
        self._closed = False
        self._counter: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Whether anything is drawn."""
        return not self._bar.disable

    def count_in_background(
        self, inputs: list[str], extensions: frozenset[str] = WALKED_EXTENSIONS
    ) -> None:
        """Learn the total from a walk in a thread; until then there is no ETA."""
        if self.enabled:
            self._counter = asyncio.create_task(self._count(inputs, extensions))

    async def _count(self, inputs: list[str], extensions: frozenset[str]) -> None:
        total = await asyncio.to_thread(count_images, inputs, extensions)
        self._bar.total = total
        self._bar.refresh()

    def update(self, record: Record) -> None:
        """Count one finished record (ignored once the bar is closed)."""
        if self._closed:
            return
        if not record.ok:
            self._failed += 1
            self._bar.set_postfix(failed=self._failed, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        """Remove the bar (the summary follows it). Safe to call twice."""
        self._closed = True
        if self._counter is not None:
            self._counter.cancel()
        self._bar.close()
