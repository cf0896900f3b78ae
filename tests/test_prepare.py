from __future__ import annotations

import io
from pathlib import Path

import pytest

from ocr_async.emulator import make_png
from ocr_async.models import Endpoint, ImageBytes, ImageFile, ImageUrl
from ocr_async.prepare import Preparation
from ocr_async.sources import SourceItem

Image = pytest.importorskip("PIL.Image", reason="Pillow is the optional 'image' extra")


def item_for(path: Path) -> SourceItem:
    return SourceItem(str(path), ImageFile(path))


async def test_without_steps_the_input_passes_through_unread(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"  # not even read: the client reads it later
    (prepared,) = await Preparation(endpoint=Endpoint.CROPPING).prepare(item_for(path))
    assert prepared.image == ImageFile(path)
    assert prepared.endpoint is Endpoint.CROPPING
    assert (prepared.transform, prepared.error) == (None, None)


async def test_urls_are_never_fetched_and_go_to_general_with_auto() -> None:
    url = "https://img.example.test/long.png"
    prep = Preparation(auto_endpoint=True, convert=True, shrink=True)
    (prepared,) = await prep.prepare(SourceItem(url, ImageUrl(url)))
    assert prepared.image == ImageUrl(url)
    assert prepared.endpoint is Endpoint.GENERAL


async def test_auto_endpoint_chooses_by_aspect_ratio(tmp_path: Path) -> None:
    wide = tmp_path / "receipt.png"
    wide.write_bytes(make_png("long", 400, 100))  # 1:4
    square = tmp_path / "page.png"
    square.write_bytes(make_png("page", 100, 100))
    too_long = tmp_path / "strip.png"
    too_long.write_bytes(make_png("strip", 1200, 100))  # 1:12
    prep = Preparation(auto_endpoint=True)

    (long_one,) = await prep.prepare(item_for(wide))
    (plain,) = await prep.prepare(item_for(square))
    (refused,) = await prep.prepare(item_for(too_long))

    assert long_one.endpoint is Endpoint.CROPPING
    assert long_one.transform is not None
    assert long_one.transform.to_json() == {"endpoint_chosen": "cropping", "aspect_ratio": 4.0}
    assert isinstance(long_one.image, ImageBytes)
    assert long_one.image.data == wide.read_bytes()
    assert plain.endpoint is Endpoint.GENERAL
    assert refused.error is not None
    assert refused.error.code == 4000505


async def test_multipage_tiff_becomes_one_image_per_page(tmp_path: Path) -> None:
    pages = [Image.new("L", (200 + 10 * n, 100), 255) for n in range(3)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    path = tmp_path / "scan.tiff"
    path.write_bytes(buffer.getvalue())

    prepared = await Preparation(convert=True).prepare(item_for(path))

    assert [p.source for p in prepared] == [f"{path}#page={n}" for n in (1, 2, 3)]
    for n, page in enumerate(prepared):
        assert isinstance(page.image, ImageBytes)
        assert page.image.data.startswith(b"\x89PNG")
        assert page.transform is not None
        record = page.transform.to_json()
        assert (record["converted_from"], record["page"], record["pages"]) == ("tiff", n + 1, 3)
        with Image.open(io.BytesIO(page.image.data)) as im:
            assert im.size == (200 + 10 * n, 100)


async def test_shrink_fits_an_oversized_image_and_says_so(tmp_path: Path) -> None:
    import os

    noise = Image.frombytes("RGB", (1600, 1200), os.urandom(1600 * 1200 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="PNG")
    path = tmp_path / "photo.png"
    path.write_bytes(buffer.getvalue())
    limit = 1024 * 1024
    assert path.stat().st_size > limit

    (prepared,) = await Preparation(shrink=True, max_bytes=limit).prepare(item_for(path))

    assert prepared.error is None
    assert isinstance(prepared.image, ImageBytes)
    assert len(prepared.image.data) < limit
    assert prepared.transform is not None
    assert prepared.transform.to_json()["shrunk"]["from_bytes"] == path.stat().st_size


async def test_unconvertible_file_is_one_local_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.tiff"
    path.write_text("not a tiff")
    (prepared,) = await Preparation(convert=True).prepare(item_for(path))
    assert prepared.error is not None
    assert prepared.error.code == 4000003
    assert prepared.source == str(path)


async def test_unreadable_file_is_one_source_error(tmp_path: Path) -> None:
    (prepared,) = await Preparation(convert=True).prepare(item_for(tmp_path / "gone.tiff"))
    assert prepared.error is not None
    assert prepared.error.code == "not_found"


async def test_in_memory_images_are_prepared_from_their_bytes() -> None:
    data = make_png("in memory", 400, 100)  # 1:4
    item = SourceItem("bytes:0", ImageBytes(data, "bytes:0"))
    (prepared,) = await Preparation(auto_endpoint=True).prepare(item)
    assert prepared.endpoint is Endpoint.CROPPING
    assert prepared.image == ImageBytes(data, "bytes:0")
