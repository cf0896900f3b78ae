"""Tests for ocr_async.emulator.images: valid tiny images that carry their text.

Validity is checked against the file formats themselves (PNG chunk CRCs and
pixel data, JPEG marker layout) and, when libjpeg's ``djpeg`` is installed,
by a real decoder.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from ocr_async.emulator.images import (
    TEXT_KEYWORD,
    embedded_text,
    image_size,
    make_jpeg,
    make_png,
)
from ocr_async.protocol import sniff_image_type

KOREAN = "안녕하세요 세계"
TEXTS = [
    pytest.param("Hello World", id="english"),
    pytest.param(KOREAN, id="korean"),
    pytest.param("stella artois\nbelgium", id="two-lines"),
    pytest.param("영수증 합계 12,000원\n감사합니다 Thank you", id="mixed"),
    pytest.param("", id="empty"),
    pytest.param("emoji 😀 and tab\there", id="non-bmp"),
]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk of a PNG, asserting each CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks = []
    pos = 8
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return chunks


def jpeg_markers(data: bytes) -> list[int]:
    """The markers of the header segments, up to and including SOS."""
    assert data[:2] == b"\xff\xd8"
    markers = []
    pos = 2
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        (length,) = struct.unpack_from(">H", data, pos + 2)
        pos += 2 + length
        if marker == 0xDA:
            return markers


# --- PNG ----------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_png_round_trip(text: str) -> None:
    data = make_png(text)
    assert embedded_text(data) == text
    assert image_size(data) == (64, 32)
    assert sniff_image_type(data) == "png"


def test_png_is_a_valid_grayscale_image() -> None:
    data = make_png(KOREAN, width=5, height=3)
    chunks = png_chunks(data)
    assert [kind for kind, _ in chunks] == [b"IHDR", b"iTXt", b"IDAT", b"IEND"]
    assert chunks[0][1] == struct.pack(">IIBBBBB", 5, 3, 8, 0, 0, 0, 0)
    # Each row: filter byte 0, then one white byte per pixel.
    assert zlib.decompress(chunks[2][1]) == (b"\x00" + b"\xff" * 5) * 3
    keyword, _, rest = chunks[1][1].partition(b"\x00")
    assert keyword == TEXT_KEYWORD.encode()
    assert rest == b"\x00\x00\x00\x00" + KOREAN.encode("utf-8")


@pytest.mark.parametrize(("width", "height"), [(1, 1), (1280, 720), (720, 1280), (2000, 200)])
def test_png_size(width: int, height: int) -> None:
    assert image_size(make_png("x", width, height)) == (width, height)


@pytest.mark.parametrize(("width", "height"), [(0, 1), (1, 0), (-1, 5)])
def test_png_refuses_empty_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="at least 1x1"):
        make_png("x", width, height)


def test_png_truncated_anywhere_never_raises() -> None:
    data = make_png(KOREAN)
    chunks = png_chunks(data)
    text_end = 8 + sum(12 + len(body) for _, body in chunks[:2])  # through iTXt's CRC
    for cut in range(len(data)):
        got = embedded_text(data[:cut])
        assert got == (KOREAN if cut >= text_end else None), cut
        image_size(data[:cut])
    assert image_size(data[:23]) is None
    assert image_size(data[:24]) == (64, 32)


def test_png_text_with_bad_crc_is_ignored() -> None:
    data = bytearray(make_png("secret"))
    data[data.index(b"secret")] ^= 0x20  # flips a letter's case, CRC now wrong
    assert embedded_text(bytes(data)) is None


def itxt_png(body: bytes) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload))
            + kind
            + payload
            + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", idat)
        + chunk(b"iTXt", body)  # after IDAT is allowed too
        + chunk(b"IEND", b"")
    )


def test_png_compressed_itxt_after_idat_is_read() -> None:
    body = b"ocr-async:text\x00\x01\x00ko\x00\x00" + zlib.compress(KOREAN.encode())
    assert embedded_text(itxt_png(body)) == KOREAN


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"Comment\x00\x00\x00\x00\x00hello", id="other-keyword"),
        pytest.param(b"ocr-async:text\x00\x00\x00\x00\x00\xff\xfe", id="not-utf8"),
        pytest.param(b"ocr-async:text\x00\x01\x00\x00\x00not zlib", id="bad-zlib"),
        pytest.param(b"ocr-async:text\x00\x00\x01\x00\x00x", id="bad-method"),
        pytest.param(b"ocr-async:text\x00\x00\x00", id="no-separators"),
        pytest.param(b"ocr-async:text", id="keyword-only"),
    ],
)
def test_png_foreign_or_broken_itxt_reads_as_absent(body: bytes) -> None:
    assert embedded_text(itxt_png(body)) is None


# --- JPEG ---------------------------------------------------------------------


@pytest.mark.parametrize("text", TEXTS)
def test_jpeg_round_trip(text: str) -> None:
    data = make_jpeg(text)
    assert embedded_text(data) == text
    assert image_size(data) == (8, 8)
    assert sniff_image_type(data) == "jpg"


def test_jpeg_layout_comment_right_after_soi() -> None:
    data = make_jpeg(KOREAN)
    payload = b"ocr-async:text=" + KOREAN.encode("utf-8")
    assert data[2:4] == b"\xff\xfe"
    assert data[4:6] == struct.pack(">H", 2 + len(payload))
    assert data[6 : 6 + len(payload)] == payload
    # COM, DQT, DHT x2, SOF0, SOS; then the scan and EOI.
    assert jpeg_markers(data) == [0xFE, 0xDB, 0xC4, 0xC4, 0xC0, 0xDA]
    assert data.endswith(b"\xff\xd9")


@pytest.mark.parametrize(
    ("width", "height", "scan"),
    [
        pytest.param(1, 1, b"\x3f", id="one-block"),
        pytest.param(8, 8, b"\x3f", id="8x8"),
        pytest.param(16, 16, b"\x00", id="four-blocks"),
        pytest.param(17, 8, b"\x03", id="three-blocks"),
        pytest.param(40, 8, b"\x00\x3f", id="five-blocks"),
    ],
)
def test_jpeg_scan_has_two_bits_per_block(width: int, height: int, scan: bytes) -> None:
    data = make_jpeg("", width, height)
    assert image_size(data) == (width, height)
    start = data.index(b"\xff\xda") + 2 + 8
    assert data[start:-2] == scan


@pytest.mark.parametrize(("width", "height"), [(0, 8), (8, 0), (65536, 8)])
def test_jpeg_refuses_bad_size(width: int, height: int) -> None:
    with pytest.raises(ValueError, match=r"1\.\.65535"):
        make_jpeg("x", width, height)


def test_jpeg_refuses_text_longer_than_one_comment() -> None:
    limit = 0xFFFF - 2 - len("ocr-async:text=")
    assert embedded_text(make_jpeg("a" * limit)) == "a" * limit
    with pytest.raises(ValueError, match="comment holds"):
        make_jpeg("a" * (limit + 1))


def test_jpeg_truncated_anywhere_never_raises() -> None:
    data = make_jpeg(KOREAN)
    text_end = 4 + struct.unpack_from(">H", data, 4)[0]
    for cut in range(len(data)):
        got = embedded_text(data[:cut])
        assert got == (KOREAN if cut >= text_end else None), cut
        image_size(data[:cut])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xd8\xff\xfe\x00\x0bComment!!" + b"\xff\xd9", id="foreign-comment"),
        pytest.param(b"\xff\xd8\xff\xfe\x00\x13ocr-async:text=\xff" + b"\xff\xd9", id="not-utf8"),
        pytest.param(b"\xff\xd8\xff\xfe\x00\x01" + b"\x00" * 8, id="bad-length"),
        pytest.param(b"\xff\xd8\x00\x00\x00\x00", id="no-marker"),
        pytest.param(b"\xff\xd8\xff\xda\x00\x02" + b"\x00" * 8, id="sos-first"),
    ],
)
def test_jpeg_foreign_or_broken_headers_read_as_absent(data: bytes) -> None:
    assert embedded_text(data) is None
    assert image_size(data) is None


def test_jpeg_size_skips_fill_bytes_and_restart_markers() -> None:
    data = make_jpeg("x", 300, 200)
    sof = data.index(b"\xff\xc0")
    padded = data[:sof] + b"\xff\xff\xd0" + data[sof:]  # fill byte + RST0
    assert image_size(padded) == (300, 200)


def test_jpeg_height_zero_means_unknown() -> None:
    data = bytearray(make_jpeg("x", 8, 8))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = b"\x00\x00"  # height: defined later by DNL
    assert image_size(bytes(data)) is None


@pytest.mark.skipif(shutil.which("djpeg") is None, reason="libjpeg's djpeg is not installed")
@pytest.mark.parametrize(("width", "height"), [(1, 1), (8, 8), (33, 17), (1280, 720)])
def test_jpeg_decodes_with_libjpeg(tmp_path: Path, width: int, height: int) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(make_jpeg(KOREAN, width, height))
    done = subprocess.run(["djpeg", "-pnm", str(path)], capture_output=True, check=True, timeout=30)
    assert done.stderr == b""  # libjpeg warns on stderr about corrupt data
    header = f"P5\n{width} {height}\n255\n".encode()
    assert done.stdout.startswith(header)
    assert set(done.stdout[len(header) :]) == {128}  # flat mid-grey


# --- either -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"GIF89a\x01\x00\x01\x00", id="gif"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\xff" * 40, id="png-garbage"),
        pytest.param(b"\xff\xd8", id="jpeg-soi-only"),
        pytest.param(b"\xff\xd8\xff" + bytes(range(256)) * 4, id="jpeg-garbage"),
        pytest.param(bytes(range(256)), id="noise"),
    ],
)
def test_garbage_reads_as_nothing(data: bytes) -> None:
    assert embedded_text(data) is None
    assert image_size(data) is None
