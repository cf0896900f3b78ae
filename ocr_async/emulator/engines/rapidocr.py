"""RapidOCR as an emulator engine: the ``ocr`` extra (``rapidocr-onnxruntime``).

RapidOCR runs PaddleOCR's PP-OCRv4 detection and recognition models on
onnxruntime, on the CPU, from model files inside its wheel: nothing is
downloaded at run time. Its recognition model is the Chinese one, which
also reads Latin letters and digits but **not Hangul**: Korean text comes
out as nonsense. For Korean, use :mod:`.tesseract` with ``kor`` data.

What it returns, and what this engine makes of it:

* detections are text boxes of a phrase or a line, each with its text and a
  score. Taken top to bottom, a detection joins the line above when their
  vertical spans overlap by half the smaller height or more; a line's
  detections are read left to right;
* a detection's text is split into words on whitespace, as the API splits
  words. The model often drops the space between two Latin words printed
  close together (sans-serif type especially): such words come out joined
  (``stellaartois``), with one box. Spaces are not guessed from geometry;
* a word's box is an upright rectangle: left and right from RapidOCR's own
  character positions (``return_word_box``), top and bottom from the
  detection; without character positions, the detection's width is shared
  out in proportion to the characters;
* a word's confidence is the mean of its characters' scores, else the
  detection's score.

Settings that differ from RapidOCR's defaults, each measured on the bundled
samples: the 180-degree direction classifier is off (it turned upright
Latin lines over, which then read as garbage); the detector scales the long
side down to 960 px and never scales a small image up (the default scaled
the short side up to 736 px: three to five times slower, and worse); one
onnxruntime thread per call, because the emulator runs as many calls at
once as it has worker threads (one per core).

Models are loaded once per concurrent call and kept: a call takes an idle
loaded instance or loads a new one, and puts it back when done, so there
are never more instances than calls at once, and none is used by two
threads at the same time (RapidOCR's objects keep per-call state).
"""

from __future__ import annotations

import importlib
import queue
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from ocr_async.emulator.engine import RecognizedWord
from ocr_async.errors import ConfigurationError

__all__ = ["INSTALL_HINT", "Detection", "RapidOcrEngine", "lines_from_detections"]

#: How to get this engine.
INSTALL_HINT: Final = "pip install 'ocr-async[ocr]'"
_MODULE: Final = "rapidocr_onnxruntime"
# See the module docstring for why each differs from RapidOCR's default.
_SETTINGS: Final[dict[str, Any]] = {
    "use_cls": False,
    "det_limit_type": "max",
    "det_limit_side_len": 960,
    "print_verbose": False,
}
# A detection joins a line when their vertical spans overlap by at least
# this fraction of the smaller height.
_LINE_OVERLAP: Final = 0.5

_Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Detection:
    """One RapidOCR text box: four corners, its text, score, and characters.

    ``chars`` is ``(character, left, right, score)`` for each character of
    ``text`` when RapidOCR reported positions, else empty.
    """

    corners: tuple[_Point, _Point, _Point, _Point]
    text: str
    score: float
    chars: tuple[tuple[str, float, float, float], ...] = ()

    @property
    def top(self) -> float:
        """The smallest y of its corners."""
        return min(y for _, y in self.corners)

    @property
    def bottom(self) -> float:
        """The largest y of its corners."""
        return max(y for _, y in self.corners)

    @property
    def left(self) -> float:
        """The smallest x of its corners."""
        return min(x for x, _ in self.corners)

    @property
    def right(self) -> float:
        """The largest x of its corners."""
        return max(x for x, _ in self.corners)


def _chars_of(text: str, left: float, right: float) -> list[tuple[str, float, float, float]]:
    # No positions from RapidOCR: share the width out evenly per character.
    step = (right - left) / max(1, len(text))
    return [(c, left + i * step, left + (i + 1) * step, -1.0) for i, c in enumerate(text)]


