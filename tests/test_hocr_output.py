"""hOCR documents, read back by OCRmyPDF's hOCR parser and checked against the spec.

OCRmyPDF's parser (``ocrmypdf.hocrtransform.HocrParser``) is the reader
that matters most: it is what the OCRmyPDF plugin's pages go through. The
spec's rules it does not check (metadata, property syntax, the classes
announced) are checked with lxml; an HTML parser must see the same words.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lxml", reason="the hOCR writer needs the 'digitize' extra")

from lxml import etree, html

from ocr_async.models import OcrResult
from ocr_async.outputs.hocr import HOCR_CAPABILITIES, XHTML_NAMESPACE, hocr_document
from ocr_async.protocol import parse_result

DATA = Path(__file__).parent / "data" / "digitize" / "page_result.json"
NS = {"h": XHTML_NAMESPACE}
# hOCR 1.2, "Properties": name, then values; properties separated by ';'.
PROPERTY = re.compile(r'^[a-z_]+( ("[^"]*"|[^\s;"]+))+$')

EXPECTED_WORDS = [
    ("NHN", (10, 12, 58, 30), 100.0),
    ("Cloud", (64, 12, 130, 30), 99.0),
    ("일반", (10, 40, 44, 61), 97.0),
    ("OCR", (50, 40, 90, 61), 100.0),
    ("테스트", (95, 39, 150, 62), 88.0),
    ("2026-11-05", (10, 70, 120, 88), None),
    ("edge", (380, 0, 400, 12), 100.0),
]


def sample() -> OcrResult:
    raw: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return parse_result(raw)


def test_ocrmypdf_reads_the_page_lines_and_words(tmp_path: Path) -> None:
    parser_module = pytest.importorskip("ocrmypdf.hocrtransform.hocr_parser")
    path = tmp_path / "page.hocr"
    path.write_bytes(hocr_document(sample(), (400, 300), file_name="p.png", dpi=300))
    page = parser_module.HocrParser(path).parse()
    assert page.bbox is not None
    assert (page.bbox.right, page.bbox.bottom, page.dpi, page.page_number) == (400, 300, 300, 0)
    lines = [line for par in page.children for line in par.children]
    words = [
        (w.text, (w.bbox.left, w.bbox.top, w.bbox.right, w.bbox.bottom), w.confidence)
        for line in lines
        for w in line.children
        if w.bbox is not None
    ]
    # Confidences are x_wconf, 0-100; OCRmyPDF reads them as fractions.
    assert words == [
        (text, box, None if conf is None else conf / 100) for text, box, conf in EXPECTED_WORDS
    ]
    # The boxless line has no bbox, so OCRmyPDF skips it (it could not place it).
    assert [len(line.children) for line in lines] == [2, 3, 2]


def test_metadata_classes_and_properties_follow_the_spec() -> None:
    root = etree.fromstring(hocr_document(sample(), (400, 300), file_name="p.png", page_number=4))
    meta = {m.get("name"): m.get("content") for m in root.iterfind("h:head/h:meta", NS)}
    assert (meta["ocr-system"] or "").startswith("ocr-async ")
    assert meta["ocr-capabilities"] == HOCR_CAPABILITIES
    assert meta["ocr-number-of-pages"] == "1"
    written = {c for e in root.iter() if (c := e.get("class"))}
    assert written <= set(HOCR_CAPABILITIES.split()) - {"ocrp_wconf"}
    for element in root.iter():
        title = element.get("title")
        if element.get("class") and title:
            for prop in title.split("; "):
                assert PROPERTY.match(prop), prop
    (page,) = root.iterfind(".//h:div[@class='ocr_page']", NS)
    assert page.get("title") == 'bbox 0 0 400 300; ppageno 3; image "p.png"'
    ids = [e.get("id") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert root.find(".//h:span[@class='ocrx_word']", NS).get("title") == (  # type: ignore[union-attr]
        "bbox 10 12 58 30; x_wconf 100"
    )


def test_an_html_parser_sees_the_same_words_and_spaces() -> None:
    document = html.document_fromstring(hocr_document(sample(), (400, 300)))
    words = [w.text_content() for w in document.find_class("ocrx_word")]
    assert words == [*(w for w, _, _ in EXPECTED_WORDS), "boxless"]
    lines = [line.text_content() for line in document.find_class("ocr_line")]
    assert lines == ["NHN Cloud", "일반 OCR 테스트", "2026-11-05 edge", "boxless"]


def test_a_page_without_text_has_no_self_closing_element() -> None:
    document = hocr_document(parse_result({}), (640, 480))
    assert b'<div class="ocr_page" id="page_1" title="bbox 0 0 640 480; ppageno 0"></div>' in (
        document
    )
    assert re.search(rb"<(div|span|p|title)[^>]*/>", document) is None
    assert html.document_fromstring(document).find_class("ocr_page")


@pytest.mark.parametrize("name", ['say "hi".png', "a;b.png", "two\nlines.png"])
def test_a_name_the_title_syntax_cannot_hold_is_left_out(name: str) -> None:
    root = etree.fromstring(hocr_document(sample(), (400, 300), file_name=name))
    page = root.find(".//h:div[@class='ocr_page']", NS)
    assert page is not None
    assert page.get("title") == "bbox 0 0 400 300; ppageno 0"
    assert root.findtext("h:head/h:title", namespaces=NS) == name
