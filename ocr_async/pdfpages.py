"""PDF input: a document as a stream of page images, rendered one at a time.

The API reads JPEG and PNG only, so each page of a PDF is rendered with
PDFium (pypdfium2; ``pip install 'ocr-async[pdf]'``, no system package) and
sent as its own image, named ``<source>#page=<n>`` (1-based) like the pages
of a multi-page TIFF; a one-page PDF keeps its plain name, as a one-page
TIFF does. That name is also the page's identity for ``--resume``:
:meth:`PdfPages.source_of` gives it without rendering, so pages already done
are skipped before any work.

Only one page is rendered at a time and nothing of it is kept after it is
handed on: a 500-page PDF never sits in memory rendered. PDFium reads a
file as it needs it, and keeps what it has read until the document closes,
so a PDF given as a path is reopened every 16 pages (PDF bytes given in
memory are in memory anyway).

Resolution: :data:`DEFAULT_DPI` (300), lowered through :data:`DPI_STEPS`
when the page would have more pixels than Pillow's decompression-bomb limit
or when its encoded image would not fit the request-size limit. Each page
says the DPI it was rendered at, and why, for the record's ``transform``.

Encoding, by content: a page that is mostly a photograph or a JPEG scan (a
DCT- or JPX-compressed image covering at least half of it) is sent as JPEG,
because its pixels are lossy already and PNG would make them five to ten
times larger; anything else (text, drawings, bilevel scans) as PNG, whose
sharp edges JPEG would blur. A PNG over the limit is tried as JPEG at the
same DPI before the DPI is lowered.

Errors, each a :class:`PdfError` (a :class:`~ocr_async.errors.LocalCheckError`:
nothing is sent): :class:`EncryptedPdfError` (code ``pdf_encrypted``),
:class:`BrokenPdfError` (``pdf_broken``) and :class:`EmptyPdfError`
(``pdf_empty``) when the document cannot be opened or has no page. A page
that cannot be rendered (``pdf_broken``) or cannot be made to fit even at
the lowest DPI (4131000, as ``--shrink`` answers) is yielded with its error,
so that the other pages go on.

PDFium is not thread-safe, not even across documents: every call into it
holds one process-wide lock. Encoding (Pillow) runs outside the lock.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self

from ocr_async.errors import LocalCheckError
from ocr_async.models import ImageType
from ocr_async.protocol import DEFAULT_MAX_BYTES, multipart_size

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DEFAULT_DPI",
    "DPI_STEPS",
    "JPEG_QUALITY",
    "PDF_HINT",
    "PDF_SIGNATURE",
    "BrokenPdfError",
    "EmptyPdfError",
    "EncryptedPdfError",
    "PdfError",
    "PdfPage",
    "PdfPages",
    "is_pdf_name",
    "iter_pdf_pages",
    "page_source",
    "pdf_support",
]

#: The resolution pages are rendered at unless that would not fit.
DEFAULT_DPI: Final = 300
#: The resolutions tried, in order, below the starting one, when a page
#: does not fit; below the last the page fails.
DPI_STEPS: Final = (300, 250, 200, 150, 100)
#: The quality of a page sent as JPEG: OCR reads q90 as well as the original.
JPEG_QUALITY: Final = 90
#: How to get pypdfium2; part of the "not installed" message.
PDF_HINT: Final = "pip install 'ocr-async[pdf]'"
#: How a PDF file begins (ISO 32000-1, 7.5.2, "File Header").
PDF_SIGNATURE: Final = b"%PDF-"
#: A DCT/JPX image covering at least this share of the page makes it a photo page.
_PHOTO_COVER: Final = 0.5
#: Page objects looked at to judge the content (a vector page may have
#: hundreds of thousands; its first few are enough to know it is no scan).
_MAX_OBJECTS: Final = 64
_POINTS_PER_INCH: Final = 72.0
#: Pages rendered from a file before it is reopened (see _reopen_now_and_then).
_REOPEN_EVERY: Final = 16
_LOSSY_FILTERS: Final = frozenset({"DCTDecode", "JPXDecode"})
# PDFium error codes (fpdfview.h, FPDF_ERR_*).
_ERR_PASSWORD: Final = 4
_ERR_SECURITY: Final = 5

#: Every PDFium call in the process goes through this lock (pypdfium2's
#: documentation: "not allowed to call pdfium functions simultaneously
#: across different threads, not even with different documents").
_PDFIUM: Final = threading.Lock()


class PdfError(LocalCheckError):
    """A PDF, or one of its pages, cannot be sent; nothing was sent."""


class EncryptedPdfError(PdfError):
    """The PDF needs a password to be opened."""

    def __init__(self, message: str) -> None:
        super().__init__("pdf_encrypted", message)


class BrokenPdfError(PdfError):
    """The file is not a PDF that PDFium can read, or a page of it cannot be rendered."""

    def __init__(self, message: str) -> None:
        super().__init__("pdf_broken", message)


class EmptyPdfError(PdfError):
    """The PDF has no page (or the file is empty)."""

    def __init__(self, message: str) -> None:
        super().__init__("pdf_empty", message)


def is_pdf_name(name: str) -> bool:
    """Whether a file name says PDF (``.pdf``, any case)."""
    return name.lower().endswith(".pdf")


def pdf_support() -> str | None:
    """None when PDFs can be read here; else what to install (pypdfium2 and Pillow)."""
    try:
        import PIL.Image  # noqa: F401 (only whether it imports)
        import pypdfium2  # noqa: F401
    except ImportError:
        return f"reading PDFs needs pypdfium2 and Pillow: {PDF_HINT}"
    return None


def page_source(source: str, number: int, pages: int) -> str:
    """The name of page ``number`` (1-based) of ``pages``: ``<source>#page=<n>``.

    A one-page document keeps its plain name, as a one-page TIFF does.
    """
    return source if pages == 1 else f"{source}#page={number}"


@dataclass(frozen=True, slots=True)
class PdfPage:
    """One page: the image to send, or the error that keeps it from being sent."""

    #: ``<source>#page=<n>`` (see :func:`page_source`).
    source: str
    #: 1-based.
    number: int
    #: Pages in the document.
    pages: int
    #: The encoded image; empty when :attr:`error` is set.
    data: bytes = field(repr=False)
    #: ``"png"`` or ``"jpg"``; None with an error.
    image_type: ImageType | None
    #: The resolution it was rendered at (None with an error before rendering).
    dpi: int | None
    #: Width and height in pixels (None with an error before rendering).
    size: tuple[int, int] | None
    #: For people, e.g. "rendered page 3/10 at 250 dpi as PNG (lowered: as PNG
    #: at 300 dpi the request would be 6,391,022 bytes, over the
    #: 5,242,880-byte limit; ...)".
    note: str
    error: PdfError | None = None

    @property
    def ok(self) -> bool:
        """True when there is an image to send."""
        return self.error is None


class PdfPages:
    """An open PDF whose pages are rendered on demand, one at a time.

    ``pdf`` is a path (read by PDFium as it needs it) or the bytes of a PDF.
    ``source`` names it in the pages' names (default: the path as given).
    ``max_bytes`` is the request-body limit each page's image must fit,
    multipart framing included (as :func:`ocr_async.imaging.shrink_to_fit`
    counts it). Use it as a context manager, or call :meth:`close`::

        with PdfPages("book.pdf") as pdf:
            for page in pdf:
                ...

    Raises at once :class:`EncryptedPdfError`, :class:`BrokenPdfError` or
    :class:`EmptyPdfError`, and :class:`LocalCheckError` 4000003 naming the
    extra when pypdfium2 is not installed.
    """

    def __init__(
        self,
        pdf: str | os.PathLike[str] | bytes,
        *,
        source: str | None = None,
        dpi: int = DEFAULT_DPI,
        max_bytes: int = DEFAULT_MAX_BYTES,
        password: str | None = None,
    ) -> None:
        if dpi < 1:
            raise ValueError(f"dpi must be positive, not {dpi}")
        if source is None:
            source = "pdf" if isinstance(pdf, bytes) else os.fspath(pdf)
        self.source = source
        self._dpis = (dpi, *(step for step in DPI_STEPS if step < dpi))
        self._max_bytes = max_bytes
        # PDFium reads in-memory input where it lies: it must outlive the document.
        self._pdf = pdf
        self._password = password
        self._rendered_since_open = 0
        self._document = _open(pdf, password, source)
        with _PDFIUM:
            self.page_count = len(self._document)
            # Filled-in forms are part of what a person sees on the page.
            self._document.init_forms()
        if self.page_count == 0:
            self.close()
            raise EmptyPdfError(f"{source}: the PDF has no page (not sent)")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the document (safe to call twice)."""
        with _PDFIUM:
            self._document.close()

    def source_of(self, number: int) -> str:
        """The name page ``number`` gets, without rendering it."""
        return page_source(self.source, number, self.page_count)

    def __iter__(self) -> Iterator[PdfPage]:
        return self.pages()

    def pages(self, numbers: Iterable[int] | None = None) -> Iterator[PdfPage]:
        """Render the pages ``numbers`` (default: all, in order), one at a time."""
        for number in range(1, self.page_count + 1) if numbers is None else numbers:
            yield self.render(number)

    def render(self, number: int) -> PdfPage:
        """Render page ``number`` (1-based) to the image to send; errors are in the page."""
        if not 1 <= number <= self.page_count:
            raise IndexError(f"page {number} of a {self.page_count}-page PDF")
        source = self.source_of(number)
        try:
            return self._render(number, source)
        except PdfError as exc:
            return PdfPage(source, number, self.page_count, b"", None, None, None, "", exc)

    def _render(self, number: int, source: str) -> PdfPage:
        from PIL import Image as PILImage

        self._reopen_now_and_then()
        label = f"page {number}/{self.page_count}"
        with _PDFIUM:
            page = self._document[number - 1]
            try:
                width_pt, height_pt = page.get_size()
                photo = _is_photo(page, width_pt * height_pt)
            finally:
                page.close()
        limit = PILImage.MAX_IMAGE_PIXELS
        reasons: list[str] = []
        for dpi in self._dpis:
            size = _pixels(width_pt, dpi), _pixels(height_pt, dpi)
            if limit is not None and size[0] * size[1] > limit:
                reasons.append(f"{size[0]}x{size[1]} at {dpi} dpi is over the pixel limit")
                continue
            image = self._pixels(number, dpi, source)
            kinds: tuple[ImageType, ...] = ("jpg",) if photo else ("png", "jpg")
            for kind in kinds:
                data = _encode(image, kind)
                body = multipart_size(kind, len(data))
                if body <= self._max_bytes:
                    note = f"rendered {label} at {dpi} dpi as {_NAMES[kind]}"
                    if reasons:
                        note += f" (lowered: {'; '.join(reasons)})"
                    return PdfPage(
                        source, number, self.page_count, data, kind, dpi, image.size, note
                    )
                reasons.append(
                    f"as {_NAMES[kind]} at {dpi} dpi the request would be {body:,} bytes, "
                    f"over the {self._max_bytes:,}-byte limit"
                )
        raise PdfError(
            4131000,
            f"MAX_UPLOAD_SIZE_EXCEEDED: {source} cannot be made to fit: "
            f"{'; '.join(reasons)}; {min(self._dpis)} dpi is the lowest tried (not sent)",
        )

    def _reopen_now_and_then(self) -> None:
        # PDFium keeps every object it has parsed, image data included, until
        # the document is closed: a long scan read from a file would grow by
        # its compressed size. Reopening the file now and then lets it go.
        self._rendered_since_open += 1
        if self._rendered_since_open <= _REOPEN_EVERY or isinstance(self._pdf, bytes):
            return
        self.close()
        self._document = _open(self._pdf, self._password, self.source)
        with _PDFIUM:
            self._document.init_forms()
        self._rendered_since_open = 1

    def _pixels(self, number: int, dpi: int, source: str) -> Image.Image:
        with _PDFIUM:
            page = self._document[number - 1]
            bitmap = None
            try:
                bitmap = page.render(scale=dpi / _POINTS_PER_INCH, may_draw_forms=True)
                # A copy that owns its pixels: the bitmap is freed below.
                image: Image.Image = bitmap.to_pil().convert("RGB")
            except Exception as exc:  # PDFium fails in many ways on damaged pages
                raise BrokenPdfError(
                    f"{source}: the page cannot be rendered ({exc or type(exc).__name__}) "
                    "(not sent)"
                ) from None
            finally:
                if bitmap is not None:
                    bitmap.close()
                page.close()
        return image


