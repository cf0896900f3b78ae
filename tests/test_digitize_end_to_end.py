"""Digitization end to end: PDFs, TIFF pages and PNGs in; ALTO, hOCR and searchable PDFs out.

``ocr-async run DIR --convert --alto A --hocr H --searchable-pdf P`` against
the emulator, over a folder holding a 5-page PDF (portrait and landscape,
English and Korean), a 2-page PDF, a 3-page TIFF and two PNGs, all made
here (fpdf2 and Pillow, in the fonts CI installs):

* with a real engine (tesseract, kor+eng): one record per page, each read
  right; every output file read back by a reader of its own (lxml against
  ALTO v4's structure, OCRmyPDF's hOCR parser, PDFium for the PDFs), words
  and boxes equal to the records', the PDFs' text the records' word for word
  (issue 12's acceptance scenario);
* with the emulator's quick engine: bad PDFs get one error record each, and
  a run killed mid-PDF (``kill -9``) and resumed sends only the pages not
  done, counted at the emulator, and still makes every file.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
pytest.importorskip("fpdf", reason="the outputs need the 'digitize' extra")
pytest.importorskip("lxml", reason="the outputs need the 'digitize' extra")

import pypdfium2 as pdfium
from lxml import etree
from pdfs import NANUM, text_pdf, zero_page_pdf
from PIL import Image

from ocr_async import cli
from ocr_async.cli.demo import PASS_SHARE, words_right
from ocr_async.emulator import EmulatorConfig, RunningEmulator, make_png, running_emulator
from ocr_async.emulator.engines import engine_from_name, real_engine
from ocr_async.emulator.make_samples import find_font, render_text
from ocr_async.errors import ConfigurationError
from ocr_async.outputs.alto import ALTO_NAMESPACE

pytestmark = pytest.mark.skipif(not NANUM.exists(), reason="apt-get install fonts-nanum")

TOKEN = "digitize-token"
APPKEY = "digitize-appkey"
#: PDF pages are rendered at this (the default is 300): half the pixels to
#: read, and the text is still 60 pixels high.
DPI = 150
BOOK = (
    ("P", "Annual report of the archive\nThe reading room opens at nine"),
    ("L", "Landscape table of holdings\nMaps charts and drawings"),
    ("P", "국립 문서 보관소\n열람실 이용 안내"),
    ("L", "Second landscape page\nLetters from the harbour office"),
    ("P", "Index of names\nPark Kim Lee and Choi"),
)
NOTICE = (
    ("P", "Notice to readers\nPhotography is allowed without flash"),
    ("P", "Second page of the notice\nBags stay in the lockers"),
)
TIFF_PAGES = (
    "Lease page one\nThe tenant pays monthly",
    "Lease page two\nPets need written consent",
    "Lease page three\nSigned in Seoul",
)
PNGS = {"receipt.png": "Receipt for copies\nTwelve pages scanned", "hangul.png": "한글 문서 검색"}


def emulator_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for the emulator; the run works in ``tmp_path``, sources relative to it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
    monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
    for name in ("NHN_UAK_ID", "NHN_UAK_SECRET", "NHN_OCR_TOKEN_FILE", "NHN_OCR_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def run_argv(folder: str, emulator: RunningEmulator, *extra: str) -> list[str]:
    """The run of the scenario, in the current folder: out.jsonl, alto/, hocr/, pdf/."""
    return [
        "run", folder, "--convert", "--pdf-dpi", str(DPI), "--output", "out.jsonl",
        "--base-url", emulator.base_url, "--alto", "alto", "--hocr", "hocr",
        "--searchable-pdf", "pdf", "--no-progress", *extra,
    ]  # fmt: skip


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    return {r["source"]: r for r in map(json.loads, path.read_text("utf-8").splitlines())}


def record_words(record: dict[str, Any]) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Each word of a record with its box as whole pixels (outward), as the outputs place it."""
    result = record["result"]
    size = image_size_of(record)
    words = []
    for texts, boxes in zip(result["listOfInferTexts"], result["listOfBoundingBoxes"], strict=True):
        for word, box in zip(texts["inferTexts"], boxes["boundingBoxes"], strict=True):
            if not word["value"].strip():
                continue
            xs = [box[f"x{n}"] for n in range(1, 5)]
            ys = [box[f"y{n}"] for n in range(1, 5)]
            left = min(max(math.floor(min(xs)), 0), size[0])
            top = min(max(math.floor(min(ys)), 0), size[1])
            right = min(max(math.ceil(max(xs)), left), size[0])
            bottom = min(max(math.ceil(max(ys)), top), size[1])
            words.append((word["value"].strip(), (left, top, right, bottom)))
    return words


