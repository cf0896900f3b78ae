"""Tiny PNG and JPEG files that carry their own "ground truth" text.

The emulator has no real OCR engine, so test images say what they contain:
a PNG carries it in an ``iTXt`` chunk and a JPEG in a ``COM`` segment, both
UTF-8 so Korean survives. The files are still valid images (ImageMagick and
libjpeg decode them), so a real engine can later read the same inputs.

Pure functions, no I/O, standard library only: the client, tests and
benchmarks can make any number of distinct inputs without Pillow.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final

from ocr_async.imaging import JPEG_SOI as _JPEG_SOI
from ocr_async.imaging import image_size, jpeg_segments, png_chunks
from ocr_async.protocol import PNG_SIGNATURE as _PNG_SIGNATURE

__all__ = [
    "TEXT_KEYWORD",
    "embedded_text",
    "image_size",
    "make_jpeg",
    "make_png",
]

#: The PNG ``iTXt`` keyword, and the JPEG ``COM`` prefix (with ``=``).
TEXT_KEYWORD: Final = "ocr-async:text"

_JPEG_EOI: Final = b"\xff\xd9"
_KEYWORD_BYTES: Final = TEXT_KEYWORD.encode("latin-1")
_COM_PREFIX: Final = _KEYWORD_BYTES + b"="
# A COM segment's 16-bit length counts itself (2 bytes) and the payload.
_COM_MAX_TEXT: Final = 0xFFFF - 2 - len(_COM_PREFIX)

# The constant part of a minimal baseline grayscale JPEG: one quantisation
# table of ones, then a DC and an AC Huffman table that each hold a single
# 1-bit code "0" (DC: difference category 0; AC: end of block). Every 8x8
# block of a flat mid-grey image is then the two bits "00", so the scan for
# any size is a run of zero bytes. Checked with libjpeg (ImageMagick).
_JPEG_TABLES: Final = (
    b"\xff\xdb\x00\x43\x00" + b"\x01" * 64  # DQT: table 0, 8-bit, all ones
    + b"\xff\xc4\x00\x14\x00" + b"\x01" + b"\x00" * 15 + b"\x00"  # DHT DC 0: "0" -> 0
    + b"\xff\xc4\x00\x14\x10" + b"\x01" + b"\x00" * 15 + b"\x00"  # DHT AC 0: "0" -> EOB
)  # fmt: skip
# SOS for one component (id 1) using DC/AC tables 0, spectral 0..63.
_JPEG_SOS: Final = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"


# --- PNG ----------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def make_png(text: str, width: int = 64, height: int = 32) -> bytes:
    """A white 8-bit grayscale PNG whose ``iTXt`` chunk holds ``text`` (UTF-8).

    The text chunk comes before the pixels so that readers stop early.
    Raises ``ValueError`` for a size below 1x1.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1x1, not {width}x{height}")
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    # keyword NUL, not compressed, method 0, empty language NUL, empty
    # translated keyword NUL, then the UTF-8 text (PNG spec, 11.3.4.5).
    itxt = _KEYWORD_BYTES + b"\x00\x00\x00\x00\x00" + text.encode("utf-8")
    row = b"\x00" + b"\xff" * width  # filter type 0, then white pixels
    pixels = zlib.compress(row * height, 9)
    return b"".join(
        (
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"iTXt", itxt),
            _png_chunk(b"IDAT", pixels),
            _png_chunk(b"IEND", b""),
        )
    )


def _png_text(data: bytes) -> str | None:
    for kind, start, end in png_chunks(data):
        if kind != b"iTXt":
            continue
        # Only the chunk we read is CRC-checked: checking IDAT would cost
        # time on every request for nothing the emulator uses.
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(data[start - 4 : end]) != crc:
            return None
        text = _parse_itxt(data[start:end])
        if text is not None:
            return text
    return None


def _parse_itxt(body: bytes) -> str | None:
    keyword, sep, rest = body.partition(b"\x00")
    if keyword != _KEYWORD_BYTES or not sep or len(rest) < 2:
        return None
    compressed, method = rest[0], rest[1]
    parts = rest[2:].split(b"\x00", 2)  # language, translated keyword, text
    if len(parts) != 3 or method != 0:
        return None
    raw = parts[2]
    try:
        if compressed:
            raw = zlib.decompress(raw)
        return raw.decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        return None


# --- JPEG ---------------------------------------------------------------------


def make_jpeg(text: str, width: int = 8, height: int = 8) -> bytes:
    """A flat grey baseline grayscale JPEG with ``text`` in a ``COM`` segment.

    The segment ``ocr-async:text=<UTF-8 text>`` sits right after SOI. Raises
    ``ValueError`` for a size outside 1..65535 or a text too long for one
    segment (about 64 KiB).
    """
    if not (1 <= width <= 0xFFFF and 1 <= height <= 0xFFFF):
        raise ValueError(f"JPEG size must be 1..65535 per side, not {width}x{height}")
    encoded = text.encode("utf-8")
    if len(encoded) > _COM_MAX_TEXT:
        raise ValueError(f"text is {len(encoded)} bytes; a JPEG comment holds {_COM_MAX_TEXT}")
    comment = b"\xff\xfe" + struct.pack(">H", 2 + len(_COM_PREFIX) + len(encoded))
    frame = b"\xff\xc0\x00\x0b\x08" + struct.pack(">HH", height, width) + b"\x01\x01\x11\x00"
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    # Two zero bits per block; the last byte is padded with one-bits (T.81 F.1.2.3).
    full, rest = divmod(2 * blocks, 8)
    scan = b"\x00" * full + (bytes([0xFF >> rest]) if rest else b"")
    return b"".join(
        (_JPEG_SOI, comment, _COM_PREFIX, encoded, _JPEG_TABLES, frame, _JPEG_SOS, scan, _JPEG_EOI)
    )


def _jpeg_text(data: bytes) -> str | None:
    for marker, start, end in jpeg_segments(data):
        if marker == 0xFE and data.startswith(_COM_PREFIX, start):
            try:
                return data[start + len(_COM_PREFIX) : end].decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


# --- either -------------------------------------------------------------------


def embedded_text(data: bytes) -> str | None:
    """The text stored by :func:`make_png` or :func:`make_jpeg`, else None.

    None also for truncated or garbage data: this never raises on bad input.
    An empty string means an image that declares it holds no text.
    """
    if data.startswith(_PNG_SIGNATURE):
        return _png_text(data)
    if data.startswith(_JPEG_SOI):
        return _jpeg_text(data)
    return None
