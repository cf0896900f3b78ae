"""A folder of real scans, converted, shrunk and routed, read right by a real engine.

A 3-page TIFF, a BMP, a 1:4 receipt and an 8 MB photo, each rendered with
Pillow from known text, go through
``ocr-async run DIR --convert --shrink --endpoint auto`` against the
emulator with a real OCR engine, and every page comes back right: at least
:data:`~ocr_async.cli.demo.PASS_SHARE` of its known words (the demo's matching:
case-insensitive, punctuation stripped, multiset overlap). Each record's
``transform`` says what was done: converted from TIFF as page n of 3, from
BMP, shrunk for the photo, cropping chosen for the receipt.

The text is English: rapidocr's bundled model reads no Korean (see
:mod:`ocr_async.emulator.engines.rapidocr`), and the scenario is about the
scans, not the language. Each engine that is installed runs it; one that
is not is skipped, with how to install it. (Issue 5's acceptance scenario.)
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from ocr_async import cli
from ocr_async.cli.demo import PASS_SHARE, words_right
from ocr_async.emulator import EmulatorConfig, running_emulator
from ocr_async.emulator.engines import engine_from_name, real_engine
from ocr_async.emulator.make_samples import find_font, render_text
from ocr_async.errors import ConfigurationError
from ocr_async.protocol import DEFAULT_MAX_BYTES

TIFF_PAGES = (
    "Page one of the lease\nThe tenant pays rent monthly",
    "Page two of the lease\nPets are allowed with consent",
    "Page three of the lease\nSigned in Seoul on March third",
)
BMP_TEXT = "Memo to all staff\nThe office closes at six"
RECEIPT_TEXT = "CORNER CAFE\nCOFFEE 4500\nBAGEL 3200\nTOTAL 7700\nTHANK YOU"
PHOTO_TEXT = "Notice board photo\nMeeting in room B at three\nBring the signed forms"
PHOTO_MIN_BYTES = 8 * 1000 * 1000


def font() -> Path:
    try:
        return find_font("latin")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def page(text: str, size: tuple[int, int], font_size: int) -> Image.Image:
    return render_text(text, font(), font_size, canvas=size, padding=font_size)


def noisy_photo(text: str) -> bytes:
    """A 4000x3000 colour JPEG at q95: text on grainy paper, over 8 MB."""
    width, height = 4000, 3000
    ink = Image.merge("RGB", [page(text, (width, height), 150)] * 3)
    grain = Image.merge("RGB", [Image.effect_noise((width, height), 40) for _ in range(3)])
    paper = ImageChops.add(grain, Image.new("RGB", (width, height), (90, 90, 90)))
    buffer = io.BytesIO()
    ImageChops.multiply(ink, paper).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The folder, and each expected source's known text."""
    folder = tmp_path_factory.mktemp("scans")
    first, *rest = (page(text, (1000, 700), 44) for text in TIFF_PAGES)
    first.save(folder / "lease.tiff", save_all=True, append_images=rest, compression="tiff_deflate")
    page(BMP_TEXT, (900, 300), 44).save(folder / "memo.bmp")
    page(RECEIPT_TEXT, (400, 1600), 36).save(folder / "receipt.png")
    photo = noisy_photo(PHOTO_TEXT)
    assert len(photo) > PHOTO_MIN_BYTES
    (folder / "photo.jpg").write_bytes(photo)
    expected = {f"{folder / 'lease.tiff'}#page={n}": text for n, text in enumerate(TIFF_PAGES, 1)}
    expected[str(folder / "memo.bmp")] = BMP_TEXT
    expected[str(folder / "receipt.png")] = RECEIPT_TEXT
    expected[str(folder / "photo.jpg")] = PHOTO_TEXT
    return folder, expected


@pytest.fixture(params=["rapidocr", "tesseract"])
def engine(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    try:
        real_engine(name)
    except ConfigurationError as exc:
        pytest.skip(f"no real OCR engine {name!r} here: {exc}")
    return name


async def test_a_folder_of_scans_goes_through_with_every_page_right(
    engine: str,
    scans: tuple[Path, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, expected = scans
    output = tmp_path / "scans.jsonl"
    monkeypatch.setenv("NHN_OCR_TOKEN", "scan-token")
    monkeypatch.setenv("NHN_OCR_APPKEY", "scan-appkey")
    for name in ("NHN_UAK_ID", "NHN_UAK_SECRET", "NHN_OCR_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    # Embedded text first, as `ocr-async serve --engine` runs: converted and
    # shrunk images carry none, so every page is read from its pixels.
    config = EmulatorConfig(engine=engine_from_name(engine), tokens=frozenset({"scan-token"}))
    async with running_emulator(config) as emulator:
        argv = [
            "run", str(folder), "--convert", "--shrink", "--endpoint", "auto",
            "--output", str(output), "--base-url", emulator.base_url, "--no-progress",
        ]  # fmt: skip
        code = await asyncio.to_thread(cli.main, argv)
    records = {r["source"]: r for r in map(json.loads, output.read_text().splitlines())}
    assert code == 0, records
    assert set(records) == set(expected)

    for source, text in expected.items():
        record = records[source]
        assert record["ok"], record
        right, known = words_right(text, record["text"])
        assert right >= PASS_SHARE * known, f"{source}: {right}/{known}: {record['text']!r}"

    transforms: dict[str, dict[str, Any]] = {
        Path(source).name: records[source]["transform"] for source in expected
    }
    for n in (1, 2, 3):
        tiff_page = transforms[f"lease.tiff#page={n}"]
        assert tiff_page["converted_from"] == "tiff"
        assert (tiff_page["page"], tiff_page["pages"]) == (n, 3)
        assert tiff_page["endpoint_chosen"] == "general"
    assert transforms["memo.bmp"]["converted_from"] == "bmp"
    assert "page" not in transforms["memo.bmp"]

    receipt = records[str(folder / "receipt.png")]
    assert transforms["receipt.png"]["endpoint_chosen"] == "cropping"
    assert transforms["receipt.png"]["aspect_ratio"] == 4.0
    assert receipt["endpoint"] == "cropping"
    assert receipt["result"]["slicesImages"] == 2

    shrunk = transforms["photo.jpg"]["shrunk"]
    assert shrunk["from_bytes"] > PHOTO_MIN_BYTES
    assert shrunk["to_bytes"] < DEFAULT_MAX_BYTES
    assert transforms["photo.jpg"]["endpoint_chosen"] == "general"

    # Real recognition: boxes and confidences are the engine's, not the
    # fallback's fixed layout (every word 0.99, 24 px high).
    words = [w for group in receipt["result"]["listOfInferTexts"] for w in group["inferTexts"]]
    assert len({w["conf"] for w in words}) > 1
