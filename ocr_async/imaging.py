"""The image vocabulary: what headers say, endpoint choice, conversion, shrinking.

Pure functions on bytes: no file or network I/O, no asyncio. The header
readers (:func:`image_size`, :func:`png_chunks`, :func:`jpeg_segments`)
need only the standard library and never raise on damaged data: the
pre-checks, the emulator and the review page all read sizes with them.
The rest are CPU-bound (decoding and encoding images), so the pre-check
stage runs them in a worker thread. Each is one optional step of it:

* :func:`choose_endpoint` (``--endpoint auto``): ``/general`` or
  ``/general/cropping`` from the aspect ratio in the PNG/JPEG header; needs
  no Pillow.
* :func:`convert_to_png` (``--convert``): TIFF (every page), BMP, WebP and
  GIF (first frame) become PNG; JPEG and PNG pass through unchanged.
* :func:`shrink_to_fit` (``--shrink``): re-encode as JPEG, then downscale,
  until the multipart body fits the upload limit.
* :class:`Transform`: what was done, for the JSONL record.

Pillow is an optional extra (``pip install 'ocr-async[image]'``), imported
only inside the functions that decode pixels. Without it, those functions
raise :class:`LocalCheckError` with the code the server would have answered
for the untouched input and a message naming the extra.

Error codes (each a :class:`LocalCheckError`; nothing is sent):

* 4000004 ``UPLOADED_FILE_IS_EMPTY``: empty input.
* 4000003 ``INVALID_FILE_TYPE``: not JPEG/PNG and cannot be converted
  (unknown or undecodable data, a format outside the converted set, or
  Pillow missing).
* 4000002 ``INVALID_FILE``: refused before decoding: more pixels than
  Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), or more
  than :data:`MAX_PAGES` pages.
* 4131000 ``MAX_UPLOAD_SIZE_EXCEEDED``: the image cannot be made to fit
  (already at the smallest allowed size, undecodable, or Pillow missing).
* 4000505 ``GENERAL_OCR_IMAGE_OUT_OF_RATIO``: longer than about 1:10.

Reference: ``shared/spec/API-FACTS.md``, section "Limits".
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Final

from ocr_async.errors import LocalCheckError
from ocr_async.models import Endpoint, ImageType
from ocr_async.protocol import PNG_SIGNATURE, check_image_bytes, multipart_size, sniff_image_type

if TYPE_CHECKING:
    from PIL import Image

    from ocr_async.pdfpages import PdfPage

__all__ = [
    "CONVERTED_FORMATS",
    "CROPPING_RATIO",
    "JPEG_MAX_SIDE",
    "JPEG_SOI",
    "MAX_PAGES",
    "MAX_READABLE_RATIO",
    "PILLOW_HINT",
    "SHRINK_MIN_FRACTION",
    "SHRINK_MIN_LONG_SIDE",
    "SHRINK_QUALITIES",
    "SHRINK_SCALE_QUALITY",
    "ConvertedPage",
    "ShrinkResult",
    "Transform",
    "aspect_ratio",
    "choose_endpoint",
    "convert_to_png",
    "image_size",
    "jpeg_segments",
    "png_chunks",
    "shrink_to_fit",
]

# --- constants ------------------------------------------------------------------

# API-FACTS.md, "Limits": "accuracy falls beyond 1:2.5, and beyond about 1:10
# the image cannot be read. /general/cropping is meant for such long images."
#: Long side / short side above which ``--endpoint auto`` picks cropping.
CROPPING_RATIO: Final = Fraction(5, 2)
#: Long side / short side above which an image is refused (4000505).
MAX_READABLE_RATIO: Final = Fraction(10)

#: How to get Pillow; part of every "Pillow is missing" message.
PILLOW_HINT: Final = "pip install 'ocr-async[image]'"

#: Pillow format names :func:`convert_to_png` decodes. The list is closed on
#: purpose: Pillow reads many more formats, some through external programs
#: (EPS runs Ghostscript), and untrusted input should meet few decoders.
CONVERTED_FORMATS: Final = ("TIFF", "BMP", "WEBP", "GIF")
#: More pages than this in one TIFF is refused (4000002) rather than
#: converted: every page is held in memory as PNG bytes.
MAX_PAGES: Final = 1000

#: The JPEG qualities tried first, at full size, in order.
SHRINK_QUALITIES: Final = (90, 80, 70, 60)
#: The JPEG quality of every downscaled attempt.
SHRINK_SCALE_QUALITY: Final = 80
#: Downscaling stops at the larger of these two floors for the long side:
#: half the original (small text stays legible) and 1280 px (API-FACTS:
#: "1280x720 or more is recommended"), but never above the original.
SHRINK_MIN_FRACTION: Final = 0.5
SHRINK_MIN_LONG_SIDE: Final = 1280
#: The longest side a JPEG can have in libjpeg, which Pillow uses (its
#: JPEG_MAX_DIMENSION); a wider image is downscaled to it before encoding.
JPEG_MAX_SIDE: Final = 65500
# Each downscale aims at sqrt(limit / last size) (JPEG bytes grow with the
# pixel count) times a margin, and shrinks the sides by at least 10%.
_SCALE_MARGIN: Final = 0.95
_MAX_SCALE_STEP: Final = 0.9

_WHITE: Final = 255
_EXIF_ORIENTATION: Final = 0x0112
_SNIFFED_FORMAT: Final[dict[ImageType, str]] = {"jpg": "jpeg", "png": "png"}
_GRAY_MODES: Final = frozenset({"1", "L", "LA", "La"})
_ALPHA_MODES: Final = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


# --- what the headers say -------------------------------------------------------

#: A JPEG's start-of-image marker: its segments follow it.
JPEG_SOI: Final = b"\xff\xd8"
# Start-of-frame markers carry the size; C4, C8 and CC share the range but
# are other segments (T.81, table B.1).
_JPEG_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field.
_JPEG_STANDALONE: Final = frozenset({0x01, *range(0xD0, 0xD8)})


def png_chunks(data: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each complete chunk body; stops at damage or IEND."""
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        start, end = pos + 8, pos + 8 + length
        if end + 4 > len(data):
            return
        yield kind, start, end
        if kind == b"IEND":
            return
        pos = end + 4