def image_size_of(record: dict[str, Any]) -> tuple[int, int]:
    transform = record["transform"] or {}
    if "size" in transform:  # a rendered PDF page
        width, height = transform["size"]
        return width, height
    return SIZES[record["source"]]


#: The pixel size of each image input or converted TIFF page, by source (filled in).
SIZES: dict[str, tuple[int, int]] = {}


def make_archive(folder: Path) -> dict[str, str]:
    """The folder of the scenario; each expected source's known text."""
    folder.mkdir()
    (folder / "book.pdf").write_bytes(text_pdf(list(BOOK), size=28))
    (folder / "notice.pdf").write_bytes(text_pdf(list(NOTICE), size=28))
    latin, hangul = find_font("latin"), find_font("hangul")
    first, *rest = (render_text(t, latin, 44, canvas=(1000, 500)) for t in TIFF_PAGES)
    first.save(folder / "lease.tiff", save_all=True, append_images=rest, compression="tiff_deflate")
    for name, text in PNGS.items():
        font = hangul if name == "hangul.png" else latin
        render_text(text, font, 44).save(folder / name)
    expected = {f"{folder / 'book.pdf'}#page={n}": t for n, (_, t) in enumerate(BOOK, 1)}
    expected |= {f"{folder / 'notice.pdf'}#page={n}": t for n, (_, t) in enumerate(NOTICE, 1)}
    expected |= {f"{folder / 'lease.tiff'}#page={n}": t for n, t in enumerate(TIFF_PAGES, 1)}
    expected |= {str(folder / name): text for name, text in PNGS.items()}
    for n in (1, 2, 3):
        SIZES[f"{folder / 'lease.tiff'}#page={n}"] = (1000, 500)
    for name in PNGS:
        with Image.open(folder / name) as image:
            SIZES[str(folder / name)] = image.size
    return expected


# --- the readers --------------------------------------------------------------------------


def alto_words(path: Path) -> tuple[tuple[int, int], list[tuple[str, tuple[int, int, int, int]]]]:
    """The page size and the words (CONTENT, box) of an ALTO file, checking its structure."""
    ns = {"a": ALTO_NAMESPACE}
    root = etree.parse(str(path)).getroot()
    assert root.tag == f"{{{ALTO_NAMESPACE}}}alto"
    assert root.findtext("a:Description/a:MeasurementUnit", namespaces=ns) == "pixel"
    (page,) = root.findall("a:Layout/a:Page", ns)
    space = page.find("a:PrintSpace", ns)
    assert space is not None
    words = []
    for line in space.iterfind("a:TextBlock/a:TextLine", ns):
        for string in line.iterfind("a:String", ns):
            left, top = int(string.get("HPOS", "")), int(string.get("VPOS", ""))
            width, height = int(string.get("WIDTH", "")), int(string.get("HEIGHT", ""))
            assert 0.0 <= float(string.get("WC", "")) <= 1.0
            words.append((string.get("CONTENT", ""), (left, top, left + width, top + height)))
    return (int(page.get("WIDTH", "")), int(page.get("HEIGHT", ""))), words


