"""The words of a recognition placed on their page, as whole-pixel rectangles.

The API gives each word four corners, clockwise from the top left, in the
pixels of the image it was sent (API-FACTS.md, "the real shape of
``result``"); the corners of a slanted word make a quadrilateral. ALTO,
hOCR and a PDF text layer all want upright rectangles in whole pixels
inside the page, so this module makes them once, for all three: the
smallest rectangle holding the four corners, its edges rounded outward,
clipped to the page. A line's rectangle holds its words'.

``scale`` maps the coordinates of the image that was sent to those of the
page the output describes, for when they differ (an image shrunk to fit the
upload limit, described at its original size).

Pure: no I/O, standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ocr_async.models import BoundingBox, OcrResult

__all__ = ["PageLayout", "PlacedLine", "PlacedWord", "Rect"]


@dataclass(frozen=True, slots=True)
class Rect:
    """An upright rectangle in whole pixels: ``left <= right``, ``top <= bottom``."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        """``right - left``."""
        return self.right - self.left

    @property
    def height(self) -> int:
        """``bottom - top``."""
        return self.bottom - self.top

    @classmethod
    def around(cls, rects: Iterable[Rect]) -> Rect | None:
        """The smallest rectangle holding all of ``rects``; None when there are none."""
        rects = list(rects)
        if not rects:
            return None
        return cls(
            min(r.left for r in rects),
            min(r.top for r in rects),
            max(r.right for r in rects),
            max(r.bottom for r in rects),
        )


@dataclass(frozen=True, slots=True)
class PlacedWord:
    """One word: its text, its rectangle (None when the API gave no box), its confidence."""

    text: str
    rect: Rect | None
    #: The API's ``conf`` clipped to 0..1; None when it gave none.
    conf: float | None


@dataclass(frozen=True, slots=True)
class PlacedLine:
    """One ``listOfInferTexts`` entry that holds at least one word."""

    words: tuple[PlacedWord, ...]

    @property
    def rect(self) -> Rect | None:
        """The rectangle around the words that have one; None when none has."""
        return Rect.around(word.rect for word in self.words if word.rect is not None)

    @property
    def text(self) -> str:
        """The words joined by single spaces."""
        return " ".join(word.text for word in self.words)


@dataclass(frozen=True, slots=True)
class PageLayout:
    """A page ``width`` x ``height`` pixels and its lines of words, in reading order."""

    width: int
    height: int
    lines: tuple[PlacedLine, ...]

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"a page needs a positive size, not {self.width}x{self.height}")

    @property
    def page_rect(self) -> Rect:
        """The whole page."""
        return Rect(0, 0, self.width, self.height)

    @property
    def words(self) -> tuple[PlacedWord, ...]:
        """Every word, in reading order."""
        return tuple(word for line in self.lines for word in line.words)

    @property
    def text(self) -> str:
        """One line of text per line, words joined by single spaces."""
        return "\n".join(line.text for line in self.lines)

    @classmethod
    def from_result(
        cls,
        result: OcrResult,
        size: tuple[int, int],
        *,
        scale: tuple[float, float] = (1.0, 1.0),
    ) -> PageLayout:
        """Place ``result`` on a page of ``size`` (width, height) pixels.

        Words whose text is empty or only spaces are left out, and so are
        lines left with no word: no format has a use for them. ``scale``
        (x, y) multiplies every coordinate before rounding.
        """
        width, height = size
        lines: list[PlacedLine] = []
        for line in result.lines:
            words = tuple(
                PlacedWord(
                    text=word.value.strip(),
                    rect=_rect(word.box, width, height, scale),
                    conf=None if word.conf is None else min(1.0, max(0.0, word.conf)),
                )
                for word in line.words
                if word.value.strip()
            )
            if words:
                lines.append(PlacedLine(words))
        return cls(width, height, tuple(lines))


def _rect(
    box: BoundingBox | None, width: int, height: int, scale: tuple[float, float]
) -> Rect | None:
    if box is None:
        return None
    sx, sy = scale
    xs = [x * sx for x in (box.x1, box.x2, box.x3, box.x4)]
    ys = [y * sy for y in (box.y1, box.y2, box.y3, box.y4)]
    # Outward rounding, then clipping: a box that strays off the page (the
    # API's corners may, by a pixel or two) still marks what it covers on it.
    left = min(max(math.floor(min(xs)), 0), width)
    top = min(max(math.floor(min(ys)), 0), height)
    right = min(max(math.ceil(max(xs)), left), width)
    bottom = min(max(math.ceil(max(ys)), top), height)
    return Rect(left, top, right, bottom)
