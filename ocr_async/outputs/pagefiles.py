"""``--alto``, ``--hocr`` and ``--searchable-pdf``: files per page, written as records finish.

Each folder mirrors the inputs' paths as ``--text-dir`` does (the mapping
and the safe writing are :mod:`ocr_async.outputs.mirror`'s):

* ``--alto DIR``: ``DIR/<mirrored>.xml``, one ALTO v4 document per image or
  page (``scans/book.pdf#page=3`` gives ``DIR/scans/book.pdf.page3.xml``);
* ``--hocr DIR``: ``DIR/<mirrored>.hocr``, the same in hOCR;
* ``--searchable-pdf DIR``: ``DIR/<mirrored input>.pdf``, one PDF per input,
  all its pages: the image sent, with the words as invisible text.

They are fed by the batch (:class:`PageFiles` is a
:class:`~ocr_async.models.PageSink`): each successful image or page with its
parsed result and the image that was sent, whose size places the words
(and which, for a searchable PDF, is the page), before its record is
written. A record in the JSONL therefore means its files were written (or
warned about), and a run cut short redoes, when resumed, exactly the pages
whose files may be missing. A URL input has no file here: the API fetched
the image, so its size and pixels are unknown on this machine.

ALTO and hOCR describe the image at the size the input has: the boxes of an
image shrunk to fit the upload limit are scaled back to the original; a
PDF page is the page as rendered, at the DPI its record states.

**Searchable PDFs, page by page.** A multi-page input's pages finish in any
order and perhaps over several runs, so each is first written alone, whole
or not at all, as ``DIR/.parts/<mirrored input>/page-000003-of-000005.pdf``;
when all its pages are there (counting those of earlier runs), they are
joined into ``DIR/<mirrored input>.pdf`` and the parts removed. An input
with a failed page stays in parts until a resumed run brings that page
(``--resume``, and ``--retry-failed`` for a retryable failure); the summary
names it. At the end of each run the parts left are looked at again, so an
input whose last part was written just before a crash is joined then. A run
that is not resumed clears an input's parts from earlier runs when it
writes its first page, so that no stale page is joined in.

A file that cannot be written never stops the run: a warning names it, the
summary counts it, and the run's exit code is 1, as for ``--text-dir``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import functools
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from ocr_async.imaging import Transform, image_size
from ocr_async.models import FinishedPage, OcrResult
from ocr_async.outputs.mirror import (
    WrittenFiles,
    mirrored_parts,
    mirrored_path,
    open_folder,
    replace_in_folder,
    why_not,
    write_mirrored,
)
from ocr_async.wording import counted

__all__ = [
    "DIGITIZE_HINT",
    "PARTS_FOLDER",
    "AltoFolder",
    "HocrFolder",
    "PageFiles",
    "PageFormat",
    "PageImage",
    "SearchablePdfFolder",
    "digitize_support",
]

log = logging.getLogger(__name__)

#: How to get lxml, fpdf2 and pikepdf; part of the "not installed" message.
DIGITIZE_HINT: Final = "pip install 'ocr-async[digitize]'"
#: Where a searchable PDF's pages wait to be joined, inside its folder.
PARTS_FOLDER: Final = ".parts"
_PART = re.compile(r"page-(\d{6})-of-(\d{6})\.pdf")
# Lock stripes for inputs whose pages may finish at once: no lock per input
# to clean up, and two inputs rarely share one.
_STRIPES: Final = 64
_READ_PART: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_SCRATCH: Final = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def digitize_support(*, pdf: bool) -> str | None:
    """None when ALTO and hOCR (and with ``pdf`` searchable PDFs) can be written here.

    Else what is missing and how to install it: lxml, and for PDFs fpdf2,
    pikepdf, Pillow and a font with Hangul.
    """
    wanted = ["lxml"] + (["fpdf", "pikepdf", "PIL"] if pdf else [])
    for module in wanted:
        try:
            __import__(module)
        except ImportError:
            name = {"fpdf": "fpdf2", "PIL": "Pillow"}.get(module, module)
            return f"needs {name}, which is not installed: {DIGITIZE_HINT}"
    if pdf:
        from ocr_async.errors import ConfigurationError
        from ocr_async.outputs.searchable_pdf import find_font

        try:
            find_font()
        except ConfigurationError as exc:
            return f"needs {exc}"
    return None


@dataclass(frozen=True, slots=True)
class PageImage:
    """One recognized image or page, as the page formats need it."""

    #: The input's source (a PDF's pages share it) and this page's.
    input: str
    source: str
    #: 1-based, of ``pages``.
    number: int
    pages: int
    result: OcrResult
    #: The image sent (JPEG or PNG) and its size in pixels.
    image: bytes = field(repr=False)
    size: tuple[int, int]
    #: The resolution it was rendered at (a PDF page); None: unknown.
    dpi: int | None
    #: The input's own size, which ALTO and hOCR describe, and the factors
    #: that take the API's coordinates there (not 1 for a shrunk image).
    original_size: tuple[int, int]
    scale: tuple[float, float]

    @classmethod
    def of(cls, finished: FinishedPage) -> PageImage | None:
        """The page of a success whose image was sent; None otherwise (a failure, a URL)."""
        record, payload = finished.record, finished.payload
        if not record.ok or record.parsed is None or payload.image is None:
            return None
        size = image_size(payload.image)
        if size is None:  # a JPEG whose height comes later (DNL): not placed
            return None
        transform = payload.transform if isinstance(payload.transform, Transform) else None
        number, pages, dpi, original = 1, 1, None, size
        if transform is not None:
            number, pages = transform.page or 1, transform.pages or 1
            dpi = transform.dpi
            if transform.shrunk_from_bytes is not None and transform.original_size:
                original = transform.original_size
        scale = (original[0] / size[0], original[1] / size[1])
        return cls(
            finished.input,
            record.source,
            number,
            pages,
            record.parsed,
            payload.image,
            size,
            dpi,
            original,
            scale,
        )


class PageFormat:
    """One kind of page file in one folder, with its counts (a base; see the subclasses)."""

    #: What its files are called in the summary, and one of them in a warning.
    label = "page files"
    noun = "page file"

    def __init__(self, root: Path) -> None:
        self.root = root
        #: Files written, and files that could not be (each warned about).
        self.written = 0
        self.failed = 0
        self._counts = threading.Lock()

    def write(self, page: PageImage) -> None:
        """Write the file(s) of ``page``; warn and count, never raise (runs in a thread)."""
        try:
            why = self._write(page)
        except Exception as exc:  # a page we cannot render must not stop the run
            why = f"{type(exc).__name__}: {exc}"
        if why is not None:
            self.not_written(page.source, why)

    def not_written(self, source: str, why: str) -> None:
        """Count a file not written, and say why (thread-safe)."""
        with self._counts:
            self.failed += 1
        log.warning("%s of %s not written: %s", self.noun, source, why)

    def _write(self, page: PageImage) -> str | None:
        raise NotImplementedError

    def _wrote(self, count: int = 1) -> None:
        with self._counts:
            self.written += count

    def finish(self) -> None:
        """What is left to do once every page has come (runs in a thread)."""

    def describe(self) -> list[str]:
        """Lines for the summary."""
        line = f"{self.label}: {self.written} written to {self.root}"
        if self.failed:
            line += f", {self.failed} not written (see the warnings above; their records are fine)"
        return [line]


class _DocumentFolder(PageFormat):
    """One document per image or page, rewritten in place like ``--text-dir``'s texts."""

    suffix = ""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._written_files = WrittenFiles()

    def _document(self, page: PageImage) -> bytes:
        raise NotImplementedError

    def _write(self, page: PageImage) -> str | None:
        data = self._document(page)
        why = write_mirrored(self.root, page.source, data, self.suffix, self._written_files)
        if why is None:
            self._wrote()
            return None
        return f"{mirrored_path(self.root, page.source, self.suffix)}: {why}"


