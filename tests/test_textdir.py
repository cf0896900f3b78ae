from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes import ListSink

from ocr_async.models import Endpoint, ErrorInfo, Record
from ocr_async.outputs.textdir import TextDirSink, text_path


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
        pytest.param("../../etc/x.png", "%2E%2E/%2E%2E/etc/x.png.txt", id="dot-dot-is-escaped"),
        pytest.param("a/../../b.png", "a/%2E%2E/%2E%2E/b.png.txt", id="dot-dot-in-the-middle"),
        pytest.param("C:\\scans\\p.png", "C%3A%5Cscans%5Cp.png.txt", id="backslashes-are-names"),
        pytest.param(
            "https://h/..%2F..%2Fx.png", "h/%2E%2E/%2E%2E/x.png.txt", id="encoded-dot-dot"
        ),
        pytest.param("scan\\xff.png", "scan%5Cxff.png.txt", id="escaped-undecodable-name"),
        pytest.param("a?b.png", "a%3Fb.png.txt", id="question-mark"),
        pytest.param("a%3Fb.png", "a%253Fb.png.txt", id="percent-is-escaped-too"),
        pytest.param("notes. ", "notes%2E%20.txt", id="trailing-dot-and-space"),
        pytest.param("스캔/문서.png", "스캔/문서.png.txt", id="korean-kept"),
    ],
)
def test_text_path_mirrors_and_never_leaves_the_folder(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = text_path(tmp_path, source)
    assert path == tmp_path / expected
    assert path.resolve().is_relative_to(tmp_path.resolve())


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


def test_names_that_used_to_meet_get_their_own_files(tmp_path: Path) -> None:
    sources = [
        "a?b.png", "a_b.png", "a*b.png", "a%3Fb.png",
        "scan\\xff.png", "scan\\\\xff.png", "..", "%2E%2E", "x.", "x",
    ]  # fmt: skip
    paths = {text_path(tmp_path, s) for s in sources}
    assert len(paths) == len(sources)


async def test_a_question_mark_and_an_underscore_write_two_files(tmp_path: Path) -> None:
    sink = TextDirSink(ListSink(), tmp_path)
    await sink.write(record("a?b.png", "question"))
    await sink.write(record("a_b.png", "underscore"))
    assert (tmp_path / "a%3Fb.png.txt").read_text() == "question\n"
    assert (tmp_path / "a_b.png.txt").read_text() == "underscore\n"
    assert (sink.written, sink.failed) == (2, 0)


async def test_two_sources_on_one_file_keep_the_first_and_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inner = ListSink()
    sink = TextDirSink(inner, tmp_path)
    await sink.write(record("https://h/x.png", "from the url"))
    await sink.write(record("h/x.png", "from the file"))
    await sink.write(record("./h/./x.png", "the file again"))
    assert len(inner.records) == 3  # every record passed on
    assert (tmp_path / "h/x.png.txt").read_text() == "from the url\n"
    assert (sink.written, sink.failed) == (1, 2)
    assert "text of h/x.png not written" in caplog.text
    assert "another input's file was written to this name earlier in this run" in caplog.text


async def test_a_text_that_cannot_be_written_never_stops_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "texts"
    root.mkdir()
    (root / "file").write_text("a file where a folder would go")
    (root / "folder.png.txt").mkdir()  # a folder where a file would go
    os.mkfifo(root / "pipe.png.txt")
    inner = ListSink()
    sink = TextDirSink(inner, root)
    await sink.write(record("x" * 300 + ".png", "long"))
    await sink.write(record("file/a.png", "clash"))
    await sink.write(record("folder.png", "clash"))
    await sink.write(record("pipe.png", "no reader"))
    await sink.write(record("fine.png", "fine"))
    assert len(inner.records) == 5
    assert (root / "fine.png.txt").read_text() == "fine\n"
    assert (sink.written, sink.failed) == (1, 4)
    for why in (
        "the name is too long",
        "a file is in the way of a folder",
        "a folder is in the way of the file",
        "a pipe or device is in the way of the file",
    ):
        assert why in caplog.text
    assert "4 not written" in sink.describe()


async def test_a_symlink_inside_the_folder_is_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png.txt").write_text("keep me")
    root = tmp_path / "texts"
    root.mkdir()
    (root / "scans").symlink_to(outside, target_is_directory=True)
    (root / "secret.png.txt").symlink_to(outside / "secret.png.txt")
    sink = TextDirSink(ListSink(), root)
    await sink.write(record("scans/deeper/a.png", "would make a folder outside"))
    await sink.write(record("scans/b.png", "would write outside"))
    await sink.write(record("secret.png", "would overwrite through the link"))
    assert sorted(p.name for p in outside.iterdir()) == ["secret.png.txt"]
    assert (outside / "secret.png.txt").read_text() == "keep me"
    assert (sink.written, sink.failed) == (0, 3)


async def test_a_text_from_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "a.png.txt").write_text("an old, longer text\n")
    sink = TextDirSink(ListSink(), tmp_path)
    await sink.write(record("a.png", "new"))
    assert (tmp_path / "a.png.txt").read_text() == "new\n"
