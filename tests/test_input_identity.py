"""What an input is called: display and source paths reverse each other; tidy paths."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from ocr_async.inputs import as_source_item, display_path, is_url, source_path, tidy_path
from ocr_async.models import ImageBytes, ImageFile, ImageUrl, SourceItem


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        pytest.param(os.fsdecode(b"scan\xff.png"), "scan\\xff.png", id="undecodable-byte"),
        pytest.param(os.fsdecode(b"dir\xfe/p\xc3\xa4ge.png"), "dir\\xfe/p\u00e4ge.png", id="mixed"),
        pytest.param("scan.png", "scan.png", id="ascii"),
        pytest.param("scans/2026/page-01.jpg", "scans/2026/page-01.jpg", id="relative"),
        pytest.param("스캔 문서.png", "스캔 문서.png", id="korean"),
        pytest.param(Path("a/b.png"), "a/b.png", id="Path"),
        pytest.param("C:\\scans\\p.png", "C:\\\\scans\\\\p.png", id="backslash-doubled"),
        pytest.param("\\xff.png", "\\\\xff.png", id="a-name-that-looks-escaped"),
    ],
)
def test_display_path(path: str | os.PathLike[str], shown: str) -> None:
    text = display_path(path)
    assert text == shown
    text.encode("utf-8")


def test_display_path_is_stable() -> None:
    name = os.fsdecode(b"scan\xff.png")
    assert display_path(name) == display_path(name)
    assert display_path(name) != display_path(os.fsdecode(b"scan\xfe.png"))


def test_display_path_is_injective_and_source_path_reverses_it() -> None:
    raw_names = [
        b"\xff.png",  # the byte 0xFF
        b"\\xff.png",  # the four characters \xff
        b"\\\xff.png",  # a backslash, then the byte
        b"\\\\xff.png",  # two backslashes, then xff
        b"a\\b.png",
        b"\xc3\xa4.png",  # valid UTF-8
        b"\xc3.png",  # half of it
        b"dir\xfe/x\\x41.png",
    ]
    rng = random.Random(8)
    alphabet = b"\\x0aF/.\xff\xc3\xa4-"
    raw_names += [
        bytes(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(2000)
    ]
    raw_names = list(dict.fromkeys(raw_names))
    shown = [display_path(os.fsdecode(raw)) for raw in raw_names]
    assert len(set(shown)) == len(raw_names)  # never two paths for one text
    for raw, text in zip(raw_names, shown, strict=True):
        text.encode("utf-8")
        assert os.fsencode(source_path(text)) == raw


@pytest.mark.parametrize(
    ("given", "tidy"),
    [
        pytest.param("small/a.png", "small/a.png", id="plain"),
        pytest.param("./small/a.png", "small/a.png", id="dot-slash"),
        pytest.param("small//./a.png", "small/a.png", id="double-slash-and-dot"),
        pytest.param("small/", "small", id="trailing-slash"),
        pytest.param("./", ".", id="dot-slash-alone"),
        pytest.param(".", ".", id="dot"),
        pytest.param("/abs//x/./y.png", "/abs/x/y.png", id="absolute"),
        pytest.param("//x.png", "/x.png", id="double-root"),
        pytest.param("../up/./a.png", "../up/a.png", id="dotdot-kept"),
        pytest.param("a/../b.png", "a/../b.png", id="dotdot-inside-kept"),
    ],
)
def test_tidy_path(given: str, tidy: str) -> None:
    assert tidy_path(given) == tidy


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("scan.png", SourceItem("scan.png", ImageFile("scan.png")), id="path"),
        pytest.param(Path("a/b.png"), SourceItem("a/b.png", ImageFile(Path("a/b.png"))), id="Path"),
        pytest.param(
            "https://h.test/a.png?s=1",
            SourceItem("https://h.test/a.png?s=1", ImageUrl("https://h.test/a.png?s=1")),
            id="url",
        ),
        pytest.param(b"\x89PNG", SourceItem("image", ImageBytes(b"\x89PNG")), id="bytes"),
        pytest.param(
            bytearray(b"xy"), SourceItem("image", ImageBytes(b"xy")), id="bytearray-copied"
        ),
        pytest.param(
            memoryview(b"xy"), SourceItem("image", ImageBytes(b"xy")), id="memoryview-copied"
        ),
        pytest.param(ImageFile("a"), SourceItem("a", ImageFile("a")), id="ImageFile-kept"),
        pytest.param(ImageUrl("u://x"), SourceItem("u://x", ImageUrl("u://x")), id="ImageUrl-kept"),
        pytest.param(
            ImageBytes(b"xy", "named"), SourceItem("named", ImageBytes(b"xy", "named")), id="named"
        ),
        pytest.param(
            os.fsdecode(b"scan\xff.png"),
            SourceItem("scan\\xff.png", ImageFile(os.fsdecode(b"scan\xff.png"))),
            id="undecodable-name-shown-escaped",
        ),
    ],
)
def test_as_source_item_names_every_kind_of_input(given: object, expected: SourceItem) -> None:
    item = as_source_item(given)  # type: ignore[arg-type]
    assert item == expected
    assert type(item.image) is type(expected.image)
    if isinstance(item.image, ImageBytes):
        assert type(item.image.data) is bytes


def test_unnamed_bytes_are_numbered_in_a_stream_and_named_ones_kept() -> None:
    assert as_source_item(b"xy", 3).source == "bytes:3"
    assert as_source_item(ImageBytes(b"xy"), 4).source == "bytes:4"
    assert as_source_item(ImageBytes(b"xy", "mine"), 5).source == "mine"


def test_a_source_item_is_kept_as_it_is() -> None:
    item = SourceItem("x", ImageUrl("https://h.test/x"))
    assert as_source_item(item) is item


def test_other_types_are_refused() -> None:
    with pytest.raises(TypeError, match="cannot recognize a int"):
        as_source_item(42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("https://h/a.png", True, id="https"),
        pytest.param("ftp://h/a.png", True, id="other-scheme-is-still-a-url"),
        pytest.param("scans/a.png", False, id="relative-path"),
        pytest.param("/abs/a.png", False, id="absolute-path"),
        pytest.param("C:/x.png", False, id="windows-like"),
    ],
)
def test_is_url(text: str, expected: bool) -> None:
    assert is_url(text) is expected
