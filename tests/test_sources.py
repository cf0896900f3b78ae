from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ocr_async.models import ImageFile, ImageUrl, SourceItem
from ocr_async.pipeline.sources import (
    CONVERTIBLE_EXTENSIONS,
    IMAGE_EXTENSIONS,
    MAX_URL_LINE,
    UrlListError,
    iter_inputs,
    iter_url_lines,
    iter_url_list,
)


async def collect(items: AsyncIterator[SourceItem]) -> list[SourceItem]:
    return [item async for item in items]


async def collect_into(items: AsyncIterator[SourceItem], seen: list[str]) -> None:
    """Append each source to ``seen`` as it comes, so those before an error stay."""
    async for item in items:
        seen.append(item.source)


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_folder_walk_is_recursive_sorted_and_filters_by_extension(tmp_path: Path) -> None:
    touch(tmp_path / "b.png")
    touch(tmp_path / "a.JPG")
    touch(tmp_path / "sub" / "c.jpeg")
    touch(tmp_path / "sub" / "deeper" / "d.png")
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "sub" / "scan.tiff")
    touch(tmp_path / "sub" / "book.PDF")
    skipped: list[tuple[str, str]] = []

    items = await collect(iter_inputs([str(tmp_path)], on_skip=lambda p, r: skipped.append((p, r))))

    # PDFs are taken without --convert: each page becomes its own record.
    assert [item.source for item in items] == [
        str(tmp_path / "a.JPG"),
        str(tmp_path / "b.png"),
        str(tmp_path / "sub" / "book.PDF"),
        str(tmp_path / "sub" / "c.jpeg"),
        str(tmp_path / "sub" / "deeper" / "d.png"),
    ]
    assert all(isinstance(item.image, ImageFile) for item in items)
    assert sorted(p for p, _ in skipped) == [
        str(tmp_path / "notes.txt"),
        str(tmp_path / "sub" / "scan.tiff"),
    ]
    assert {reason for _, reason in skipped} == {"not a .jpeg, .jpg, .pdf or .png file"}


async def test_folder_walk_takes_the_extensions_it_is_given(tmp_path: Path) -> None:
    touch(tmp_path / "a.png")
    touch(tmp_path / "scan.TIFF")
    touch(tmp_path / "b.bmp")
    touch(tmp_path / "notes.txt")
    items = await collect(
        iter_inputs([str(tmp_path)], extensions=IMAGE_EXTENSIONS | CONVERTIBLE_EXTENSIONS)
    )
    assert [Path(item.source).name for item in items] == ["a.png", "b.bmp", "scan.TIFF"]


async def test_source_keeps_the_folder_as_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    touch(tmp_path / "scans" / "p1.png")
    monkeypatch.chdir(tmp_path)
    items = await collect(iter_inputs(["scans"]))
    assert [item.source for item in items] == [os.path.join("scans", "p1.png")]


async def test_symlink_loop_is_reported_once_and_walk_ends(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "x.png")
    (tmp_path / "a" / "back").symlink_to(tmp_path, target_is_directory=True)
    skipped: list[tuple[str, str]] = []

    items = await collect(iter_inputs([str(tmp_path)], on_skip=lambda p, r: skipped.append((p, r))))

    assert [item.source for item in items] == [str(tmp_path / "a" / "x.png")]
    assert skipped == [
        (str(tmp_path / "a" / "back"), "symlink loop: directory already being walked")
    ]


async def test_broken_symlink_named_like_an_image_is_still_an_input(tmp_path: Path) -> None:
    (tmp_path / "gone.png").symlink_to(tmp_path / "missing.png")
    items = await collect(iter_inputs([str(tmp_path)]))
    assert [item.source for item in items] == [str(tmp_path / "gone.png")]


