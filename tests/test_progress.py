"""The progress bar: its total counts what the run will take, and it draws only when asked."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from ocr_async.models import Endpoint, ErrorInfo, Record
from ocr_async.outputs.progress import Progress, count_images
from ocr_async.pipeline.sources import CONVERTIBLE_EXTENSIONS, IMAGE_EXTENSIONS, iter_inputs


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def tree(root: Path) -> Path:
    """Images in a folder, a symlinked folder, a symlink loop, and other files."""
    touch(root / "scans" / "a.png")
    touch(root / "scans" / "b.JPG")
    touch(root / "scans" / "notes.txt")
    touch(root / "scans" / "fax.tiff")
    touch(root / "elsewhere" / "c.jpeg")
    touch(root / "elsewhere" / "deeper" / "d.png")
    (root / "scans" / "linked").symlink_to(root / "elsewhere", target_is_directory=True)
    (root / "elsewhere" / "loop").symlink_to(root / "scans", target_is_directory=True)
    return root / "scans"


async def taken(inputs: list[str], extensions: frozenset[str]) -> int:
    return len([item async for item in iter_inputs(inputs, extensions=extensions)])


@pytest.mark.parametrize(
    "extensions",
    [IMAGE_EXTENSIONS, IMAGE_EXTENSIONS | CONVERTIBLE_EXTENSIONS],
    ids=["images", "with-convert"],
)
async def test_the_total_is_what_the_run_takes(tmp_path: Path, extensions: frozenset[str]) -> None:
    scans = tree(tmp_path)
    inputs = [str(scans), "https://h.test/x.png", str(tmp_path / "missing.png")]
    total = await asyncio.to_thread(count_images, inputs, extensions)
    # One walk, one set of rules: symlinked folders followed, a loop cut once.
    assert total == await taken(inputs, extensions)
    # a.png, b.JPG, and through the link c.jpeg and deeper/d.png; the loop
    # back to scans/ is cut; the URL and the missing file are one each.
    assert total == (6 if extensions == IMAGE_EXTENSIONS else 7)


def test_a_pdf_counts_its_pages_and_a_broken_one_counts_once(tmp_path: Path) -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    from pdfs import text_pdf

    (tmp_path / "book.pdf").write_bytes(text_pdf([("P", str(n)) for n in range(4)]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 no more")
    touch(tmp_path / "a.png")
    # The four records of book.pdf, broken.pdf's error record, a.png.
    assert count_images([str(tmp_path)]) == 6
    assert count_images([str(tmp_path / "book.pdf")]) == 4


def record(ok: bool) -> Record:
    error = None if ok else ErrorInfo(4000003, "type", True, False)
    return Record("s", ok, Endpoint.GENERAL, 1, 1.0, "t" if ok else None, None, error)


def test_a_disabled_bar_draws_nothing() -> None:
    stream = io.StringIO()
    progress = Progress(enabled=False, stream=stream)
    progress.update(record(True))
    progress.close()
    assert (progress.enabled, stream.getvalue()) == (False, "")


async def test_a_disabled_bar_does_not_count_in_the_background(tmp_path: Path) -> None:
    progress = Progress(enabled=False, stream=io.StringIO())
    progress.count_in_background([str(tree(tmp_path))])
    assert progress._counter is None
    progress.close()


async def test_an_enabled_bar_counts_records_and_failures(tmp_path: Path) -> None:
    stream = io.StringIO()
    progress = Progress(enabled=True, stream=stream)
    progress.count_in_background([str(tree(tmp_path))])
    assert progress._counter is not None
    await progress._counter
    progress.update(record(True))
    progress.update(record(False))
    progress.close()  # draws the final state
    drawn = stream.getvalue()
    progress.close()  # twice is fine
    progress.update(record(True))  # after closing: ignored
    assert "2/4" in drawn  # two records of the four the walk found
    assert "failed=1" in drawn
    assert stream.getvalue() == drawn
