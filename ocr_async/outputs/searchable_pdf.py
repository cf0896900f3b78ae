"""Searchable PDF: each page the original image, the words invisible text on it.

A page is the scanned or photographed image at its physical size, with
every recognized word written over it as invisible text (PDF text render
mode 3) in its box, so that a viewer can search, select and copy it and
``pdftotext`` or PDFium extract it, Hangul included.

Two libraries, each for what it does well:

* fpdf2 writes one page: it embeds a JPEG as it is, subsets the TrueType
  font to the glyphs used and writes the ``ToUnicode`` map without which
  extracted Hangul would be glyph numbers, and has render mode 3 and
  horizontal scaling built in. It keeps a document in memory until the end,
  so it is given one page at a time.
* qpdf joins the one-page PDFs into one file. Its command line (Debian
  ``qpdf``) copies each page's image data from the page's file while it
  writes the result: joining 200 scanned pages (1 GB) takes 50 MB. Without
  it, pikepdf (the same library, which the ``digitize`` extra brings) does
  the join, but copies every foreign page's data into memory as it adds
  the page (pikepdf asks qpdf for an immediate copy), so it holds the whole
  output until it is written: 1.1 GB for the same 200 pages.

:func:`page_pdf` makes one page (call it per record, as records arrive; a
page on disk survives an interrupted run), :func:`join_pages` joins pages
in order, and :func:`write_searchable_pdf` does both for a sequence of
pages, holding one page image at a time.

Placement: each line's words share one baseline and one font size, taken
from the line's box, so text extraction keeps them on one line; each word
is scaled horizontally to fill its own box, and followed by a space (but the
last of a line), so that extraction separates two words even where the gap
between them is too small to be taken for one. A word without a box cannot
be placed and is left out.

The font must have Hangul: NanumGothic (Debian ``fonts-nanum``) is looked
for in the usual places, or pass ``font=``; DejaVu Sans, when installed,
covers the symbols NanumGothic lacks.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from ocr_async import __version__
from ocr_async.errors import ConfigurationError
from ocr_async.models import OcrResult
from ocr_async.outputs.layout import PageLayout, PlacedLine

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = [
    "DEFAULT_DPI",
    "FALLBACK_FONTS",
    "HANGUL_FONTS",
    "QPDF",
    "PageOpener",
    "SearchablePage",
    "find_font",
    "join_pages",
    "join_streams",
    "page_pdf",
    "write_searchable_pdf",
]

#: The resolution assumed for an image that does not state its own.
DEFAULT_DPI: Final = 300.0
#: Fonts with Hangul and Latin, looked for in this order (Debian's fonts-nanum).
HANGUL_FONTS: Final = (
    "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
    "/usr/share/fonts/nanum/NanumGothic.ttf",
    "/usr/local/share/fonts/NanumGothic.ttf",
)
#: Used, when installed, for characters the main font lacks.
FALLBACK_FONTS: Final = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",)
#: Part of a line's height below its baseline (Hangul and Latin fonts have
#: a descent of about a fifth of their size).
_DESCENT: Final = 0.2
#: The qpdf command line (Debian ``qpdf``), which joins pages in flat memory;
#: without it pikepdf (the same library) joins them holding the whole output.
QPDF: Final = "qpdf"
#: How many page files are open at once when joining (each stays open until
#: the result is written); more pages are joined in rounds.
_MAX_OPEN: Final = 200
_POINTS_PER_INCH: Final = 72.0


class _SubsetNoise(logging.Filter):
    """fontTools warns of every hinting table it drops while subsetting; that is expected."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NOT subset" not in record.getMessage()


logging.getLogger("fontTools.subset").addFilter(_SubsetNoise())


@dataclass(frozen=True, slots=True)
class SearchablePage:
    """One page: the image (JPEG or PNG bytes) and what was recognized on it."""

    image: bytes = field(repr=False)
    result: OcrResult
    #: The image's resolution, which sets the page's physical size. None:
    #: what the image states (PNG pHYs, JPEG density), else :data:`DEFAULT_DPI`.
    dpi: float | None = None
    #: Maps the API's coordinates onto this image (see
    #: :meth:`PageLayout.from_result`): not (1, 1) when the image sent was
    #: a shrunk copy of this one.
    scale: tuple[float, float] = (1.0, 1.0)


