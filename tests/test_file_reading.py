"""Reading an image file: every way it can fail is one typed error, and nothing too big is read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest

from ocr_async import precheck
from ocr_async.errors import LocalCheckError, SourceError
from ocr_async.precheck import read_image_file

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(40)) + b"\x00\x00\x00\x00IEND\xaeB`\x82"
LIMIT = 1024


def forbid_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to open a file fail the test."""

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        pytest.fail("the file was opened")

    # The read runs in a worker thread with the builtin open, looked up
    # in the module: shadow it there.
    monkeypatch.setattr(precheck, "open", refuse, raising=False)


async def source_error(path: str | os.PathLike[str]) -> SourceError:
    with pytest.raises(SourceError) as raised:
        await read_image_file(path, LIMIT)
    error = raised.value
    assert error.local is True
    assert error.retryable is False
    assert error.attempts == 0
    return error


async def test_reads_the_file_bytes(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(PNG)
    data = await read_image_file(path, LIMIT)
    assert type(data) is bytes
    assert data == PNG
    assert await read_image_file(str(path), LIMIT) == PNG


async def test_missing_file_is_not_found(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"
    error = await source_error(path)
    assert error.code == "not_found"
    assert str(path) in error.message


async def test_directory_is_not_a_file(tmp_path: Path) -> None:
    error = await source_error(tmp_path)
    assert error.code == "not_a_file"


async def test_symlink_to_a_directory_is_not_a_file(tmp_path: Path) -> None:
    link = tmp_path / "dir-link"
    link.symlink_to(tmp_path, target_is_directory=True)
    assert (await source_error(link)).code == "not_a_file"


async def test_symlink_to_a_file_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "real.png"
    target.write_bytes(PNG)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert await read_image_file(link, LIMIT) == PNG


async def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "dangling.png"
    link.symlink_to(tmp_path / "was-deleted.png")
    error = await source_error(link)
    assert error.code == "broken_symlink"
    assert "dangling.png" in error.message


async def test_symlink_loop(tmp_path: Path) -> None:
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    a.symlink_to(b)
    b.symlink_to(a)
    assert (await source_error(a)).code == "symlink_loop"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a mode-000 file anyway"
)
async def test_unreadable_file_is_permission_denied(tmp_path: Path) -> None:
    path = tmp_path / "locked.png"
    path.write_bytes(PNG)
    path.chmod(0)
    try:
        assert (await source_error(path)).code == "permission_denied"
    finally:
        path.chmod(0o600)


async def test_permission_error_on_open_is_permission_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same mapping as above, reachable when the tests run as root.
    path = tmp_path / "locked.png"
    path.write_bytes(PNG)

    def denied(*args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(precheck, "open", denied, raising=False)
    assert (await source_error(path)).code == "permission_denied"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
async def test_fifo_is_not_a_file_and_never_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    # Opening a FIFO with no writer would block forever.
    forbid_open(monkeypatch)
    assert (await source_error(fifo)).code == "not_a_file"


async def test_oversize_file_is_refused_from_its_size_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(PNG + bytes(LIMIT))
    forbid_open(monkeypatch)
    with pytest.raises(LocalCheckError) as raised:
        await read_image_file(path, LIMIT)
    assert raised.value.code == 4131000
    assert raised.value.local is True
    assert raised.value.attempts == 0
    assert str(len(PNG) + LIMIT) in raised.value.message
    assert str(LIMIT) in raised.value.message


async def test_exactly_max_bytes_is_read(tmp_path: Path) -> None:
    path = tmp_path / "exact.png"
    data = PNG + bytes(LIMIT - len(PNG))
    path.write_bytes(data)
    assert await read_image_file(path, LIMIT) == data


async def test_one_byte_over_max_bytes_is_refused_without_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "over.png"
    path.write_bytes(PNG + bytes(LIMIT + 1 - len(PNG)))
    forbid_open(monkeypatch)
    with pytest.raises(LocalCheckError) as raised:
        await read_image_file(path, LIMIT)
    assert raised.value.code == 4131000


def stale_size(monkeypatch: pytest.MonkeyPatch, path: Path, size: int) -> None:
    """``os.stat`` tells ``path``'s size as it was a moment ago: ``size``."""
    real_stat = os.stat

    def stale_stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = real_stat(target, *args, **kwargs)
        if os.fspath(target) != os.fspath(path):
            return info
        fields = list(info[:10])
        fields[6] = size
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", stale_stat)


async def test_file_that_grew_after_stat_is_refused_on_what_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.png"
    path.write_bytes(PNG + bytes(2 * LIMIT))
    stale_size(monkeypatch, path, 10)
    with pytest.raises(LocalCheckError) as raised:
        await read_image_file(path, LIMIT)
    assert raised.value.code == 4131000


async def test_file_that_grew_after_stat_within_the_limit_is_read_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The read asks for the size the stat told, then goes on to the end.
    path = tmp_path / "growing.png"
    data = PNG + bytes(LIMIT // 2) + b"tail"
    path.write_bytes(data)
    stale_size(monkeypatch, path, 10)
    monkeypatch.setattr(precheck, "_CHUNK", 7)  # the rest in many reads
    assert await read_image_file(path, LIMIT) == data


async def test_undecodable_name_is_shown_escaped_in_errors(tmp_path: Path) -> None:
    name = os.fsdecode(b"scan\xff.png")
    error = await source_error(tmp_path / name)
    assert error.code == "not_found"
    assert "scan\\xff.png" in error.message
    error.message.encode("utf-8")  # always valid UTF-8
    str(error).encode("utf-8")
