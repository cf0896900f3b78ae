"""Tests for ocr_async.demo: ``ocr-async demo`` and the engine settings of ``serve``.

The demo runs the real pipeline against the emulator over the bundled
samples, on a real engine when one is installed, and says how many words
it got right (case-insensitive, punctuation-stripped multiset overlap).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ocr_async import demo
from ocr_async.cli import CannotProceedError, UsageError, build_parser, main
from ocr_async.demo import (
    PASS_SHARE,
    WordScore,
    demo_command,
    normalize_word,
    script_of,
    words_of,
    words_right,
)
from ocr_async.emulator import SAMPLES, EmulatorConfig
from ocr_async.emulator.engine import EmbeddedFirst, FallbackEngine, TextEngine
from ocr_async.emulator.engines import engine_from_name
from ocr_async.emulator.limiters import FixedWindowLimiter, ScheduledLimiter
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


# --- serve's engine settings ------------------------------------------------------


def test_serve_defaults_to_the_best_installed_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once it defaulted to the fallback, and real images read "sha256 ...".
    asked: list[tuple[str, bool]] = []

    def choose(name: str, *, embedded_first: bool = True) -> TextEngine:
        asked.append((name, embedded_first))
        return FallbackEngine()

    monkeypatch.setattr(demo, "engine_from_name", choose)
    assert build_parser().parse_args(["serve"]).engine == "auto"
    settings = demo._engine_settings(argparse.Namespace())
    assert asked == [("auto", True)]
    assert isinstance(settings["engine"], FallbackEngine)
    assert "engine_workers" not in settings


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("argv", "engine", "says"),
    [
        pytest.param(
            ["--engine", "embedded"],
            FallbackEngine(),
            "tokens: any; app key: any; engine: embedded (the text embedded in test images, "
            "else a sha256 fingerprint)",
            id="embedded",
        ),
        pytest.param(
            [],
            FallbackEngine(),
            "no OCR engine installed: pip install 'ocr-async[ocr]'",
            id="auto-fell-back",
        ),
        pytest.param(
            ["--token", "t1", "--appkey", "k"],
            EmbeddedFirst(_Misreader()),
            "tokens: as given with --token; app key: k; engine: misreader (embedded text first)",
            id="real-engine",
        ),
        pytest.param(
            ["--uak", "id:secret"],
            FallbackEngine(),
            "tokens: those issued for --uak, with NHN_OAUTH_URL=http://127.0.0.1:10123;",
            id="uak",
        ),
        pytest.param(
            ["--uak", "id:secret", "--token", "t1"],
            FallbackEngine(),
            "tokens: those issued for --uak and those given with --token, with NHN_OAUTH_URL=",
            id="uak-and-token",
        ),
    ],
)
async def test_serve_says_in_one_line_which_engine_and_tokens_it_uses(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    engine: TextEngine,
    says: str,
) -> None:
    # With --uak the banner said "token: any", and then refused any token.
    monkeypatch.setattr(demo, "engine_from_name", lambda name, embedded_first=True: engine)

    async def serve_once(config: object, *, host: str, port: int, on_ready: Any) -> None:
        on_ready(SimpleNamespace(base_url=f"http://{host}:10123"))

    monkeypatch.setattr(demo, "serve_forever", serve_once)
    assert await demo.serve_command(serve_args(*argv)) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ocr-async emulator: General OCR v1.1 at http://127.0.0.1:10123 (")
    assert says in err


async def test_serve_on_a_port_in_use_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = await asyncio.to_thread(main, ["serve", "--port", str(port), "--engine", "embedded"])
    assert code == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == (
        f"ocr-async serve: cannot listen on 127.0.0.1:{port}: the port is in use; "
        "pick another --port (0 picks a free one)"
    )


@pytest.mark.parametrize(
    ("error", "says"),
    [
        pytest.param(
            PermissionError(errno.EACCES, "Permission denied"),
            "cannot listen on 127.0.0.1:10080: permission denied; pick a --port from 1024 up",
            id="privileged-port",
        ),
        pytest.param(
            OSError(errno.EADDRNOTAVAIL, "error while attempting to bind on address ..."),
            f"cannot listen on 127.0.0.1:10080: {os.strerror(errno.EADDRNOTAVAIL)}; check --host",
            id="address-not-here",
        ),
    ],
)
async def test_serve_cannot_listen_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, error: OSError, says: str
) -> None:
    async def refuse(config: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(demo, "serve_forever", refuse)
    with pytest.raises(CannotProceedError) as raised:
        await demo.serve_command(serve_args("--engine", "embedded"))
    assert says in str(raised.value)
    assert (raised.value.prefix, raised.value.exit_code) == ("ocr-async serve", 3)


def test_serve_engine_settings_follow_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_async.emulator import engines

    class Fake:
        name = "fake"
        warmed = False

        def recognize(self, data: bytes) -> list[list[str]]:
            return []

        def warm_up(self) -> None:
            Fake.warmed = True

    monkeypatch.setattr(engines, "real_engine", lambda name: Fake())
    first = demo._engine_settings(argparse.Namespace(engine="rapidocr", engine_workers=3))
    assert isinstance(first["engine"], EmbeddedFirst)
    assert first["engine_workers"] == 3
    assert Fake.warmed
    bare = demo._engine_settings(argparse.Namespace(engine="tesseract", ignore_embedded_text=True))
    assert isinstance(bare["engine"], Fake)


# --- serve's quota settings -------------------------------------------------------


def test_serve_quota_flags_make_each_kind_of_limiter() -> None:
    window = EmulatorConfig(
        **demo._quota_settings(serve_args("--quota-rps", "40", "--quota-kind", "window"))
    )
    assert isinstance(window.make_limiter(), FixedWindowLimiter)
    bucket = EmulatorConfig(
        **demo._quota_settings(serve_args("--quota-rps", "40", "--quota-burst", "5"))
    )
    assert bucket.burst == 5
    scheduled = EmulatorConfig(
        **demo._quota_settings(
            serve_args("--quota-kind", "sliding", "--quota-schedule", "0:40,10:20,20:60")
        )
    )
    assert scheduled.quota_rps == 40.0  # the first step, when no --quota-rps is given
    assert scheduled.quota_schedule == ((0.0, 40.0), (10.0, 20.0), (20.0, 60.0))
    assert isinstance(scheduled.make_limiter(), ScheduledLimiter)
    assert EmulatorConfig(**demo._quota_settings(serve_args())).make_limiter() is None


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(
            ("--quota-rps", "40", "--quota-kind", "window", "--quota-burst", "5"),
            id="burst-of-a-window",
        ),
        pytest.param(("--quota-schedule", "0:40,x"), id="bad-step"),
        pytest.param(("--quota-schedule", "5:40"), id="not-from-0"),
    ],
)
def test_serve_refuses_bad_quota_settings_before_serving(flags: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError, match="bad emulator settings"):
        asyncio.run(demo.serve_command(serve_args(*flags)))
