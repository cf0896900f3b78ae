"""Where the emulator's "recognized" text comes from.

The emulator must answer the same image with the same words every time, so
that tests can assert on them and benchmarks compare like with like. The
rule of :class:`FallbackEngine`, the default:

1. an image made by :mod:`ocr_async.emulator.images` (or any PNG ``iTXt`` /
   JPEG ``COM`` with the ``ocr-async:text`` key) reads as its embedded text:
   lines split on newlines, words on whitespace, blank lines dropped. An
   empty text gives no lines, which the API answers as 4000501 (no text);
2. any other image reads as the single line ``["sha256", <first 16 hex
   digits of its SHA-256>]``, distinct per image and stable across runs.

A real OCR engine can be plugged in later behind :class:`TextEngine`.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

from ocr_async.emulator.images import embedded_text

__all__ = ["FallbackEngine", "TextEngine", "recognize", "split_words"]


@runtime_checkable
class TextEngine(Protocol):
    """Anything that turns image bytes into lines of words.

    Called on the event loop for every request, so an implementation must be
    fast or hand heavy work to a thread itself. An empty list means "no text
    found". Exceptions become the API's -1 "Unknown error." answer.
    """

    def recognize(self, data: bytes) -> list[list[str]]:
        """Lines of words read from ``data`` (a JPEG or PNG)."""
        ...


def split_words(text: str) -> list[list[str]]:
    """``text`` as lines (split on newlines) of words (split on whitespace).

    Lines without any word are dropped: the API never answers an empty line.
    """
    return [words for line in text.split("\n") if (words := line.split())]


class FallbackEngine:
    """The default engine: embedded text, else a SHA-256 fingerprint."""

    def recognize(self, data: bytes) -> list[list[str]]:
        """Embedded text split into lines of words, else ``[["sha256", hex16]]``."""
        text = embedded_text(data)
        if text is not None:
            return split_words(text)
        return [["sha256", hashlib.sha256(data).hexdigest()[:16]]]


_DEFAULT = FallbackEngine()


def recognize(data: bytes) -> list[list[str]]:
    """What the emulator reads in ``data`` by default (see :class:`FallbackEngine`)."""
    return _DEFAULT.recognize(data)
