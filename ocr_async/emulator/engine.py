"""Where the emulator's recognized text comes from.

An engine turns image bytes into lines of words (:class:`TextEngine`). Each
word may be a plain ``str``, which the emulator places on a fixed fake
layout, or a :class:`RecognizedWord` with a real box and confidence, which
the emulator passes through to ``listOfInferTexts`` /
``listOfBoundingBoxes`` as it is.

The default, :class:`FallbackEngine`, is deterministic, so that tests can
assert on its words and benchmarks compare like with like:

1. an image made by :mod:`ocr_async.emulator.images` (or any PNG ``iTXt`` /
   JPEG ``COM`` with the ``ocr-async:text`` key) reads as its embedded text:
   lines split on newlines, words on whitespace, blank lines dropped. An
   empty text gives no lines, which the API answers as 4000501 (no text);
2. any other image reads as the single line ``["sha256", <first 16 hex
   digits of its SHA-256>]``, distinct per image and stable across runs.

Both are laid out by :func:`layout`: line ``i`` spans ``y = 10 + 30 i`` to
``+ 24``, each word 12 px per character wide, 12 px apart, from ``x = 10``,
confidence 0.99.

Real engines (reading pixels) live in :mod:`ocr_async.emulator.engines`;
:class:`EmbeddedFirst` puts the embedded text in front of one of them, so an
image that says what it holds is still answered deterministically and at
once. :func:`ocr_async.emulator.engines.engine_from_name` builds either.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, TypeAlias, runtime_checkable

from ocr_async.emulator.images import embedded_text

__all__ = [
    "FALLBACK_CONF",
    "Box",
    "EmbeddedFirst",
    "EngineLines",
    "FallbackEngine",
    "RecognizedWord",
    "TextEngine",
    "engine_name",
    "layout",
    "place",
    "recognize",
    "runs_inline",
    "split_words",
]

#: Four corners ``(x, y)``, clockwise from the top left, in image pixels.
Box: TypeAlias = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]

#: The confidence of every word of the fake layout.
FALLBACK_CONF: Final = 0.99
# The fake layout: line i spans y = 10 + 30 i .. +24; a word is 12 px per
# character wide, words 12 px apart, starting at x = 10.
_MARGIN: Final = 10
_LINE_PITCH: Final = 30
_LINE_HEIGHT: Final = 24
_CHAR_WIDTH: Final = 12
_WORD_GAP: Final = 12


@dataclass(frozen=True, slots=True)
class RecognizedWord:
    """One word as an engine read it: its text, confidence (0..1) and box."""

    value: str
    conf: float
    box: Box

    @classmethod
    def from_rect(
        cls, value: str, conf: float, left: int, top: int, right: int, bottom: int
    ) -> RecognizedWord:
        """A word whose box is the upright rectangle ``left..right`` x ``top..bottom``."""
        return cls(value, conf, ((left, top), (right, top), (right, bottom), (left, bottom)))

    def box_json(self) -> dict[str, int]:
        """The box as the API writes it: ``{"x1": .., "y1": .., .. "y4": ..}``."""
        (x1, y1), (x2, y2), (x3, y3), (x4, y4) = self.box
        return {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "x3": x3, "y3": y3, "x4": x4, "y4": y4}


#: What :meth:`TextEngine.recognize` returns: lines of words, each word a
#: plain string (placed on the fake layout) or a :class:`RecognizedWord`.
EngineLines: TypeAlias = Sequence[Sequence[str | RecognizedWord]]


@runtime_checkable
class TextEngine(Protocol):
    """Anything that turns image bytes into lines of words.

    An empty result means "no text found" (the API's 4000501). Exceptions
    become the API's -1 "Unknown error." answer. The emulator runs
    :meth:`recognize` in a bounded thread pool, off the event loop, unless
    the engine has a class attribute ``inline = True`` (only for engines
    that answer in microseconds, like :class:`FallbackEngine`); so it may
    block, and it may be called from several threads at once. Optional
    attributes: ``name``, what the demo and ``ocr-async serve`` print;
    ``scripts``, a frozenset of the scripts it reads (``"latin"``,
    ``"hangul"``), which the demo scores it on; ``warm_up()``, to load
    models before the first call.
    """

    def recognize(self, data: bytes) -> EngineLines:
        """Lines of words read from ``data`` (a JPEG or PNG)."""
        ...


def split_words(text: str) -> list[list[str]]:
    """``text`` as lines (split on newlines) of words (split on whitespace).

    Lines without any word are dropped: the API never answers an empty line.
    """
    return [words for line in text.split("\n") if (words := line.split())]


def _place_line(index: int, words: Sequence[str | RecognizedWord]) -> list[RecognizedWord]:
    top = _MARGIN + _LINE_PITCH * index
    left = _MARGIN
    placed: list[RecognizedWord] = []
    for word in words:
        if isinstance(word, RecognizedWord):
            placed.append(word)
            continue
        right = left + _CHAR_WIDTH * len(word)
        placed.append(
            RecognizedWord.from_rect(word, FALLBACK_CONF, left, top, right, top + _LINE_HEIGHT)
        )
        left = right + _WORD_GAP
    return placed


def place(lines: EngineLines) -> list[list[RecognizedWord]]:
    """Every word of ``lines`` as a :class:`RecognizedWord`.

    Words that already are one are kept as they are; plain strings get the
    fake layout of their line (see the module docstring).
    """
    return [_place_line(i, words) for i, words in enumerate(lines)]


def layout(lines: Sequence[Sequence[str]]) -> list[list[RecognizedWord]]:
    """Plain words laid out on the fixed fake layout, confidence 0.99."""
    return place(lines)


def engine_name(engine: object) -> str:
    """What to call ``engine`` in messages: its ``name``, else its class name."""
    name = getattr(engine, "name", None)
    return name if isinstance(name, str) and name else type(engine).__name__


def runs_inline(engine: object) -> bool:
    """True when ``engine`` says it is fast enough to call on the event loop."""
    return getattr(engine, "inline", False) is True


def _fingerprint(data: bytes) -> list[list[str]]:
    return [["sha256", hashlib.sha256(data).hexdigest()[:16]]]


class FallbackEngine:
    """The default engine: embedded text, else a SHA-256 fingerprint.

    Deterministic, needs nothing installed, answers in microseconds (so the
    emulator calls it on the event loop: ``inline``).
    """

    name: ClassVar[str] = "embedded"
    inline: ClassVar[bool] = True

    def recognize(self, data: bytes) -> list[list[RecognizedWord]]:
        """Embedded text split into lines of words, else ``[["sha256", hex16]]``; laid out."""
        text = embedded_text(data)
        return layout(split_words(text) if text is not None else _fingerprint(data))


class EmbeddedFirst:
    """Embedded text when an image carries it, else ``engine`` reads the pixels.

    This is the precedence that keeps tests and benchmarks deterministic and
    fast under a real engine: images made by :mod:`.images` (and the bundled
    samples, which carry their text too) answer with their embedded text on
    the fake layout, and only images without it cost a real recognition.
    """

    def __init__(self, engine: TextEngine) -> None:
        self.engine = engine
        self.name = f"{engine_name(engine)} (embedded text first)"

    def recognize(self, data: bytes) -> EngineLines:
        """The embedded text laid out, else what ``engine`` reads."""
        text = embedded_text(data)
        if text is not None:
            return layout(split_words(text))
        return self.engine.recognize(data)

    def warm_up(self) -> None:
        """Load the wrapped engine's models now, if it has any to load."""
        warm_up = getattr(self.engine, "warm_up", None)
        if callable(warm_up):
            warm_up()


def recognize(data: bytes) -> list[list[str]]:
    """The words :class:`FallbackEngine` reads in ``data``, text only."""
    return [[word.value for word in line] for line in FallbackEngine().recognize(data)]
