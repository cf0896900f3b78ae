"""ALTO v4 XML: one document per recognized image or page.

ALTO (Analyzed Layout and Text Object, https://www.loc.gov/standards/alto/)
is what library digitization workflows read. The document follows the
version 4.4 schema (``alto-4-4.xsd``)::

    alto
      Description
        MeasurementUnit          pixel
        sourceImageInformation   fileName, when given
        Processing ID=OCR_1      what recognized the text
      Layout
        Page ID=PAGE_1 PHYSICAL_IMG_NR WIDTH HEIGHT  (the image's size)
          PrintSpace             the whole page
            TextBlock ID=BLOCK_1 around every line (the API gives no blocks)
              TextLine           one per listOfInferTexts entry
                String           CONTENT HPOS VPOS WIDTH HEIGHT WC
                SP               between two words of a line

Positions are whole pixels (see :mod:`ocr_async.outputs.layout`); ``WC``
is the API's ``conf`` (0..1). A word without a box is a ``String`` without
a position, and a page without text has an empty ``PrintSpace``.

lxml builds the tree: namespaces, escaping and the XML declaration are its
job, and the same library validates documents against an XSD.
"""

from __future__ import annotations

from typing import Final

from lxml import etree

from ocr_async import __version__
from ocr_async.models import OcrResult
from ocr_async.outputs.layout import PageLayout, Rect

__all__ = ["ALTO_NAMESPACE", "ALTO_SCHEMA_LOCATION", "alto_document"]

#: The namespace of every ALTO version 4.x document.
ALTO_NAMESPACE: Final = "http://www.loc.gov/standards/alto/ns-v4#"
#: Where the schema this writer follows is published.
ALTO_SCHEMA_LOCATION: Final = "http://www.loc.gov/standards/alto/v4/alto-4-4.xsd"
_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"
_SOFTWARE: Final = "ocr-async"
_ENGINE: Final = "NHN Cloud General OCR API v1.1"


def _element(parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{ALTO_NAMESPACE}}}{tag}", attributes)


def _position(rect: Rect) -> dict[str, str]:
    return {
        "HPOS": str(rect.left),
        "VPOS": str(rect.top),
        "WIDTH": str(rect.width),
        "HEIGHT": str(rect.height),
    }


def _conf(conf: float) -> str:
    # WCType is an xsd:float from 0 to 1; four places are more than the API gives.
    return f"{conf:.4f}".rstrip("0").rstrip(".") or "0"


def alto_document(
    result: OcrResult,
    size: tuple[int, int],
    *,
    file_name: str | None = None,
    page_number: int = 1,
    scale: tuple[float, float] = (1.0, 1.0),
) -> bytes:
    """One ALTO v4 document for one page, as UTF-8 bytes with an XML declaration.

    ``size`` is the page image's (width, height) in pixels; ``scale`` maps
    the API's coordinates onto it (see :meth:`PageLayout.from_result`).
    ``file_name`` goes into ``sourceImageInformation``; ``page_number`` (the
    page's 1-based number in its document) into ``PHYSICAL_IMG_NR``.
    """
    if page_number < 1:
        raise ValueError(f"page_number starts at 1, not {page_number}")
    layout = PageLayout.from_result(result, size, scale=scale)
    root = etree.Element(f"{{{ALTO_NAMESPACE}}}alto", nsmap={None: ALTO_NAMESPACE, "xsi": _XSI})
    root.set(f"{{{_XSI}}}schemaLocation", f"{ALTO_NAMESPACE} {ALTO_SCHEMA_LOCATION}")
    root.set("SCHEMAVERSION", "4.4")

    description = _element(root, "Description")
    _element(description, "MeasurementUnit").text = "pixel"
    if file_name:
        source = _element(description, "sourceImageInformation")
        _element(source, "fileName").text = file_name
    processing = _element(description, "Processing", ID="OCR_1")
    _element(processing, "processingCategory").text = "contentGeneration"
    _element(processing, "processingStepDescription").text = f"text recognition by {_ENGINE}"
    software = _element(processing, "processingSoftware")
    _element(software, "softwareName").text = _SOFTWARE
    _element(software, "softwareVersion").text = __version__

    page = _element(
        _element(root, "Layout"),
        "Page",
        ID=f"PAGE_{page_number}",
        PHYSICAL_IMG_NR=str(page_number),
        WIDTH=str(layout.width),
        HEIGHT=str(layout.height),
        PROCESSING="OCR_1",
    )
    space = _element(page, "PrintSpace", **_position(layout.page_rect))
    if layout.lines:
        around = Rect.around(r for line in layout.lines if (r := line.rect) is not None)
        block = _element(space, "TextBlock", ID="BLOCK_1", **(_position(around) if around else {}))
        word_number = 0
        for line_number, line in enumerate(layout.lines, 1):
            rect = line.rect
            text_line = _element(
                block, "TextLine", ID=f"LINE_{line_number}", **(_position(rect) if rect else {})
            )
            for index, word in enumerate(line.words):
                word_number += 1
                if index:
                    _space(text_line, line.words[index - 1].rect, word.rect)
                attributes = {"ID": f"STRING_{word_number}", "CONTENT": word.text}
                if word.rect is not None:
                    attributes.update(_position(word.rect))
                if word.conf is not None:
                    attributes["WC"] = _conf(word.conf)
                _element(text_line, "String", **attributes)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _space(line: etree._Element, before: Rect | None, after: Rect | None) -> None:
    """An ``SP`` between two words, placed in the gap when both have a box."""
    if before is None or after is None or after.left < before.right:
        _element(line, "SP")
        return
    _element(
        line,
        "SP",
        HPOS=str(before.right),
        VPOS=str(min(before.top, after.top)),
        WIDTH=str(after.left - before.right),
    )
