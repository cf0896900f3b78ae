"""hOCR: one XHTML document per recognized image or page.

hOCR (http://kba.github.io/hocr-spec/1.2/) is the OCR format of Tesseract,
OCRmyPDF, the Internet Archive and most hOCR-to-PDF tools. This writer
produces the structure they expect::

    html (XHTML 1.0, UTF-8)
      head   meta ocr-system, ocr-capabilities, ocr-number-of-pages
      body
        div.ocr_page    bbox 0 0 W H; ppageno; image; scan_res
          div.ocr_carea   around every line (the API gives no blocks)
            p.ocr_par
              span.ocr_line    bbox; one per listOfInferTexts entry
                span.ocrx_word  bbox; x_wconf (the API's conf x 100)

Boxes are whole pixels (see :mod:`ocr_async.outputs.layout`); a word
without a box has no ``bbox``. Words are separated by a space, so the text
of the page reads right in any HTML viewer. No element is written empty
(``<div/>``): an HTML parser would read that as an unclosed tag.

lxml builds the tree (escaping, namespaces, the doctype).
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from ocr_async import __version__
from ocr_async.models import OcrResult
from ocr_async.outputs.layout import PageLayout, Rect

__all__ = ["HOCR_CAPABILITIES", "XHTML_NAMESPACE", "hocr_document"]

XHTML_NAMESPACE: Final = "http://www.w3.org/1999/xhtml"
#: What ``ocr-capabilities`` announces: the classes and properties written.
HOCR_CAPABILITIES: Final = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf"
_DOCTYPE: Final = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
)
_META: Final = f"{{{XHTML_NAMESPACE}}}meta"
_SYSTEM: Final = f"ocr-async {__version__} (NHN Cloud General OCR API v1.1)"


def _element(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{XHTML_NAMESPACE}}}{tag}", attributes)


def _bbox(rect: Rect) -> str:
    return f"bbox {rect.left} {rect.top} {rect.right} {rect.bottom}"


def _quotable(name: str) -> bool:
    # Title properties are split at ';' and strings are in double quotes; a
    # name holding either (or a line break) cannot be written unambiguously.
    return not any(c in name for c in '";\r\n')


def hocr_document(
    result: OcrResult,
    size: tuple[int, int],
    *,
    file_name: str | None = None,
    page_number: int = 1,
    dpi: float | None = None,
    scale: tuple[float, float] = (1.0, 1.0),
) -> bytes:
    """One hOCR document for one page, as UTF-8 bytes with an XML declaration.

    ``size`` is the page image's (width, height) in pixels; ``scale`` maps
    the API's coordinates onto it (see :meth:`PageLayout.from_result`).
    ``file_name`` becomes the page's ``image`` property (left out when it
    holds a quote or a semicolon), ``page_number`` (1-based) its ``ppageno``
    (0-based, as the spec counts), ``dpi`` its ``scan_res``.
    """
    if page_number < 1:
        raise ValueError(f"page_number starts at 1, not {page_number}")
    layout = PageLayout.from_result(result, size, scale=scale)
    html = etree.Element(f"{{{XHTML_NAMESPACE}}}html", nsmap={None: XHTML_NAMESPACE})
    head = _element(html, "head")
    _element(head, "title").text = file_name or "hOCR"
    _element(head, "meta", **{"http-equiv": "Content-Type", "content": "text/html;charset=utf-8"})
    _element(head, "meta", name="ocr-system", content=_SYSTEM)
    _element(head, "meta", name="ocr-capabilities", content=HOCR_CAPABILITIES)
    _element(head, "meta", name="ocr-number-of-pages", content="1")

    title = [_bbox(layout.page_rect), f"ppageno {page_number - 1}"]
    if file_name and _quotable(file_name):
        title.append(f'image "{file_name}"')
    if dpi is not None and dpi > 0:
        title.append(f"scan_res {round(dpi)} {round(dpi)}")
    page = _element(
        _element(html, "body"),
        "div",
        **{"class": "ocr_page", "id": f"page_{page_number}", "title": "; ".join(title)},
    )
    if layout.lines:
        tag = f"{page_number}_1"
        around = Rect.around(r for line in layout.lines if (r := line.rect) is not None)
        bbox = {"title": _bbox(around)} if around else {}
        area = _element(page, "div", **{"class": "ocr_carea", "id": f"block_{tag}", **bbox})
        par = _element(area, "p", **{"class": "ocr_par", "id": f"par_{tag}", **bbox})
        word_number = 0
        for line_number, line in enumerate(layout.lines, 1):
            rect = line.rect
            span = _element(
                par,
                "span",
                **{
                    "class": "ocr_line",
                    "id": f"line_{page_number}_{line_number}",
                    **({"title": _bbox(rect)} if rect else {}),
                },
            )
            span.text = ""  # mixed content: no indentation inside a line
            for index, word in enumerate(line.words):
                word_number += 1
                properties = [_bbox(word.rect)] if word.rect is not None else []
                if word.conf is not None:
                    properties.append(f"x_wconf {round(word.conf * 100)}")
                attributes = {"class": "ocrx_word", "id": f"word_{page_number}_{word_number}"}
                if properties:
                    attributes["title"] = "; ".join(properties)
                element = _element(span, "span", **attributes)
                element.text = word.text
                if index < len(line.words) - 1:
                    element.tail = " "
    for element in html.iter():
        # Never <div/>: see the module docstring. <meta/> is void in HTML.
        if element.text is None and len(element) == 0 and element.tag != _META:
            element.text = ""
    return etree.tostring(
        html, xml_declaration=True, encoding="UTF-8", doctype=_DOCTYPE, pretty_print=True
    )
