"""Tests for the bundled samples (ocr_async.emulator.samples) and their build step.

Each sample is real pixels rendered from its known text and also carries
that text embedded, so the default engine reads it deterministically.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from ocr_async.emulator import SAMPLES, iter_samples, sample_path, write_samples
from ocr_async.emulator.engine import recognize, split_words
from ocr_async.emulator.images import embedded_text, image_size
from ocr_async.emulator.make_samples import RECIPES, find_font, main, render_sample
from ocr_async.emulator.samples import SAMPLES_DIR

# The wheel should stay small.
MAX_TOTAL_BYTES = 500 * 1024


def fonts_installed() -> bool:
    try:
        for role in ("latin", "hangul"):
            find_font(role)
    except FileNotFoundError:
        return False
    return True


needs_fonts = pytest.mark.skipif(
    not fonts_installed(), reason="rendering needs fonts-dejavu-core and fonts-nanum"
)


def pixels(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("L")


def test_samples_cover_english_korean_png_jpeg_and_no_text() -> None:
    names = set(SAMPLES)
    assert {"hello.png", "stella.jpg", "korean.png", "blank.png"} <= names
    assert any(n.endswith(".png") for n in names)
    assert any(n.endswith(".jpg") for n in names)
    assert "안녕하세요 세계" in SAMPLES.values()
    assert "" in SAMPLES.values()  # the 4000501 case
    assert set(RECIPES) == names
    words = [w for text in SAMPLES.values() for w in text.split()]
    assert len(words) >= 40  # enough for a words-right figure to mean something


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_bundled_sample_holds_its_text(name: str) -> None:
    data = sample_path(name).read_bytes()
    assert embedded_text(data) == SAMPLES[name]
    assert recognize(data) == split_words(SAMPLES[name])
    assert image_size(data) is not None


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_bundled_sample_is_real_pixels(name: str) -> None:
    image = pixels(sample_path(name).read_bytes())
    assert image.size == image_size(sample_path(name).read_bytes())
    extrema = image.getextrema()
    assert isinstance(extrema[0], int | float)
    assert isinstance(extrema[1], int | float)
    darkest, lightest = extrema[0], extrema[1]
    if SAMPLES[name]:
        assert darkest < 64
        assert lightest > 224
        assert image.height >= 80  # large enough for an engine to read
    else:
        assert darkest == lightest == 255  # blank


def test_long_receipt_is_long_enough_for_two_slices() -> None:
    width, height = image_size(sample_path("long-receipt.png").read_bytes()) or (0, 0)
    assert width / height == 4


def test_samples_are_small() -> None:
    total = sum(path.stat().st_size for path, _ in iter_samples())
    assert total < MAX_TOTAL_BYTES
    assert sorted(p.name for p in SAMPLES_DIR.iterdir()) == sorted(SAMPLES)


def test_iter_samples_lists_every_sample_once() -> None:
    pairs = list(iter_samples())
    assert [path.name for path, _ in pairs] == sorted(SAMPLES)
    assert all(path.is_file() and text == SAMPLES[path.name] for path, text in pairs)


def test_sample_path_refuses_unknown_names() -> None:
    with pytest.raises(KeyError, match="no sample named"):
        sample_path("../samples.py")


def test_write_samples_copies_the_bundled_files(tmp_path: Path) -> None:
    written = write_samples(tmp_path / "fresh")
    assert sorted(p.name for p in written) == sorted(SAMPLES)
    for path in written:
        assert path.read_bytes() == sample_path(path.name).read_bytes()


@needs_fonts
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_make_samples_renders_the_bundled_files_again(name: str) -> None:
    fresh = render_sample(name)
    bundled = sample_path(name).read_bytes()
    assert embedded_text(fresh) == embedded_text(bundled) == SAMPLES[name]
    assert image_size(fresh) == image_size(bundled)
    # Same fonts and Pillow give the same bytes; others may antialias a
    # little differently, never draw something else.
    difference = ImageChops.difference(pixels(fresh), pixels(bundled))
    assert ImageStat.Stat(difference).mean[0] < 2.0


@needs_fonts
def test_make_samples_main_writes_every_sample(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SAMPLES)
    for path in tmp_path.iterdir():
        assert embedded_text(path.read_bytes()) == SAMPLES[path.name]


def test_find_font_says_which_package_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_async.emulator import make_samples

    monkeypatch.setitem(make_samples.FONT_PATHS, "hangul", ("/nonexistent/font.ttf",))
    with pytest.raises(FileNotFoundError, match="fonts-nanum"):
        find_font("hangul")
