"""Tests for ocr_async.emulator.engines: real engines and choosing one by name.

The parsing of each engine's answer is tested without the engine (pure
functions on its output). The engines themselves are tested on the bundled
samples where installed, and skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib
import shutil

import pytest

from ocr_async.emulator import SAMPLES, sample_path
from ocr_async.emulator.engine import EmbeddedFirst, FallbackEngine, RecognizedWord, engine_name
from ocr_async.emulator.engines import (
    AUTO_ORDER,
    ENGINE_NAMES,
    RapidOcrEngine,
    TesseractEngine,
    engine_from_name,
    real_engine,
)
from ocr_async.emulator.engines import rapidocr as rapidocr_module
from ocr_async.emulator.engines.rapidocr import Detection, lines_from_detections
from ocr_async.emulator.engines.tesseract import installed_languages, lines_from_tsv
from ocr_async.emulator.images import make_png
from ocr_async.errors import ConfigurationError


def values(lines: list[list[RecognizedWord]]) -> list[list[str]]:
    return [[word.value for word in line] for line in lines]


def rect(left: float, top: float, right: float, bottom: float) -> Detection:
    corners = ((left, top), (right, top), (right, bottom), (left, bottom))
    return Detection(corners, "", 0.0)


def detection(
    text: str,
    left: float,
    top: float,
    right: float,
    bottom: float,
    score: float = 0.9,
    chars: tuple[tuple[str, float, float, float], ...] = (),
) -> Detection:
    return Detection(rect(left, top, right, bottom).corners, text, score, chars)


# --- rapidocr's answer -----------------------------------------------------------


def test_detections_group_into_lines_read_left_to_right() -> None:
    lines = lines_from_detections(
        [
            detection("belgium", 10, 60, 120, 90),
            detection("artois", 130, 12, 230, 40),
            detection("stella", 10, 10, 110, 42),
        ]
    )
    assert values(lines) == [["stella", "artois"], ["belgium"]]


def test_a_detection_is_split_into_words_at_spaces() -> None:
    chars = tuple(
        (c, 10.0 + 10 * i, 20.0 + 10 * i, 0.5 if c == "b" else 1.0) for i, c in enumerate("a bc")
    )
    (line,) = lines_from_detections([detection("a bc", 10, 5, 50, 25, chars=chars)])
    assert line == [
        RecognizedWord.from_rect("a", 1.0, 10, 5, 20, 25),
        RecognizedWord.from_rect("bc", 0.75, 30, 5, 50, 25),  # mean of its characters
    ]


def test_without_character_positions_the_width_is_shared_out() -> None:
    (line,) = lines_from_detections([detection("ab cd", 0, 0, 50, 10, score=0.8)])
    assert line == [
        RecognizedWord.from_rect("ab", 0.8, 0, 0, 20, 10),
        RecognizedWord.from_rect("cd", 0.8, 30, 0, 50, 10),
    ]


def test_blank_detections_are_dropped() -> None:
    assert lines_from_detections([detection("  ", 0, 0, 10, 10)]) == []
    assert lines_from_detections([]) == []


def test_rapidocr_raw_answer_is_parsed() -> None:
    raw = [
        [[10.0, 5.0], [50.0, 5.0], [50.0, 25.0], [10.0, 25.0]],
        "a b",
        0.9,
        [[[10, 5], [20, 5], [20, 25], [10, 25]]] * 3,
        ["a", " ", "b"],
        [0.9, 0.5, 0.7],
    ]
    found = rapidocr_module._detection(raw)
    assert found.text == "a b"
    assert [c[0] for c in found.chars] == ["a", " ", "b"]
    short = rapidocr_module._detection(raw[:3])
    assert short.chars == ()


def test_rapidocr_missing_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_module(name: str) -> None:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", no_module)
    with pytest.raises(ConfigurationError, match=r"ocr-async\[ocr\]"):
        RapidOcrEngine()


# --- tesseract's answer ----------------------------------------------------------

TSV_HEADER = (
    "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
)


def tsv(*rows: str) -> str:
    return "\n".join([TSV_HEADER, *rows]) + "\n"


def test_tsv_words_keep_tesseracts_lines() -> None:
    answer = tsv(
        "1\t1\t0\t0\t0\t0\t0\t0\t400\t100\t-1\t",
        "4\t1\t1\t1\t1\t0\t10\t10\t200\t30\t-1\t",
        "5\t1\t1\t1\t1\t1\t10\t10\t80\t30\t96.5\tstella",
        "5\t1\t1\t1\t1\t2\t100\t10\t90\t30\t91\tartois",
        "5\t1\t1\t1\t2\t1\t10\t50\t90\t30\t88\tbelgium",
        "5\t1\t1\t1\t2\t2\t110\t50\t5\t30\t-1\t ",
    )
    lines = lines_from_tsv(answer)
    assert values(lines) == [["stella", "artois"], ["belgium"]]
    assert lines[0][0] == RecognizedWord.from_rect("stella", 0.965, 10, 10, 90, 40)


def test_tsv_pieces_are_rejoined_as_the_text_spaces_them() -> None:
    answer = tsv(
        "5\t1\t1\t1\t1\t1\t10\t10\t20\t30\t90\t감",
        "5\t1\t1\t1\t1\t2\t30\t12\t20\t30\t80\t사",
        "5\t1\t1\t1\t1\t3\t50\t10\t40\t31\t95\t합니다",
        "5\t1\t1\t1\t1\t4\t100\t10\t60\t30\t97\tThank",
    )
    lines = lines_from_tsv(answer, "감사합니다 Thank\n\n")
    assert lines == [
        [
            RecognizedWord.from_rect("감사합니다", 0.8, 10, 10, 90, 42),
            RecognizedWord.from_rect("Thank", 0.97, 100, 10, 160, 40),
        ]
    ]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("감사합니다 Thank\nanother line", id="line-count-differs"),
        pytest.param("감사합니까 Thank", id="characters-differ"),
        pytest.param("감 사합니다 Thank", id="spaces-cut-a-piece"),
    ],
)
def test_tsv_pieces_are_kept_when_the_text_disagrees(text: str) -> None:
    answer = tsv(
        "5\t1\t1\t1\t1\t1\t10\t10\t20\t30\t90\t감사",
        "5\t1\t1\t1\t1\t2\t30\t10\t20\t30\t80\t합니다",
        "5\t1\t1\t1\t1\t3\t60\t10\t20\t30\t80\tThank",
    )
    assert values(lines_from_tsv(answer, text)) == [["감사", "합니다", "Thank"]]


def test_tesseract_missing_says_how_to_install() -> None:
    with pytest.raises(ConfigurationError, match="tesseract-ocr"):
        TesseractEngine(program="no-such-tesseract-program")


def test_installed_languages_of_a_missing_program_is_empty() -> None:
    assert installed_languages("/nonexistent/tesseract") == frozenset()


# --- choosing ----------------------------------------------------------------------


def test_embedded_is_the_fallback() -> None:
    assert isinstance(engine_from_name("embedded"), FallbackEngine)
    assert isinstance(engine_from_name("embedded", embedded_first=False), FallbackEngine)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="unknown engine 'magic'"):
        engine_from_name("magic")
    assert set(ENGINE_NAMES) == {"auto", "rapidocr", "tesseract", "embedded"}


def test_auto_falls_back_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_async.emulator import engines

    def unavailable(name: str) -> None:
        raise ConfigurationError(f"{name} is not installed")

    monkeypatch.setattr(engines, "_auto_candidate", unavailable)
    reasons: list[str] = []
    engine = engine_from_name("auto", unavailable=reasons)
    assert isinstance(engine, FallbackEngine)
    assert reasons == [f"{name} is not installed" for name in AUTO_ORDER]


def test_auto_takes_the_first_available_and_wraps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_async.emulator import engines

    class Fake:
        name = "fake"

        def recognize(self, data: bytes) -> list[list[str]]:
            return [["read"]]

    tried: list[str] = []

    def candidate(name: str) -> Fake:
        tried.append(name)
        if name == AUTO_ORDER[0]:
            raise ConfigurationError("not this one")
        return Fake()

    monkeypatch.setattr(engines, "_auto_candidate", candidate)
    wrapped = engine_from_name("auto")
    assert isinstance(wrapped, EmbeddedFirst)
    assert engine_name(wrapped) == "fake (embedded text first)"
    assert wrapped.recognize(make_png("embedded wins")) == [
        list(line) for line in FallbackEngine().recognize(make_png("embedded wins"))
    ]
    bare = engine_from_name("auto", embedded_first=False)
    assert isinstance(bare, Fake)
    assert tried == [AUTO_ORDER[0], AUTO_ORDER[1]] * 2


# --- the real engines on the bundled samples --------------------------------------------


def installed(name: str) -> bool:
    try:
        real_engine(name)
    except ConfigurationError:
        return False
    return True


@pytest.fixture(scope="module", params=["rapidocr", "tesseract"])
def engine_name_param(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if not installed(name):
        hint = (
            "pip install 'ocr-async[ocr]'"
            if name == "rapidocr"
            else "apt-get install tesseract-ocr"
        )
        pytest.skip(f"the {name} engine is not installed ({hint})")
    return name


# Samples each engine must read word for word: rapidocr's model reads no
# Korean, and joins "Thank you" and "INVOICE No." (see the engine's docstring).
EXACT = {
    "rapidocr": ["hello.png", "stella.jpg", "long-receipt.png"],
    "tesseract": sorted(name for name, text in SAMPLES.items() if text),
}


def test_real_engine_reads_the_samples(engine_name_param: str) -> None:
    engine = real_engine(engine_name_param)
    for name in EXACT[engine_name_param]:
        lines = engine.recognize(sample_path(name).read_bytes())
        words = [list(line) for line in lines]
        assert all(isinstance(w, RecognizedWord) for line in words for w in line)
        text = "\n".join(
            " ".join(w.value for w in line if isinstance(w, RecognizedWord)) for line in words
        )
        assert text == SAMPLES[name], name


def test_real_engine_boxes_lie_inside_the_image(engine_name_param: str) -> None:
    engine = real_engine(engine_name_param)
    data = sample_path("stella.jpg").read_bytes()
    lines = engine.recognize(data)
    for line in lines:
        for word in line:
            assert isinstance(word, RecognizedWord)
            assert 0.0 <= word.conf <= 1.0
            (x1, y1), (x2, _), (x3, y3), (x4, _) = word.box
            assert 0 <= x1 < x2 <= 279
            assert x4 <= x3
            assert 0 <= y1 < y3 <= 154


def test_real_engine_finds_nothing_on_a_blank_page(engine_name_param: str) -> None:
    assert real_engine(engine_name_param).recognize(sample_path("blank.png").read_bytes()) == []


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_tesseract_reports_its_languages_and_scripts() -> None:
    engine = TesseractEngine()
    assert set(engine.languages.split("+")) <= {"kor", "eng"}
    assert ("hangul" in engine.scripts) == ("kor" in engine.languages)