def find_font() -> Path:
    """The first of :data:`HANGUL_FONTS` that exists.

    Raises :class:`ConfigurationError` naming the Debian package when none does.
    """
    for candidate in HANGUL_FONTS:
        if os.path.isfile(candidate):
            return Path(candidate)
    raise ConfigurationError(
        "no font with Hangul for the searchable PDF's text: install NanumGothic "
        "(apt-get install fonts-nanum) or pass font="
    )


def _image_info(data: bytes) -> tuple[tuple[int, int], float | None]:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as im:
        dpi = im.info.get("dpi")
        stated = float(dpi[0]) if isinstance(dpi, tuple) and dpi and dpi[0] else None
        # A stated 1 dpi (Pillow's reading of "no unit") is no resolution.
        return im.size, stated if stated is not None and stated > 1 else None


def page_pdf(page: SearchablePage, *, font: Path | None = None) -> bytes:
    """One PDF page: the image, and its words as invisible text in their boxes.

    Raises :class:`ConfigurationError` when no Hangul font is found (see
    :func:`find_font`), and Pillow's or fpdf2's error for an image that is
    not a readable JPEG or PNG.
    """
    from fpdf import FPDF
    from fpdf.enums import TextMode

    font = font or find_font()
    size, stated_dpi = _image_info(page.image)
    dpi = page.dpi or stated_dpi or DEFAULT_DPI
    to_points = _POINTS_PER_INCH / dpi
    width, height = size[0] * to_points, size[1] * to_points

    pdf = FPDF(unit="pt", format=(width, height))
    pdf.set_creator(f"ocr-async {__version__}")
    pdf.set_auto_page_break(False)
    pdf.set_margin(0)
    pdf.add_font("ocr-text", fname=font)
    fallbacks = [name for name in FALLBACK_FONTS if os.path.isfile(name)]
    for number, fallback in enumerate(fallbacks):
        pdf.add_font(f"ocr-fallback-{number}", fname=fallback)
    if fallbacks:
        pdf.set_fallback_fonts([f"ocr-fallback-{n}" for n in range(len(fallbacks))])
    pdf.add_page()
    pdf.image(io.BytesIO(page.image), x=0, y=0, w=width, h=height)
    pdf.set_font("ocr-text", size=12)
    pdf.text_mode = TextMode.INVISIBLE
    layout = PageLayout.from_result(page.result, size, scale=page.scale)
    for line in layout.lines:
        _place_line(pdf, line, to_points)
    return bytes(pdf.output())


def _place_line(pdf: FPDF, line: PlacedLine, to_points: float) -> None:
    rect = line.rect
    if rect is None or rect.height == 0:
        return
    size = rect.height * to_points
    baseline = rect.bottom * to_points - _DESCENT * size
    pdf.set_font_size(size)
    placed = [word for word in line.words if word.rect is not None and word.rect.width > 0]
    for number, word in enumerate(placed, 1):
        assert word.rect is not None
        pdf.set_stretching(100)
        natural = pdf.get_string_width(word.text)
        if natural <= 0:
            continue
        pdf.set_stretching(word.rect.width * to_points / natural * 100)
        # A space after each word but the last, in the same string: readers
        # that guess spaces from gaps (PDFium) find none between two Hangul
        # words set close together, and drop a space shown on its own there.
        text = word.text if number == len(placed) else word.text + " "
        pdf.text(word.rect.left * to_points, baseline, text)