class AltoFolder(_DocumentFolder):
    """``--alto DIR``: ``DIR/<mirrored>.xml``, ALTO v4 (:mod:`ocr_async.outputs.alto`)."""

    label = "ALTO files"
    noun = "ALTO file"
    suffix = ".xml"

    def _document(self, page: PageImage) -> bytes:
        from ocr_async.outputs.alto import alto_document

        return alto_document(
            page.result,
            page.original_size,
            file_name=page.input,
            page_number=page.number,
            scale=page.scale,
        )


class HocrFolder(_DocumentFolder):
    """``--hocr DIR``: ``DIR/<mirrored>.hocr``, hOCR 1.2 (:mod:`ocr_async.outputs.hocr`)."""

    label = "hOCR files"
    noun = "hOCR file"
    suffix = ".hocr"

    def _document(self, page: PageImage) -> bytes:
        from ocr_async.outputs.hocr import hocr_document

        return hocr_document(
            page.result,
            page.original_size,
            file_name=page.input,
            page_number=page.number,
            dpi=page.dpi,
            scale=page.scale,
        )


class SearchablePdfFolder(PageFormat):
    """``--searchable-pdf DIR``: one PDF per input, its pages joined once all are there.

    ``resumed``: parts of earlier runs count (``--resume``); otherwise an
    input's old parts are cleared when its first page of this run comes.
    ``font``: the font of the text layer (default: NanumGothic, found by
    :func:`~ocr_async.outputs.searchable_pdf.find_font`).
    """

    label = "searchable PDFs"
    noun = "searchable PDF page"

    def __init__(self, root: Path, *, resumed: bool, font: Path | None = None) -> None:
        super().__init__(root)
        self._resumed = resumed
        self._font = font
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._cleared: set[str] = set()
        #: Joined at the end of the run from parts already complete.
        self.joined_late = 0
        #: Inputs still waiting for pages: (their parts folder, pages there, pages).
        self.waiting: list[tuple[Path, int, int]] = []

    def _write(self, page: PageImage) -> str | None:
        from ocr_async.outputs.searchable_pdf import SearchablePage, page_pdf

        data = page_pdf(SearchablePage(page.image, page.result, dpi=page.dpi), font=self._font)
        parts = _pdf_parts(page.input)
        try:
            if page.pages == 1:
                _replace_mirrored(self.root, parts, data)
                self._wrote()
                return None
            key = "/".join(parts)
            with self._stripes[hash(key) % _STRIPES]:
                if self._join_if_complete(parts, page, data):
                    self._wrote()
        except OSError as exc:
            return f"{_pdf_path(self.root, parts)}: {why_not(exc)}"
        return None

    def _join_if_complete(self, parts: list[str], page: PageImage, data: bytes) -> bool:
        """Write the page's part; join the input's parts when all are there. True: joined."""
        key = "/".join(parts)
        folder = open_folder(self.root, [PARTS_FOLDER, *parts])
        try:
            if not self._resumed and key not in self._cleared:
                self._cleared.add(key)
                for name, _ in _parts_in(folder):
                    os.unlink(name, dir_fd=folder)
            name = _part_name(page.number, page.pages)
            replace_in_folder(folder, name, functools.partial(_write_all, data=data))
            have = {number for _, (number, of) in _parts_in(folder) if of == page.pages}
            if have != set(range(1, page.pages + 1)):
                return False
            self._join(folder, parts, page.pages)
        finally:
            os.close(folder)
        return True

    def _join(self, folder: int, parts: list[str], pages: int) -> None:
        names = [_part_name(number, pages) for number in range(1, pages + 1)]
        openers = [functools.partial(_open_part, folder, name) for name in names]
        scratch = functools.partial(_scratch_in, folder)
        _replace_mirrored(self.root, parts, functools.partial(_joined, openers, scratch))
        for name, _ in _parts_in(folder):
            os.unlink(name, dir_fd=folder)
        _remove_empty(self.root, [PARTS_FOLDER, *parts])

    def finish(self) -> None:
        """Join what earlier runs (or a crash) left complete; note what still waits."""
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for relative, pages, have in _waiting_parts(self.root):
                parts = relative.split("/")
                if have == pages:
                    try:
                        folder = open_folder(self.root, [PARTS_FOLDER, *parts])
                        try:
                            self._join(folder, parts, pages)
                        finally:
                            os.close(folder)
                    except Exception as exc:  # as for a page: warned, counted
                        self.not_written(relative, f"its pages cannot be joined: {exc}")
                        continue
                    self.joined_late += 1
                    self._wrote()
                else:
                    self.waiting.append((self.root / PARTS_FOLDER / relative, have, pages))
            _remove_empty(self.root, [PARTS_FOLDER])

    def describe(self) -> list[str]:
        """Lines for the summary: written, joined late, and the inputs still waiting."""
        lines = super().describe()
        if self.joined_late:
            lines[0] += f" ({self.joined_late} joined from pages of earlier runs)"
        if self.waiting:
            shown = "; ".join(
                f"{path}: {have} of {pages}" for path, have, pages in self.waiting[:3]
            )
            if len(self.waiting) > 3:
                shown += f"; and {len(self.waiting) - 3} more"
            lines.append(
                f"{self.label}: {counted(len(self.waiting), 'input')} waiting for pages "
                f"({shown}); each is joined when a run with --resume brings the rest "
                "(--retry-failed for pages that failed with a retryable error)"
            )
        return lines