def iter_pdf_pages(
    pdf: str | os.PathLike[str] | bytes,
    *,
    source: str | None = None,
    dpi: int = DEFAULT_DPI,
    max_bytes: int = DEFAULT_MAX_BYTES,
    password: str | None = None,
) -> Iterator[PdfPage]:
    """Every page of ``pdf``, rendered one at a time (see :class:`PdfPages`).

    The document errors come from the first ``next()``; the document is
    closed when the iterator ends or is closed.
    """
    with PdfPages(pdf, source=source, dpi=dpi, max_bytes=max_bytes, password=password) as doc:
        yield from doc


_NAMES: Final[dict[ImageType, str]] = {"png": "PNG", "jpg": "JPEG"}


def _open(pdf: str | os.PathLike[str] | bytes, password: str | None, source: str) -> Any:
    missing = pdf_support()
    if missing is not None:
        refused = LocalCheckError(
            4000003,
            f"INVALID_FILE_TYPE: {source} is a PDF, and {missing} (not sent); "
            "once installed, --resume --retry-failed reads it",
        )
        # Says nothing about the file: with the extra installed it reads fine.
        refused.retryable = True
        raise refused
    import pypdfium2

    if isinstance(pdf, bytes):
        size = len(pdf)
    else:
        try:
            size = os.path.getsize(pdf)
        except OSError as exc:
            raise BrokenPdfError(f"{source}: cannot be read ({exc.strerror}) (not sent)") from None
    if size == 0:
        raise EmptyPdfError(f"{source}: the file is empty (not sent)")
    secret = None if password is None else password.encode("utf-8") + b"\0"
    raw = pypdfium2.raw
    with _PDFIUM:
        # The raw calls, not PdfDocument(path): PDFium's last error is set only
        # when a load fails, and pypdfium2 reads it for a document that loaded
        # with no page too, where it is whatever an earlier failure left.
        if isinstance(pdf, bytes):
            handle = raw.FPDF_LoadMemDocument64(pdf, len(pdf), secret)
        else:
            handle = raw.FPDF_LoadDocument(os.fsencode(pdf) + b"\0", secret)
        error = None if handle else raw.FPDF_GetLastError()
    if error in (_ERR_PASSWORD, _ERR_SECURITY):
        raise EncryptedPdfError(f"{source}: the PDF is encrypted and needs a password (not sent)")
    if error is not None:
        reason = pypdfium2.internal.ErrorToStr.get(error, f"error {error}")
        raise BrokenPdfError(f"{source}: not a PDF that can be read ({reason}) (not sent)")
    return pypdfium2.PdfDocument(handle)


def _is_photo(page: Any, page_area: float) -> bool:
    """Whether a DCT/JPX image covers at least half of the page (call under the lock)."""
    import pypdfium2

    if page_area <= 0:
        return False
    for index, obj in enumerate(page.get_objects(max_depth=2)):
        if index >= _MAX_OBJECTS:
            break
        if obj.type != pypdfium2.raw.FPDF_PAGEOBJ_IMAGE:
            continue
        try:
            filters = set(obj.get_filters())
            left, bottom, right, top = obj.get_bounds()
        except Exception:  # a damaged image object judges nothing
            continue
        if filters & _LOSSY_FILTERS and (right - left) * (top - bottom) >= _PHOTO_COVER * page_area:
            return True
    return False


def _pixels(points: float, dpi: int) -> int:
    # As pypdfium2 sizes its bitmap: rounded up.
    return max(1, math.ceil(points * dpi / _POINTS_PER_INCH))


def _encode(image: Image.Image, kind: ImageType) -> bytes:
    buffer = io.BytesIO()
    if kind == "png":
        # zlib's default level; optimize=True costs much CPU for a few percent.
        image.save(buffer, "PNG", compress_level=6)
    else:
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()