def hocr_words(path: Path) -> tuple[tuple[int, int], list[tuple[str, tuple[int, int, int, int]]]]:
    """The page size and the words of an hOCR file, as OCRmyPDF's parser reads them."""
    parser = pytest.importorskip("ocrmypdf.hocrtransform.hocr_parser")
    page = parser.HocrParser(path).parse()
    assert page.bbox is not None
    words = [
        (word.text, (word.bbox.left, word.bbox.top, word.bbox.right, word.bbox.bottom))
        for paragraph in page.children
        for line in paragraph.children
        for word in line.children
    ]
    return (int(page.bbox.right), int(page.bbox.bottom)), words


def pdf_page_words(path: Path) -> list[list[str]]:
    """Each page's text as PDFium extracts it, in words."""
    document = pdfium.PdfDocument(path)
    try:
        pages = []
        for page in document:
            text = page.get_textpage()
            pages.append(text.get_text_range().split())
            text.close()
            page.close()
        return pages
    finally:
        document.close()


# --- with a real engine: the acceptance scenario -------------------------------------------


@pytest.fixture
def tesseract() -> str:
    try:
        real_engine("tesseract")
    except ConfigurationError as exc:
        pytest.skip(f"no tesseract here: {exc}")
    return "tesseract"


@pytest.mark.timeout(300)
async def test_an_archive_goes_through_a_real_engine_into_readable_alto_hocr_and_pdfs(
    tesseract: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator_env(monkeypatch, tmp_path)
    folder = Path("archive")
    expected = make_archive(folder)
    config = EmulatorConfig(engine=engine_from_name(tesseract), tokens=frozenset({TOKEN}))
    async with running_emulator(config) as emulator:
        code = await asyncio.to_thread(cli.main, run_argv("archive", emulator))
    records = read_records(tmp_path / "out.jsonl")
    assert code == 0, records
    assert set(records) == set(expected)  # one record per page

    for source, text in expected.items():
        record = records[source]
        right, known = words_right(text, record["text"])
        assert right >= PASS_SHARE * known, f"{source}: {right}/{known}: {record['text']!r}"
        name = source.replace("#page=", ".page")
        words = record_words(record)
        size = image_size_of(record)
        assert alto_words(tmp_path / "alto" / f"{name}.xml") == (size, words), source
        assert hocr_words(tmp_path / "hocr" / f"{name}.hocr") == (size, words), source
    book = pdf_page_words(tmp_path / "pdf" / "archive" / "book.pdf.pdf")
    assert len(book) == len(BOOK)
    for number, page_words in enumerate(book, 1):
        record = records[f"{folder / 'book.pdf'}#page={number}"]
        assert page_words == record["text"].split(), number
        assert record["transform"]["dpi"] == DPI
    for name, pages in (("notice.pdf", 2), ("lease.tiff", 3)):
        joined = pdf_page_words(tmp_path / "pdf" / "archive" / f"{name}.pdf")
        texts = [records[f"{folder / name}#page={n}"]["text"].split() for n in range(1, pages + 1)]
        assert joined == texts, name
    for name in PNGS:
        (only,) = pdf_page_words(tmp_path / "pdf" / "archive" / f"{name}.pdf")
        assert only == records[str(folder / name)]["text"].split()
    assert not (tmp_path / "pdf" / ".parts").exists()
    # Landscape pages stay landscape in the PDF, at the page's physical size
    # (A4, within the point that whole pixels at 150 dpi round up to).
    document = pdfium.PdfDocument(tmp_path / "pdf" / "archive" / "book.pdf.pdf")
    try:
        sizes = [page.get_size() for page in document]
    finally:
        document.close()
    a4 = [(595.28, 841.89), (841.89, 595.28)] * 2 + [(595.28, 841.89)]
    for (width, height), (a4_width, a4_height) in zip(sizes, a4, strict=True):
        assert abs(width - a4_width) < 1, sizes
        assert abs(height - a4_height) < 1, sizes


# --- with the quick engine: bad PDFs, and resuming page by page ------------------------------


async def test_bad_pdfs_get_one_record_each_and_the_rest_get_their_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator_env(monkeypatch, tmp_path)
    write_files(
        Path("in"),
        {
            "locked.pdf": text_pdf([("P", "secret")], password="user"),
            "broken.pdf": text_pdf([("P", "cut")])[:300],
            "empty.pdf": zero_page_pdf(),
            "fine.pdf": text_pdf([("P", "one"), ("P", "two")]),
            "photo.png": make_png("a caption"),
        },
    )
    async with running_emulator(EmulatorConfig(tokens=frozenset({TOKEN}))) as emulator:
        code = await asyncio.to_thread(cli.main, run_argv("in", emulator))
        assert emulator.stats.requests == 3  # two pages and a photo; nothing for the rest
    records = read_records(tmp_path / "out.jsonl")
    assert code == 1
    codes = {Path(s).name: (r["error"] or {}).get("code") for s, r in records.items()}
    assert codes == {
        "locked.pdf": "pdf_encrypted",
        "broken.pdf": "pdf_broken",
        "empty.pdf": "pdf_empty",
        "fine.pdf#page=1": None,
        "fine.pdf#page=2": None,
        "photo.png": None,
    }
    pdfs = sorted(p.name for p in (tmp_path / "pdf" / "in").iterdir())
    assert pdfs == ["fine.pdf.pdf", "photo.png.pdf"]
    assert pdf_page_words(tmp_path / "pdf" / "in" / "photo.png.pdf") == [["a", "caption"]]
    err = capsys.readouterr().err
    assert "failed by code: pdf_broken x1, pdf_empty x1, pdf_encrypted x1" in err
    assert "searchable PDFs: 2 written to" in err


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)


def complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_lines(path: Path, count: int, process: asyncio.subprocess.Process) -> None:
    """Until ``path`` has ``count`` complete lines (the run is not over before)."""
    while complete_lines(path) < count:
        assert process.returncode is None, "the run ended before it could be killed"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(120)
async def test_a_pdf_killed_mid_way_is_resumed_page_by_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = 8
    emulator_env(monkeypatch, tmp_path)
    folder = Path("in")
    write_files(folder, {"long.pdf": text_pdf([("P", f"page {n}") for n in range(pages)])})
    # Slow answers and one request at a time: the kill lands mid-document.
    config = EmulatorConfig(tokens=frozenset({TOKEN}), latency=0.3)
    async with running_emulator(config) as emulator:
        argv = run_argv("in", emulator, "--concurrency", "1")
        env = {**os.environ, "NHN_OCR_TOKEN": TOKEN, "NHN_OCR_APPKEY": APPKEY}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ocr_async", *argv, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            await asyncio.wait_for(wait_for_lines(tmp_path / "out.jsonl", 3, process), 60)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        before = read_records(tmp_path / "out.jsonl")
        assert 3 <= len(before) < pages
        emulator.stats.reset()
        code = await asyncio.to_thread(cli.main, [*argv, "--resume"])
        resent = emulator.stats.requests
    records = read_records(tmp_path / "out.jsonl")
    assert code == 0
    assert set(records) == {f"{folder / 'long.pdf'}#page={n}" for n in range(1, pages + 1)}
    assert resent == pages - len(before)  # only the rest was sent
    alto = sorted(p.name for p in (tmp_path / "alto" / "in").iterdir())
    assert alto == [f"long.pdf.page{n}.xml" for n in range(1, pages + 1)]
    joined = pdf_page_words(tmp_path / "pdf" / "in" / "long.pdf.pdf")
    assert joined == [
        records[f"{folder / 'long.pdf'}#page={n}"]["text"].split() for n in range(1, pages + 1)
    ]
    assert not (tmp_path / "pdf" / ".parts").exists()


def test_a_page_output_folder_that_is_a_file_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator_env(monkeypatch, tmp_path)
    (tmp_path / "a.png").write_bytes(make_png("a"))
    (tmp_path / "taken").write_text("a file")
    argv = ["run", str(tmp_path / "a.png"), "-o", str(tmp_path / "out.jsonl"),
            "--alto", str(tmp_path / "taken")]  # fmt: skip
    assert cli.main(argv) == 2
    assert "--alto" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