def _png_size(data: bytes) -> tuple[int, int] | None:
    # IHDR must be the first chunk (PNG spec, 5.6).
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return (width, height) if width and height else None


def jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment payload before the scan."""
    pos = len(JPEG_SOI)
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI, SOS: no more headers
            return
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return
        yield marker, pos + 4, end
        pos = end


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    for marker, start, end in jpeg_segments(data):
        if marker in _JPEG_SOF and end - start >= 5:
            height, width = struct.unpack_from(">HH", data, start + 1)
            # Height 0 means "defined later by DNL": not known from headers.
            return (width, height) if width and height else None
    return None


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a PNG IHDR or a JPEG SOFn header, else None."""
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_size(data)
    return None


# --- endpoint choice ------------------------------------------------------------


def aspect_ratio(data: bytes) -> float | None:
    """Long side / short side (>= 1.0) from a PNG or JPEG header, else None."""
    size = image_size(data)
    if size is None:
        return None
    return max(size) / min(size)


def choose_endpoint(data: bytes) -> Endpoint:
    """The endpoint for ``--endpoint auto``, from the aspect ratio alone.

    Up to 1:2.5 (inclusive) :attr:`Endpoint.GENERAL`; longer, up to 1:10
    (inclusive), :attr:`Endpoint.CROPPING`; an image whose size is not in a
    PNG/JPEG header, GENERAL. Portrait and landscape are treated alike.
    Raises :class:`LocalCheckError` 4000505 beyond 1:10, which the API cannot
    read at all. Needs no Pillow.
    """
    size = image_size(data)
    if size is None:
        return Endpoint.GENERAL
    width, height = size
    # Exact rational comparison: 1000x2500 is exactly 1:2.5, not a float near it.
    ratio = Fraction(max(size), min(size))
    if ratio > MAX_READABLE_RATIO:
        raise LocalCheckError(
            4000505,
            f"GENERAL_OCR_IMAGE_OUT_OF_RATIO: {width}x{height} is 1:{float(ratio):.1f}; "
            f"1:N beyond about 1:{MAX_READABLE_RATIO} cannot be read (not sent)",
        )
    return Endpoint.CROPPING if ratio > CROPPING_RATIO else Endpoint.GENERAL


