"""The HTML review page: unit tests on hand-written JSONL, a run through the
emulator end to end, and the page itself in headless Chromium.

The browser tests need the ``chromium`` binary (Debian package ``chromium``)
and are skipped without it. They use Chromium's own command line
(``--dump-dom``, ``--screenshot``) and, for clicking, the DevTools protocol
over a loopback WebSocket with aiohttp: no Python dependency is added.
Set ``OCR_ASYNC_SAVE_REVIEW_SCREENSHOT=docs/images/review-page.png`` to
refresh the screenshot in the docs from the browser test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import APPKEY, TOKEN, emulator_config

from ocr_async.cli import ExitCode, main
from ocr_async.emulator import make_png, running_emulator
from ocr_async.inputs import display_path
from ocr_async.outputs.report import (
    DEFAULT_LOW_CONFIDENCE,
    ReportSummary,
    record_html,
    write_report,
)
from ocr_async.outputs.report import writer as writer_module
from ocr_async.outputs.report.images import Image
from ocr_async.protocol import parse_result

DATA = Path(__file__).parent / "data" / "protocol"
CHROMIUM = shutil.which("chromium")
XSS_SOURCE = "<script>alert(1)</script>.png"
XSS_FILE_NAME = "<img src=x onerror=alert(1)>.png"  # no "/": a real file can have it


# --- helpers ------------------------------------------------------------------


def ok_record(source: str, result: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    result = {"fileType": "png", "listOfInferTexts": [], "listOfBoundingBoxes": []} | dict(
        result or {}
    )
    return {
        "source": source,
        "ok": True,
        "endpoint": "general",
        "attempts": 1,
        "elapsed_ms": 12.5,
        "text": "",
        "result": result,
        "error": None,
    } | extra


def failed_record(
    source: str, code: int | str = 4000003, message: str = "INVALID_FILE_TYPE", local: bool = True
) -> dict[str, Any]:
    return {
        "source": source,
        "ok": False,
        "endpoint": "general",
        "attempts": 0 if local else 3,
        "elapsed_ms": 1.0,
        "text": None,
        "result": None,
        "error": {"code": code, "message": message, "local": local, "retryable": not local},
    }


def words_result(lines: list[list[tuple[str, float]]]) -> dict[str, Any]:
    """A result in the emulator's layout (line i at y = 10 + 30 i, 12 px a character)."""
    texts, boxes = [], []
    for i, words in enumerate(lines):
        top, left = 10 + 30 * i, 10
        line_texts, line_boxes = [], []
        for value, conf in words:
            right = left + 12 * len(value)
            line_texts.append({"value": value, "conf": conf})
            line_boxes.append(
                {"x1": left, "y1": top, "x2": right, "y2": top,
                 "x3": right, "y3": top + 24, "x4": left, "y4": top + 24}
            )  # fmt: skip
            left = right + 12
        texts.append({"inferTexts": line_texts})
        boxes.append({"boundingBoxes": line_boxes})
    return {"fileType": "png", "listOfInferTexts": texts, "listOfBoundingBoxes": boxes}


def write_jsonl(path: Path, documents: Iterable[Mapping[str, Any] | str], tail: str = "") -> Path:
    lines = [d if isinstance(d, str) else json.dumps(d, ensure_ascii=False) for d in documents]
    path.write_text("".join(line + "\n" for line in lines) + tail, encoding="utf-8")
    return path


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    article: str | None
    text: str = ""


@dataclass
class Page:
    """What the tests look at in a page, parsed by the standard library's parser."""

    html: str
    articles: list[Element] = field(default_factory=list)
    elements: list[Element] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)

    def find(self, tag: str, article: str | None = None) -> list[Element]:
        return [
            e for e in self.elements if e.tag == tag and (article is None or e.article == article)
        ]

    def by_id(self, element_id: str) -> Element:
        (element,) = [e for e in self.elements if e.attrs.get("id") == element_id]
        return element

    @property
    def visible(self) -> list[Element]:
        return [a for a in self.articles if "hidden" not in a.attrs]


class _PageParser(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.article: str | None = None
        self.open: list[Element] = []
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.article)
        if tag == "article":
            self.article = element.attrs["id"]
            element.article = self.article
            self.page.articles.append(element)
        if tag == "script":
            self.in_script = True
            self.page.scripts.append("")
        self.page.elements.append(element)
        if tag not in ("img", "input", "meta", "link", "br"):
            self.open.append(element)

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self.article = None
        if tag == "script":
            self.in_script = False
        while self.open:
            if self.open.pop().tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.page.scripts[-1] += data
        for element in self.open:
            element.text += data


def parse_page(html_text: str) -> Page:
    page = Page(html_text)
    parser = _PageParser(page)
    parser.feed(html_text)
    parser.close()
    return page


def report(tmp_path: Path, documents: Iterable[Mapping[str, Any] | str], **kwargs: Any) -> Page:
    jsonl = write_jsonl(tmp_path / "out.jsonl", documents)
    write_report(jsonl, tmp_path / "review.html", **kwargs)
    return parse_page((tmp_path / "review.html").read_text(encoding="utf-8"))


def polygon_points(points: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in (pair.split(",") for pair in points.split())]


def box_corners(box: Mapping[str, float]) -> list[tuple[float, float]]:
    return [(float(box[f"x{n}"]), float(box[f"y{n}"])) for n in range(1, 5)]


