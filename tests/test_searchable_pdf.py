"""Searchable PDFs: the text extracted back word for word, in the right place.

Pages are drawn here with Pillow in fonts CI installs (DejaVu Sans for
Latin, NanumGothic for Hangul); the words and boxes the API would give are
taken from where they were drawn. The PDF's text is read back by two
independent extractors, PDFium (pypdfium2) and poppler (``pdftotext``).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fpdf", reason="the searchable PDF needs the 'digitize' extra")
pytest.importorskip("pypdfium2", reason="reading PDFs back needs the 'pdf' extra")

import pypdfium2 as pdfium
from PIL import Image, ImageDraw, ImageFont

from ocr_async.errors import ConfigurationError
from ocr_async.models import BoundingBox, Line, OcrResult, Word
from ocr_async.outputs import searchable_pdf
from ocr_async.outputs.searchable_pdf import (
    SearchablePage,
    join_pages,
    page_pdf,
    write_searchable_pdf,
)

NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
pytestmark = pytest.mark.skipif(
    not (NANUM.exists() and DEJAVU.exists()), reason="apt-get install fonts-nanum fonts-dejavu-core"
)

PORTRAIT = [
    ["Searchable", "PDF", "pages"],
    ["한국어", "문서", "검색"],
    ["Invoice", "No.", "2026-11"],
]
LANDSCAPE = [["안녕하세요", "NHN", "Cloud"], ["mixed", "혼합", "text"]]


def draw_page(
    lines: list[list[str]], size: tuple[int, int], fmt: str, dpi: int = 150
) -> tuple[bytes, OcrResult]:
    """An image with the words drawn, and the recognition the API would answer."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    latin = ImageFont.truetype(str(DEJAVU), 40)
    hangul = ImageFont.truetype(str(NANUM), 40)
    result_lines = []
    y = 80
    for words in lines:
        x: float = 60
        placed = []
        for text in words:
            font = hangul if re.search("[가-힣]", text) else latin
            left, top, right, bottom = draw.textbbox((x, y), text, font=font)
            draw.text((x, y), text, font=font, fill="black")
            box = BoundingBox(left, top, right, top, right, bottom, left, bottom)
            placed.append(Word(text, 0.95, box))
            x = right + 30
        result_lines.append(Line(tuple(placed)))
        y += 90
    buffer = io.BytesIO()
    image.save(buffer, fmt, dpi=(dpi, dpi))
    return buffer.getvalue(), OcrResult(lines=tuple(result_lines), raw={})


def pages() -> Iterator[SearchablePage]:
    png, portrait = draw_page(PORTRAIT, (1000, 1400), "PNG")
    yield SearchablePage(png, portrait)
    jpeg, landscape = draw_page(LANDSCAPE, (1400, 1000), "JPEG")
    yield SearchablePage(jpeg, landscape)


def words_of(lines: list[list[str]]) -> list[str]:
    return [word for line in lines for word in line]


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("searchable") / "book.pdf"
    assert write_searchable_pdf(pages(), out) == 2
    return out


def test_pdfium_extracts_every_word_in_order(pdf_path: Path) -> None:
    document = pdfium.PdfDocument(pdf_path)
    try:
        texts = [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()
    assert [text.split() for text in texts] == [words_of(PORTRAIT), words_of(LANDSCAPE)]
    assert [line.split() for line in texts[0].splitlines()] == PORTRAIT


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="apt-get install poppler-utils")
def test_pdftotext_extracts_every_word_in_its_box(pdf_path: Path) -> None:
    xhtml = subprocess.run(
        ["pdftotext", "-bbox", str(pdf_path), "-"], capture_output=True, text=True, check=True
    ).stdout
    page_words = [
        re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>',
            page,
        )
        for page in xhtml.split("<page ")[1:]
    ]
    assert [[w[-1] for w in ws] for ws in page_words] == [words_of(PORTRAIT), words_of(LANDSCAPE)]
    for page, (_, result) in zip(
        page_words,
        [draw_page(PORTRAIT, (1000, 1400), "PNG"), draw_page(LANDSCAPE, (1400, 1000), "JPEG")],
        strict=True,
    ):
        to_pixels = 150 / 72
        for (x0, y0, x1, y1, text), word in zip(page, result.words, strict=True):
            box = word.box
            assert box is not None
            assert text == word.value
            # Horizontally the word fills its box; vertically it sits on its line.
            assert float(x0) * to_pixels == pytest.approx(box.x1, abs=2)
            assert float(x1) * to_pixels == pytest.approx(box.x2, abs=2)
            middle = (float(y0) + float(y1)) / 2 * to_pixels
            assert box.y1 - 5 <= middle <= box.y3 + 5


def test_pages_keep_the_images_physical_size_and_orientation(pdf_path: Path) -> None:
    document = pdfium.PdfDocument(pdf_path)
    try:
        sizes = [document[i].get_size() for i in range(len(document))]
    finally:
        document.close()
    # 150 dpi: 1000 x 1400 pixels are 480 x 672 points (PNG stores dots per
    # metre, in whole numbers: 150 dpi comes back as 149.99).
    assert sizes == [pytest.approx((480, 672), abs=0.5), pytest.approx((672, 480), abs=0.5)]


def test_a_jpeg_page_is_embedded_as_it_is(tmp_path: Path) -> None:
    jpeg, result = draw_page(LANDSCAPE, (1400, 1000), "JPEG")
    document = pdfium.PdfDocument(page_pdf(SearchablePage(jpeg, result)))
    try:
        (image,) = [o for o in document[0].get_objects() if o.type == pdfium.raw.FPDF_PAGEOBJ_IMAGE]
        assert image.get_filters() == ["DCTDecode"]
    finally:
        document.close()


