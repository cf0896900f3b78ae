"""--alto, --hocr, --searchable-pdf: files per page as records finish, read back independently.

Pages are fed as the batch feeds them (a FinishedPage: the record with its
parsed result, and the payload with the image sent). ALTO and hOCR are read
back with lxml; searchable PDFs with PDFium (pypdfium2).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest

pytest.importorskip("lxml", reason="page files need the 'digitize' extra")
pytest.importorskip("fpdf", reason="page files need the 'digitize' extra")
pytest.importorskip("pypdfium2", reason="reading PDFs back needs the 'pdf' extra")

import pypdfium2 as pdfium
from lxml import etree

from ocr_async.emulator import make_png
from ocr_async.imaging import Transform
from ocr_async.models import (
    BoundingBox,
    Endpoint,
    ErrorInfo,
    FinishedPage,
    Line,
    OcrResult,
    Payload,
    Record,
    Word,
)
from ocr_async.outputs.alto import ALTO_NAMESPACE
from ocr_async.outputs.hocr import XHTML_NAMESPACE
from ocr_async.outputs.pagefiles import (
    AltoFolder,
    HocrFolder,
    PageFiles,
    PageImage,
    SearchablePdfFolder,
    digitize_support,
)
from ocr_async.outputs.searchable_pdf import SearchablePage, find_font, page_pdf

NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
needs_font = pytest.mark.skipif(not NANUM.exists(), reason="apt-get install fonts-nanum")


def recognized(words: list[str], top: int = 10) -> OcrResult:
    """One line of words, each 40 x 20 pixels, 10 apart, from x 10."""
    placed = tuple(
        Word(w, 0.9, BoundingBox(10 + 50 * i, top, 50 + 50 * i, top, 50 + 50 * i, top + 20,
                                 10 + 50 * i, top + 20))
        for i, w in enumerate(words)
    )  # fmt: skip
    return OcrResult(lines=(Line(placed),), raw={})


def finished(
    source: str,
    words: list[str],
    *,
    page: int | None = None,
    pages: int | None = None,
    size: tuple[int, int] = (400, 200),
    transform: Transform | None = None,
    ok: bool = True,
) -> FinishedPage:
    """A page done as the batch hands it on: ``source`` is the input's, pages add #page=N."""
    name = source if page is None else f"{source}#page={page}"
    if transform is None and page is not None:
        transform = Transform(converted_from="pdf", page=page, pages=pages, dpi=150)
    result = recognized(words)
    image = make_png(" ".join(words), *size)
    payload = Payload(name, Endpoint.GENERAL, image=image, kind="png", transform=transform)
    error = None if ok else ErrorInfo(5000000, "server", False, True)
    record = Record(name, ok, Endpoint.GENERAL, 1, 1.0, result.text if ok else None,
                    {} if ok else None, error, transform=transform,
                    parsed=result if ok else None)  # fmt: skip
    return FinishedPage(source, record, payload)


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def pdf_words(path: Path) -> list[list[str]]:
    """Each page's extracted text, split into words (PDFium)."""
    document = pdfium.PdfDocument(path)
    try:
        texts = []
        for page in document:
            text_page = page.get_textpage()
            texts.append(text_page.get_text_range().split())
            text_page.close()
            page.close()
        return texts
    finally:
        document.close()


# --- ALTO and hOCR ----------------------------------------------------------------------


async def test_alto_and_hocr_mirror_each_page_and_read_back_with_lxml(tmp_path: Path) -> None:
    files = PageFiles([AltoFolder(tmp_path / "alto"), HocrFolder(tmp_path / "hocr")])
    await files.write_page(finished("scans/book.pdf", ["첫", "page"], page=1, pages=2))
    await files.write_page(finished("scans/book.pdf", ["second", "쪽"], page=2, pages=2))
    await files.write_page(finished("scans/p1.png", ["alone"]))

    assert files_below(tmp_path) == [
        "alto/scans/book.pdf.page1.xml",
        "alto/scans/book.pdf.page2.xml",
        "alto/scans/p1.png.xml",
        "hocr/scans/book.pdf.page1.hocr",
        "hocr/scans/book.pdf.page2.hocr",
        "hocr/scans/p1.png.hocr",
    ]
    alto = etree.parse(str(tmp_path / "alto/scans/book.pdf.page2.xml"))
    ns = {"a": ALTO_NAMESPACE}
    (page,) = alto.findall(".//a:Page", ns)
    assert (page.get("PHYSICAL_IMG_NR"), page.get("WIDTH"), page.get("HEIGHT")) == (
        "2",
        "400",
        "200",
    )
    assert alto.findtext(".//a:fileName", namespaces=ns) == "scans/book.pdf"
    strings = alto.findall(".//a:String", ns)
    assert [(s.get("CONTENT"), s.get("HPOS"), s.get("VPOS"), s.get("WIDTH")) for s in strings] == [
        ("second", "10", "10", "40"),
        ("쪽", "60", "10", "40"),
    ]

    hocr = etree.parse(str(tmp_path / "hocr/scans/book.pdf.page1.hocr"))
    xhtml = {"h": XHTML_NAMESPACE}
    (div,) = hocr.findall(".//h:div[@class='ocr_page']", xhtml)
    title = div.get("title") or ""
    assert "bbox 0 0 400 200" in title
    assert "ppageno 0" in title
    assert "scan_res 150 150" in title  # the PDF page's rendering resolution
    words = hocr.findall(".//h:span[@class='ocrx_word']", xhtml)
    assert [(w.text, w.get("title")) for w in words] == [
        ("첫", "bbox 10 10 50 30; x_wconf 90"),
        ("page", "bbox 60 10 100 30; x_wconf 90"),
    ]
    assert "ALTO files: 3 written to" in files.describe()


