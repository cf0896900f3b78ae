"""The OCRmyPDF plugin, end to end: a real ``ocrmypdf`` against the emulator.

The emulator reads pixels with tesseract (Debian ``tesseract-ocr-kor``), so
the words are real; the test PDF, a scan of Latin and Hangul lines drawn in
NanumGothic, is made here with Pillow.
Every run uses two OCRmyPDF workers and User Access Key tokens, so the
emulator's counters show the one client the workers share: one token
issued for the whole document, one request per page.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("ocrmypdf", reason="the plugin needs the 'ocrmypdf' extra")

import pypdfium2 as pdfium
from PIL import Image, ImageDraw, ImageFont

from ocr_async.emulator import EmulatorConfig, RunningEmulator, running_emulator
from ocr_async.emulator.engines import TesseractEngine

NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
pytestmark = [
    pytest.mark.skipif(shutil.which("tesseract") is None, reason="apt-get install tesseract-ocr"),
    pytest.mark.skipif(not NANUM.exists(), reason="apt-get install fonts-nanum"),
    pytest.mark.timeout(180),
]
UAK = {"plugin-uak": "plugin-secret-51c"}
PAGES = [
    ("P", ["Searchable scans for", "the city archive"]),
    ("L", ["Invoice 2026 total paid"]),
    ("P", ["안녕하세요 한국어 문서입니다"]),
]


def make_pdf(path: Path, pages: list[tuple[str, list[str]]]) -> None:
    """A scan: each page an image of its lines (A4 at 150 dpi), no text layer."""
    font = ImageFont.truetype(str(NANUM), 48)
    images = []
    for orientation, lines in pages:
        size = (1240, 1754) if orientation == "P" else (1754, 1240)
        image = Image.new("L", size, 255)
        draw = ImageDraw.Draw(image)
        for number, line in enumerate(lines):
            draw.text((150, 200 + 110 * number), line, font=font, fill=0)
        images.append(image)
    images[0].save(path, "PDF", save_all=True, append_images=images[1:], resolution=150)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    if "kor" not in TesseractEngine().languages:
        pytest.skip("apt-get install tesseract-ocr-kor")
    config = EmulatorConfig(engine=TesseractEngine(), uak=UAK, tokens=None)
    async with running_emulator(config) as running:
        yield running


def plugin_env(emulator: RunningEmulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NHN_", "OCR_ASYNC_"))}
    ((uak_id, secret),) = UAK.items()
    env.update(
        NHN_OCR_BASE_URL=emulator.base_url,
        NHN_OAUTH_URL=emulator.base_url,
        NHN_OCR_APPKEY="plugin-appkey",
        NHN_UAK_ID=uak_id,
        NHN_UAK_SECRET=secret,
    )
    return env


async def ocrmypdf(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ocrmypdf",
        "--plugin",
        "ocr_async.ocrmypdf",
        "--jobs",
        "2",
        "--output-type",
        "pdf",
        *args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode("utf-8", "replace")


def page_texts(path: Path) -> list[str]:
    document = pdfium.PdfDocument(path)
    try:
        return [document[i].get_textpage().get_text_range() for i in range(len(document))]
    finally:
        document.close()


async def test_a_pdf_gets_a_text_layer_from_nhn_ocr(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    source, out, sidecar = tmp_path / "in.pdf", tmp_path / "out.pdf", tmp_path / "out.txt"
    make_pdf(source, PAGES)
    code, output = await ocrmypdf(
        plugin_env(emulator), "-l", "kor+eng", "--sidecar", str(sidecar), str(source), str(out)
    )
    assert code == 0, output
    # One client for both workers: one token, one request per page.
    assert emulator.stats.tokens_issued == 1
    assert emulator.stats.requests == emulator.stats.answered_ok == len(PAGES)
    # The hOCR's words, as OCRmyPDF wrote them beside the PDF, word for word.
    pages = sidecar.read_text(encoding="utf-8").split("\f")
    assert [page.split() for page in pages] == [" ".join(lines).split() for _, lines in PAGES]
    # The PDF's own text layer, where each word sits on the page.
    texts = page_texts(out)
    assert [text.split() for text in texts[:2]] == [" ".join(ls).split() for _, ls in PAGES[:2]]
    # OCRmyPDF writes Hangul in its glyphless font when no Noto CJK font is
    # installed, and then puts no space between the words.
    assert "".join(texts[2].split()) == "".join(PAGES[2][1][0].split())
    document = pdfium.PdfDocument(out)
    try:
        assert [document[i].get_size()[0] > document[i].get_size()[1] for i in range(3)] == [
            False,
            True,
            False,
        ]
    finally:
        document.close()


async def test_missing_settings_stop_before_any_page(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    source = tmp_path / "in.pdf"
    make_pdf(source, PAGES[:1])
    env = plugin_env(emulator)
    del env["NHN_OCR_APPKEY"]
    code, output = await ocrmypdf(env, str(source), str(tmp_path / "out.pdf"))
    assert code == 1  # OCRmyPDF's bad_args
    assert "NHN OCR: no app key" in output
    assert emulator.stats.requests == 0
    assert not (tmp_path / "out.pdf").exists()


async def test_a_page_the_api_refuses_stops_the_document_with_its_reason(
    tmp_path: Path,
) -> None:
    # INVALID_FILE is not worth a retry: the page fails at once.
    config = EmulatorConfig(engine=TesseractEngine(), uak=UAK, tokens=None, fault=lambda n: 4000002)
    async with running_emulator(config) as emulator:
        source = tmp_path / "in.pdf"
        make_pdf(source, PAGES[:1])
        code, output = await ocrmypdf(plugin_env(emulator), str(source), str(tmp_path / "o.pdf"))
    assert code == 7  # OCRmyPDF's child_process_error
    assert "NHN OCR failed after 1 attempt(s): [4000002] INVALID_FILE" in output
    assert not (tmp_path / "o.pdf").exists()


async def test_refused_credentials_stop_every_worker(tmp_path: Path) -> None:
    config = EmulatorConfig(engine=TesseractEngine(), uak={"other": "key"}, tokens=None)
    async with running_emulator(config) as emulator:
        source = tmp_path / "in.pdf"
        make_pdf(source, PAGES)
        code, output = await ocrmypdf(plugin_env(emulator), str(source), str(tmp_path / "o.pdf"))
    assert code == 7
    assert "the OAuth server refused the User Access Key" in output
    assert emulator.stats.requests == 0  # no OCR call without a token