# --- unit: what the page says -------------------------------------------------


def test_strings_from_the_jsonl_are_escaped(tmp_path: Path) -> None:
    evil_words = [("<img", 0.9), ("src=x", 0.9), ("onerror=alert(2)>", 0.9), ("\"&'", 0.5)]
    page = report(
        tmp_path,
        [
            ok_record(XSS_SOURCE, words_result([evil_words]), text="<img src=x onerror=alert(2)>"),
            failed_record("<b>bold</b>.png", message="<script>alert(3)</script> & more"),
            ok_record("plain.png") | {"result": None, "text": "</pre><script>alert(4)</script>"},
        ],
    )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page.html
    assert "&lt;script&gt;alert(3)&lt;/script&gt; &amp; more" in page.html
    assert "&lt;/pre&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in page.html
    for raw in ("<script>alert", "<img src=x", "<b>bold", "alert(2)>"):
        assert raw not in page.html
    # The only script is the page's own filter code; no element came from the data.
    assert len(page.scripts) == 1
    assert "alert" not in page.scripts[0]
    assert "bold" not in [b.text for b in page.find("b")]
    assert all(img.attrs.get("src") != "x" for img in page.find("img"))
    # The text is still there to read, unescaped by the browser.
    heading = page.find("h3")
    assert [h.text for h in heading] == ["<b>bold</b>.png", XSS_SOURCE, "plain.png"]
    titles = [e.attrs["title"] for e in page.find("span") if "data-w" in e.attrs]
    assert titles[-1] == "\"&' \u2014 conf 0.5"


def test_failures_come_first_then_successes_each_in_file_order(tmp_path: Path) -> None:
    page = report(
        tmp_path,
        [
            ok_record("a.png"),
            failed_record("b.png"),
            ok_record("c.png"),
            failed_record("d.png", code="timeout", message="no answer in 60 s", local=False),
        ],
    )
    assert [a.attrs["data-status"] for a in page.articles] == ["failed", "failed", "ok", "ok"]
    assert [h.text for h in page.find("h3")] == ["b.png", "d.png", "a.png", "c.png"]
    # Each record keeps its line number as its id.
    assert [a.attrs["id"] for a in page.articles] == ["r2", "r4", "r1", "r3"]
    sections = [e.attrs["id"] for e in page.find("section")]
    assert sections == ["group-failed", "group-ok"]


def test_failure_shows_its_code_message_and_whether_it_was_local(tmp_path: Path) -> None:
    page = report(
        tmp_path,
        [
            failed_record("bad.png", 4000003, "INVALID_FILE_TYPE: not a JPEG or PNG (not sent)"),
            failed_record("https://h/x.png", 4000504, "GENERAL_OCR_IMAGE_DOWNLOAD_FAIL", False),
        ],
    )
    local, remote = page.articles
    local_text = " ".join(e.text for e in page.find("div", local.attrs["id"]))
    assert "4000003 INVALID_FILE_TYPE" in local_text
    assert "not a JPEG or PNG (not sent)" in local_text
    assert "local: never sent" in local_text
    remote_text = " ".join(e.text for e in page.find("div", remote.attrs["id"]))
    assert "4000504 GENERAL_OCR_IMAGE_DOWNLOAD_FAIL" in remote_text
    assert "sent to the API" in remote_text
    assert "retryable" in remote_text


def test_word_boxes_are_svg_polygons_at_the_records_coordinates(tmp_path: Path) -> None:
    # The real shape, with fractional and slanted corners (API-FACTS.md).
    result = json.loads((DATA / "real_shape_multiline.json").read_text(encoding="utf-8"))["result"]
    page = report(tmp_path, [ok_record("scan.jpg", result)], low_confidence=0.9)
    (article,) = page.articles
    polygons = page.find("polygon", article.attrs["id"])
    expected = [
        box_corners(box)
        for group in result["listOfBoundingBoxes"]
        for box in group["boundingBoxes"]
    ]
    assert [polygon_points(p.attrs["points"]) for p in polygons] == expected
    assert polygons[3].attrs["points"] == "50.5,40.25 90,40 90,61 50.5,61"
    # Word i-j of the text and box i-j of the picture are the same word.
    spans = [s for s in page.find("span", article.attrs["id"]) if "data-w" in s.attrs]
    assert [s.attrs["data-w"] for s in spans] == [p.attrs["data-w"] for p in polygons]
    assert [s.text for s in spans] == ["NHN", "Cloud", "일반", "OCR", "테스트", "2026-11-05"]
    assert [p.text for p in polygons][:2] == ["NHN \u2014 conf 0.9987", "Cloud \u2014 conf 0.9921"]
    assert spans[4].attrs["title"] == "테스트 \u2014 conf 0.88"
    # Below 0.9 is low: only 0.88; 0.9 itself is not.
    low = [s.text for s in spans if "low" in s.attrs["class"].split()]
    assert low == ["테스트"]
    assert [p.attrs["class"] for p in polygons].count("w low") == 1
    assert article.attrs["data-minconf"] == "0.88"
    # No image file: the boxes are drawn on a blank sheet as large as they reach.
    (svg,) = page.find("svg", article.attrs["id"])
    assert svg.attrs["viewbox"] == "0 0 160 98"
    assert [line.text for line in page.find("p") if "line" in line.attrs.get("class", "")] == [
        "NHN Cloud",
        "일반 OCR 테스트",
        "2026-11-05",
    ]