async def test_a_shrunk_image_is_described_at_its_original_size(tmp_path: Path) -> None:
    shrunk = Transform(shrunk_from_bytes=9_000_000, shrunk_to_bytes=4_000_000, quality=80,
                       size=(400, 200), original_size=(800, 400))  # fmt: skip
    files = PageFiles([AltoFolder(tmp_path)])
    await files.write_page(finished("photo.jpg", ["big"], transform=shrunk))
    alto = etree.parse(str(tmp_path / "photo.jpg.xml"))
    ns = {"a": ALTO_NAMESPACE}
    page = alto.find(".//a:Page", ns)
    assert page is not None
    assert (page.get("WIDTH"), page.get("HEIGHT")) == ("800", "400")
    string = alto.find(".//a:String", ns)
    assert string is not None
    assert (string.get("HPOS"), string.get("WIDTH"), string.get("HEIGHT")) == ("20", "80", "40")


async def test_failures_and_urls_get_no_files_and_urls_are_counted(tmp_path: Path) -> None:
    files = PageFiles([AltoFolder(tmp_path / "alto")])
    await files.write_page(finished("bad.png", ["x"], ok=False))
    url = "https://h.test/a.png"
    record = finished(url, ["web"]).record
    await files.write_page(FinishedPage(url, record, Payload(url, Endpoint.GENERAL, url=url)))
    assert not (tmp_path / "alto").exists()
    assert files.failed == 0
    assert "none for 1 URL input (the API fetched the image" in files.describe()


async def test_a_file_that_cannot_be_written_is_warned_about_and_the_rest_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "alto"
    root.mkdir()
    (root / "scans").symlink_to(outside, target_is_directory=True)
    files = PageFiles([AltoFolder(root)])
    with caplog.at_level(logging.WARNING):
        await files.write_page(finished("scans/a.png", ["x"]))
        await files.write_page(finished("fine.png", ["y"]))
    assert list(outside.iterdir()) == []  # the symlink was not followed
    assert (root / "fine.png.xml").is_file()
    assert files.failed == 1
    assert "ALTO file of scans/a.png not written" in caplog.text
    assert "is in the way" in caplog.text  # O_NOFOLLOW: a symlinked folder is refused


# --- searchable PDFs ----------------------------------------------------------------------


@needs_font
async def test_a_single_image_is_one_pdf_and_its_words_read_back(tmp_path: Path) -> None:
    folder = SearchablePdfFolder(tmp_path, resumed=False)
    await PageFiles([folder]).write_page(finished("scans/p1.png", ["hello", "안녕"]))
    assert pdf_words(tmp_path / "scans/p1.png.pdf") == [["hello", "안녕"]]
    assert not (tmp_path / ".parts").exists()
    assert folder.written == 1


@needs_font
async def test_pages_finishing_out_of_order_are_joined_once_all_are_there(tmp_path: Path) -> None:
    folder = SearchablePdfFolder(tmp_path, resumed=False)
    files = PageFiles([folder])
    out = tmp_path / "box/book.pdf.pdf"
    for number in (3, 1):
        await files.write_page(finished("box/book.pdf", [f"p{number}"], page=number, pages=3))
    assert not out.exists()
    parts = tmp_path / ".parts/box/book.pdf"
    assert sorted(p.name for p in parts.iterdir()) == [
        "page-000001-of-000003.pdf",
        "page-000003-of-000003.pdf",
    ]
    await files.write_page(finished("box/book.pdf", ["p2"], page=2, pages=3))
    assert pdf_words(out) == [["p1"], ["p2"], ["p3"]]
    assert not (tmp_path / ".parts").exists()  # parts and their empty folders removed
    assert folder.written == 1


