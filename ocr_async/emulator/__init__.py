"""A local server that speaks NHN Cloud General OCR v1.1, for tests and demos.

It answers the same requests with the same envelope, result codes and
result shape as the real service. By default it recognizes the text
embedded in images made by :func:`make_png` / :func:`make_jpeg`
(deterministic, see :mod:`.engine`); with a real engine
(:func:`engine_from_name`: RapidOCR from the ``ocr`` extra, or Debian's
tesseract) it reads the pixels, off the event loop. Start it with
:func:`running_emulator` (tests, benchmarks) or ``ocr-async serve``.

It can also misbehave on purpose, reproducibly (:class:`FaultPlan`: dropped
connections, gateway 502 pages, torn and cut bodies, 5000503, -1, slow
answers), and issue OAuth tokens from User Access Keys (``uak`` in
:class:`EmulatorConfig`) so a client's token renewal can be tested.
"""

from ocr_async.emulator.engine import (
    EmbeddedFirst,
    FallbackEngine,
    RecognizedWord,
    TextEngine,
    recognize,
)
from ocr_async.emulator.engines import ENGINE_NAMES, engine_from_name
from ocr_async.emulator.faults import FAULT_KIND_NAMES, FaultKind, FaultPlan, parse_fault_kinds
from ocr_async.emulator.handlers import create_app
from ocr_async.emulator.images import embedded_text, image_size, make_jpeg, make_png
from ocr_async.emulator.samples import SAMPLES, iter_samples, sample_path, write_samples
from ocr_async.emulator.server import (
    RunningEmulator,
    find_free_port,
    running_emulator,
    serve_forever,
)
from ocr_async.emulator.state import CONFIG_KEY, STATS_KEY, EmulatorConfig, EmulatorStats
from ocr_async.emulator.wire import RESULT_MESSAGES

__all__ = [
    "CONFIG_KEY",
    "ENGINE_NAMES",
    "FAULT_KIND_NAMES",
    "RESULT_MESSAGES",
    "SAMPLES",
    "STATS_KEY",
    "EmbeddedFirst",
    "EmulatorConfig",
    "EmulatorStats",
    "FallbackEngine",
    "FaultKind",
    "FaultPlan",
    "RecognizedWord",
    "RunningEmulator",
    "TextEngine",
    "create_app",
    "embedded_text",
    "engine_from_name",
    "find_free_port",
    "image_size",
    "iter_samples",
    "make_jpeg",
    "make_png",
    "parse_fault_kinds",
    "recognize",
    "running_emulator",
    "sample_path",
    "serve_forever",
    "write_samples",
]
