"""ALTO v4 documents, read back with lxml and checked against the schema's rules.

The official schema (alto-4-4.xsd) is not shipped by any package this
project can install, so the rules of the elements written are restated
here from it: each element's children, in order, as a pattern over their
names; the attributes it requires; the types of the values. With the
schema at hand, ``ALTO_XSD=/path/to/alto-4-4.xsd pytest`` validates against
it as well.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lxml", reason="the ALTO writer needs the 'digitize' extra")

from lxml import etree

from ocr_async.models import OcrResult
from ocr_async.outputs.alto import ALTO_NAMESPACE, alto_document
from ocr_async.protocol import parse_result

DATA = Path(__file__).parent / "data" / "digitize" / "page_result.json"
NS = {"a": ALTO_NAMESPACE}

# The content models of alto-4-4.xsd for the elements this writer uses:
# child names, in order, each followed by a space.
CONTENT_MODELS = {
    "alto": r"(Description )?(Styles )?(Tags )?(ReadingOrder )?Layout ",
    "Description": r"MeasurementUnit (sourceImageInformation )?(OCRProcessing )*(Processing )*",
    "sourceImageInformation": r"(fileName )?(fileIdentifier )*(documentIdentifier )*",
    "Processing": r"(processingCategory )?(processingDateTime )?(processingAgency )?"
    r"(processingStepDescription )*(processingStepSettings )?(processingSoftware )?",
    "processingSoftware": r"(softwareCreator )?(softwareName )?(softwareVersion )?"
    r"(applicationDescription )?",
    "Layout": r"(Page )+",
    "Page": r"(TopMargin )?(LeftMargin )?(RightMargin )?(BottomMargin )?(PrintSpace )?",
    "PrintSpace": r"(Shape )?((TextBlock|Illustration|GraphicalElement|ComposedBlock) )*",
    "TextBlock": r"(Shape )?(TextLine )*",
    "TextLine": r"(Shape )?(String (SP )?)+(HYP )?",
}
LEAVES = {
    "MeasurementUnit",
    "fileName",
    "processingCategory",
    "processingStepDescription",
    "softwareName",
    "softwareVersion",
    "String",
    "SP",
}
REQUIRED = {
    "Processing": {"ID"},
    "Page": {"ID", "PHYSICAL_IMG_NR"},
    "TextBlock": {"ID"},
    "String": {"CONTENT"},
}
FLOATS = {"HPOS", "VPOS", "WIDTH", "HEIGHT", "PHYSICAL_IMG_NR", "WC"}
NCNAME = re.compile(r"^[A-Za-z_][\w.\-]*$")


def sample() -> OcrResult:
    raw: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    return parse_result(raw)


def local(element: etree._Element) -> str:
    return etree.QName(element).localname


def check_schema_rules(root: etree._Element) -> None:
    assert root.tag == f"{{{ALTO_NAMESPACE}}}alto"
    ids: list[str] = []
    for element in root.iter():
        name = local(element)
        assert element.tag == f"{{{ALTO_NAMESPACE}}}{name}", "every element in the ALTO namespace"
        children = "".join(f"{local(child)} " for child in element)
        if name in CONTENT_MODELS:
            assert re.fullmatch(CONTENT_MODELS[name], children), (name, children)
        else:
            assert name in LEAVES, name
            assert not children, name
        assert REQUIRED.get(name, set()) <= set(element.attrib), name
        for attribute, value in element.attrib.items():
            if attribute in FLOATS:
                assert float(value) >= 0, (name, attribute, value)
            if attribute == "WC":
                assert 0 <= float(value) <= 1
            if attribute == "ID":
                assert NCNAME.match(value), value
                ids.append(value)
    assert len(ids) == len(set(ids)), "IDs are unique"
    assert root.findtext("a:Description/a:MeasurementUnit", namespaces=NS) == "pixel"


def strings(root: etree._Element) -> list[list[tuple[str, ...]]]:
    return [
        [
            tuple(s.get(k, "") for k in ("CONTENT", "HPOS", "VPOS", "WIDTH", "HEIGHT", "WC"))
            for s in line.iterfind("a:String", NS)
        ]
        for line in root.iterfind(".//a:TextLine", NS)
    ]


def test_words_lines_and_page_read_back() -> None:
    document = alto_document(sample(), (400, 300), file_name="scans/p1.png", page_number=3)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(document)
    check_schema_rules(root)
    page = root.find("a:Layout/a:Page", NS)
    assert page is not None
    assert [page.get(k) for k in ("WIDTH", "HEIGHT", "PHYSICAL_IMG_NR")] == ["400", "300", "3"]
    assert root.findtext(".//a:sourceImageInformation/a:fileName", namespaces=NS) == "scans/p1.png"
    assert strings(root) == [
        [("NHN", "10", "12", "48", "18", "0.9987"), ("Cloud", "64", "12", "66", "18", "0.9921")],
        [
            ("일반", "10", "40", "34", "21", "0.97"),
            ("OCR", "50", "40", "40", "21", "0.995"),
            ("테스트", "95", "39", "55", "23", "0.88"),
        ],
        [("2026-11-05", "10", "70", "110", "18", ""), ("edge", "380", "0", "20", "12", "1")],
        [("boxless", "", "", "", "", "0.5")],
    ]
    lines = root.findall(".//a:TextLine", NS)
    assert [(x.get("HPOS"), x.get("VPOS"), x.get("WIDTH"), x.get("HEIGHT")) for x in lines] == [
        ("10", "12", "120", "18"),
        ("10", "39", "140", "23"),
        ("10", "0", "390", "88"),
        (None, None, None, None),
    ]
    # A space between two boxed words sits in the gap between them.
    first_space = lines[0].find("a:SP", NS)
    assert first_space is not None
    assert (first_space.get("HPOS"), first_space.get("WIDTH")) == ("58", "6")


def test_a_page_without_text_is_a_valid_empty_print_space() -> None:
    root = etree.fromstring(alto_document(parse_result({}), (640, 480)))
    check_schema_rules(root)
    space = root.find(".//a:PrintSpace", NS)
    assert space is not None
    assert len(space) == 0
    assert space.get("WIDTH") == "640"


def test_markup_in_words_and_names_is_escaped() -> None:
    result = parse_result({"listOfInferTexts": [{"inferTexts": [{"value": '<b>&"x"'}]}]})
    root = etree.fromstring(alto_document(result, (10, 10), file_name="a&b<c>.png"))
    assert root.findtext(".//a:fileName", namespaces=NS) == "a&b<c>.png"
    assert strings(root) == [[('<b>&"x"', "", "", "", "", "")]]


def test_page_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        alto_document(sample(), (400, 300), page_number=0)


XLINK_STUB = b"""<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"
  targetNamespace="http://www.w3.org/1999/xlink" xmlns:xlink="http://www.w3.org/1999/xlink"
  attributeFormDefault="qualified">
  <xs:attributeGroup name="simpleLink">
    <xs:attribute name="type" type="xs:string"/><xs:attribute name="href" type="xs:anyURI"/>
    <xs:attribute name="role" type="xs:anyURI"/><xs:attribute name="arcrole" type="xs:anyURI"/>
    <xs:attribute name="title" type="xs:string"/><xs:attribute name="show" type="xs:string"/>
    <xs:attribute name="actuate" type="xs:string"/>
  </xs:attributeGroup>
</xs:schema>"""


class _OfflineXlink(etree.Resolver):
    """The schema imports xlink.xsd by URL; answer with a stub, never the network."""

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:
        if system_url and system_url.endswith("xlink.xsd"):
            return self.resolve_string(XLINK_STUB, context)
        return None


@pytest.mark.skipif(not os.environ.get("ALTO_XSD"), reason="set ALTO_XSD to alto-4-4.xsd")
def test_documents_validate_against_the_official_schema() -> None:
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_OfflineXlink())
    schema = etree.XMLSchema(etree.parse(os.environ["ALTO_XSD"], parser))
    for document in (
        alto_document(sample(), (400, 300), file_name="p.png", page_number=2),
        alto_document(parse_result({}), (640, 480)),
    ):
        assert schema.validate(etree.fromstring(document)), schema.error_log