@pytest.mark.skipif(sys.platform != "linux", reason="needs a filesystem that allows any bytes")
async def test_undecodable_name_gets_an_escaped_source(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/scan\xff.png"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    os.close(fd)
    items = await collect(iter_inputs([str(tmp_path)]))
    assert [item.source for item in items] == [f"{tmp_path}/scan\\xff.png"]
    image = items[0].image
    assert isinstance(image, ImageFile)
    assert os.fsencode(image.path) == raw  # the real name is kept for opening


async def test_files_urls_and_missing_paths_are_each_one_input(tmp_path: Path) -> None:
    touch(tmp_path / "one.bin")
    items = await collect(
        iter_inputs([str(tmp_path / "one.bin"), "https://h/x.png", str(tmp_path / "nope.png")])
    )
    assert [(item.source, type(item.image)) for item in items] == [
        (str(tmp_path / "one.bin"), ImageFile),
        ("https://h/x.png", ImageUrl),
        (str(tmp_path / "nope.png"), ImageFile),
    ]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can list any directory")
async def test_unlistable_directory_is_reported(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    touch(locked / "x.png")
    locked.chmod(0)
    skipped: list[tuple[str, str]] = []
    try:
        items = await collect(
            iter_inputs([str(tmp_path)], on_skip=lambda p, r: skipped.append((p, r)))
        )
    finally:
        locked.chmod(0o755)
    assert items == []
    assert skipped[0][0] == str(locked)
    assert skipped[0][1].startswith("cannot list directory")


def test_url_lines_skip_blanks_and_comments() -> None:
    lines = ["https://h/a.png\n", "\n", "   \n", "# a comment\n", "  https://h/b.png  \n"]
    assert [item.source for item in iter_url_lines(lines)] == [
        "https://h/a.png",
        "https://h/b.png",
    ]


async def test_url_list_file_across_chunk_boundaries(tmp_path: Path) -> None:
    # Long enough to span several 64 KiB chunks, with CRLF endings and no
    # newline at the end: no URL may be split or lost.
    urls = [f"https://example.test/img/{n:06d}.png" for n in range(5000)]
    path = tmp_path / "urls.txt"
    path.write_bytes("\r\n".join(urls).encode())
    items = await collect(iter_url_list(str(path)))
    assert [item.source for item in items] == urls
    assert all(isinstance(item.image, ImageUrl) for item in items)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbfhttps://h/1.png\nhttps://h/2.png\n", id="bom-lf"),
        pytest.param(b"\xef\xbb\xbfhttps://h/1.png\r\nhttps://h/2.png", id="bom-crlf"),
        pytest.param(b"https://h/1.png\rhttps://h/2.png\r", id="bare-cr"),
        pytest.param(b"# list\rhttps://h/1.png\r\n\rhttps://h/2.png\n", id="mixed"),
    ],
)
async def test_url_list_with_bom_and_any_line_ending(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "urls.txt"
    path.write_bytes(data)
    items = await collect(iter_url_list(str(path)))
    assert [item.source for item in items] == ["https://h/1.png", "https://h/2.png"]


async def test_url_list_crlf_split_across_chunks_is_one_line_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ocr_async.pipeline.sources as sources

    chunks = [b"https://h/1.png\r", b"\nhttps://h/2.png\r", b"\n", b"x" * (MAX_URL_LINE + 1)]

    async def fake_chunks(name: str) -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    monkeypatch.setattr(sources, "_read_chunks", fake_chunks)
    seen: list[str] = []
    with pytest.raises(UrlListError, match="line 3 is longer"):
        await collect_into(iter_url_list("urls.txt"), seen)
    assert seen == ["https://h/1.png", "https://h/2.png"]


async def test_a_line_over_the_limit_is_caught_where_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ocr_async.pipeline.sources as sources

    async def fake_chunks(name: str) -> AsyncIterator[bytes]:
        yield b"x" * MAX_URL_LINE  # at the limit, not yet over it
        yield b"yz\nhttps://h/2.png\n"

    monkeypatch.setattr(sources, "_read_chunks", fake_chunks)
    with pytest.raises(UrlListError, match="line 1 is longer"):
        await collect(iter_url_list("urls.txt"))


async def test_a_monstrous_line_stops_the_list_after_a_bounded_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 40 MB on one line took 26 s (quadratic); it is now refused after
    # reading just past the line limit, whatever the file's size.
    import ocr_async.pipeline.sources as sources

    path = tmp_path / "urls.txt"
    with path.open("wb") as handle:
        handle.write(b"https://h/1.png\n")
        handle.truncate(40 * 1024 * 1024)  # then 40 MB of NULs, no line break
    real = sources._read_chunks
    read: list[int] = []

    async def counting(name: str) -> AsyncIterator[bytes]:
        async for chunk in real(name):
            read.append(len(chunk))
            yield chunk

    monkeypatch.setattr(sources, "_read_chunks", counting)
    seen: list[str] = []
    with pytest.raises(UrlListError) as raised:
        await collect_into(iter_url_list(str(path)), seen)
    assert seen == ["https://h/1.png"]
    assert f"the URL list {str(path)!r}: line 2 is longer than {MAX_URL_LINE} bytes" in str(
        raised.value
    )
    assert sum(read) <= MAX_URL_LINE + 2 * 64 * 1024


async def test_url_list_of_endless_zeros_ends() -> None:
    with pytest.raises(UrlListError, match="line 1 is longer"):
        await asyncio.wait_for(collect(iter_url_list("/dev/zero")), timeout=30)


async def test_url_list_line_at_the_limit_is_still_read(tmp_path: Path) -> None:
    url = "https://h/" + "a" * (MAX_URL_LINE - len("https://h/"))
    path = tmp_path / "urls.txt"
    path.write_text(f"{url}\nhttps://h/2.png", encoding="utf-8")
    items = await collect(iter_url_list(str(path)))
    assert [item.source for item in items] == [url, "https://h/2.png"]


async def test_url_list_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await collect(iter_url_list(str(tmp_path / "none.txt")))


async def test_url_list_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b"https://h/1.png\n# skip\nhttps://h/2.png")
    os.close(write_end)

    class FakeStdin:
        def fileno(self) -> int:
            return read_end

    monkeypatch.setattr(sys, "stdin", FakeStdin())
    try:
        items = await asyncio.wait_for(collect(iter_url_list("-")), timeout=5)
    finally:
        os.close(read_end)
    assert [item.source for item in items] == ["https://h/1.png", "https://h/2.png"]


async def test_walk_is_lazy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Taking the first item must not require listing every directory.
    for n in range(50):
        touch(tmp_path / f"d{n:02d}" / "x.png")
    listed: list[str] = []
    import ocr_async.pipeline.sources as sources

    real = sources._list_directory

    def spy(path: str) -> tuple[list[tuple[str, bool]], OSError | None]:
        listed.append(path)
        return real(path)

    monkeypatch.setattr(sources, "_list_directory", spy)
    walker = iter_inputs([str(tmp_path)])
    first = await anext(walker)
    await walker.aclose()  # type: ignore[attr-defined]
    assert first.source == str(tmp_path / "d00" / "x.png")
    assert len(listed) == 2  # the root and d00 only