def test_the_api_coordinates_are_scaled_onto_the_page_image() -> None:
    # The API read a half-size copy: its boxes are half the page's.
    png, result = draw_page(PORTRAIT, (1000, 1400), "PNG")
    halved = OcrResult(
        lines=tuple(
            Line(
                tuple(
                    Word(w.value, w.conf, BoundingBox(*(c / 2 for c in _corners(w.box))))
                    for w in line.words
                )
            )
            for line in result.lines
        ),
        raw={},
    )
    whole = pdfium.PdfDocument(page_pdf(SearchablePage(png, result)))
    scaled = pdfium.PdfDocument(page_pdf(SearchablePage(png, halved, scale=(2.0, 2.0))))
    try:
        boxes = [
            [c for i in range(5) for c in doc[0].get_textpage().get_charbox(i)]
            for doc in (whole, scaled)
        ]
    finally:
        whole.close()
        scaled.close()
    assert boxes[0] == pytest.approx(boxes[1], abs=0.01)


def _corners(box: BoundingBox | None) -> tuple[float, ...]:
    assert box is not None
    return (box.x1, box.y1, box.x2, box.y2, box.x3, box.y3, box.x4, box.y4)


@pytest.fixture(params=["qpdf", "pikepdf"])
def joiner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Join with the qpdf command line (skipped when absent), or with pikepdf alone."""
    if request.param == "qpdf" and shutil.which("qpdf") is None:
        pytest.skip("no qpdf command line here (apt-get install qpdf)")
    if request.param == "pikepdf":
        monkeypatch.setattr(searchable_pdf, "QPDF", "no-such-qpdf-command")
    name: str = request.param
    return name


def test_join_pages_keeps_order_and_joins_in_rounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joiner: str
) -> None:
    monkeypatch.setattr(searchable_pdf, "_MAX_OPEN", 2)
    parts = []
    for number in range(5):
        png, result = draw_page([[f"page{number}"]], (300, 200), "PNG")
        part = tmp_path / f"part{number}.pdf"
        part.write_bytes(page_pdf(SearchablePage(png, result)))
        parts.append(part)
    out = tmp_path / "joined.pdf"
    assert join_pages(parts, out) == 5
    document = pdfium.PdfDocument(out)
    try:
        texts = [document[i].get_textpage().get_text_range().strip() for i in range(5)]
    finally:
        document.close()
    assert texts == [f"page{n}" for n in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "joined.pdf",
        *(f"part{n}.pdf" for n in range(5)),
    ]
    pikepdf = pytest.importorskip("pikepdf")
    with pikepdf.open(out) as joined:
        assert str(joined.docinfo["/Creator"]).startswith("ocr-async ")


def test_a_part_qpdf_cannot_read_is_an_error_not_a_half_pdf(tmp_path: Path) -> None:
    if shutil.which("qpdf") is None:
        pytest.skip("no qpdf command line here (apt-get install qpdf)")
    png, result = draw_page([["fine"]], (300, 200), "PNG")
    good = tmp_path / "good.pdf"
    good.write_bytes(page_pdf(SearchablePage(png, result)))
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.7 not a page")
    out = tmp_path / "joined.pdf"
    pikepdf = pytest.importorskip("pikepdf")
    with pytest.raises((RuntimeError, pikepdf.PdfError)):
        join_pages([good, bad], out)
    assert not out.exists()


def test_no_page_is_no_pdf(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one page"):
        write_searchable_pdf([], tmp_path / "none.pdf")
    assert list(tmp_path.iterdir()) == []


def test_without_a_hangul_font_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(searchable_pdf, "HANGUL_FONTS", ("/nonexistent/font.ttf",))
    png, result = draw_page([["x"]], (100, 100), "PNG")
    with pytest.raises(ConfigurationError, match="fonts-nanum"):
        page_pdf(SearchablePage(png, result))


def test_the_text_is_invisible_render_mode_3() -> None:
    pikepdf = pytest.importorskip("pikepdf")
    png, result = draw_page(PORTRAIT, (1000, 1400), "PNG")
    with pikepdf.open(io.BytesIO(page_pdf(SearchablePage(png, result)))) as pdf:
        operators = [
            (list(operands), str(op)) for operands, op in pikepdf.parse_content_stream(pdf.pages[0])
        ]
    modes = [operands for operands, op in operators if op == "Tr"]
    assert modes
    assert all(operands == [3] for operands in modes)
    assert sum(op == "Tj" or op == "TJ" for _, op in operators) == len(words_of(PORTRAIT))


@pytest.mark.parametrize("gap", [1, 4, 8])
def test_hangul_words_set_close_together_extract_as_separate_words(gap: int) -> None:
    # Tesseract's boxes for 열람실 이용 안내 at 150 dpi leave a few pixels
    # between words: PDFium took such a gap for no space at all.
    image = Image.new("RGB", (600, 200), "white")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    lefts = [60, 180 + gap, 260 + 2 * gap]
    words = [
        Word(text, 0.9, BoundingBox(left, 80, left + width, 80, left + width, 120, left, 120))
        for text, left, width in zip(["열람실", "이용", "안내"], lefts, [120, 80, 80], strict=True)
    ]
    page = page_pdf(SearchablePage(buffer.getvalue(), OcrResult((Line(tuple(words)),), raw={})))
    document = pdfium.PdfDocument(page)
    try:
        assert document[0].get_textpage().get_text_range().split() == ["열람실", "이용", "안내"]
    finally:
        document.close()