# --- Pillow helpers -------------------------------------------------------------


def _missing_pillow(code: int, message: str) -> LocalCheckError:
    return LocalCheckError(code, f"{message}; this needs Pillow: {PILLOW_HINT} (not sent)")


def _check_pixels(width: int, height: int, what: str) -> None:
    from PIL import Image

    # Read at call time, so a user (or a test) can change Pillow's limit;
    # None disables the check, as in Pillow.
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        raise LocalCheckError(
            4000002,
            f"INVALID_FILE: {what} is {width}x{height} = {width * height} pixels, over "
            f"the decompression-bomb limit of {limit} (PIL.Image.MAX_IMAGE_PIXELS); "
            "not decoded (not sent)",
        )


@contextmanager
def _decoding(code: int, prefix: str) -> Iterator[None]:
    """Turn any failure of Pillow's decoders into a :class:`LocalCheckError`.

    The input is untrusted and decoders fail in many ways (OSError for a
    truncated file, SyntaxError, ValueError, struct.error ...), so every
    exception is caught: a bad image fails one record, never the run.
    """
    from PIL import Image

    try:
        yield
    except LocalCheckError:
        raise
    except Image.DecompressionBombError as exc:
        raise LocalCheckError(
            4000002, f"INVALID_FILE: {exc} (decompression-bomb guard; not sent)"
        ) from None
    except Exception as exc:
        detail = str(exc) or type(exc).__name__
        raise LocalCheckError(code, f"{prefix} ({detail}) (not sent)") from None


def _ocr_mode(im: Image.Image) -> tuple[Image.Image, str]:
    """``L`` or ``RGB``: alpha flattened on white, 16-bit scaled to 8-bit.

    Returns the image (``im`` itself when already fine) and a short note of
    what changed ("" when nothing did). Alpha is flattened because a server
    that drops it would see black text on a black background.
    """
    from PIL import Image

    mode = im.mode
    # Deep grayscale first: a PNG colour key on 16-bit gray (rare) is dropped,
    # as convert() would clip the values before any flattening.
    if mode.startswith("I;16"):
        # convert("L") clips 16-bit values at 255; scale the full range instead.
        scaled = im.convert("I").point(lambda v: v * (1 / 257))
        return scaled.convert("L"), f"{mode} (16-bit) -> L"
    if mode in ("I", "F"):
        low, high = _extrema(im)
        if low < 0 or high > _WHITE:
            factor = _WHITE / (high - low) if high > low else 0.0
            im = im.point(lambda v: (v - low) * factor)
        return im.convert("L"), f"{mode} -> L"
    if mode in _ALPHA_MODES or "transparency" in im.info:
        gray = mode in _GRAY_MODES
        rgba = im.convert("LA" if gray else "RGBA")
        flat = Image.new("L" if gray else "RGB", im.size, _WHITE if gray else (_WHITE,) * 3)
        flat.paste(rgba.convert(flat.mode), mask=rgba.getchannel("A"))
        return flat, f"{mode} with transparency flattened on white -> {flat.mode}"
    if mode in ("L", "RGB"):
        return im, ""
    target = "L" if mode == "1" else "RGB"
    return im.convert(target), f"{mode} -> {target}"


