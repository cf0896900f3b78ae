"""Tests for ocr_async.imaging: endpoint choice, conversion to PNG, shrinking.

Images are made at test time: the tiny PNG/JPEG builders of the emulator
where no pixels matter, Pillow elsewhere. Tests that need Pillow (an optional
extra) are skipped with a reason when it is missing. Thresholds come from
API-FACTS.md ("Limits"), not from the module under test.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import TYPE_CHECKING, Any

import pytest

from ocr_async.emulator.images import image_size, make_jpeg, make_png
from ocr_async.errors import LocalCheckError
from ocr_async.imaging import (
    JPEG_MAX_SIDE,
    SHRINK_MIN_LONG_SIDE,
    SHRINK_QUALITIES,
    ConvertedPage,
    ShrinkResult,
    Transform,
    aspect_ratio,
    choose_endpoint,
    convert_to_png,
    shrink_to_fit,
)
from ocr_async.models import Endpoint
from ocr_async.protocol import DEFAULT_MAX_BYTES, build_file_request, sniff_image_type

if TYPE_CHECKING:
    from PIL import Image

MIB = 1 << 20
NO_PILLOW = "Pillow is not installed (optional extra: pip install 'ocr-async[image]')"


@pytest.fixture
def pillow() -> None:
    pytest.importorskip("PIL.Image", reason=NO_PILLOW)


@pytest.fixture
def no_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry makes "import PIL" raise ImportError even when installed.
    for name in ("PIL", "PIL.Image", "PIL.ImageOps"):
        monkeypatch.setitem(sys.modules, name, None)


needs_pillow = pytest.mark.usefixtures("pillow")


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def solid(mode: str, size: tuple[int, int], color: Any) -> Image.Image:
    from PIL import Image

    return Image.new(mode, size, color)


def noise(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    """Incompressible pixels: the worst case for every encoder."""
    from PIL import Image

    bands = len(mode)
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * bands))


def decode(data: bytes) -> Image.Image:
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def request_for(image: bytes, max_bytes: int) -> bytes:
    """The body build_file_request would send; raises like the client would."""
    return build_file_request(
        base_url="http://localhost",
        appkey="key",
        token="token",
        endpoint=Endpoint.GENERAL,
        image=image,
        max_bytes=max_bytes,
    ).body


# --- choose_endpoint --------------------------------------------------------------

RATIOS = [
    pytest.param(100, 100, Endpoint.GENERAL, id="1:1"),
    pytest.param(100, 250, Endpoint.GENERAL, id="1:2.5-exactly-portrait"),
    pytest.param(250, 100, Endpoint.GENERAL, id="1:2.5-exactly-landscape"),
    pytest.param(100, 251, Endpoint.CROPPING, id="just-over-1:2.5"),
    pytest.param(100, 400, Endpoint.CROPPING, id="1:4-portrait"),
    pytest.param(400, 100, Endpoint.CROPPING, id="1:4-landscape"),
    pytest.param(100, 1000, Endpoint.CROPPING, id="1:10-exactly-portrait"),
    pytest.param(1000, 100, Endpoint.CROPPING, id="1:10-exactly-landscape"),
    pytest.param(1, 1, Endpoint.GENERAL, id="1x1"),
]


@pytest.mark.parametrize("make", [make_png, make_jpeg], ids=["png", "jpeg"])
@pytest.mark.parametrize(("width", "height", "expected"), RATIOS)
def test_choose_endpoint_by_ratio(make: Any, width: int, height: int, expected: Endpoint) -> None:
    data = make("text", width, height)
    assert choose_endpoint(data) is expected
    assert aspect_ratio(data) == pytest.approx(max(width, height) / min(width, height))


@pytest.mark.parametrize(
    ("width", "height"),
    [pytest.param(100, 1200, id="1:12-portrait"), pytest.param(1200, 100, id="1:12-landscape")],
)
def test_beyond_one_to_ten_is_refused(width: int, height: int) -> None:
    with pytest.raises(LocalCheckError) as caught:
        choose_endpoint(make_png("", width, height))
    assert caught.value.code == 4000505
    assert "GENERAL_OCR_IMAGE_OUT_OF_RATIO" in caught.value.message
    assert "1:12.0" in caught.value.message
    assert "not sent" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"II*\x00garbage", id="tiff-magic"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-without-ihdr"),
        pytest.param(b"\xff\xd8\xff\xd9", id="jpeg-without-frame"),
    ],
)
def test_unknown_size_goes_to_general(data: bytes) -> None:
    assert choose_endpoint(data) is Endpoint.GENERAL
    assert aspect_ratio(data) is None


# --- convert_to_png: pass-through, no Pillow needed -------------------------------


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        pytest.param(make_png("hello", 30, 20), "png", id="png"),
        pytest.param(make_jpeg("hello", 30, 20), "jpeg", id="jpeg"),
    ],
)
def test_jpeg_and_png_pass_through_unchanged(data: bytes, fmt: str) -> None:
    [page] = convert_to_png(data)
    assert page.data is data
    assert (page.page, page.pages, page.original_format, page.note) == (None, 1, fmt, "")
    assert not page.converted


def test_empty_input_is_refused_as_empty() -> None:
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(b"")
    assert caught.value.code == 4000004


# --- convert_to_png with Pillow ---------------------------------------------------


@needs_pillow
def test_multi_page_tiff_yields_every_page_in_order() -> None:
    sizes = [(120, 40), (60, 80), (33, 17)]
    frames = [
        solid("RGB", sizes[0], (200, 10, 10)),
        solid("L", sizes[1], 77),
        solid("CMYK", sizes[2], (0, 255, 0, 0)),
    ]
    data = encode(frames[0], "TIFF", save_all=True, append_images=frames[1:])

    pages = convert_to_png(data)

    assert [(p.page, p.pages, p.original_format) for p in pages] == [
        (1, 3, "tiff"),
        (2, 3, "tiff"),
        (3, 3, "tiff"),
    ]
    for page, size in zip(pages, sizes, strict=True):
        assert sniff_image_type(page.data) == "png"
        assert image_size(page.data) == size
        assert decode(page.data).size == size
        assert page.converted
    assert "page 2/3" in pages[1].note
    assert decode(pages[0].data).getpixel((0, 0)) == (200, 10, 10)
    assert decode(pages[1].data).mode == "L"
    assert decode(pages[1].data).getpixel((5, 5)) == 77
    third = decode(pages[2].data)
    assert third.mode == "RGB"
    assert "CMYK -> RGB" in pages[2].note


@needs_pillow
def test_single_page_tiff_has_no_page_number() -> None:
    [page] = convert_to_png(encode(solid("RGB", (10, 10), "white"), "TIFF"))
    assert (page.page, page.pages, page.original_format) == (None, 1, "tiff")
    assert page.note == "converted from TIFF to PNG"


@needs_pillow
@pytest.mark.parametrize(
    ("fmt", "params", "name"),
    [
        pytest.param("BMP", {}, "bmp", id="bmp"),
        pytest.param("WEBP", {"lossless": True}, "webp", id="webp"),
        pytest.param("GIF", {}, "gif", id="gif"),
    ],
)
def test_bmp_webp_gif_become_png(fmt: str, params: dict[str, Any], name: str) -> None:
    # Pure red survives GIF's palette and lossless WebP exactly.
    data = encode(solid("RGB", (64, 48), (255, 0, 0)), fmt, **params)

    [page] = convert_to_png(data)

    assert sniff_image_type(page.data) == "png"
    assert (page.page, page.pages, page.original_format) == (None, 1, name)
    image = decode(page.data)
    assert image.size == (64, 48)
    assert image.mode == "RGB"
    assert image.getpixel((10, 10)) == (255, 0, 0)


@needs_pillow
def test_animated_gif_keeps_only_the_first_frame_and_says_so() -> None:
    frames = [solid("RGB", (20, 20), color) for color in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)

    [page] = convert_to_png(data)

    assert (page.page, page.pages) == (None, 1)
    assert "first frame only, of 3" in page.note
    assert decode(page.data).getpixel((0, 0)) == (255, 0, 0)


@needs_pillow
@pytest.mark.parametrize(
    ("fmt", "image"),
    [
        pytest.param("WEBP", lambda: solid("RGBA", (16, 16), (0, 0, 0, 0)), id="rgba-webp"),
        pytest.param("GIF", lambda: solid("P", (16, 16), 0), id="palette-gif"),
    ],
)
def test_transparency_is_flattened_on_white(fmt: str, image: Any) -> None:
    params: dict[str, Any] = {"lossless": True} if fmt == "WEBP" else {"transparency": 0}
    [page] = convert_to_png(encode(image(), fmt, **params))
    converted = decode(page.data)
    # An all-gray palette may be read as L (Pillow 10.0) or P: either is fine.
    assert converted.mode in ("L", "RGB")
    assert converted.convert("RGB").getpixel((3, 3)) == (255, 255, 255)
    assert "flattened on white" in page.note


@needs_pillow
def test_sixteen_bit_gray_is_scaled_not_clipped() -> None:
    from PIL import Image

    deep = Image.new("I;16", (4, 1))
    for x, value in enumerate((0, 256, 32896, 65535)):
        deep.putpixel((x, 0), value)
    [page] = convert_to_png(encode(deep, "TIFF"))
    gray = decode(page.data)
    assert gray.mode == "L"
    assert [gray.getpixel((x, 0)) for x in range(4)] == [0, 0, 128, 255]
    assert "16-bit" in page.note


@needs_pillow
def test_bilevel_tiff_becomes_gray() -> None:
    [page] = convert_to_png(encode(solid("1", (16, 8), 1), "TIFF", compression="group4"))
    gray = decode(page.data)
    assert (gray.mode, gray.size, gray.getpixel((0, 0))) == ("L", (16, 8), 255)


@needs_pillow
@pytest.mark.parametrize(
    ("fmt", "params"),
    [pytest.param("TIFF", {}, id="tiff"), pytest.param("WEBP", {"lossless": True}, id="webp")],
)
def test_orientation_tag_is_applied_to_the_pixels_once(fmt: str, params: dict[str, Any]) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored = solid("RGB", (100, 50), "white")
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # top left as stored
    [page] = convert_to_png(encode(stored, fmt, exif=exif, **params))
    upright = decode(page.data)
    assert upright.size == (50, 100)
    assert upright.getpixel((45, 5)) == (255, 0, 0)  # now top right
    assert "orientation" in page.note


@needs_pillow
def test_orientation_is_applied_to_every_tiff_page() -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to display
    first = solid("RGB", (100, 50), "white")
    second = solid("RGB", (100, 50), "white")
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=[second], exif=exif)
    pages = convert_to_png(buffer.getvalue())
    assert [image_size(page.data) for page in pages] == [(50, 100), (50, 100)]


@needs_pillow
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"this is not an image at all", id="text"),
        pytest.param(os.urandom(4096), id="random"),
        pytest.param(b"II*\x00\x08\x00\x00\x00" + b"\xff" * 64, id="broken-tiff"),
        pytest.param(b"BM" + b"\x00" * 60, id="broken-bmp"),
    ],
)
def test_undecodable_data_is_an_invalid_file_type(data: bytes) -> None:
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(data)
    assert caught.value.code == 4000003
    assert "INVALID_FILE_TYPE" in caught.value.message


@needs_pillow
def test_truncated_tiff_is_an_invalid_file_type() -> None:
    data = encode(noise((64, 64)), "TIFF")
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(data[: len(data) // 2])
    assert caught.value.code == 4000003


@needs_pillow
def test_formats_outside_the_list_are_not_decoded() -> None:
    # Pillow reads PPM, but only TIFF/BMP/WebP/GIF are converted.
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(encode(solid("RGB", (8, 8), "white"), "PPM"))
    assert caught.value.code == 4000003


@needs_pillow
def test_decompression_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    data = encode(solid("L", (100, 100), 0), "BMP")  # 10,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow errors above 2x
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(data)
    assert caught.value.code == 4000002
    assert "decompression-bomb" in caught.value.message


@needs_pillow
# By message, not class: naming PIL's class would break collection without Pillow.
@pytest.mark.filterwarnings("ignore:Image size.*decompression bomb:RuntimeWarning")
def test_bomb_between_one_and_two_times_the_limit_is_refused_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image

    data = encode(solid("L", (40, 40), 0), "BMP")  # 1,600 pixels: Pillow only warns
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(data)
    assert caught.value.code == 4000002
    assert "40x40" in caught.value.message


# --- without Pillow ---------------------------------------------------------------


@pytest.mark.usefixtures("no_pillow")
def test_converting_without_pillow_names_the_extra() -> None:
    with pytest.raises(LocalCheckError) as caught:
        convert_to_png(b"GIF89a" + b"\x00" * 32)
    assert caught.value.code == 4000003
    assert "needs Pillow: pip install 'ocr-async[image]'" in caught.value.message


@pytest.mark.usefixtures("no_pillow")
def test_shrinking_without_pillow_names_the_extra() -> None:
    data = make_png("x" * 5000, 64, 64)
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(data, 1000)
    assert caught.value.code == 4131000
    assert "needs Pillow: pip install 'ocr-async[image]'" in caught.value.message


@pytest.mark.usefixtures("no_pillow")
def test_what_needs_no_pillow_works_without_it() -> None:
    png = make_png("x", 100, 400)
    assert convert_to_png(png)[0].data is png
    assert choose_endpoint(png) is Endpoint.CROPPING
    assert shrink_to_fit(png, DEFAULT_MAX_BYTES).data is png


# --- shrink_to_fit ----------------------------------------------------------------


def test_an_image_that_fits_comes_back_unchanged() -> None:
    data = make_png("fits", 300, 200)
    result = shrink_to_fit(data, DEFAULT_MAX_BYTES)
    assert result.data is data
    assert result == ShrinkResult(data, len(data), len(data), 300, 200, 300, 200, None, "")
    assert not result.changed


def test_the_limit_counts_the_framing() -> None:
    data = make_png("edge", 50, 50)
    body = len(request_for(data, DEFAULT_MAX_BYTES))
    assert shrink_to_fit(data, body).data is data  # exactly at the limit: fits


def test_shrinking_refuses_what_is_not_jpeg_or_png() -> None:
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(b"GIF89a....", 10)
    assert caught.value.code == 4000003


@needs_pillow
def test_eight_megabyte_photo_is_shrunk_under_five_mib() -> None:
    original = encode(noise((3000, 2500)), "JPEG", quality=95)
    assert len(original) > 8 * 1_000_000

    result = shrink_to_fit(original, DEFAULT_MAX_BYTES)

    request_for(result.data, DEFAULT_MAX_BYTES)  # must not raise 4131000
    assert sniff_image_type(result.data) == "jpg"
    assert result.changed
    assert result.quality in SHRINK_QUALITIES
    assert (result.original_width, result.original_height) == (3000, 2500)
    assert result.width is not None
    assert result.height is not None
    assert result.width <= 3000
    assert result.height <= 2500
    assert decode(result.data).size == (result.width, result.height)
    assert (result.original_bytes, result.final_bytes) == (len(original), len(result.data))
    assert result.note.startswith(f"re-encoded as JPEG q{result.quality}, 3000x2500")
    assert "MiB -> " in result.note


@needs_pillow
def test_quality_alone_keeps_the_dimensions() -> None:
    original = encode(noise((600, 400)), "PNG", compress_level=1)  # ~700 KB
    result = shrink_to_fit(original, 600_000)
    assert result.quality == 90
    assert (result.width, result.height) == (600, 400)
    assert "600x400 kept" in result.note


@needs_pillow
def test_downscaling_after_quality_stays_above_the_floor() -> None:
    original = encode(noise((2000, 1500)), "JPEG", quality=95)  # q60 alone is ~1.4 MiB
    limit = MIB

    result = shrink_to_fit(original, limit)

    request_for(result.data, limit)
    assert result.quality == 80
    assert result.width is not None
    assert result.height is not None
    assert SHRINK_MIN_LONG_SIDE <= result.width < 2000
    assert result.width / result.height == pytest.approx(2000 / 1500, rel=0.01)
    assert f"2000x1500 -> {result.width}x{result.height}" in result.note


@needs_pillow
def test_shrinking_is_deterministic() -> None:
    original = encode(noise((700, 500)), "JPEG", quality=95)
    first = shrink_to_fit(original, 150_000)
    assert shrink_to_fit(original, 150_000) == first


@needs_pillow
@pytest.mark.parametrize(
    ("size", "limit", "why"),
    [
        pytest.param((800, 600), 10_000, "not downscaled", id="under-1280px"),
        pytest.param((2000, 1500), 100_000, "downscaled to 1280x960", id="at-the-floor"),
    ],
)
def test_an_impossible_target_is_refused(size: tuple[int, int], limit: int, why: str) -> None:
    original = encode(noise(size), "JPEG", quality=95)
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(original, limit)
    assert caught.value.code == 4131000
    assert "MAX_UPLOAD_SIZE_EXCEEDED" in caught.value.message
    assert why in caught.value.message


def test_a_limit_below_the_framing_is_refused() -> None:
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(make_png("x", 10, 10), 50)
    assert caught.value.code == 4131000
    assert "no room" in caught.value.message


@needs_pillow
def test_transparent_png_is_flattened_on_white() -> None:
    from PIL import Image

    # Noise in the colour channels, fully transparent: white once flattened.
    image = noise((500, 400), "RGBA")
    image.putalpha(0)
    original = encode(image, "PNG", compress_level=1)

    result = shrink_to_fit(original, len(original) // 2)

    flat = decode(result.data)
    assert flat.mode == "RGB"
    average = flat.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    assert isinstance(average, tuple)
    assert min(average) >= 250
    assert "flattened on white" in result.note


@needs_pillow
def test_grayscale_stays_grayscale() -> None:
    original = encode(noise((500, 400), "L"), "PNG", compress_level=1)
    result = shrink_to_fit(original, len(original) // 2)
    assert decode(result.data).mode == "L"


@needs_pillow
def test_the_orientation_tag_is_kept() -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    original = encode(noise((500, 400)), "JPEG", quality=100, exif=exif)
    result = shrink_to_fit(original, len(original) // 2)
    assert result.changed
    assert decode(result.data).getexif().get(0x0112) == 6


@needs_pillow
def test_an_undecodable_oversized_jpeg_cannot_be_shrunk() -> None:
    data = b"\xff\xd8\xff" + b"\x00" * 5000
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(data, 2000)
    assert caught.value.code == 4131000
    assert "cannot decode" in caught.value.message


@needs_pillow
def test_shrinking_a_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    data = encode(noise((100, 100)), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(data, 2000)
    assert caught.value.code == 4000002


@needs_pillow
def test_wider_than_jpeg_allows_is_downscaled_to_fit_it() -> None:
    # 66,000 px wide: JPEG holds at most 65,500 a side. Once this stopped the
    # whole run with an OSError from the encoder (exit 3) at every --resume.
    original = encode(noise((66_000, 30), "L"), "PNG", compress_level=1)
    result = shrink_to_fit(original, len(original) // 2)
    assert result.changed
    assert result.width is not None
    assert result.width <= JPEG_MAX_SIDE
    assert decode(result.data).size == (result.width, result.height)
    assert result.note.startswith(f"re-encoded as JPEG q80, 66000x30 -> {result.width}x")


@needs_pillow
def test_wider_than_jpeg_allows_and_still_too_big_is_one_error() -> None:
    from PIL import Image

    # Sparse: a small PNG, but no JPEG of 35,000 px or more fits 2,000 bytes.
    image = Image.new("L", (70_000, 60), 255)
    for x in range(0, 70_000, 7):
        image.putpixel((x, 30), 0)
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(encode(image, "PNG"), 2000)
    assert caught.value.code == 4131000
    assert f"at most {JPEG_MAX_SIDE} px a side" in caught.value.message
    assert "downscaled to 35000x30" in caught.value.message


@needs_pillow
def test_too_wide_for_jpeg_even_at_the_floor_is_one_error() -> None:
    from PIL import Image

    original = encode(Image.new("L", (140_000, 4), 0), "PNG")
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(original, 500)
    assert caught.value.code == 4131000
    assert "140000x4 may not be downscaled below half its length" in caught.value.message


@needs_pillow
def test_an_encoder_failure_is_one_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_async import imaging

    def broken(*args: object) -> bytes:
        raise OSError("encoder error -2")

    monkeypatch.setattr(imaging, "_jpeg_bytes", broken)
    original = encode(noise((300, 200)), "PNG", compress_level=1)
    with pytest.raises(LocalCheckError) as caught:
        shrink_to_fit(original, len(original) // 2)
    assert caught.value.code == 4131000
    assert "encoding it as JPEG failed (encoder error -2)" in caught.value.message


# --- Transform --------------------------------------------------------------------


def test_transform_records_every_step() -> None:
    page = ConvertedPage(b"png", 2, 3, "tiff", "converted from TIFF page 2/3 to PNG")
    shrunk = ShrinkResult(b"jpg", 8_000_000, 4_000_000, 3400, 2550, 4000, 3000, 80, "q80 ...")

    transform = Transform.build(
        converted=page, shrunk=shrunk, endpoint_chosen=Endpoint.CROPPING, aspect_ratio=4.0
    )

    assert transform.to_json() == {
        "converted_from": "tiff",
        "page": 2,
        "pages": 3,
        "shrunk": {
            "from_bytes": 8_000_000,
            "to_bytes": 4_000_000,
            "quality": 80,
            "size": [3400, 2550],
            "original_size": [4000, 3000],
        },
        "endpoint_chosen": "cropping",
        "aspect_ratio": 4.0,
        "note": "converted from TIFF page 2/3 to PNG; q80 ...",
    }
    assert not transform.empty
    json.dumps(transform.to_json())


def test_steps_that_changed_nothing_are_left_out() -> None:
    data = make_png("x")
    transform = Transform.build(
        converted=convert_to_png(data)[0], shrunk=shrink_to_fit(data, DEFAULT_MAX_BYTES)
    )
    assert transform.empty
    assert transform.to_json() == {}


def test_a_single_page_conversion_has_no_page_fields() -> None:
    page = ConvertedPage(b"png", None, 1, "bmp", "converted from BMP to PNG")
    transform = Transform.build(converted=page, aspect_ratio=1.23456)
    assert transform.to_json() == {
        "converted_from": "bmp",
        "aspect_ratio": 1.23,
        "note": "converted from BMP to PNG",
    }