def _words_of(detection: Detection) -> list[RecognizedWord]:
    chars = list(detection.chars)
    if "".join(c for c, *_ in chars) != detection.text:
        chars = _chars_of(detection.text, detection.left, detection.right)
    top, bottom = round(detection.top), round(detection.bottom)
    words: list[RecognizedWord] = []
    current: list[tuple[str, float, float, float]] = []
    for char in [*chars, (" ", 0.0, 0.0, -1.0)]:
        if not char[0].isspace():
            current.append(char)
            continue
        if current:
            scores = [score for *_, score in current if score >= 0]
            conf = statistics.fmean(scores) if scores else detection.score
            left = round(min(c[1] for c in current))
            right = round(max(c[2] for c in current))
            value = "".join(c[0] for c in current)
            words.append(RecognizedWord.from_rect(value, conf, left, top, right, bottom))
            current = []
    return words


def _same_line(line: list[Detection], detection: Detection) -> bool:
    top = min(d.top for d in line)
    bottom = max(d.bottom for d in line)
    overlap = min(bottom, detection.bottom) - max(top, detection.top)
    return overlap >= _LINE_OVERLAP * min(bottom - top, detection.bottom - detection.top)


def lines_from_detections(detections: Sequence[Detection]) -> list[list[RecognizedWord]]:
    """RapidOCR's detections as lines of words, top to bottom, left to right.

    Pure (no model needed): the grouping and word rules of the module
    docstring.
    """
    lines: list[list[Detection]] = []
    for detection in sorted(detections, key=lambda d: (d.top + d.bottom) / 2):
        if not detection.text.strip():
            continue
        if lines and _same_line(lines[-1], detection):
            lines[-1].append(detection)
        else:
            lines.append([detection])
    result: list[list[RecognizedWord]] = []
    for line in lines:
        words = [word for d in sorted(line, key=lambda d: d.left) for word in _words_of(d)]
        if words:
            result.append(words)
    return result


def _point(raw: Any) -> _Point:
    return float(raw[0]), float(raw[1])


def _detection(raw: Sequence[Any]) -> Detection:
    """One entry of RapidOCR's answer (with ``return_word_box=True``)."""
    corners_raw, text, score = raw[0], str(raw[1]), float(raw[2])
    corners = (
        _point(corners_raw[0]),
        _point(corners_raw[1]),
        _point(corners_raw[2]),
        _point(corners_raw[3]),
    )
    chars: tuple[tuple[str, float, float, float], ...] = ()
    if len(raw) >= 6 and len(raw[3]) == len(raw[4]) == len(raw[5]):
        # Character boxes are upright rectangles: left is x of corner 0,
        # right x of corner 1.
        chars = tuple(
            (str(char), float(box[0][0]), float(box[1][0]), float(conf))
            for box, char, conf in zip(raw[3], raw[4], raw[5], strict=True)
        )
    return Detection(corners, text, score, chars)


class RapidOcrEngine:
    """Real recognition with RapidOCR (English and digits; not Korean).

    Raises :class:`~ocr_async.errors.ConfigurationError` when the ``ocr``
    extra is missing or cannot be imported (opencv needs ``libGL.so.1``).
    """

    name: ClassVar[str] = "rapidocr"
    #: Scripts its model reads (the demo scores these).
    scripts: ClassVar[frozenset[str]] = frozenset({"latin"})

    def __init__(self, *, threads: int = 1) -> None:
        try:
            module = importlib.import_module(_MODULE)
        except (ImportError, OSError) as exc:
            raise ConfigurationError(
                f"the rapidocr engine is not available ({type(exc).__name__}: {exc}); "
                f"install it with {INSTALL_HINT}"
            ) from None
        self._factory: Any = module.RapidOCR
        self._threads = threads
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def _load(self) -> Any:
        return self._factory(
            **_SETTINGS,
            intra_op_num_threads=self._threads,
            inter_op_num_threads=self._threads,
        )

    def _take(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return self._load()

    def warm_up(self) -> None:
        """Load one instance of the models now rather than on the first call."""
        self._idle.put(self._take())

    def recognize(self, data: bytes) -> list[list[RecognizedWord]]:
        """Lines of words with boxes and confidences read from ``data``."""
        ocr = self._take()
        try:
            answer, _ = ocr(data, return_word_box=True)
        finally:
            self._idle.put(ocr)
        return lines_from_detections([_detection(raw) for raw in answer or ()])
