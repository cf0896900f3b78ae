from __future__ import annotations

from pathlib import Path

import pytest

from ocr_async.models import Endpoint, ErrorInfo, Record
from ocr_async.textdir import TextDirSink, text_path


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("scans/box1/p1.png", "scans/box1/p1.png.txt", id="mirrors-the-tree"),
        pytest.param("p1.jpg", "p1.jpg.txt", id="keeps-the-extension"),
        pytest.param("scan.tiff#page=2", "scan.tiff.page2.txt", id="page"),
        pytest.param(
            "https://img.example.com/a/b.png?sig=x", "img.example.com/a/b.png.txt", id="url"
        ),
        pytest.param("/etc/passwd.png", "etc/passwd.png.txt", id="absolute-path-stays-inside"),
        pytest.param("../../etc/x.png", "__/__/etc/x.png.txt", id="dot-dot-is-replaced"),
        pytest.param("a/../../b.png", "a/__/__/b.png.txt", id="dot-dot-in-the-middle"),
        pytest.param("C:\\scans\\p.png", "C__scans_p.png.txt", id="backslashes-are-names"),
        pytest.param("https://h/..%2F..%2Fx.png", "h/__/__/x.png.txt", id="encoded-dot-dot"),
        pytest.param("scan\\xff.png", "scan_xff.png.txt", id="escaped-undecodable-name"),
    ],
)
def test_text_path_mirrors_and_never_leaves_the_folder(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = text_path(tmp_path, source)
    assert path == tmp_path / expected
    assert path.resolve().is_relative_to(tmp_path.resolve())


class ListSink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    async def write(self, record: Record) -> None:
        self.records.append(record)


def record(source: str, text: str | None, ok: bool = True) -> Record:
    error = None if ok else ErrorInfo(4000003, "bad", True, False)
    return Record(source, ok, Endpoint.GENERAL, 1, 1.0, text, {} if ok else None, error)


async def test_writes_successful_texts_and_passes_every_record_on(tmp_path: Path) -> None:
    inner = ListSink()
    sink = TextDirSink(inner, tmp_path / "texts")
    await sink.write(record("scans/a.png", "안녕\nworld"))
    await sink.write(record("scans/sub/blank.png", ""))  # 4000501: an empty text
    await sink.write(record("scans/bad.png", None, ok=False))
    assert [r.source for r in inner.records] == [
        "scans/a.png",
        "scans/sub/blank.png",
        "scans/bad.png",
    ]
    assert (tmp_path / "texts/scans/a.png.txt").read_text(encoding="utf-8") == "안녕\nworld\n"
    assert (tmp_path / "texts/scans/sub/blank.png.txt").read_text() == ""
    assert not (tmp_path / "texts/scans/bad.png.txt").exists()
    assert sink.written == 2


async def test_a_symlink_inside_the_folder_cannot_lead_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "texts"
    root.mkdir()
    (root / "scans").symlink_to(outside, target_is_directory=True)
    sink = TextDirSink(ListSink(), root)
    await sink.write(record("scans/a.png", "secret"))
    assert list(outside.iterdir()) == []
    assert sink.written == 0  # refused and logged, never written