class PageFiles:
    """The :class:`~ocr_async.models.PageSink` of a run: every page format asked for.

    Each page is written by every format in one worker-thread call; a URL
    input is counted and left out (its image was never here).
    """

    def __init__(self, formats: Sequence[PageFormat]) -> None:
        self.formats = tuple(formats)
        #: Successful URL inputs, which have no page files.
        self.urls = 0
        # Making a PDF page decodes its image whole (a 300-dpi A4 page is
        # 26 MB of pixels): as many at once as there are cores, which is all
        # the CPU-bound work can use, not one per request in flight.
        self._writers = asyncio.Semaphore(os.cpu_count() or 2)

    async def write_page(self, page: FinishedPage) -> None:
        """Write the files of one finished page (successes only)."""
        if not page.record.ok:
            return
        image = PageImage.of(page)
        if image is None:
            if page.payload.url is not None:
                self.urls += 1
            else:
                for form in self.formats:
                    form.not_written(page.record.source, "the image's header gives no size")
            return
        async with self._writers:
            await asyncio.to_thread(self._write, image)

    def _write(self, image: PageImage) -> None:
        for form in self.formats:
            form.write(image)

    async def finish(self) -> None:
        """End of the run: searchable PDFs left complete by earlier runs are joined."""
        for form in self.formats:
            await asyncio.to_thread(form.finish)

    @property
    def failed(self) -> int:
        """Files not written, in all formats."""
        return sum(form.failed for form in self.formats)

    def describe(self) -> str:
        """Lines for the summary."""
        lines = [line for form in self.formats for line in form.describe()]
        if self.urls:
            lines.append(
                f"page files: none for {counted(self.urls, 'URL input')} "
                "(the API fetched the image; its size and pixels are not known here)"
            )
        return "\n".join(lines)


