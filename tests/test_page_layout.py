"""The API's corner boxes placed on the page as whole-pixel rectangles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ocr_async.models import BoundingBox, Line, OcrResult, Word
from ocr_async.outputs.layout import PageLayout, PlacedWord, Rect
from ocr_async.protocol import parse_result

DATA = Path(__file__).parent / "data" / "digitize" / "page_result.json"


def sample() -> OcrResult:
    raw: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return parse_result(raw)


def test_words_become_upright_rectangles_rounded_outward_and_clipped() -> None:
    layout = PageLayout.from_result(sample(), (400, 300))
    assert [[(w.text, w.rect, w.conf) for w in line.words] for line in layout.lines] == [
        [("NHN", Rect(10, 12, 58, 30), 0.9987), ("Cloud", Rect(64, 12, 130, 30), 0.9921)],
        [
            ("일반", Rect(10, 40, 44, 61), 0.97),
            # 50.5 rounds down, a slanted quadrilateral gives its bounding rectangle.
            ("OCR", Rect(50, 40, 90, 61), 0.995),
            ("테스트", Rect(95, 39, 150, 62), 0.88),
        ],
        # "  " is no word; a box past the page edge is clipped; conf 1.2 is clipped.
        [("2026-11-05", Rect(10, 70, 120, 88), None), ("edge", Rect(380, 0, 400, 12), 1.0)],
        # The empty line is gone; a word without a box keeps no rectangle.
        [("boxless", None, 0.5)],
    ]
    assert layout.lines[1].rect == Rect(10, 39, 150, 62)
    assert layout.lines[3].rect is None
    assert layout.text == "NHN Cloud\n일반 OCR 테스트\n2026-11-05 edge\nboxless"


def test_scale_maps_the_sent_image_onto_the_page() -> None:
    box = BoundingBox(10, 10, 20, 10, 20, 15, 10, 15)
    result = OcrResult(lines=(Line((Word("a", 0.5, box),)),), raw={})
    layout = PageLayout.from_result(result, (1000, 1000), scale=(2.0, 3.0))
    assert layout.words == (PlacedWord("a", Rect(20, 30, 40, 45), 0.5),)


def test_a_box_wholly_off_the_page_shrinks_to_its_edge() -> None:
    box = BoundingBox(500, 10, 520, 10, 520, 20, 500, 20)
    result = OcrResult(lines=(Line((Word("far", None, box),)),), raw={})
    (word,) = PageLayout.from_result(result, (100, 100)).words
    assert word.rect == Rect(100, 10, 100, 20)


@pytest.mark.parametrize("size", [(0, 10), (10, 0)])
def test_a_page_needs_a_size(size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="positive size"):
        PageLayout.from_result(sample(), size)
