from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ocr_async.resume import load_resume_index


def line(source: str, ok: bool = True, retryable: bool = False) -> str:
    record: dict[str, Any] = {"source": source, "ok": ok, "text": "t" if ok else None}
    record["error"] = (
        None if ok else {"code": 1, "message": "m", "local": False, "retryable": retryable}
    )
    return json.dumps(record) + "\n"


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
        + "garbage in the middle\n"
        + line("z")
    )
    index = load_resume_index(str(out), retry_failed=True)
    assert [json.loads(x)["source"] for x in out.read_text().splitlines()] == ["a", "final", "z"]
    assert "limited" not in index.done
    assert "final" in index.done
    assert (index.kept, index.removed_broken, index.removed_for_retry) == (3, 1, 1)
    assert index.failed_kept == 1
    assert not (tmp_path / "out.jsonl.resume-tmp").exists()


def test_every_kept_line_is_valid_json(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    out.write_bytes(
        line("a").encode() + b"\xff\xfe not json\n" + b"[1,2]\n" + b'{"no":"source"}\n'
        + line("b").encode() + b'{"source": "tor'
    )  # fmt: skip
    index = load_resume_index(str(out))
    lines = out.read_text().splitlines()
    assert [json.loads(x)["source"] for x in lines] == ["a", "b"]
    assert index.removed_broken == 4