def _extrema(im: Image.Image) -> tuple[float, float]:
    low, high = im.getextrema()
    # One band: a (min, max) pair of numbers, not one pair per band.
    assert isinstance(low, int | float)
    assert isinstance(high, int | float)
    return float(low), float(high)


def _png_bytes(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # compress_level 6 is zlib's default; optimize=True costs much CPU for a
    # few percent, and this PNG lives only until it is sent.
    im.save(buffer, "PNG", compress_level=6)
    return buffer.getvalue()


# --- conversion -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConvertedPage:
    """One image ready to send, from :func:`convert_to_png`."""

    #: PNG bytes, or the input itself when it was already JPEG/PNG.
    data: bytes = field(repr=False)
    #: 1-based page number in a multi-page TIFF; None for single images.
    page: int | None
    #: How many pages the input yielded (1 unless a multi-page TIFF).
    pages: int
    #: Lower-case Pillow format name of the input: "tiff", "bmp", "webp",
    #: "gif", or "jpeg"/"png" for a pass-through.
    original_format: str
    #: What was done, for people: "" for a pass-through.
    note: str

    @property
    def converted(self) -> bool:
        """True when :attr:`data` is newly encoded PNG, not the input."""
        return self.original_format not in ("jpeg", "png")


def convert_to_png(data: bytes) -> list[ConvertedPage]:
    """Make images the API accepts (JPEG/PNG) out of TIFF, BMP, WebP and GIF.

    * JPEG and PNG (by magic bytes) come back unchanged as one page with
      note ""; no Pillow needed, so this can be called on any input.
    * A TIFF yields one PNG per page, in order, numbered from 1 (``page`` is
      None for a single-page file).
    * A GIF or animated WebP yields its first frame only; the note says so.
    * Pixels are made ``L`` or ``RGB``: palette, CMYK, YCbCr and the like to
      RGB, bilevel and 16-bit to 8-bit L, transparency flattened on white.
      An EXIF/TIFF orientation tag is applied to the pixels (PNG readers
      commonly ignore it). Metadata is not carried over.

    Raises :class:`LocalCheckError`: 4000004 for empty input; 4000003 for
    data that is not an image of :data:`CONVERTED_FORMATS` that Pillow can
    decode, or when Pillow is missing; 4000002 for a decompression bomb or
    more than :data:`MAX_PAGES` pages.
    """
    if not data:
        raise LocalCheckError(4000004, "UPLOADED_FILE_IS_EMPTY: the file is empty (not sent)")
    kind = sniff_image_type(data)
    if kind is not None:
        return [ConvertedPage(data, None, 1, _SNIFFED_FORMAT[kind], "")]
    try:
        from PIL import Image
    except ImportError:
        raise _missing_pillow(
            4000003, "INVALID_FILE_TYPE: the file is not JPEG or PNG and converting it"
        ) from None

    unreadable = (
        "INVALID_FILE_TYPE: not JPEG or PNG, and not a TIFF, BMP, WebP or GIF image "
        "that Pillow can decode"
    )
    pages: list[ConvertedPage] = []
    with (
        _decoding(4000003, unreadable),
        Image.open(io.BytesIO(data), formats=CONVERTED_FORMATS) as im,
    ):
        fmt = (im.format or "image").lower()
        label = fmt.upper() if fmt != "webp" else "WebP"
        frames: int = getattr(im, "n_frames", 1)
        # Only TIFF pages are separate documents; GIF/WebP frames are animation.
        count = frames if fmt == "tiff" else 1
        if count > MAX_PAGES:
            raise LocalCheckError(
                4000002,
                f"INVALID_FILE: the TIFF has {count} pages, more than {MAX_PAGES} (not sent)",
            )
        for index in range(count):
            if index:
                im.seek(index)
            _check_pixels(im.width, im.height, f"page {index + 1}" if count > 1 else fmt)
            tag = _orientation(im)
            # copy() decodes this frame; for TIFF, Pillow turns the pixels by
            # the tag as it does and leaves the copy without it. Other formats
            # keep the tag on the copy, and _upright applies it once.
            upright = _upright(im.copy())
            rotated = tag in range(2, 9)
            ready, mode_note = _ocr_mode(upright)
            parts = [
                f"converted from {label} page {index + 1}/{count} to PNG"
                if count > 1
                else f"converted from {label} to PNG"
            ]
            if frames > 1 and count == 1:
                parts.append(f"first frame only, of {frames}")
            if rotated:
                parts.append("rotated upright per its orientation tag")
            if mode_note:
                parts.append(mode_note)
            pages.append(
                ConvertedPage(
                    _png_bytes(ready),
                    index + 1 if count > 1 else None,
                    count,
                    fmt,
                    ", ".join(parts),
                )
            )
    return pages


def _orientation(im: Image.Image) -> int | None:
    value = im.getexif().get(_EXIF_ORIENTATION)
    return value if isinstance(value, int) else None


def _upright(im: Image.Image) -> Image.Image:
    """The image turned as its EXIF/TIFF orientation tag says (``im`` if upright).

    Call it on a decoded copy: decoding a TIFF frame already applies its tag
    (Pillow's TIFF plugin) and the copy does not carry it, so the tag read
    from the still-open file would turn such a page twice.
    """
    from PIL import Image

    # EXIF 2.3, tag 0x0112: how to turn the stored pixels for display.
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(_orientation(im) or 1)
    return im if method is None else im.transpose(method)


# --- shrinking ------------------------------------------------------------------


def _body_size(image: bytes, kind: ImageType) -> int:
    return multipart_size(kind, len(image))


@dataclass(frozen=True, slots=True)
class ShrinkResult:
    """What :func:`shrink_to_fit` returns."""

    #: The image to send: the input itself, or a new JPEG.
    data: bytes = field(repr=False)
    #: Size of the input image (the file, not the multipart body).
    original_bytes: int
    #: Size of :attr:`data`.
    final_bytes: int
    #: Size of :attr:`data` in pixels; None only when unchanged and its
    #: header does not say.
    width: int | None
    height: int | None
    original_width: int | None
    original_height: int | None
    #: The JPEG quality used, or None when the input was returned unchanged.
    quality: int | None
    #: For people, e.g. "re-encoded as JPEG q80, 4000x3000 -> 3400x2550,
    #: 8.1 MiB -> 4.9 MiB"; "" when unchanged.
    note: str

    @property
    def changed(self) -> bool:
        """True when :attr:`data` is a new encoding, not the input."""
        return self.quality is not None


def shrink_to_fit(data: bytes, max_body_bytes: int) -> ShrinkResult:
    """Re-encode a JPEG/PNG so that its multipart body fits ``max_body_bytes``.

    The limit is on the whole request body, as the server's 4131000 is (see
    :func:`ocr_async.protocol.multipart_size`). If the input already fits it comes back
    unchanged (note ""). Otherwise, deterministically:

    1. the pixels are made ``RGB`` (or ``L`` for grayscale), transparency
       flattened on white; an EXIF orientation tag is kept, so the server
       sees the image as it would have;
    2. JPEG at each of :data:`SHRINK_QUALITIES` (90, 80, 70, 60), full size;
       the first that fits wins;
    3. then downscaling (Lanczos) at quality :data:`SHRINK_SCALE_QUALITY`
       (80): each step scales the sides by ``sqrt(budget / last size) * 0.95``
       but by at least 10%, never up, and never below the floor: the long
       side keeps at least the larger of half its length and 1280 px
       (:data:`SHRINK_MIN_FRACTION`, :data:`SHRINK_MIN_LONG_SIDE`), or all
       of it when it is shorter than 1280 px;
    4. if even the floor does not fit, :class:`LocalCheckError` 4131000.

    Raises :class:`LocalCheckError`: 4000004/4000003 when the input is not
    JPEG/PNG (convert it first); 4131000 when it cannot be made to fit, is
    undecodable, or Pillow is missing; 4000002 for a decompression bomb.
    """
    kind = check_image_bytes(data)
    original_size = image_size(data)
    body = _body_size(data, kind)
    if body <= max_body_bytes:
        width, height = original_size or (None, None)
        return ShrinkResult(data, len(data), len(data), width, height, width, height, None, "")

    too_big = (
        f"MAX_UPLOAD_SIZE_EXCEEDED: request would be {body} bytes, "
        f"over the {max_body_bytes}-byte limit"
    )
    budget = max_body_bytes - multipart_size("jpg", 0)  # bytes left for the JPEG
    if budget <= 0:
        raise LocalCheckError(
            4131000, f"{too_big}, which leaves no room for any image after the framing (not sent)"
        )
    try:
        from PIL import Image
    except ImportError:
        raise _missing_pillow(4131000, f"{too_big}; shrinking it") from None

    with (
        _decoding(4131000, f"{too_big}; it cannot be shrunk: Pillow cannot decode it"),
        Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as im,
    ):
        _check_pixels(im.width, im.height, "the image")
        source, mode_note = _ocr_mode(im)
        # The source outlives the file object closed at the end of the block.
        source = source.copy() if source is im else source
        exif = _orientation_exif(im)

    def attempt(image: Image.Image, quality: int) -> bytes:
        # An encoder failure (out of memory, say) fails this image, not the run.
        with _decoding(4131000, f"{too_big}; it cannot be shrunk: encoding it as JPEG failed"):
            return _jpeg_bytes(image, quality, exif)

    def done(encoded: bytes, quality: int) -> ShrinkResult:
        size = image_size(encoded) or source.size
        return _shrink_result(data, encoded, quality, source.size, size, mode_note)

    width, height = source.size
    long_side = max(width, height)
    floor_long = max(math.ceil(long_side * SHRINK_MIN_FRACTION), SHRINK_MIN_LONG_SIDE)
    floor_scale = min(1.0, floor_long / long_side)
    # JPEG cannot hold the image at full size beyond JPEG_MAX_SIDE: start
    # from the largest size it can hold, if the floor allows going there.
    scale = min(1.0, JPEG_MAX_SIDE / long_side)
    if scale < floor_scale:
        raise LocalCheckError(
            4131000,
            f"{too_big}, and it cannot be shrunk to fit: a JPEG holds at most "
            f"{JPEG_MAX_SIDE} px a side, and {width}x{height} may not be downscaled below "
            f"half its length (not sent)",
        )

    # 1. Quality alone, full size (when JPEG can hold it).
    by_quality: dict[int, bytes] = {}
    smallest = _scaled(source.size, scale)
    if scale == 1.0:
        for quality in SHRINK_QUALITIES:
            by_quality[quality] = attempt(source, quality)
            if len(by_quality[quality]) <= budget:
                return done(by_quality[quality], quality)
        last = by_quality.get(SHRINK_SCALE_QUALITY) or attempt(source, SHRINK_SCALE_QUALITY)
    else:
        last = attempt(source.resize(smallest, Image.Resampling.LANCZOS), SHRINK_SCALE_QUALITY)
        if len(last) <= budget:
            return done(last, SHRINK_SCALE_QUALITY)

    # 2. Downscale at one quality, each step sized from the last attempt.
    while scale > floor_scale:
        step = min(_MAX_SCALE_STEP, math.sqrt(budget / len(last)) * _SCALE_MARGIN)
        scale = max(floor_scale, scale * step)
        smallest = _scaled(source.size, scale)
        last = attempt(source.resize(smallest, Image.Resampling.LANCZOS), SHRINK_SCALE_QUALITY)
        if len(last) <= budget:
            return done(last, SHRINK_SCALE_QUALITY)

    full_size = (
        f"JPEG down to q{min(SHRINK_QUALITIES)} at full size and "
        if by_quality
        else f"JPEG (at most {JPEG_MAX_SIDE} px a side) at "
    )
    smallest_body = min(len(image) for image in (*by_quality.values(), last))
    smallest_body = multipart_size("jpg", smallest_body)
    if floor_scale >= 1.0:
        why = (
            f"it is not downscaled: {width}x{height} is at most "
            f"{SHRINK_MIN_LONG_SIDE} px on its long side"
        )
    else:
        why = (
            f"downscaled to {smallest[0]}x{smallest[1]} (the floor: the long side keeps "
            f"at least {SHRINK_MIN_LONG_SIDE} px and half its length)"
        )
    raise LocalCheckError(
        4131000,
        f"{too_big}, and it cannot be shrunk to fit: {full_size}q{SHRINK_SCALE_QUALITY} {why} "
        f"still need {smallest_body} bytes (not sent)",
    )


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """``size`` times ``scale``, rounded, at least 1 and at most :data:`JPEG_MAX_SIDE`."""
    return (
        min(JPEG_MAX_SIDE, max(1, round(size[0] * scale))),
        min(JPEG_MAX_SIDE, max(1, round(size[1] * scale))),
    )


def _orientation_exif(im: Image.Image) -> bytes:
    """An EXIF block holding only the orientation tag, or b"" when upright."""
    from PIL import Image

    orientation = _orientation(im)
    if orientation is None or orientation == 1:
        return b""
    exif = Image.Exif()
    exif[_EXIF_ORIENTATION] = orientation
    encoded: bytes = exif.tobytes()
    return encoded


def _jpeg_bytes(im: Image.Image, quality: int, exif: bytes) -> bytes:
    buffer = io.BytesIO()
    # optimize=True: optimal Huffman tables, a few percent smaller, same pixels.
    im.save(buffer, "JPEG", quality=quality, optimize=True, exif=exif)
    return buffer.getvalue()


def _shrink_result(
    original: bytes,
    encoded: bytes,
    quality: int,
    original_size: tuple[int, int],
    size: tuple[int, int],
    mode_note: str,
) -> ShrinkResult:
    (ow, oh), (w, h) = original_size, size
    dims = f"{ow}x{oh} -> {w}x{h}" if size != original_size else f"{w}x{h} kept"
    note = (
        f"re-encoded as JPEG q{quality}, {dims}, "
        f"{_human_bytes(len(original))} -> {_human_bytes(len(encoded))}"
    )
    if mode_note:
        note += f" ({mode_note})"
    return ShrinkResult(encoded, len(original), len(encoded), w, h, ow, oh, quality, note)


def _human_bytes(count: int) -> str:
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    if count >= 1 << 10:
        return f"{count / (1 << 10):.1f} KiB"
    return f"{count} bytes"


# --- the record -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transform:
    """What was done to an input before it was sent, for the JSONL record.

    Every field is optional; :meth:`to_json` writes only the ones set, so an
    input sent as it was has an empty transform (:attr:`empty`). Build it
    from the steps' results with :meth:`build`.
    """

    #: Pillow format name of the input when it was converted ("tiff", ...).
    converted_from: str | None = None
    #: 1-based page of a multi-page input, and how many pages it had.
    page: int | None = None
    pages: int | None = None
    #: The resolution a PDF page was rendered at (its pixel size is ``size``).
    dpi: int | None = None
    #: Set when the image was re-encoded to fit the upload limit.
    shrunk_from_bytes: int | None = None
    shrunk_to_bytes: int | None = None
    quality: int | None = None
    size: tuple[int, int] | None = None
    original_size: tuple[int, int] | None = None
    #: The endpoint ``--endpoint auto`` chose, and the ratio it chose from.
    endpoint_chosen: Endpoint | None = None
    aspect_ratio: float | None = None
    #: The steps' human notes, in order.
    notes: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        converted: ConvertedPage | None = None,
        shrunk: ShrinkResult | None = None,
        endpoint_chosen: Endpoint | None = None,
        aspect_ratio: float | None = None,
        rendered: PdfPage | None = None,
    ) -> Transform:
        """The record of the given steps; steps that changed nothing are left out.

        ``rendered`` is a PDF page made into an image (:mod:`ocr_async.pdfpages`).
        """
        values: dict[str, Any] = {
            "endpoint_chosen": endpoint_chosen,
            "aspect_ratio": aspect_ratio,
        }
        notes: list[str] = []
        if rendered is not None:
            values.update(converted_from="pdf", dpi=rendered.dpi, size=rendered.size)
            if rendered.pages > 1:
                values.update(page=rendered.number, pages=rendered.pages)
            if rendered.note:
                notes.append(rendered.note)
        if converted is not None and converted.converted:
            values.update(converted_from=converted.original_format)
            if converted.pages > 1:
                values.update(page=converted.page, pages=converted.pages)
            notes.append(converted.note)
        if shrunk is not None and shrunk.changed:
            values.update(
                shrunk_from_bytes=shrunk.original_bytes,
                shrunk_to_bytes=shrunk.final_bytes,
                quality=shrunk.quality,
                size=_pair(shrunk.width, shrunk.height),
                original_size=_pair(shrunk.original_width, shrunk.original_height),
            )
            notes.append(shrunk.note)
        return cls(notes=tuple(notes), **values)

    @property
    def empty(self) -> bool:
        """True when nothing was done or chosen: no need to record it."""
        return self == Transform()

    @property
    def note(self) -> str:
        """The notes joined by "; " (for logs)."""
        return "; ".join(self.notes)

    def to_json(self) -> dict[str, Any]:
        """The JSON object for the record: only the fields that are set.

        For example ``{"converted_from": "tiff", "page": 2, "pages": 3,
        "shrunk": {"from_bytes": ..., "to_bytes": ..., "quality": 80,
        "size": [w, h], "original_size": [w, h]}, "endpoint_chosen":
        "cropping", "aspect_ratio": 4.0, "note": "..."}``; a PDF page
        ``{"converted_from": "pdf", "page": 3, "pages": 5, "size": [w, h],
        "dpi": 300, "note": "rendered page 3/5 at 300 dpi as PNG"}``.
        """
        out: dict[str, Any] = {}
        if self.converted_from is not None:
            out["converted_from"] = self.converted_from
        if self.page is not None:
            out["page"] = self.page
        if self.pages is not None:
            out["pages"] = self.pages
        if self.size is not None and self.shrunk_from_bytes is None:
            # The size of an image made here (a rendered PDF page); a shrunk
            # image's size is told inside "shrunk".
            out["size"] = list(self.size)
        if self.dpi is not None:
            out["dpi"] = self.dpi
        if self.shrunk_from_bytes is not None:
            out["shrunk"] = {
                "from_bytes": self.shrunk_from_bytes,
                "to_bytes": self.shrunk_to_bytes,
                "quality": self.quality,
                "size": _listed(self.size),
                "original_size": _listed(self.original_size),
            }
        if self.endpoint_chosen is not None:
            out["endpoint_chosen"] = self.endpoint_chosen.value
        if self.aspect_ratio is not None:
            out["aspect_ratio"] = round(self.aspect_ratio, 2)
        if self.notes:
            out["note"] = self.note
        return out


def _pair(a: int | None, b: int | None) -> tuple[int, int] | None:
    return None if a is None or b is None else (a, b)


def _listed(pair: tuple[int, int] | None) -> list[int] | None:
    return None if pair is None else list(pair)
