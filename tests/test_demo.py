"""``ocr-async demo``: the samples read end to end, scored by words right.

The demo runs the real pipeline against the emulator over the bundled
samples, on a real engine when one is installed, and says how many words
it got right (case-insensitive, punctuation-stripped multiset overlap).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ocr_async.cli import UsageError, demo
from ocr_async.cli.demo import (
    PASS_SHARE,
    WordScore,
    demo_command,
    normalize_word,
    script_of,
    words_of,
    words_right,
)
from ocr_async.emulator import SAMPLES
from ocr_async.emulator.engine import FallbackEngine, TextEngine
from ocr_async.emulator.engines import engine_from_name
from ocr_async.errors import ConfigurationError

TOTAL_WORDS = 2 * sum(len(words_of(text)) for text in SAMPLES.values())


@pytest.mark.parametrize(
    ("word", "normalized"),
    [
        pytest.param("Hello", "hello", id="case"),
        pytest.param("Ltd.", "ltd", id="trailing-dot"),
        pytest.param("12,000원", "12000원", id="korean-amount"),
        pytest.param("2026-0412", "20260412", id="dash"),
        pytest.param("(due:)", "due", id="brackets"),
        pytest.param("—", "", id="punctuation-only"),
        pytest.param("Ｏｃｒ", "ｏｃｒ", id="fullwidth-kept-as-letters"),  # noqa: RUF001
    ],
)
def test_normalize_word(word: str, normalized: str) -> None:
    assert normalize_word(word) == normalized


@pytest.mark.parametrize(
    ("expected", "recognized", "score"),
    [
        pytest.param("Hello World", "hello world", (2, 2), id="case-insensitive"),
        pytest.param("Bill to: Hanbit", "Bill to Hanbit.", (3, 3), id="punctuation"),
        pytest.param("stella artois", "stellaartois", (0, 2), id="joined-words-miss"),
        pytest.param("a a b", "a b b", (2, 3), id="multiset"),
        pytest.param("a b", "b\nextra words a", (2, 2), id="order-and-extras-free"),
        pytest.param("", "anything", (0, 0), id="nothing-known"),
        pytest.param("영수증 합계", "영수증 합 계", (1, 2), id="korean-split-misses"),
    ],
)
def test_words_right(expected: str, recognized: str, score: tuple[int, int]) -> None:
    assert words_right(expected, recognized) == score


def test_word_score_by_script() -> None:
    score = WordScore()
    assert score.add("감사합니다 Thank you", "Thank you") == (2, 3)
    assert score.share() == (2, 3)
    assert score.share({"latin"}) == (2, 2)
    assert score.share({"hangul"}) == (0, 1)
    assert script_of("12,000원") == "hangul"
    assert script_of("12,000") == "latin"


def args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"output": None, **values})


async def test_demo_on_the_fallback_matches_every_sample_exactly(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await demo_command(args(engine="embedded")) == 0
    out = capsys.readouterr().out
    assert "engine: embedded (the deterministic fallback)" in out
    assert f"words right: {TOTAL_WORDS}/{TOTAL_WORDS} (100%)" in out
    assert "text matched the sample exactly for every record: yes" in out
    assert "안녕하세요 세계" in out
    # The columns are explained before the first record.
    legend = "  (ok = the text is exactly the sample's, BAD = it is not, or the request failed;"
    assert out.index(legend) < out.index("  ok  file blank.png")


async def test_demo_auto_without_a_real_engine_says_it_fell_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ocr_async.emulator import engines

    def unavailable(name: str) -> None:
        raise ConfigurationError(f"{name}: not installed here")

    monkeypatch.setattr(engines, "_auto_candidate", unavailable)
    assert await demo_command(args()) == 0  # no --engine: auto
    out = capsys.readouterr().out
    assert "engine: embedded" in out
    assert "rapidocr: not installed here" in out
    assert "pip install 'ocr-async[ocr]'" in out


class _Misreader:
    """A real engine that reads every image as the same two words."""

    name = "misreader"
    scripts = frozenset({"latin", "hangul"})

    def recognize(self, data: bytes) -> list[list[str]]:
        return [["Hello", "nonsense"]]


async def test_demo_fails_when_too_few_words_are_right(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo, "_choose_engine", lambda name: (_Misreader(), []))
    assert await demo_command(args()) == 1
    out = capsys.readouterr().out
    assert "engine: misreader: reads the pixels" in out
    assert "  (ok = every known word read, ~ = some missed, BAD = the request failed;" in out
    assert f"words right: 2/{TOTAL_WORDS}" in out  # "Hello" of hello.png, twice
    assert f"FAILED: at least {PASS_SHARE:.0%} of the words right" in out


async def test_demo_scores_only_the_scripts_an_engine_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class LatinOnly(_Misreader):
        scripts = frozenset({"latin"})

    monkeypatch.setattr(demo, "_choose_engine", lambda name: (LatinOnly(), []))
    assert await demo_command(args()) == 1
    out = capsys.readouterr().out
    assert "words right in the scripts misreader reads (latin): 2/" in out
    assert "its model does not read hangul" in out


async def test_demo_refuses_to_replace_an_output(tmp_path: Path) -> None:
    existing = tmp_path / "demo.jsonl"
    existing.write_text("keep me\n")
    with pytest.raises(UsageError, match="already exists"):
        await demo_command(args(engine="embedded", output=str(existing)))
    assert existing.read_text() == "keep me\n"


async def test_demo_keeps_its_records_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "demo.jsonl"
    assert await demo_command(args(engine="embedded", output=str(output))) == 0
    assert len(output.read_text().splitlines()) == 2 * len(SAMPLES)
    assert f"records written to {output}" in capsys.readouterr().out


def real_engine_installed() -> TextEngine | None:
    engine = engine_from_name("auto", embedded_first=False)
    return None if isinstance(engine, FallbackEngine) else engine


@pytest.mark.skipif(
    real_engine_installed() is None,
    reason="no real engine: pip install 'ocr-async[ocr]' or apt-get install tesseract-ocr",
)
async def test_demo_on_a_real_engine_reads_the_pixels(capsys: pytest.CaptureFixture[str]) -> None:
    assert await demo_command(args()) == 0
    out = capsys.readouterr().out
    assert "reads the pixels of each sample (the text they carry embedded is ignored)" in out
    assert "Hello World" in out
    assert "words right: " in out
    assert "passed: at least 80% of the words right" in out
