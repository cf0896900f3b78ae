"""Tests for ocr_async.emulator.engine (and the bundled samples it reads).

The rule under test is the documented one: embedded text split into lines
and words, else one ``["sha256", <16 hex digits>]`` line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from ocr_async.emulator import SAMPLES, iter_samples, sample_path, write_samples
from ocr_async.emulator.engine import FallbackEngine, TextEngine, recognize, split_words
from ocr_async.emulator.images import embedded_text, image_size, make_jpeg, make_png


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param("Hello World", [["Hello", "World"]], id="one-line"),
        pytest.param("안녕하세요 세계", [["안녕하세요", "세계"]], id="korean"),
        pytest.param("stella artois\nbelgium", [["stella", "artois"], ["belgium"]], id="lines"),
        pytest.param("  a\t b  \n\n \nc\r\n", [["a", "b"], ["c"]], id="blank-lines-dropped"),
        pytest.param("", [], id="empty"),
        pytest.param(" \n\t\n", [], id="whitespace-only"),
    ],
)
def test_split_words(text: str, lines: list[list[str]]) -> None:
    assert split_words(text) == lines


@pytest.mark.parametrize("make", [make_png, make_jpeg], ids=["png", "jpeg"])
def test_embedded_text_is_what_is_recognized(make: Callable[[str], bytes]) -> None:
    data = make("영수증 합계 12,000원\n감사합니다 Thank you")
    assert recognize(data) == [["영수증", "합계", "12,000원"], ["감사합니다", "Thank", "you"]]


@pytest.mark.parametrize("make", [make_png, make_jpeg], ids=["png", "jpeg"])
def test_empty_embedded_text_gives_no_lines(make: Callable[[str], bytes]) -> None:
    assert recognize(make("")) == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"no text chunk", id="png-without-text"),
        pytest.param(b"\xff\xd8\xff\xe0 a photo", id="jpeg-without-text"),
        pytest.param(b"", id="empty"),
    ],
)
def test_without_text_the_fingerprint_is_recognized(data: bytes) -> None:
    digest = hashlib.sha256(data).hexdigest()
    assert recognize(data) == [["sha256", digest[:16]]]


def test_fingerprints_are_stable_and_distinct() -> None:
    a = b"\xff\xd8\xff" + b"a" * 100
    b = b"\xff\xd8\xff" + b"b" * 100
    assert recognize(a) == recognize(a)
    assert recognize(a) != recognize(b)


def test_fallback_engine_is_a_text_engine() -> None:
    engine = FallbackEngine()
    assert isinstance(engine, TextEngine)
    assert engine.recognize(make_png("x y")) == recognize(make_png("x y")) == [["x", "y"]]


def test_a_custom_engine_fits_the_protocol() -> None:
    class Upper:
        def recognize(self, data: bytes) -> list[list[str]]:
            return [[str(len(data))]]

    engine: TextEngine = Upper()
    assert isinstance(engine, TextEngine)
    assert engine.recognize(b"abc") == [["3"]]


# --- the bundled samples --------------------------------------------------------


def test_samples_cover_english_korean_png_jpeg_and_no_text() -> None:
    names = set(SAMPLES)
    assert 4 <= len(names) <= 6
    assert any(n.endswith(".png") for n in names)
    assert any(n.endswith(".jpg") for n in names)
    assert "안녕하세요 세계" in SAMPLES.values()
    assert "" in SAMPLES.values()  # the 4000501 case


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_bundled_sample_holds_its_text(name: str) -> None:
    data = sample_path(name).read_bytes()
    assert embedded_text(data) == SAMPLES[name]
    assert recognize(data) == split_words(SAMPLES[name])
    assert image_size(data) is not None


def test_iter_samples_lists_every_sample_once() -> None:
    pairs = list(iter_samples())
    assert [path.name for path, _ in pairs] == sorted(SAMPLES)
    assert all(path.is_file() and text == SAMPLES[path.name] for path, text in pairs)


def test_sample_path_refuses_unknown_names() -> None:
    with pytest.raises(KeyError, match="no sample named"):
        sample_path("../app.py")


def test_write_samples_recreates_the_bundled_files(tmp_path: Path) -> None:
    written = write_samples(tmp_path / "fresh")
    assert sorted(p.name for p in written) == sorted(SAMPLES)
    for path in written:
        bundled = sample_path(path.name).read_bytes()
        fresh = path.read_bytes()
        # Bytes may differ with the zlib build; content and size may not.
        assert embedded_text(fresh) == embedded_text(bundled) == SAMPLES[path.name]
        assert image_size(fresh) == image_size(bundled)
