"""Tests for ocr_async.emulator.engine, and how the emulator app runs an engine.

The fallback rule under test is the documented one: embedded text split
into lines and words, else one ``["sha256", <16 hex digits>]`` line, on the
fixed fake layout. Real engines' words keep their own boxes and confidences
through the emulator, and they run off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import pytest

from ocr_async.emulator import EmulatorConfig, running_emulator
from ocr_async.emulator.engine import (
    FALLBACK_CONF,
    EmbeddedFirst,
    EngineLines,
    FallbackEngine,
    RecognizedWord,
    TextEngine,
    engine_name,
    layout,
    place,
    recognize,
    runs_inline,
    split_words,
)
from ocr_async.emulator.images import make_jpeg, make_png
from ocr_async.emulator.wire import build_result


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
    assert FallbackEngine().recognize(make("")) == []


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


def test_fallback_engine_lays_words_out_as_before() -> None:
    engine = FallbackEngine()
    assert isinstance(engine, TextEngine)
    assert runs_inline(engine)
    assert engine_name(engine) == "embedded"
    # Line i at y = 10 + 30 i, 24 high; 12 px per character, 12 px gaps.
    assert engine.recognize(make_png("ab cde\n한글")) == [
        [
            RecognizedWord("ab", FALLBACK_CONF, ((10, 10), (34, 10), (34, 34), (10, 34))),
            RecognizedWord("cde", FALLBACK_CONF, ((46, 10), (82, 10), (82, 34), (46, 34))),
        ],
        [RecognizedWord("한글", FALLBACK_CONF, ((10, 40), (34, 40), (34, 64), (10, 64)))],
    ]
    assert layout([["ab", "cde"], ["한글"]]) == engine.recognize(make_png("ab cde\n한글"))


def test_place_keeps_real_words_and_lays_out_strings() -> None:
    real = RecognizedWord.from_rect("real", 0.5, 100, 200, 180, 230)
    assert place([[real, "fake"], ["x"]]) == [
        [real, RecognizedWord.from_rect("fake", FALLBACK_CONF, 10, 10, 58, 34)],
        [RecognizedWord.from_rect("x", FALLBACK_CONF, 10, 40, 22, 64)],
    ]


def test_recognized_word_box_json_is_the_api_shape() -> None:
    word = RecognizedWord("w", 0.9, ((1, 2), (3, 4), (5, 6), (7, 8)))
    assert word.box_json() == {
        "x1": 1, "y1": 2, "x2": 3, "y2": 4, "x3": 5, "y3": 6, "x4": 7, "y4": 8
    }  # fmt: skip


def test_a_custom_engine_returning_strings_fits_the_protocol() -> None:
    class Upper:
        def recognize(self, data: bytes) -> list[list[str]]:
            return [[str(len(data))]]

    engine: TextEngine = Upper()
    assert isinstance(engine, TextEngine)
    assert engine.recognize(b"abc") == [["3"]]
    assert not runs_inline(engine)  # unknown engines run in the pool
    assert engine_name(engine) == "Upper"


class _Recorder:
    """A fake real engine: one fixed word, and the data it was asked about."""

    name = "recorder"

    def __init__(self, delay: float = 0.0) -> None:
        self.seen: list[bytes] = []
        self.started = threading.Event()
        self.threads: set[str] = set()
        self.delay = delay

    def recognize(self, data: bytes) -> list[list[RecognizedWord]]:
        self.seen.append(data)
        self.threads.add(threading.current_thread().name)
        self.started.set()
        if self.delay:
            time.sleep(self.delay)  # blocking, as real engines are
        return [[RecognizedWord("pixels", 0.42, ((5, 6), (50, 7), (49, 30), (4, 29)))]]


def test_embedded_first_answers_embedded_text_without_the_engine() -> None:
    inner = _Recorder()
    engine = EmbeddedFirst(inner)
    assert engine_name(engine) == "recorder (embedded text first)"
    assert not runs_inline(engine)
    assert engine.recognize(make_png("a b")) == layout([["a", "b"]])
    assert engine.recognize(make_jpeg("")) == []  # declared empty: no text, no OCR
    assert inner.seen == []
    photo = b"\xff\xd8\xff\xe0 no embedded text"
    assert engine.recognize(photo) == inner.recognize(photo)
    assert inner.seen[0] == photo


def test_embedded_first_warm_up_reaches_the_engine() -> None:
    calls: list[str] = []

    class Warm(_Recorder):
        def warm_up(self) -> None:
            calls.append("warm")

    EmbeddedFirst(Warm()).warm_up()
    EmbeddedFirst(_Recorder()).warm_up()  # nothing to warm: fine
    assert calls == ["warm"]


# --- through the emulator --------------------------------------------------------


def test_build_result_passes_real_boxes_and_confidences_through() -> None:
    lines: EngineLines = [
        [
            RecognizedWord("Hello", 0.987654, ((10, 12), (90, 11), (91, 40), (11, 41))),
            RecognizedWord("World", 0.5, ((100, 12), (180, 12), (180, 40), (100, 40))),
        ],
        [RecognizedWord("안녕", 0.75, ((10, 60), (70, 60), (70, 90), (10, 90)))],
    ]
    result = build_result("png", lines, (200, 100), cropping=False)
    assert result["listOfInferTexts"] == [
        {"inferTexts": [{"value": "Hello", "conf": 0.9877}, {"value": "World", "conf": 0.5}]},
        {"inferTexts": [{"value": "안녕", "conf": 0.75}]},
    ]
    assert result["listOfBoundingBoxes"][0]["boundingBoxes"][0] == {
        "x1": 10, "y1": 12, "x2": 90, "y2": 11, "x3": 91, "y3": 40, "x4": 11, "y4": 41
    }  # fmt: skip
    assert len(result["listOfBoundingBoxes"][1]["boundingBoxes"]) == 1


async def _ocr(session: aiohttp.ClientSession, base_url: str, image: bytes) -> dict[str, Any]:
    form = aiohttp.FormData()
    form.add_field("image", image, filename="x.jpg", content_type="image/jpeg")
    async with session.post(
        f"{base_url}/v1.1/appkeys/k/general",
        data=form,
        headers={"X-NHN-Authorization": "Bearer t"},
    ) as response:
        document: dict[str, Any] = await response.json()
        return document


async def test_emulator_answers_with_the_engines_boxes() -> None:
    engine = _Recorder()
    photo = b"\xff\xd8\xff\xe0 a photo"
    async with running_emulator(EmulatorConfig(engine=engine)) as emu, aiohttp.ClientSession() as s:
        document = await _ocr(s, emu.base_url, photo)
    assert document["result"]["listOfInferTexts"] == [
        {"inferTexts": [{"value": "pixels", "conf": 0.42}]}
    ]
    assert document["result"]["listOfBoundingBoxes"] == [
        {
            "boundingBoxes": [
                {"x1": 5, "y1": 6, "x2": 50, "y2": 7, "x3": 49, "y3": 30, "x4": 4, "y4": 29}
            ]
        }
    ]
    assert engine.seen == [photo]
    # It ran in the engine pool, not on the event loop's thread.
    assert engine.threads
    assert all(name.startswith("ocr-async-engine") for name in engine.threads)


async def test_a_slow_engine_does_not_block_the_emulator() -> None:
    engine = _Recorder(delay=0.6)
    config = EmulatorConfig(engine=engine, engine_workers=1)
    async with running_emulator(config) as emu, aiohttp.ClientSession() as session:
        slow = asyncio.create_task(_ocr(session, emu.base_url, b"\xff\xd8\xff\xe0 slow"))
        await asyncio.to_thread(engine.started.wait, 5.0)
        started = time.monotonic()
        async with session.get(emu.url("/healthz")) as health:
            assert health.status == 200
        async with session.get(emu.url("/_emulator/stats")) as stats:
            assert (await stats.json())["in_flight"] == 1
        assert time.monotonic() - started < 0.3
        assert not slow.done()  # answered while the recognition was still running
        assert (await slow)["header"]["resultCode"] == 0


async def test_engine_workers_bound_the_recognitions_at_once() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()

    class Counting:
        def recognize(self, data: bytes) -> Sequence[Sequence[str]]:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.05)
            with lock:
                running -= 1
            return [["ok"]]

    config = EmulatorConfig(engine=Counting(), engine_workers=2)
    async with running_emulator(config) as emu, aiohttp.ClientSession() as session:
        answers = await asyncio.gather(
            *(_ocr(session, emu.base_url, b"\xff\xd8\xff" + bytes([i])) for i in range(8))
        )
    assert all(a["header"]["resultCode"] == 0 for a in answers)
    assert peak == 2


async def test_an_engine_error_answers_minus_one_from_the_pool() -> None:
    class Broken:
        def recognize(self, data: bytes) -> list[list[str]]:
            raise RuntimeError("engine on fire")

    async with (
        running_emulator(EmulatorConfig(engine=Broken())) as emu,
        aiohttp.ClientSession() as session,
    ):
        document = await _ocr(session, emu.base_url, b"\xff\xd8\xff\xe0")
    assert document["header"]["resultCode"] == -1


def test_engine_workers_must_be_positive() -> None:
    with pytest.raises(ValueError, match="engine_workers"):
        EmulatorConfig(engine_workers=0)


async def test_empty_lines_from_an_engine_are_no_text() -> None:
    class Empty:
        def recognize(self, data: bytes) -> list[list[str]]:
            return [[], []]

    async with (
        running_emulator(EmulatorConfig(engine=Empty())) as emu,
        aiohttp.ClientSession() as session,
    ):
        document = await _ocr(session, emu.base_url, b"\xff\xd8\xff\xe0")
    assert document["header"]["resultCode"] == 4000501
