from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from ocr_async.models import ImageUrl, SourceItem
from ocr_async.pipeline.resume import NotAnOutputError, load_resume_index, record_key


def line(source: str, ok: bool = True, retryable: bool = False) -> str:
    record: dict[str, Any] = {"source": source, "ok": ok, "text": "t" if ok else None}
    record["error"] = (
        None if ok else {"code": 1, "message": "m", "local": False, "retryable": retryable}
    )
    return json.dumps(record) + "\n"


def test_a_record_with_an_id_is_known_by_its_id_as_its_item_is(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    signed = "https://h/a.png?sig=1"
    pages = [
        json.dumps(
            {**json.loads(line(f"scan.tiff#page={n}")), "id": "doc", "transform": {"page": n}}
        )
        + "\n"
        for n in (1, 2)
    ]
    with_id = json.dumps({**json.loads(line(signed)), "id": "a"}) + "\n"
    out.write_text(with_id + line("b.png") + "".join(pages))
    index = load_resume_index(str(out))
    resigned = SourceItem("https://h/a.png?sig=2", ImageUrl("https://h/a.png?sig=2"), id="a")
    assert resigned.key in index.done  # a re-signed URL is still its row
    assert "a" not in index.done  # an id never meets a path called the same
    assert signed not in index.done
    assert "b.png" in index.done
    assert "\0doc#page=1" in index.done
    assert "\0doc#page=2" in index.done
    assert record_key({"source": "x", "id": "d", "transform": None}) == "\0d"


def test_missing_file_is_an_empty_index(tmp_path: Path) -> None:
    index = load_resume_index(str(tmp_path / "none.jsonl"))
    assert (index.kept, len(index.done)) == (0, 0)


def test_done_sources_are_ok_and_final_failures(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(line("a") + line("b", ok=False) + line("c", ok=False, retryable=True))
    before = out.read_bytes()
    index = load_resume_index(str(out))
    assert {"a", "b", "c"} == {s for s in ("a", "b", "c", "d") if s in index.done}
    assert (index.kept, index.removed_broken, index.removed_for_retry) == (3, 0, 0)
    assert index.failed_kept == 2
    assert out.read_bytes() == before  # nothing to mend: untouched


def test_torn_last_line_is_truncated_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    good = line("a") + line("b")
    out.write_text(good + line("c")[:17])  # kill -9 mid-write
    index = load_resume_index(str(out))
    assert out.read_text() == good
    assert "c" not in index.done
    assert (index.kept, index.removed_broken) == (2, 1)


def test_complete_json_without_newline_counts_as_torn(tmp_path: Path) -> None:
    # The writer always ends a record with a newline; without it the line may
    # be a prefix that happens to parse (a number, say) or a record whose
    # newline never made it: either way it is sent again.
    out = tmp_path / "out.jsonl"
    out.write_text(line("a") + line("b").rstrip("\n"))
    index = load_resume_index(str(out))
    assert out.read_text() == line("a")
    assert "b" not in index.done


def test_retry_failed_removes_only_retryable_failures(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(
        line("a")
        + line("limited", ok=False, retryable=True)
        + line("final", ok=False, retryable=False)
        + line("z")
        + line("torn")[:20]
    )
    index = load_resume_index(str(out), retry_failed=True)
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["a", "final", "z"]
    assert "limited" not in index.done
    assert "final" in index.done
    assert (index.kept, index.removed_broken, index.removed_for_retry) == (3, 1, 1)
    assert index.failed_kept == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_record_longer_than_a_read_chunk_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    big = json.dumps({"source": "big", "ok": True, "text": "w " * 200_000, "error": None})
    out.write_text(big + "\n" + line("b"))
    index = load_resume_index(str(out))
    assert "big" in index.done
    assert "b" in index.done
    assert index.removed_broken == 0


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b'{"sou', id="cut-inside-the-first-key"),
        pytest.param(b'{"source":"c","ok":tr', id="cut-inside-a-value"),
        pytest.param(b'{"source":"c","ok"\0\0\0\0', id="zeros-after-a-power-cut"),
        pytest.param(b"\0" * 4096, id="only-zeros"),
    ],
)
def test_torn_tails_that_a_crash_leaves_are_cut_off(tmp_path: Path, tail: bytes) -> None:
    out = tmp_path / "out.jsonl"
    good = (line("a") + line("b")).encode()
    out.write_bytes(good + tail)
    index = load_resume_index(str(out))
    assert out.read_bytes() == good
    assert (index.kept, index.removed_broken) == (2, 1)


README = b"# My project\n\nSome notes about it.\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
ANOTHER_JSONL = b'{"file": "a.png", "text": "hi"}\n{"file": "b.png", "text": "there"}\n'


@pytest.mark.parametrize(
    ("content", "at_line"),
    [
        pytest.param(README, 1, id="readme"),
        pytest.param(PNG, 1, id="png"),
        pytest.param(b"".join(b"log line %d\n" % n for n in range(100_000)), 1, id="100k-lines"),
        pytest.param(b"x" * 5_000_000, 1, id="one-long-line-no-newline"),
        pytest.param(ANOTHER_JSONL, 1, id="another-programs-jsonl"),
        pytest.param(b'{"source": "a", "ok": "yes", "error": null}\n', 1, id="ok-not-boolean"),
        pytest.param(line("a").encode() + b"[1, 2]\n", 2, id="array"),
        pytest.param(line("a").encode() + b"\n" + line("b").encode(), 2, id="blank-line"),
        pytest.param(line("a").encode() + b"garbage\n" + line("b").encode(), 2, id="garbage"),
        pytest.param(line("a").encode() + b'{"source": "tor' + b"\n", 2, id="torn-mid-file"),
        pytest.param(line("a").encode() + b"hello", 2, id="foreign-last-line"),
    ],
)
@pytest.mark.parametrize("retry_failed", [False, True], ids=["resume", "retry-failed"])
def test_a_file_that_is_not_our_output_is_refused_and_left_byte_for_byte(
    tmp_path: Path, content: bytes, at_line: int, retry_failed: bool
) -> None:
    out = tmp_path / "notes.jsonl"
    # A retryable failure first: with --retry-failed that would mean a rewrite.
    out.write_bytes(line("x", ok=False, retryable=True).encode() + content)
    before = out.read_bytes()
    refused = rf"notes.jsonl is not an ocr-async output: line {at_line + 1} "
    with pytest.raises(NotAnOutputError, match=refused):
        load_resume_index(str(out), retry_failed=retry_failed)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.jsonl"]


@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_a_rewrite_keeps_the_mode(tmp_path: Path, mode: int) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(line("a") + line("b", ok=False, retryable=True))
    out.chmod(mode)
    load_resume_index(str(out), retry_failed=True)
    assert out.read_text() == line("a")
    assert stat.S_IMODE(out.stat().st_mode) == mode


def test_a_rewrite_writes_through_a_symlinked_output(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "records.jsonl"
    target.write_text(line("a") + line("b", ok=False, retryable=True))
    link = tmp_path / "out.jsonl"
    link.symlink_to(target)
    index = load_resume_index(str(link), retry_failed=True)
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text() == line("a")
    assert "a" in index.done
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["records.jsonl"]


def test_a_failed_rewrite_leaves_the_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text(line("a") + line("b", ok=False, retryable=True))
    before = out.read_bytes()

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        load_resume_index(str(out), retry_failed=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
