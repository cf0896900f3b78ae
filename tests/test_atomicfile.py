from __future__ import annotations

from pathlib import Path

import pytest

from ocr_async.pipeline.atomicfile import AtomicFile


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(params=["unnamed", "named"])
def variant(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways: O_TMPFILE, and the named fallback used where it is missing."""
    if request.param == "named":
        monkeypatch.setattr(AtomicFile, "_open_unnamed", lambda self: None)
    return str(request.param)


def test_commit_replaces_the_target_in_one_step(tmp_path: Path, variant: str) -> None:
    target = tmp_path / "page.html"
    target.write_text("old")
    with AtomicFile(target, encoding="utf-8") as new:
        new.file.write("new ")
        assert target.read_text() == "old"  # readers see the old file until the end
        if variant == "unnamed":
            assert listing(tmp_path) == ["page.html"]  # no name while written
        new.file.write("page")
        new.commit()
    assert target.read_text() == "new page"
    assert listing(tmp_path) == ["page.html"]


def test_a_failure_leaves_the_target_and_nothing_else(tmp_path: Path, variant: str) -> None:
    target = tmp_path / "out.jsonl"
    target.write_bytes(b"old\n")

    def write_half_then_fail() -> None:
        with AtomicFile(target) as new:
            new.file.write(b"half of it")
            raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError):
        write_half_then_fail()
    assert target.read_bytes() == b"old\n"
    assert listing(tmp_path) == ["out.jsonl"]


def test_a_new_target_gets_the_usual_permissions(tmp_path: Path, variant: str) -> None:
    target = tmp_path / "new.txt"
    with AtomicFile(target) as new:
        new.commit()
    reference = tmp_path / "reference.txt"
    reference.write_bytes(b"")
    assert target.stat().st_mode == reference.stat().st_mode