def test_a_local_png_is_embedded_as_a_data_uri_under_its_boxes(tmp_path: Path) -> None:
    image = tmp_path / "scan one.png"
    image.write_bytes(make_png("hello world\nsecond line", 320, 120))
    result = words_result([[("hello", 0.99), ("world", 0.97)], [("second", 0.5), ("line", 0.99)]])
    page = report(tmp_path, [ok_record(str(image), result)])
    (img,) = page.find("img")
    assert img.attrs["src"] == "data:image/png;base64," + base64.b64encode(
        image.read_bytes()
    ).decode("ascii")
    assert (img.attrs["width"], img.attrs["height"]) == ("320", "120")
    (svg,) = page.find("svg")
    assert svg.attrs["viewbox"] == "0 0 320 120"
    assert len(page.find("polygon")) == 4


def test_escaped_sources_find_their_files(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/odd\xff\\name.png"  # not UTF-8, and a backslash
    with open(raw, "wb") as handle:
        handle.write(make_png("odd"))
    page = report(tmp_path, [ok_record(display_path(os.fsdecode(raw)))])
    assert page.find("img")[0].attrs["src"].startswith("data:image/png;base64,")


def test_relative_sources_are_found_from_base_dir(tmp_path: Path) -> None:
    (tmp_path / "scans").mkdir()
    (tmp_path / "scans" / "a.png").write_bytes(make_png("a"))
    page = report(tmp_path, [ok_record("scans/a.png")], base_dir=tmp_path)
    assert page.find("img")[0].attrs["src"].startswith("data:image/png;base64,")


async def test_url_sources_are_linked_and_never_fetched(tmp_path: Path) -> None:
    hits: list[str] = []

    async def count(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=make_png("fetched"), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name}", count)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/scan.png?a=1&b=2"
    jsonl = write_jsonl(
        tmp_path / "out.jsonl",
        [
            ok_record(url, words_result([[("fetched", 0.9)]])),
            failed_record("javascript://%0aalert(1)", 4000001, "INVALID_PARAMETER"),
        ],
    )
    try:
        summary = await asyncio.to_thread(write_report, jsonl, tmp_path / "review.html")
    finally:
        await runner.cleanup()
    assert hits == []
    page = parse_page((tmp_path / "review.html").read_text(encoding="utf-8"))
    hrefs = [a.attrs["href"] for a in page.find("a")]
    assert hrefs == [url, url]  # the heading and "open the image URL", escaped in the HTML
    assert f"{port}/scan.png?a=1&amp;b=2" in page.html
    assert not any(h.startswith("javascript") for h in hrefs)
    assert not page.find("img")
    # The boxes are still drawn, on a blank sheet.
    assert len(page.find("polygon")) == 1
    assert summary.images_not_embedded == {"url": 2}
    assert "(not fetched)" in page.html


def test_torn_and_non_json_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    jsonl = write_jsonl(
        tmp_path / "out.jsonl",
        [
            ok_record("a.png"),
            "this is not JSON",
            "[1, 2, 3]",
            "",
            json.dumps({"no": "source"}),
            failed_record("b.png"),
        ],
        tail='{"source": "c.png", "ok": tr',  # a run killed mid-write
    )
    summary = write_report(jsonl, tmp_path / "review.html")
    assert (summary.records, summary.ok, summary.skipped_lines) == (2, 1, 4)
    assert summary.skipped_line_numbers == [2, 3, 5, 7]
    page = parse_page((tmp_path / "review.html").read_text(encoding="utf-8"))
    assert len(page.articles) == 2
    assert page.by_id("total-skipped").text == "4"
    warning = page.by_id("skipped").text
    assert "Skipped 4 lines that are not records (torn or not JSON): lines 2, 3, 5, 7." in warning
    assert "skipped 4 lines" in summary.describe()


def test_a_complete_last_line_without_newline_is_a_record(tmp_path: Path) -> None:
    jsonl = tmp_path / "out.jsonl"
    jsonl.write_text(json.dumps(ok_record("a.png")), encoding="utf-8")
    summary = write_report(jsonl, tmp_path / "review.html")
    assert (summary.records, summary.skipped_lines) == (1, 0)


def test_images_not_embedded_say_why(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(make_png("big", 400, 300) + b"\0" * 2000)
    notes = tmp_path / "notes.png"
    notes.write_text("just text")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    page = report(
        tmp_path,
        [
            ok_record(str(big)),
            ok_record(str(tmp_path / "gone.png")),
            failed_record(str(notes)),
            failed_record(str(fifo)),
        ],
        max_image_bytes=1000,
    )
    assert not page.find("img")
    notes_by_source = {
        a.attrs["id"]: [p.text for p in page.find("p", a.attrs["id"]) if p.attrs["class"] == "note"]
        for a in page.articles
    }
    assert notes_by_source["r1"] == [
        f"image not embedded: {big.stat().st_size} bytes, over the 1000-byte limit"
    ]
    assert notes_by_source["r2"] == ["image file not found"]
    assert notes_by_source["r3"] == ["not a PNG or JPEG: not shown"]
    assert notes_by_source["r4"] == ["not a regular file: not shown"]
    assert page.by_id("images").text == (
        "Images: 0 embedded; not embedded: file not found (1), not a PNG or JPEG file (2), "
        "over the 1000-byte per-image limit (1)."
    )


def test_embedding_can_be_turned_off_and_has_a_total_budget(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.png").write_bytes(make_png(name * 100))
    records = [ok_record(str(tmp_path / f"{name}.png")) for name in ("a", "b", "c")]
    size = (tmp_path / "a.png").stat().st_size
    page = report(tmp_path, records, embed_images=False)
    assert not page.find("img")
    summary = write_report(
        tmp_path / "out.jsonl", tmp_path / "review.html", max_total_image_bytes=2 * size
    )
    assert summary.images_embedded == 2
    assert summary.images_not_embedded == {"budget": 1}


def test_summary_header_counts_records_and_failures_by_code(tmp_path: Path) -> None:
    page = report(
        tmp_path,
        [
            ok_record("a.png"),
            failed_record("b.png"),
            failed_record("c.png", "timeout", "no answer", local=False),
            failed_record("d.png"),
            failed_record("e.png", 4999999, "new code", local=False),
        ],
    )
    assert page.by_id("total").text == "5"
    assert page.by_id("total-ok").text == "1"
    assert page.by_id("total-failed").text == "4"
    rows = [[td.text for td in page.find("td")][i : i + 2] for i in range(0, 6, 2)]
    assert rows == [["4000003 INVALID_FILE_TYPE", "2"], ["4999999", "1"], ["timeout", "1"]]
    assert page.by_id("shown").text == "5 of 5 shown"


def test_no_text_and_conf_free_records_have_no_min_confidence(tmp_path: Path) -> None:
    no_conf = words_result([[("word", 0.5)]])
    no_conf["listOfInferTexts"][0]["inferTexts"][0].pop("conf")
    page = report(tmp_path, [ok_record("empty.png"), ok_record("x.png", no_conf)])
    assert [a.attrs["data-minconf"] for a in page.articles] == ["", ""]
    assert "No text found in this image." in page.html
    assert "word \u2014 conf n/a" in page.html


def test_the_page_loads_nothing_and_runs_only_its_own_script(tmp_path: Path) -> None:
    page = report(tmp_path, [ok_record("https://cdn.example/x.png"), failed_record("a.png")])
    (csp,) = [m.attrs["content"] for m in page.find("meta") if "http-equiv" in m.attrs]
    assert "default-src 'none'" in csp
    assert "img-src data:;" in csp
    script_hash = base64.b64encode(hashlib.sha256(page.scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{script_hash}'" in csp
    (style,) = re.findall(r"<style>(.*?)</style>", page.html, re.DOTALL)
    style_hash = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{style_hash}'" in csp
    assert not [e for e in page.elements if e.tag in ("script", "img", "link") and "://" in
                e.attrs.get("src", "") + e.attrs.get("href", "")]  # fmt: skip
    assert "style=" not in page.html  # inline style attributes would be refused by the CSP


def test_odd_json_values_never_crash(tmp_path: Path) -> None:
    lines = [
        '{"source": "\\ud800lone.png", "ok": true, "text": "x\\udfff", "result": null}',
        json.dumps({"source": 12, "ok": False, "error": "not an object"}),
        json.dumps({"source": "a.png", "ok": False, "error": {"code": None}}),
        json.dumps(ok_record("b.png", {"listOfInferTexts": "nope", "listOfBoundingBoxes": 3})),
        json.dumps(ok_record("c.png", elapsed_ms="fast", attempts=None, endpoint=["?"])),
    ]
    summary = write_report(write_jsonl(tmp_path / "o.jsonl", lines), tmp_path / "r.html")
    assert (summary.records, summary.skipped_lines) == (5, 0)
    assert summary.failed == {"unknown": 2}
    assert "\\ud800lone.png" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_the_output_replaces_the_old_page_and_never_its_input(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "out.jsonl", [ok_record("a.png")])
    html_path = tmp_path / "review.html"
    html_path.write_text("old")
    summary = write_report(jsonl, html_path)
    assert html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert summary.html_bytes == html_path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "review.html"]
    with pytest.raises(ValueError, match="its own input"):
        write_report(jsonl, jsonl)
    with pytest.raises(FileNotFoundError):
        write_report(tmp_path / "missing.jsonl", html_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "review.html"]


def test_memory_stays_flat_however_many_images(tmp_path: Path) -> None:
    # 400 records, each with its own 64 KiB image: 25 MiB embedded, one at a time.
    folder = tmp_path / "scans"
    folder.mkdir()
    records = []
    for n in range(400):
        path = folder / f"{n}.png"
        path.write_bytes(make_png(f"page {n}", 64, 32) + os.urandom(64 * 1024))
        records.append(ok_record(str(path), words_result([[("page", 0.9), (str(n), 0.8)]])))
    jsonl = write_jsonl(tmp_path / "out.jsonl", records)
    # Measured in a process of its own: tracemalloc counts every thread's
    # allocations, and threads left by other tests would be counted here.
    script = textwrap.dedent(
        """
        import sys, tracemalloc
        from pathlib import Path
        from ocr_async.outputs.report import write_report
        tracemalloc.start()
        summary = write_report(Path(sys.argv[1]), Path(sys.argv[2]))
        _, peak = tracemalloc.get_traced_memory()
        print(summary.images_embedded, summary.html_bytes, peak)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(jsonl), str(tmp_path / "review.html")],
        capture_output=True,
        text=True,
        check=True,
    )
    embedded, html_bytes, peak = map(int, done.stdout.split())
    assert embedded == 400
    assert html_bytes > 400 * 64 * 1024 * 4 // 3
    assert peak < 3 * 1024 * 1024, peak


def test_a_parsed_result_renders_as_its_record_does(tmp_path: Path) -> None:
    # The seam for callers that hold the parsed result already: no second parse.
    result = words_result([[("hello", 0.95), ("world", 0.5)]])
    record = ok_record("https://cdn.example/a.png", result)
    write_report(write_jsonl(tmp_path / "out.jsonl", [record]), tmp_path / "review.html")
    article = record_html(
        1,
        record,
        True,
        parse_result(result),
        Image(url="https://cdn.example/a.png"),
        DEFAULT_LOW_CONFIDENCE,
    )
    assert 'class="w low" data-w="0-1"' in article
    assert article in (tmp_path / "review.html").read_text(encoding="utf-8")


def test_describe_counts_one_record_in_the_singular() -> None:
    assert ReportSummary(ok=1).describe().splitlines()[0] == (
        "1 record: 1 ok, 0 failed; 0 images embedded; 0 bytes of HTML"
    )


def test_describe_summarises_for_the_terminal() -> None:
    summary = ReportSummary(ok=3, images_embedded=2, html_bytes=1000)
    summary.failed["4000003"] += 1
    summary.images_not_embedded["url"] += 2
    assert summary.describe().splitlines() == [
        "4 records: 3 ok, 1 failed; 2 images embedded; 1000 bytes of HTML",
        "failed by code: 4000003 x1",
        "images not embedded: URL source, linked not fetched (2)",
    ]


# --- end to end: images through the emulator, then the page -----------------


async def run_cli_against_emulator(inputs: list[str], out: Path) -> int:
    # Not the emulator fixture: the browser test's page is built outside any test's loop.
    async with running_emulator(emulator_config()) as emulator:
        argv = ["run", *inputs, "-o", str(out), "--base-url", emulator.base_url, "--no-progress"]
        return await asyncio.to_thread(main, argv)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
    monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
    monkeypatch.delenv("NHN_OCR_TOKEN_FILE", raising=False)


async def test_a_run_through_the_emulator_becomes_a_page(env: None, tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    texts = {
        "invoice.png": "INVOICE 2026-11\nTotal 12,500 KRW\nThank you",
        "hello.png": "hello world\n안녕하세요 세계",
        XSS_FILE_NAME: "<script>alert(1)</script>\nsafe",
    }
    for name, text in texts.items():
        (scans / name).write_bytes(make_png(text, 320, 120))
    (scans / "broken.png").write_bytes(b"not really a PNG")
    out = tmp_path / "out.jsonl"

    assert await run_cli_against_emulator([str(scans)], out) == ExitCode.SOME_FAILED
    summary = await asyncio.to_thread(write_report, out, tmp_path / "review.html")

    assert (summary.ok, dict(summary.failed), summary.images_embedded) == (3, {"4000003": 1}, 3)
    page = parse_page((tmp_path / "review.html").read_text(encoding="utf-8"))
    first, *rest = page.articles
    assert first.attrs["data-status"] == "failed"
    assert page.find("h3", first.attrs["id"])[0].text == str(scans / "broken.png")
    assert "local: never sent" in page.html
    records = {
        r["source"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())
    }
    for article in rest:
        source = page.find("h3", article.attrs["id"])[0].text
        record = records[source]
        (img,) = page.find("img", article.attrs["id"])
        data = base64.b64decode(img.attrs["src"].removeprefix("data:image/png;base64,"))
        assert data == await asyncio.to_thread(Path(source).read_bytes)
        expected = [
            box_corners(box)
            for group in record["result"]["listOfBoundingBoxes"]
            for box in group["boundingBoxes"]
        ]
        polygons = page.find("polygon", article.attrs["id"])
        assert [polygon_points(p.attrs["points"]) for p in polygons] == expected
        lines = [p.text for p in page.find("p", article.attrs["id"]) if p.attrs["class"] == "line"]
        assert "\n".join(lines) == texts[Path(source).name]
    assert "<script>alert(1)" not in page.html
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page.html


# --- in the browser -----------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs the chromium binary (Debian package 'chromium')"
)

# Headless as root in a closed network: no sandbox, and nothing that phones home.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
WINDOW = (1200, 900)


def inked_png(text: str, width: int, height: int) -> bytes:
    """:func:`make_png` with dark pseudo-glyphs where the emulator places each word.

    The emulator's layout: line i spans y = 10 + 30 i .. + 24, a character is
    12 px wide and words are 12 px apart from x = 10. The picture is only for
    the eye (the screenshot); the recognized text is still the embedded one.
    """
    pixels = [bytearray(b"\xff" * width) for _ in range(height)]
    lines = [words for line in text.split("\n") if (words := line.split())]
    for i, words in enumerate(lines):
        top, left = 10 + 30 * i, 10
        for word in words:
            for char in word:
                bits = zlib.crc32(char.encode()) | 0x1111111  # a stem on the left
                for gy in range(7):
                    for gx in range(4):
                        if bits >> (gy * 4 + gx) & 1:
                            for y in range(top + 5 + 2 * gy, top + 7 + 2 * gy):
                                x = left + 2 + 2 * gx
                                if y < height and x + 2 <= width:
                                    pixels[y][x : x + 2] = b"\x30\x30"
                left += 12
            left += 12
    idat = zlib.compress(b"".join(b"\x00" + bytes(row) for row in pixels), 9)
    chunks, pos = [], 8
    plain = make_png(text, width, height)
    while pos < len(plain):
        (length,) = struct.unpack_from(">I", plain, pos)
        kind = plain[pos + 4 : pos + 8]
        chunk = plain[pos : pos + 12 + length]
        if kind == b"IDAT":
            chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat
            chunk += struct.pack(">I", zlib.crc32(b"IDAT" + idat))
        chunks.append(chunk)
        pos += 12 + length
    return plain[:8] + b"".join(chunks)


def png_info(data: bytes, columns: int) -> tuple[int, int, set[bytes]]:
    """(width, height, distinct pixel values in the leftmost ``columns``), no Pillow.

    Only the left strip is unfiltered: PNG filters look left and up, never
    right, so the strip decodes alone, and pure Python stays fast.
    """
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, interlace) == (8, 0)
    assert color in (2, 6), color  # RGB or RGBA
    bpp = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * bpp + 1
    n = min(columns, width) * bpp
    previous = bytearray(n)
    colors: set[bytes] = set()
    for y in range(height):
        kind = raw[y * stride]
        line = bytearray(raw[y * stride + 1 : y * stride + 1 + n])
        for i in range(n):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            c = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        colors.update(bytes(line[x : x + bpp]) for x in range(0, n, bpp))
        previous = line
    return width, height, colors


@dataclass
class BrowserRun:
    page: Path
    summary: ReportSummary
    dom: Page
    dom_failed: Page
    dom_low_conf: Page
    screenshot: Path


def chromium_command(profile: Path, *args: str) -> list[str]:
    assert CHROMIUM is not None
    return [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]


async def run_demo(root: Path) -> Path:
    """A run like a user's: a few scans through the emulator and one bad file."""
    scans = root / "scans"
    await asyncio.to_thread(scans.mkdir)
    texts = {
        "receipt-0412.png": ("RECEIPT No 2026-0412\nTOTAL 12,500 KRW\nPaid by card", 360, 100),
        "hello.png": ("hello world\n안녕하세요 세계", 320, 70),
        XSS_FILE_NAME: ("<script>alert(1)</script>", 320, 40),
        "meeting-notes.png": ("meeting notes\nship the report\nfriday", 320, 100),
    }
    for name, (text, width, height) in texts.items():
        await asyncio.to_thread((scans / name).write_bytes, inked_png(text, width, height))
    await asyncio.to_thread(
        (scans / "scan-0007.png").write_bytes, b"Not a PNG: a renamed text file"
    )
    out = root / "out.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NHN_OCR_TOKEN", TOKEN)
        patch.setenv("NHN_OCR_APPKEY", APPKEY)
        patch.delenv("NHN_OCR_TOKEN_FILE", raising=False)
        await run_cli_against_emulator([str(scans)], out)
    return out


def build_demo_page(root: Path) -> tuple[Path, ReportSummary]:
    """The demo run, plus what a real run also has: low confidences on one scan,
    a URL the API could not download, and a torn last line."""
    out = asyncio.run(run_demo(root))
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    low = {"2026-0412": 0.58, "12,500": 0.71, "card": 0.44, "No": 0.93}
    for record in records:
        record["source"] = os.path.relpath(record["source"], root)
        for group in (record["result"] or {}).get("listOfInferTexts", []):
            for word in group["inferTexts"]:
                word["conf"] = low.get(word["value"], word["conf"])
    records.sort(key=lambda r: (not r["source"].endswith("receipt-0412.png"), r["source"]))
    records.append(
        failed_record(
            "https://scans.example.com/batch-12/page-031.jpg",
            4000504,
            "GENERAL_OCR_IMAGE_DOWNLOAD_FAIL: Image download failed.",
            local=False,
        )
    )
    jsonl = write_jsonl(root / "review.jsonl", records, tail='{"source": "scans/late.png", "ok')
    page = root / "review.html"
    return page, write_report(jsonl, page, base_dir=root)


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory: pytest.TempPathFactory) -> BrowserRun:
    root = tmp_path_factory.mktemp("browser")
    page, summary = build_demo_page(root)
    url = page.as_uri()
    shot = root / "screenshot.png"
    size = f"--window-size={WINDOW[0]},{WINDOW[1]}"
    commands = {
        "dom": ["--dump-dom", url],
        "failed": ["--dump-dom", url + "#status=failed"],
        "low": ["--dump-dom", url + "#conf=0.60"],
        "shot": [f"--screenshot={shot}", size, url],
    }
    # Four browsers at once: about one second in all.
    running = {
        key: subprocess.Popen(
            chromium_command(root / f"profile-{key}", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for key, args in commands.items()
    }
    output = {}
    for key, process in running.items():
        stdout, _ = process.communicate(timeout=60)
        assert process.returncode == 0, key
        output[key] = stdout.decode("utf-8")
    if target := os.environ.get("OCR_ASYNC_SAVE_REVIEW_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
    return BrowserRun(
        page=page,
        summary=summary,
        dom=parse_page(output["dom"]),
        dom_failed=parse_page(output["failed"]),
        dom_low_conf=parse_page(output["low"]),
        screenshot=shot,
    )


@needs_chromium
def test_the_page_runs_its_script_and_draws_every_box(browser_run: BrowserRun) -> None:
    dom = browser_run.dom
    body = dom.find("body")[0]
    assert body.attrs["data-ready"] == "1"
    records = browser_run.summary.records
    assert records == 6
    assert body.attrs["data-shown"] == str(records)
    assert dom.by_id("shown").text == f"{records} of {records} shown"
    assert len(dom.visible) == records
    # Every recognized word has its box in the rendered DOM, over its image.
    assert len(dom.find("polygon")) == 9 + 4 + 1 + 6
    assert len([i for i in dom.find("img") if i.attrs["src"].startswith("data:image/png")]) == 4
    assert dom.find("section")[0].attrs["id"] == "group-failed"
    # The file named like an element stayed text.
    assert not [i for i in dom.find("img") if i.attrs.get("src") == "x"]
    assert XSS_FILE_NAME in [h.text.rsplit("/", 1)[-1] for h in dom.find("h3")]
    assert dom.by_id("total-skipped").text == "1"


@needs_chromium
def test_the_status_filter_is_read_from_the_url(browser_run: BrowserRun) -> None:
    dom = browser_run.dom_failed
    assert [a.attrs["data-status"] for a in dom.visible] == ["failed", "failed"]
    assert dom.by_id("shown").text == "2 of 6 shown"
    # A group left without a record to show is hidden, heading and all.
    assert ["hidden" in s.attrs for s in dom.find("section")] == [False, True]


@needs_chromium
def test_the_confidence_filter_is_read_from_the_url(browser_run: BrowserRun) -> None:
    # Lowest word confidence at most 0.60: the receipt (0.44), and every failure.
    dom = browser_run.dom_low_conf
    shown = [(a.attrs["data-status"], a.attrs["data-minconf"]) for a in dom.visible]
    assert shown == [("failed", ""), ("failed", ""), ("ok", "0.44")]
    assert dom.by_id("f-conf-value").text == "0.60"


@needs_chromium
def test_the_screenshot_is_a_picture_of_the_page(browser_run: BrowserRun) -> None:
    data = browser_run.screenshot.read_bytes()
    width, height, colors = png_info(data, columns=240)
    assert (width, height) == WINDOW
    # Text, badges, images and boxes: a blank or failed render has one or two.
    assert len(colors) > 50, len(colors)


class DevTools:
    """Just enough of the Chrome DevTools protocol to load a page and run script in it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.events: list[str] = []

    async def _receive(self) -> dict[str, Any]:
        message: dict[str, Any] = await self.ws.receive_json()
        if "method" in message:
            self.events.append(message["method"])
        return message

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while (message := await self._receive()).get("id") != self.next_id:
            pass
        assert "result" in message, message
        result: dict[str, Any] = message["result"]
        return result

    async def navigate(self, url: str) -> None:
        await self.call("Page.enable")
        self.events.clear()
        await self.call("Page.navigate", url=url)
        while "Page.loadEventFired" not in self.events:
            await self._receive()

    async def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        result = await self.call(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def wait_until(self, condition: str, timeout_ms: int = 10_000) -> None:
        """Let the page itself poll ``condition`` (a JS expression) until it holds."""
        script = f"""new Promise((resolve, reject) => {{
            const start = Date.now();
            const check = () => {{
                if ({condition}) resolve(true);
                else if (Date.now() - start > {timeout_ms}) reject(new Error("timed out"));
                else setTimeout(check, 20);
            }};
            check();
        }})"""
        assert await self.evaluate(script, await_promise=True) is True


@asynccontextmanager
async def devtools(url: str, profile: Path) -> AsyncIterator[DevTools]:
    process = await asyncio.create_subprocess_exec(
        *chromium_command(profile, "--remote-debugging-port=0", f"--window-size={WINDOW[0]},600"),
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[None] | None = None
    try:
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while not (line := await process.stderr.readline()).startswith(b"DevTools listening"):
                assert line, "chromium exited before listening"
        stderr = process.stderr

        async def read_rest() -> None:  # keep the pipe from filling up
            while await stderr.read(65536):
                pass

        drain = asyncio.create_task(read_rest())
        port = int(re.search(rb"ws://127\.0\.0\.1:(\d+)/", line).group(1))  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
                targets = await response.json()
            (target,) = [t for t in targets if t["type"] == "page"]
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                tools = DevTools(ws)
                await tools.navigate(url)
                await tools.wait_until("document.body?.dataset.ready === '1'")
                yield tools
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        if drain is not None:
            await drain


@needs_chromium
async def test_changing_the_filters_hides_records_and_updates_the_url(
    browser_run: BrowserRun, tmp_path: Path
) -> None:
    shown = "document.getElementById('shown').textContent"
    visible = "[...document.querySelectorAll('article.rec:not([hidden])')].map(a => a.id).join()"
    async with devtools(browser_run.page.as_uri(), tmp_path / "profile") as page:
        assert await page.evaluate(shown) == "6 of 6 shown"
        everything = await page.evaluate(visible)

        await page.evaluate(
            "const s = document.getElementById('f-status');"
            "s.value = 'ok'; s.dispatchEvent(new Event('change'))"
        )
        assert await page.evaluate(shown) == "4 of 6 shown"
        assert await page.evaluate("location.hash") == "#status=ok&conf=1.00"
        assert await page.evaluate(
            "[...document.querySelectorAll('article.rec.failed')].every(a => a.hidden)"
        )

        await page.evaluate(
            "const c = document.getElementById('f-conf');"
            "c.value = '0.7'; c.dispatchEvent(new Event('input'))"
        )
        assert await page.evaluate(shown) == "1 of 6 shown"
        assert await page.evaluate("location.hash") == "#status=ok&conf=0.70"

        # Hovering a word lights up its box in the picture, and the other way round.
        hot = await page.evaluate(
            "const w = document.querySelector('article.rec:not([hidden]) span.w.low');"
            "w.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));"
            "[...w.closest('article').querySelectorAll('.hot')].map(e => e.tagName).join()"
        )
        assert hot == "polygon,SPAN"

        # Back to the start, from the URL alone.
        await page.evaluate("location.hash = '#status=all'")
        await page.wait_until(f"{shown} === '6 of 6 shown'")
        assert await page.evaluate(visible) == everything


# --- large, endless and interrupted inputs ---------------------------------------------


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_record_over_64_mib_is_shown_not_skipped(tmp_path: Path) -> None:
    text = "word " * (14 * 1024 * 1024) + "the-last-word"  # 70 MiB
    big = ok_record("big.png") | {"result": None, "text": text}
    jsonl = write_jsonl(tmp_path / "out.jsonl", [big, ok_record("b.png")])
    summary = write_report(jsonl, tmp_path / "review.html", embed_images=False)
    assert (summary.ok, summary.skipped_lines, summary.oversized_lines) == (2, 0, 0)
    with (tmp_path / "review.html").open("rb") as page:
        page.seek(summary.html_bytes - 64 * 1024)
        assert b"the-last-word</pre>" in page.read()


def test_a_line_over_the_record_limit_is_counted_as_too_long_not_torn(tmp_path: Path) -> None:
    huge = json.dumps(ok_record("huge.png", text="w " * 2 * 1024 * 1024))
    no_json = "x" * (5 * 1024 * 1024)  # passed over chunk by chunk
    jsonl = write_jsonl(
        tmp_path / "out.jsonl", [huge, ok_record("a.png"), no_json, ok_record("b.png")]
    )
    summary = write_report(
        jsonl, tmp_path / "review.html", embed_images=False, max_record_bytes=2 * 1024 * 1024
    )
    assert (summary.ok, summary.oversized_lines, summary.skipped_lines) == (2, 1, 1)
    assert summary.oversized_line_numbers == [1]
    assert summary.skipped_line_numbers == [3]
    described = summary.describe()
    assert "skipped 1 line over the 2 MiB record limit (too large to show; not checked" in described
    assert "line 1" in described
    page = (tmp_path / "review.html").read_text(encoding="utf-8")
    assert 'id="oversized"' in page


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_an_endless_input_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        source = tmp_path / "pipe"
        os.mkfifo(source)  # no writer: opening it plainly would wait forever
    else:
        source = Path("/dev/zero")
    html_path = tmp_path / "review.html"
    with pytest.raises(OSError, match="not a regular file"):
        write_report(source, html_path)
    assert listing(tmp_path) == (["pipe"] if kind == "fifo" else [])


def test_report_on_dev_zero_exits_3_with_a_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["report", "/dev/zero", "--html", str(tmp_path / "review.html")])
    assert code == ExitCode.CANNOT_PROCEED
    assert "/dev/zero: not a regular file" in capsys.readouterr().err
    assert listing(tmp_path) == []


def test_a_failure_midway_leaves_the_old_page_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jsonl = write_jsonl(tmp_path / "out.jsonl", [ok_record("a.png"), ok_record("b.png")])
    html_path = tmp_path / "review.html"
    html_path.write_text("the old page")
    seen: list[list[str]] = []

    def fail_on_the_second(number: int, *args: Any) -> str:
        seen.append(listing(tmp_path))  # what another process would see meanwhile
        if number == 2:
            raise OSError(28, "No space left on device")
        return "<article></article>"

    monkeypatch.setattr(writer_module, "_render_record", fail_on_the_second)
    with pytest.raises(OSError, match="No space"):
        write_report(jsonl, html_path)
    assert html_path.read_text() == "the old page"
    assert listing(tmp_path) == ["out.jsonl", "review.html"]
    assert seen == [["out.jsonl", "review.html"]] * 2  # the page in progress has no name


def test_a_report_killed_midway_leaves_no_temporary_file(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "out.jsonl", [ok_record(f"{n}.png") for n in range(5)])
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from ocr_async.outputs.report import writer
        real = writer._render_record
        def render(number, *args):
            if number == 3:
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup of any kind
            return real(number, *args)
        writer._render_record = render
        writer.write_report(Path({str(jsonl)!r}), Path({str(tmp_path / "review.html")!r}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert listing(tmp_path) == ["out.jsonl"]