# --- the parts of a searchable PDF ----------------------------------------------------


def _pdf_parts(source: str) -> list[str]:
    """The mirrored path of an input's PDF, apart from the parts folder."""
    parts = mirrored_parts(source)
    if parts[0] == PARTS_FOLDER:
        # '%' is escaped in every mirrored name, so this spelling is free.
        parts[0] = "%2E" + PARTS_FOLDER[1:]
    return parts


def _pdf_path(root: Path, parts: list[str]) -> Path:
    return root.joinpath(*parts[:-1], parts[-1] + ".pdf")


def _part_name(number: int, pages: int) -> str:
    return f"page-{number:06d}-of-{pages:06d}.pdf"


def _parts_in(folder: int) -> list[tuple[str, tuple[int, int]]]:
    """The part files in a folder (by descriptor), with their (page, pages)."""
    found = []
    for name in os.listdir(folder):
        match = _PART.fullmatch(name)
        if match is not None:
            found.append((name, (int(match.group(1)), int(match.group(2)))))
    return found


def _write_all(handle: BinaryIO, *, data: bytes) -> None:
    handle.write(data)


def _open_part(folder: int, name: str) -> BinaryIO:
    return os.fdopen(os.open(name, _READ_PART, dir_fd=folder), "rb")


def _scratch_in(folder: int) -> BinaryIO:
    # A file of the parts folder's disk (not /tmp, which may be memory),
    # unlinked at once: it is gone when closed, even after a crash.
    name = f".round-{secrets.token_hex(4)}.tmp"
    descriptor = os.open(name, _SCRATCH, 0o600, dir_fd=folder)
    os.unlink(name, dir_fd=folder)
    return os.fdopen(descriptor, "w+b")


def _joined(
    openers: Sequence[Callable[[], BinaryIO]], scratch: Callable[[], BinaryIO], handle: BinaryIO
) -> None:
    from ocr_async.outputs.searchable_pdf import join_streams

    join_streams(openers, handle, scratch=scratch)


def _replace_mirrored(
    root: Path, parts: list[str], content: bytes | Callable[[BinaryIO], None]
) -> None:
    folder = open_folder(root, parts[:-1])
    try:
        write = (
            functools.partial(_write_all, data=content) if isinstance(content, bytes) else content
        )
        replace_in_folder(folder, parts[-1] + ".pdf", write)
    finally:
        os.close(folder)


def _remove_empty(root: Path, folders: list[str]) -> None:
    """Remove ``root/folders...`` and its parents up to ``root`` while they are empty."""
    for depth in range(len(folders), 0, -1):
        try:
            parent = open_folder(root, folders[: depth - 1])
        except OSError:
            return
        try:
            os.rmdir(folders[depth - 1], dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                log.debug("cannot remove %s: %s", folders[:depth], exc)
            return
        finally:
            os.close(parent)


def _waiting_parts(root: Path) -> list[tuple[str, int, int]]:
    """(folder below the parts folder, pages, parts there) of every input with parts."""
    if not (root / PARTS_FOLDER).is_dir() or (root / PARTS_FOLDER).is_symlink():
        return []
    found: list[tuple[str, int, int]] = []
    top = open_folder(root, [PARTS_FOLDER])
    try:
        for path, _, names, _ in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            parts = [p for n in names if (p := _PART.fullmatch(n)) is not None]
            if not parts:
                continue
            # The page count most parts agree on (another is a stale leftover).
            counts = collections.Counter(int(p.group(2)) for p in parts)
            pages = counts.most_common(1)[0][0]
            have = {int(p.group(1)) for p in parts if int(p.group(2)) == pages}
            complete = len(have & set(range(1, pages + 1)))
            relative = os.path.normpath(path)
            if relative != ".":  # parts of no input: not ours to join
                found.append((relative, pages, complete))
    finally:
        os.close(top)
    return found
