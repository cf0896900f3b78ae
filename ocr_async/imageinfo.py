"""What an image's headers say, read from its bytes alone: size, chunks, segments.

Pure functions on the first bytes of a PNG or JPEG, standard library only,
never raising on damaged data: the pre-checks, ``--endpoint auto``, the
emulator and the review page all need an image's size without Pillow.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

__all__ = ["image_size", "jpeg_segments", "png_chunks"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
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
