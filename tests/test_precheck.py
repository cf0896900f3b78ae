"""The pre-check stage: every input read, checked and made ready, or refused with its error."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ocr_async import protocol
from ocr_async.emulator import make_jpeg, make_png
from ocr_async.errors import SourceError
from ocr_async.imaging import image_size
from ocr_async.models import Endpoint, ImageBytes, ImageFile, ImageUrl, Payload, SourceItem
from ocr_async.options import Options
from ocr_async.precheck import Precheck, content_sha256

Image = pytest.importorskip("PIL.Image", reason="Pillow is the optional 'image' extra")


def item_for(path: Path) -> SourceItem:
    return SourceItem(str(path), ImageFile(path))


async def one(precheck: Precheck, item: SourceItem) -> Payload:
    (payload,) = await precheck.prepare(item)
    return payload


# --- every input is read and checked --------------------------------------------------


async def test_a_file_is_read_checked_and_handed_on_as_bytes(tmp_path: Path) -> None:
    path = tmp_path / "scan.jpg"
    path.write_bytes(make_jpeg("scan"))
    payload = await one(Precheck(Options(endpoint=Endpoint.CROPPING)), item_for(path))
    data = path.read_bytes()
    assert payload == Payload(
        str(path),
        Endpoint.CROPPING,
        image=data,
        kind="jpg",
        url=None,
        sha256=hashlib.sha256(data).hexdigest(),
    )


async def test_a_url_is_checked_never_fetched_and_goes_to_general_with_auto() -> None:
    url = "https://img.example.test/long.png"
    options = Options(endpoint="auto", convert=True, shrink=True)
    payload = await one(Precheck(options), SourceItem(url, ImageUrl(url)))
    assert payload == Payload(url, Endpoint.GENERAL, url=url)


async def test_a_url_the_api_refuses_is_refused_here() -> None:
    url = "http://img.example.test:8080/a.png"
    payload = await one(Precheck(Options()), SourceItem(url, ImageUrl(url)))
    assert payload.url is None
    assert payload.error is not None
    assert (payload.error.code, payload.error.local) == (4000001, True)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"", 4000004, id="empty"),
        pytest.param(b"GIF89a not an image we send", 4000003, id="not-jpeg-or-png"),
        pytest.param(make_png("cut")[:-12], 4000002, id="png-cut-off"),
        pytest.param(make_png("big") + bytes(5000), 4131000, id="body-over-the-limit"),
    ],
)
async def test_what_the_server_would_refuse_is_refused_with_its_code(
    tmp_path: Path, data: bytes, code: int
) -> None:
    path = tmp_path / "input.png"
    path.write_bytes(data)
    precheck = Precheck(Options(max_bytes=len(make_png("big")) + 2000))
    for item in (item_for(path), SourceItem("bytes:0", ImageBytes(data, "bytes:0"))):
        payload = await one(precheck, item)
        assert payload.image is None
        assert payload.error is not None
        assert (payload.error.code, payload.error.local, payload.error.attempts) == (code, True, 0)


async def test_the_size_limit_counts_the_multipart_framing(tmp_path: Path) -> None:
    image = make_png("edge")
    framed = protocol.multipart_size("png", len(image))
    fits = await one(Precheck(Options(max_bytes=framed)), SourceItem("a", ImageBytes(image)))
    over = await one(Precheck(Options(max_bytes=framed - 1)), SourceItem("a", ImageBytes(image)))
    assert fits.image == image
    assert over.error is not None
    assert over.error.code == 4131000
    assert f"request would be {framed} bytes" in over.error.message


async def test_a_file_larger_than_the_limit_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(make_png("huge") + bytes(10_000))
    payload = await one(Precheck(Options(max_bytes=1000)), item_for(path))
    assert payload.error is not None
    assert payload.error.code == 4131000
    assert f"{path} is {path.stat().st_size} bytes" in payload.error.message


async def test_an_unreadable_file_is_one_source_error(tmp_path: Path) -> None:
    for options in (Options(), Options(convert=True)):
        payload = await one(Precheck(options), item_for(tmp_path / "gone.tiff"))
        assert payload.error is not None
        assert payload.error.code == "not_found"


async def test_the_endpoint_can_be_chosen_per_input(tmp_path: Path) -> None:
    precheck = Precheck(Options(endpoint="auto"))
    wide = SourceItem("wide", ImageBytes(make_png("wide", 400, 100)))
    (payload,) = await precheck.prepare(wide, endpoint=Endpoint.GENERAL)
    assert (payload.endpoint, payload.transform) == (Endpoint.GENERAL, None)


# --- the steps that change images ---------------------------------------------------


async def test_auto_endpoint_chooses_by_aspect_ratio(tmp_path: Path) -> None:
    wide = tmp_path / "receipt.png"
    wide.write_bytes(make_png("long", 400, 100))  # 1:4
    square = tmp_path / "page.png"
    square.write_bytes(make_png("page", 100, 100))
    too_long = tmp_path / "strip.png"
    too_long.write_bytes(make_png("strip", 1200, 100))  # 1:12
    precheck = Precheck(Options(endpoint="auto"))

    long_one = await one(precheck, item_for(wide))
    plain = await one(precheck, item_for(square))
    refused = await one(precheck, item_for(too_long))

    assert long_one.endpoint is Endpoint.CROPPING
    assert long_one.transform is not None
    assert long_one.transform.to_json() == {"endpoint_chosen": "cropping", "aspect_ratio": 4.0}
    assert long_one.image == wide.read_bytes()
    assert plain.endpoint is Endpoint.GENERAL
    assert refused.error is not None
    assert refused.error.code == 4000505


async def test_multipage_tiff_becomes_one_payload_per_page(tmp_path: Path) -> None:
    pages = [Image.new("L", (200 + 10 * n, 100), 255) for n in range(3)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    path = tmp_path / "scan.tiff"
    path.write_bytes(buffer.getvalue())

    payloads = await Precheck(Options(convert=True)).prepare(item_for(path))

    assert [p.source for p in payloads] == [f"{path}#page={n}" for n in (1, 2, 3)]
    for n, page in enumerate(payloads):
        assert page.image is not None
        assert page.kind == "png"
        assert page.transform is not None
        record = page.transform.to_json()
        assert (record["converted_from"], record["page"], record["pages"]) == ("tiff", n + 1, 3)
        with Image.open(io.BytesIO(page.image)) as im:
            assert im.size == (200 + 10 * n, 100)
        # Each page's hash is of the PNG sent, not of the TIFF on disk.
        assert page.sha256 == content_sha256(page.image)
    assert len({page.sha256 for page in payloads}) == 3


async def test_shrink_fits_an_oversized_image_and_says_so(tmp_path: Path) -> None:
    noise = Image.frombytes("RGB", (1600, 1200), os.urandom(1600 * 1200 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(buffer.getvalue())
    limit = 1024 * 1024
    assert path.stat().st_size > limit

    payload = await one(Precheck(Options(shrink=True, max_bytes=limit)), item_for(path))

    assert payload.error is None
    assert payload.image is not None
    assert payload.kind == "jpg"
    assert protocol.multipart_size("jpg", len(payload.image)) <= limit
    assert payload.transform is not None
    assert payload.transform.to_json()["shrunk"]["from_bytes"] == path.stat().st_size
    assert payload.sha256 == content_sha256(payload.image) != content_sha256(path.read_bytes())


async def test_unconvertible_file_is_one_local_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.tiff"
    path.write_text("not a tiff")
    payload = await one(Precheck(Options(convert=True)), item_for(path))
    assert payload.error is not None
    assert payload.error.code == 4000003
    assert payload.source == str(path)


async def test_in_memory_images_are_prepared_from_their_bytes() -> None:
    data = make_png("in memory", 400, 100)  # 1:4
    item = SourceItem("bytes:0", ImageBytes(data, "bytes:0"))
    payload = await one(Precheck(Options(endpoint="auto")), item)
    assert payload.endpoint is Endpoint.CROPPING
    assert payload.image == data


async def test_a_large_in_memory_image_is_hashed_too() -> None:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (200, 200), os.urandom(200 * 200 * 3)).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) > 64 * 1024  # hashed in a worker thread
    payload = await one(Precheck(Options()), SourceItem("big", ImageBytes(data, "big")))
    assert payload.sha256 == hashlib.sha256(data).hexdigest()


# --- what rides along: id, metadata; what does not: a hash of a URL or a refusal ------------


async def test_an_inputs_id_and_metadata_ride_on_every_payload(tmp_path: Path) -> None:
    pages = [Image.new("L", (100, 100), 255) for _ in range(2)]
    path = tmp_path / "two.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    item = SourceItem(str(path), ImageFile(path), id="doc-1", metadata={"k": [1]})
    payloads = await Precheck(Options(convert=True)).prepare(item)
    assert [(p.id, p.metadata) for p in payloads] == [("doc-1", {"k": [1]})] * 2


async def test_a_url_and_a_refused_file_carry_no_hash(tmp_path: Path) -> None:
    url = "https://img.example.test/a.png"
    assert (await one(Precheck(Options()), SourceItem(url, ImageUrl(url)))).sha256 is None
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    refused = await one(Precheck(Options()), item_for(path))
    assert (refused.error is not None, refused.sha256) == (True, None)


async def test_an_item_with_its_error_is_refused_at_once_and_nothing_read() -> None:
    error = SourceError("bad_manifest_row", "rows.jsonl:3: the row has no id")
    item = SourceItem("rows.jsonl:3", None, metadata={"k": 1}, error=error)
    payload = await one(Precheck(Options(convert=True)), item)
    assert payload == Payload("rows.jsonl:3", Endpoint.GENERAL, error=error, metadata={"k": 1})


# --- the content hash ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        pytest.param(
            b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="empty"
        ),
        pytest.param(
            b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", id="abc"
        ),
    ],
)
def test_known_digests(data: bytes, digest: str) -> None:
    assert content_sha256(data) == digest


def test_every_buffer_of_the_same_bytes_hashes_alike() -> None:
    data = bytes(range(256)) * 100
    assert content_sha256(data) == content_sha256(bytearray(data))
    assert content_sha256(data) == content_sha256(memoryview(data))
    assert content_sha256(data) != content_sha256(data[:-1])


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum")
def test_it_matches_sha256sum(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(5000))
    printed = subprocess.run(
        ["sha256sum", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert printed.split()[0] == content_sha256(path.read_bytes())


# --- PDFs: one payload per page, rendered one at a time --------------------------------

needs_pdf = pytest.mark.skipif(
    importlib.util.find_spec("pypdfium2") is None, reason="PDF input needs the 'pdf' extra"
)


@needs_pdf
async def test_a_pdf_becomes_one_png_payload_per_page_named_like_tiff_pages(
    tmp_path: Path,
) -> None:
    from pdfs import text_pdf

    path = tmp_path / "letters.pdf"
    path.write_bytes(text_pdf([("P", "one"), ("L", "two"), ("P", "three")]))

    payloads = await Precheck(Options(pdf_dpi=72)).prepare(item_for(path))

    assert [p.source for p in payloads] == [f"{path}#page={n}" for n in (1, 2, 3)]
    for n, page in enumerate(payloads, 1):
        assert page.error is None
        assert page.kind == "png"
        assert page.transform is not None
        size = [842, 596] if n == 2 else [596, 842]  # landscape turned
        assert page.transform.to_json() == {
            "converted_from": "pdf",
            "page": n,
            "pages": 3,
            "size": size,
            "dpi": 72,
            "note": f"rendered page {n}/3 at 72 dpi as PNG",
        }
        assert image_size(page.image or b"") == tuple(size)


@needs_pdf
async def test_pages_done_before_are_neither_rendered_nor_handed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdfs import count_renders, text_pdf

    rendered = count_renders(monkeypatch)
    path = tmp_path / "book.pdf"
    path.write_bytes(text_pdf([("P", str(n)) for n in range(5)]))
    done = {f"{path}#page={n}" for n in (1, 2, 4)}
    asked: list[str] = []

    def skip(source: str) -> bool:
        asked.append(source)
        return source in done

    payloads = Precheck(Options(pdf_dpi=72)).payloads(item_for(path), skip=skip)
    sources = [payload.source async for payload in payloads]

    assert sources == [f"{path}#page=3", f"{path}#page=5"]
    assert rendered == [3, 5]
    assert asked == [f"{path}#page={n}" for n in range(1, 6)]


@needs_pdf
async def test_a_pdf_is_rendered_a_page_at_a_time_as_the_stream_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pdfs import count_renders, text_pdf

    from ocr_async.pdfpages import PdfPages

    rendered = count_renders(monkeypatch)
    closed: list[bool] = []
    real_close = PdfPages.close

    def closing(self: PdfPages) -> None:
        closed.append(True)
        real_close(self)

    monkeypatch.setattr(PdfPages, "close", closing)
    path = tmp_path / "long.pdf"
    path.write_bytes(text_pdf([("P", str(n)) for n in range(4)]))

    payloads = Precheck(Options(pdf_dpi=72)).payloads(item_for(path))
    first = await anext(payloads)
    assert first.source.endswith("#page=1")
    assert rendered == [1]  # nothing ahead of the consumer
    await payloads.aclose()
    assert closed == [True]  # leaving early closes the document


@needs_pdf
@pytest.mark.parametrize(
    ("make", "code", "says"),
    [
        pytest.param("encrypted", "pdf_encrypted", "encrypted and needs a password", id="enc"),
        pytest.param("broken", "pdf_broken", "not a PDF that can be read", id="broken"),
        pytest.param("no-pages", "pdf_empty", "has no page", id="no-pages"),
        pytest.param("empty", "pdf_empty", "the file is empty", id="empty"),
    ],
)
async def test_a_pdf_that_cannot_be_opened_is_one_clear_error(
    tmp_path: Path, make: str, code: str, says: str
) -> None:
    from pdfs import text_pdf, zero_page_pdf

    makers: dict[str, Callable[[], bytes]] = {
        "encrypted": lambda: text_pdf([("P", "secret")], password="user"),
        "broken": lambda: b"%PDF-1.7\nnot really",
        "no-pages": zero_page_pdf,
        "empty": lambda: b"",
    }
    data = makers[make]()
    path = tmp_path / "bad.pdf"
    path.write_bytes(data)
    (payload,) = await Precheck(Options()).prepare(item_for(path))
    assert payload.source == str(path)
    assert payload.image is None
    assert payload.error is not None
    assert (payload.error.code, payload.error.local, payload.error.retryable) == (code, True, False)
    assert says in payload.error.message


@needs_pdf
async def test_a_missing_pdf_is_told_as_any_missing_file(tmp_path: Path) -> None:
    (payload,) = await Precheck(Options()).prepare(item_for(tmp_path / "gone.pdf"))
    assert payload.error is not None
    assert payload.error.code == "not_found"


@needs_pdf
@pytest.mark.parametrize("options", [Options(), Options(convert=True, shrink=True)])
async def test_a_pdf_is_known_by_its_first_bytes_whatever_its_name(
    tmp_path: Path, options: Options
) -> None:
    from pdfs import text_pdf

    path = tmp_path / "scan.dat"
    path.write_bytes(text_pdf([("P", "a"), ("P", "b")]))
    payloads = await Precheck(options.with_changes(pdf_dpi=72)).prepare(item_for(path))
    assert [p.source for p in payloads] == [f"{path}#page=1", f"{path}#page=2"]
    assert all(p.kind == "png" for p in payloads)


@needs_pdf
async def test_pdf_bytes_in_memory_are_pages_too() -> None:
    from pdfs import text_pdf

    item = SourceItem("upload", ImageBytes(text_pdf([("P", "only page")]), "upload"))
    (payload,) = await Precheck(Options(pdf_dpi=72, endpoint="auto")).prepare(item)
    # One page keeps the input's plain name; --endpoint auto picks from the page.
    assert payload.source == "upload"
    assert payload.endpoint is Endpoint.GENERAL
    assert payload.transform is not None
    assert payload.transform.to_json()["endpoint_chosen"] == "general"


@needs_pdf
async def test_without_the_pdf_extra_a_pdf_is_a_retryable_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from pdfs import text_pdf

    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    path = tmp_path / "book.pdf"
    path.write_bytes(text_pdf([("P", "x")]))
    (payload,) = await Precheck(Options()).prepare(item_for(path))
    assert payload.error is not None
    assert payload.error.code == 4000003
    assert payload.error.retryable  # once installed, --resume --retry-failed reads it
    assert "pip install 'ocr-async[pdf]'" in payload.error.message