def join_pages(pages: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> int:
    """Join one-page (or any) PDFs, in order, into ``out``; return the page count.

    ``out`` appears whole or not at all: it is written beside its final
    name and renamed. With the qpdf command line, image data is copied from
    the page files while the result is written, never held in memory all
    at once (see the module's notes); past ``_MAX_OPEN`` files the pages
    are joined in rounds. Raises :class:`ValueError` when there is no page.
    """
    openers = [functools.partial(_open_page, Path(p)) for p in pages]
    if not openers:
        raise ValueError("a PDF needs at least one page")
    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        partial = Path(work, "joined.pdf")
        with partial.open("wb") as handle:
            count = join_streams(openers, handle, scratch=functools.partial(_scratch, work))
        os.replace(partial, out)
    return count


def _open_page(path: Path) -> BinaryIO:
    return path.open("rb")


def _scratch(folder: str) -> BinaryIO:
    # Closed by join_streams, which enters it in its exit stack.
    return tempfile.TemporaryFile(dir=folder)


#: Opens one page file for reading; :func:`join_streams` closes it.
PageOpener = Callable[[], BinaryIO]


def join_streams(
    pages: Sequence[PageOpener], out: BinaryIO, *, scratch: Callable[[], BinaryIO]
) -> int:
    """Join PDFs, in order, into the open file ``out``; return the page count.

    Each of ``pages`` opens one PDF when its turn comes (so a caller can
    open them through a folder descriptor, without following a symlink).
    Past ``_MAX_OPEN`` pages they are joined in rounds, each round's result
    kept in a file that ``scratch`` makes (opened for reading and writing,
    gone once closed). Raises :class:`ValueError` when there is no page.
    """
    openers = list(pages)
    if not openers:
        raise ValueError("a PDF needs at least one page")
    with ExitStack() as rounds:
        while len(openers) > _MAX_OPEN:
            joined: list[PageOpener] = []
            for start in range(0, len(openers), _MAX_OPEN):
                target = rounds.enter_context(scratch())
                _join(openers[start : start + _MAX_OPEN], target)
                target.seek(0)
                joined.append(functools.partial(_same, target))
            openers = joined
        return _join(openers, out)


def _same(stream: BinaryIO) -> BinaryIO:
    return stream


def _join(openers: Sequence[PageOpener], target: BinaryIO) -> int:
    qpdf = shutil.which(QPDF)
    return _join_in_qpdf(qpdf, openers, target) if qpdf else _join_in_pikepdf(openers, target)


def _join_in_pikepdf(openers: Sequence[PageOpener], target: BinaryIO) -> int:
    import pikepdf

    with ExitStack() as stack:
        result = stack.enter_context(pikepdf.new())
        for open_page in openers:
            # pikepdf copies a foreign page's streams into memory as it adds
            # it (its immediate copy): the whole output is held until saved.
            stream = stack.enter_context(open_page())
            source = stack.enter_context(pikepdf.open(stream))
            result.pages.extend(source.pages)
        result.docinfo["/Creator"] = f"ocr-async {__version__}"
        result.save(target)
        return len(result.pages)


def _join_in_qpdf(binary: str, openers: Sequence[PageOpener], target: BinaryIO) -> int:
    """``qpdf FIRST --pages . REST... -- -``: the pages' data copied as it is written.

    The files reach qpdf as inherited descriptors (``/dev/fd/N``), so no
    path is looked up again; the first one's document information (the
    Creator that :func:`page_pdf` sets) is kept.
    """
    import pikepdf

    with ExitStack() as stack:
        streams = [stack.enter_context(open_page()) for open_page in openers]
        count = 0
        for stream in streams:
            # Only the cross-reference table is read: no stream data.
            with pikepdf.open(stream) as pdf:
                count += len(pdf.pages)
            stream.seek(0)
        names = [f"/dev/fd/{stream.fileno()}" for stream in streams]
        target.flush()
        done = subprocess.run(
            [binary, "--warning-exit-0", names[0], "--pages", ".", *names[1:], "--", "-"],
            stdout=target,
            stderr=subprocess.PIPE,
            pass_fds=[stream.fileno() for stream in streams],
            check=False,
        )
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"qpdf could not join the pages: {message[-1] if message else '?'}")
    return count


def write_searchable_pdf(
    pages: Iterable[SearchablePage],
    out: str | os.PathLike[str],
    *,
    font: Path | None = None,
) -> int:
    """Write ``pages``, in order, as one searchable PDF at ``out``; return the page count.

    ``pages`` is consumed lazily and each page is written to disk before the
    next is asked for, so only one page image is in memory at a time (a
    generator that renders pages keeps a long document out of memory).
    ``out`` appears whole or not at all. Raises :class:`ValueError` for no
    page, and what :func:`page_pdf` raises.
    """
    out = Path(out)
    font = font or find_font()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        return join_pages(_page_files(pages, Path(work), font), out)


def _page_files(pages: Iterable[SearchablePage], work: Path, font: Path) -> Iterator[Path]:
    for number, page in enumerate(pages, 1):
        path = work / f"page-{number:06d}.pdf"
        path.write_bytes(page_pdf(page, font=font))
        yield path
