"""Real text recognition for the emulator, and choosing an engine by name.

Two engines read pixels, each optional:

* ``rapidocr`` (:class:`RapidOcrEngine`): ``pip install 'ocr-async[ocr]'``;
  CPU, models inside the wheel, English and digits (not Korean);
* ``tesseract`` (:class:`TesseractEngine`): Debian's ``tesseract-ocr``, with
  ``tesseract-ocr-kor`` for Korean.

:func:`engine_from_name` builds the engine for ``ocr-async serve --engine``
and the demo:

* ``embedded``: :class:`~ocr_async.emulator.engine.FallbackEngine`, the
  deterministic default (embedded text, else a SHA-256 fingerprint);
* ``rapidocr`` / ``tesseract``: that engine, or
  :class:`~ocr_async.errors.ConfigurationError` saying how to install it;
* ``auto``: the best engine installed for Korean and English, by measured
  words right on the bundled samples: tesseract when it has Korean data
  (52/52), else rapidocr (30/52: every Latin word but one, no Korean), else
  tesseract with English only, else the fallback.

Precedence between embedded text and a real engine: with
``embedded_first=True`` (the default) a real engine is wrapped in
:class:`~ocr_async.emulator.engine.EmbeddedFirst`: an image that carries
``ocr-async:text`` (every image made by :mod:`~ocr_async.emulator.images`,
and the bundled samples) answers with that text, deterministically and at
once, and only images without it are read from their pixels. So a test or
benchmark keeps its exact answers under any engine. With
``embedded_first=False`` a real engine reads every image's pixels, the
samples included; that is what the demo does. The fallback itself always
uses embedded text: it has nothing else.
"""

from __future__ import annotations

from typing import Final

from ocr_async.emulator.engine import EmbeddedFirst, FallbackEngine, TextEngine
from ocr_async.emulator.engines.rapidocr import RapidOcrEngine
from ocr_async.emulator.engines.tesseract import TesseractEngine
from ocr_async.errors import ConfigurationError

__all__ = [
    "AUTO_ORDER",
    "ENGINE_NAMES",
    "RapidOcrEngine",
    "TesseractEngine",
    "engine_from_name",
    "real_engine",
]

#: The names :func:`engine_from_name` accepts.
ENGINE_NAMES: Final = ("auto", "rapidocr", "tesseract", "embedded")
#: What ``auto`` tries, in order, before the fallback; ``tesseract+kor`` is
#: tesseract only when it has Korean data.
AUTO_ORDER: Final = ("tesseract+kor", "rapidocr", "tesseract")


def real_engine(name: str) -> TextEngine:
    """A new engine that reads pixels: ``rapidocr`` or ``tesseract``.

    Raises :class:`~ocr_async.errors.ConfigurationError` when it is not
    installed (the message says how to install it) or the name is unknown.
    """
    if name == "rapidocr":
        return RapidOcrEngine()
    if name == "tesseract":
        return TesseractEngine()
    raise ConfigurationError(f"unknown engine {name!r}; known: {', '.join(ENGINE_NAMES)}")


def _auto_candidate(candidate: str) -> TextEngine:
    if candidate != "tesseract+kor":
        return real_engine(candidate)
    engine = TesseractEngine()
    if "hangul" not in engine.scripts:
        raise ConfigurationError(
            "tesseract has no Korean data; install it with apt-get install tesseract-ocr-kor"
        )
    return engine


def engine_from_name(
    name: str, *, embedded_first: bool = True, unavailable: list[str] | None = None
) -> TextEngine:
    """The engine called ``name`` (one of :data:`ENGINE_NAMES`).

    See the module docstring for ``auto`` and for ``embedded_first``. With
    ``auto``, why each engine it passed over was unavailable is appended to
    ``unavailable`` when given, so a caller can say why it fell back.
    """
    if name == "embedded":
        return FallbackEngine()
    if name == "auto":
        for candidate in AUTO_ORDER:
            try:
                engine = _auto_candidate(candidate)
            except ConfigurationError as exc:
                if unavailable is not None and str(exc) not in unavailable:
                    unavailable.append(str(exc))
                continue
            return EmbeddedFirst(engine) if embedded_first else engine
        return FallbackEngine()
    engine = real_engine(name)
    return EmbeddedFirst(engine) if embedded_first else engine