@needs_font
async def test_a_resumed_run_joins_its_pages_with_those_of_the_earlier_run(tmp_path: Path) -> None:
    first = PageFiles([SearchablePdfFolder(tmp_path, resumed=False)])
    for number in (1, 2):
        await first.write_page(finished("book.pdf", [f"p{number}"], page=number, pages=3))
    await first.finish()
    (waiting,) = first.formats
    assert isinstance(waiting, SearchablePdfFolder)
    assert [(path.name, have, pages) for path, have, pages in waiting.waiting] == [
        ("book.pdf", 2, 3)
    ]
    assert "1 input waiting for pages" in first.describe()

    resumed = PageFiles([SearchablePdfFolder(tmp_path, resumed=True)])
    await resumed.write_page(finished("book.pdf", ["p3"], page=3, pages=3))
    assert pdf_words(tmp_path / "book.pdf.pdf") == [["p1"], ["p2"], ["p3"]]


@needs_font
async def test_a_run_that_is_not_resumed_never_joins_stale_pages(tmp_path: Path) -> None:
    first = PageFiles([SearchablePdfFolder(tmp_path, resumed=False)])
    for number in (1, 2):
        await first.write_page(finished("book.pdf", ["old"], page=number, pages=3))
    again = PageFiles([SearchablePdfFolder(tmp_path, resumed=False)])
    await again.write_page(finished("book.pdf", ["new"], page=3, pages=3))
    assert not (tmp_path / "book.pdf.pdf").exists()
    assert [p.name for p in (tmp_path / ".parts/book.pdf").iterdir()] == [
        "page-000003-of-000003.pdf"
    ]


@needs_font
async def test_the_end_of_a_run_joins_parts_a_crash_left_complete(tmp_path: Path) -> None:
    crashed = PageFiles([SearchablePdfFolder(tmp_path, resumed=False)])
    for number in (1, 2):
        await crashed.write_page(finished("a.pdf", [f"w{number}"], page=number, pages=3))
    await crashed.write_page(finished("b.pdf", ["b1"], page=1, pages=2))
    # As if killed between the last part and the join: every part of a.pdf there.
    last = finished("a.pdf", ["w3"], page=3, pages=3)
    assert last.payload.image is not None
    assert last.record.parsed is not None
    page = page_pdf(SearchablePage(last.payload.image, last.record.parsed, dpi=150))
    (tmp_path / ".parts/a.pdf/page-000003-of-000003.pdf").write_bytes(page)

    folder = SearchablePdfFolder(tmp_path, resumed=True)
    files = PageFiles([folder])
    await files.finish()
    assert pdf_words(tmp_path / "a.pdf.pdf") == [["w1"], ["w2"], ["w3"]]
    assert folder.joined_late == 1
    assert [(p.name, have, pages) for p, have, pages in folder.waiting] == [("b.pdf", 1, 2)]
    assert "1 joined from pages of earlier runs" in files.describe()
    assert not (tmp_path / ".parts/a.pdf").exists()


@needs_font
async def test_the_last_two_pages_finishing_at_once_make_one_whole_pdf(tmp_path: Path) -> None:
    folder = SearchablePdfFolder(tmp_path, resumed=False)
    files = PageFiles([folder])
    await files.write_page(finished("book.pdf", ["p1"], page=1, pages=3))
    images = [PageImage.of(finished("book.pdf", [f"p{n}"], page=n, pages=3)) for n in (2, 3)]
    start = threading.Barrier(2)

    def write(image: PageImage | None) -> None:
        assert image is not None
        start.wait()
        folder.write(image)

    threads = [threading.Thread(target=write, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pdf_words(tmp_path / "book.pdf.pdf") == [["p1"], ["p2"], ["p3"]]
    assert (folder.written, folder.failed) == (1, 0)


@needs_font
async def test_an_input_named_like_the_parts_folder_keeps_its_own_place(tmp_path: Path) -> None:
    files = PageFiles([SearchablePdfFolder(tmp_path, resumed=False)])
    await files.write_page(finished(".parts/x.png", ["mine"]))
    assert pdf_words(tmp_path / "%2Eparts/x.png.pdf") == [["mine"]]


def test_what_is_missing_is_said_with_the_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    assert digitize_support(pdf=False) is None
    monkeypatch.setitem(sys.modules, "pikepdf", None)
    assert digitize_support(pdf=False) is None  # ALTO and hOCR need lxml only
    said = digitize_support(pdf=True)
    assert said == "needs pikepdf, which is not installed: pip install 'ocr-async[digitize]'"


@needs_font
def test_a_font_is_found_for_the_text_layer() -> None:
    assert find_font().exists()
    assert os.path.basename(find_font()) == "NanumGothic.ttf"
