"""PDF input: pages rendered one at a time, fitted to the limit, bad PDFs refused clearly.

Test PDFs are made by tests/pdfs.py: text pages with fpdf2 (vector text in
NanumGothic, portrait and landscape), scan-like pages with Pillow (a
JPEG photo per page), and encrypted, broken and empty ones.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
pytest.importorskip("fpdf", reason="the test PDFs are written with fpdf2")

import pikepdf
from pdfs import photo_pdf, text_pdf, zero_page_pdf
from PIL import Image

from ocr_async import pdfpages
from ocr_async.errors import LocalCheckError
from ocr_async.pdfpages import (
    BrokenPdfError,
    EmptyPdfError,
    EncryptedPdfError,
    PdfError,
    PdfPages,
    iter_pdf_pages,
    page_source,
)
from ocr_async.protocol import check_image_bytes, multipart_size


def test_pages_are_rendered_in_order_named_like_tiff_pages(tmp_path: Path) -> None:
    path = tmp_path / "letters.pdf"
    path.write_bytes(text_pdf([("P", "Page one 첫"), ("L", "Page two 둘"), ("P", "three")]))
    pages = list(iter_pdf_pages(path, source="in/letters.pdf"))
    assert [(p.source, p.number, p.pages) for p in pages] == [
        ("in/letters.pdf#page=1", 1, 3),
        ("in/letters.pdf#page=2", 2, 3),
        ("in/letters.pdf#page=3", 3, 3),
    ]
    # Text pages go as PNG at 300 dpi: A4 is 2481 x 3508 pixels (rounded up),
    # landscape turned.
    assert [(p.image_type, p.dpi, p.size) for p in pages] == [
        ("png", 300, (2481, 3508)),
        ("png", 300, (3508, 2481)),
        ("png", 300, (2481, 3508)),
    ]
    for page in pages:
        assert page.ok
        assert check_image_bytes(page.data) == "png"
        with Image.open(io.BytesIO(page.data)) as image:
            assert image.size == page.size
    assert pages[1].note == "rendered page 2/3 at 300 dpi as PNG"


def test_the_rendered_page_shows_the_text() -> None:
    (page,) = iter_pdf_pages(text_pdf([("P", "Ink")]), dpi=72)
    with Image.open(io.BytesIO(page.data)) as image:
        # Black text at (72, 144) points on white: dark pixels just above the baseline.
        crop = image.convert("L").crop((72, 120, 140, 144))
        darkest, _ = crop.getextrema()
        assert isinstance(darkest, int)
        assert darkest < 100
        assert image.convert("L").getpixel((400, 600)) == 255


def test_a_one_page_pdf_keeps_its_plain_name() -> None:
    (page,) = iter_pdf_pages(text_pdf([("P", "only")]), source="one.pdf")
    assert page.source == "one.pdf"
    assert page_source("one.pdf", 1, 1) == "one.pdf"
    assert page_source("two.pdf", 2, 2) == "two.pdf#page=2"


def test_scanned_pages_go_as_jpeg() -> None:
    pages = list(iter_pdf_pages(photo_pdf(2), source="scan.pdf", dpi=100))
    assert [(p.source, p.image_type, p.size) for p in pages] == [
        ("scan.pdf#page=1", "jpg", (600, 800)),
        ("scan.pdf#page=2", "jpg", (600, 800)),
    ]
    assert check_image_bytes(pages[0].data) == "jpg"


def test_resume_names_pages_without_rendering_and_renders_only_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered: list[int] = []
    real = PdfPages._pixels

    def counting(self: PdfPages, number: int, dpi: int, source: str) -> Image.Image:
        rendered.append(number)
        return real(self, number, dpi, source)

    monkeypatch.setattr(PdfPages, "_pixels", counting)
    with PdfPages(text_pdf([("P", str(n)) for n in range(5)]), source="b.pdf", dpi=50) as pdf:
        done = {"b.pdf#page=1", "b.pdf#page=2", "b.pdf#page=4"}
        todo = [n for n in range(1, pdf.page_count + 1) if pdf.source_of(n) not in done]
        assert [p.source for p in pdf.pages(todo)] == ["b.pdf#page=3", "b.pdf#page=5"]
    assert rendered == [3, 5]


def fake_encoder(sizes: dict[str, float]) -> object:
    """An encoder whose output is ``sizes[kind]`` bytes per pixel: the limit decides."""

    def encode(image: Image.Image, kind: str) -> bytes:
        return b"\0" * int(image.width * image.height * sizes[kind])

    return encode


def test_the_dpi_is_lowered_step_by_step_until_the_page_fits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdfpages, "_encode", fake_encoder({"png": 1.0, "jpg": 1.0}))
    # A4 at 200 dpi is 1654 x 2339 = 3,868,706 pixels; at 250, 2067 x 2924.
    limit = multipart_size("jpg", 4_000_000)
    (page,) = iter_pdf_pages(text_pdf([("P", "big")]), max_bytes=limit)
    assert (page.dpi, page.image_type, page.size) == (200, "png", (1654, 2339))
    assert page.note.startswith("rendered page 1/1 at 200 dpi as PNG (lowered: as PNG at 300 dpi")
    assert page.note.count("over the") == 4  # PNG and JPEG, at 300 and at 250 dpi


def test_a_png_over_the_limit_goes_as_jpeg_at_the_same_dpi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pdfpages, "_encode", fake_encoder({"png": 1.0, "jpg": 0.1}))
    (page,) = iter_pdf_pages(text_pdf([("P", "x")]), max_bytes=2_000_000)
    assert (page.dpi, page.image_type) == (300, "jpg")


def test_a_page_that_never_fits_fails_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdfpages, "_encode", fake_encoder({"png": 1.0, "jpg": 1.0}))
    doc = text_pdf([("P", "small")])
    # Page 2 is A4; page 1 a business card that fits at 300 dpi.
    with pikepdf.open(io.BytesIO(doc)) as pdf:
        pdf.pages.append(pdf.pages[0])
        pdf.pages[0].MediaBox = [0, 0, 252, 144]
        buffer = io.BytesIO()
        pdf.save(buffer)
    first, second = iter_pdf_pages(buffer.getvalue(), source="m.pdf", max_bytes=800_000)
    assert first.ok
    assert first.size == (1050, 600)
    assert not second.ok
    assert isinstance(second.error, PdfError)
    assert second.error.code == 4131000
    assert second.source == "m.pdf#page=2"
    assert "100 dpi is the lowest tried" in second.error.message
    assert second.data == b""


def test_a_page_past_the_pixel_limit_starts_lower(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)
    (page,) = iter_pdf_pages(text_pdf([("P", "poster")]))
    assert page.dpi == 100
    assert "2481x3508 at 300 dpi is over the pixel limit" in page.note


def test_a_rotated_page_is_rendered_upright() -> None:
    with pikepdf.open(io.BytesIO(text_pdf([("P", "turned")]))) as pdf:
        pdf.pages[0].Rotate = 90
        buffer = io.BytesIO()
        pdf.save(buffer)
    (page,) = iter_pdf_pages(buffer.getvalue(), dpi=72)
    assert page.size == (842, 596)


@pytest.mark.parametrize(
    ("make", "error", "code", "says"),
    [
        pytest.param(
            lambda: text_pdf([("P", "secret")], password="user"),
            EncryptedPdfError,
            "pdf_encrypted",
            "encrypted and needs a password",
            id="encrypted",
        ),
        pytest.param(
            lambda: b"%PDF-1.7\nthis is not a PDF at all",
            BrokenPdfError,
            "pdf_broken",
            "not a PDF that can be read",
            id="garbage",
        ),
        pytest.param(
            lambda: text_pdf([("P", "cut")])[:200],
            BrokenPdfError,
            "pdf_broken",
            "not a PDF that can be read",
            id="truncated",
        ),
        pytest.param(zero_page_pdf, EmptyPdfError, "pdf_empty", "has no page", id="no-pages"),
        pytest.param(lambda: b"", EmptyPdfError, "pdf_empty", "the file is empty", id="empty"),
    ],
)
def test_bad_pdfs_get_one_clear_local_error(
    tmp_path: Path, make: object, error: type[PdfError], code: str, says: str
) -> None:
    path = tmp_path / "bad.pdf"
    path.write_bytes(make())  # type: ignore[operator]
    for given in (path, path.read_bytes()):
        with pytest.raises(error) as caught:
            list(iter_pdf_pages(given, source="box/bad.pdf"))
        assert isinstance(caught.value, LocalCheckError)
        assert caught.value.local
        assert not caught.value.retryable
        assert caught.value.code == code
        assert caught.value.message.startswith("box/bad.pdf: ")
        assert says in caught.value.message
        assert caught.value.message.endswith("(not sent)")


def test_a_pdf_with_only_an_owner_password_opens() -> None:
    doc = text_pdf([("P", "printable")], password="")
    assert [p.ok for p in iter_pdf_pages(doc)] == [True]


def test_the_pdf_extra_is_named_when_pypdfium2_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    with pytest.raises(LocalCheckError, match=r"pip install 'ocr-async\[pdf\]'") as caught:
        PdfPages(b"%PDF-1.7", source="x.pdf")
    assert caught.value.code == 4000003


def test_documents_render_safely_from_several_threads() -> None:
    docs = [text_pdf([("P", f"{d}-{n}") for n in range(4)]) for d in range(3)]
    results: dict[int, list[bool]] = {}

    def work(index: int) -> None:
        results[index] = [page.ok for page in iter_pdf_pages(docs[index], dpi=40)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: [True] * 4 for i in range(3)}


def test_an_earlier_failure_does_not_colour_the_next_verdict() -> None:
    # PDFium's last error is left over from the last failed load; a PDF with
    # no page that loads fine must not inherit "encrypted" from the one before.
    with pytest.raises(EncryptedPdfError):
        PdfPages(text_pdf([("P", "secret")], password="user"))
    with pytest.raises(EmptyPdfError):
        PdfPages(zero_page_pdf())


def test_a_pdf_file_is_reopened_now_and_then_and_pages_stay_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pdfpages, "_REOPEN_EVERY", 2)
    opened: list[str] = []
    real_open = pdfpages._open

    def counting_open(*args: object) -> object:
        opened.append("open")
        return real_open(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(pdfpages, "_open", counting_open)
    path = tmp_path / "five.pdf"
    path.write_bytes(text_pdf([("P" if n % 2 else "L", f"page {n}") for n in range(5)]))
    sizes = [page.size for page in iter_pdf_pages(path, dpi=36)]
    assert sizes == [(421, 298), (298, 421), (421, 298), (298, 421), (421, 298)]
    assert len(opened) == 3  # at the start, before page 3 and before page 5
