"""``ocr-async run --manifest``: rows with ids and metadata, end to end against the emulator.

Each row ends as one record carrying its ``id`` and ``metadata``; each bad
row as one clear error record named by its line; resume and duplicates go
by id, so a re-signed URL is not sent again.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from ocr_async.cli import ExitCode
from ocr_async.emulator import RunningEmulator, make_png


def read_records(path: Path) -> dict[str, dict[str, Any]]:
    """Records by source (each source once)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = {record["source"]: record for record in map(json.loads, lines)}
    assert len(records) == len(lines)
    return records


def scans(root: Path, *names: str) -> None:
    (root / "scans").mkdir(exist_ok=True)
    for name in names:
        (root / "scans" / name).write_bytes(make_png(f"text of {name}"))


# --- both formats, every bad row ---------------------------------------------------------------

JSONL_ROWS = [
    '{"id": "a", "path": "./scans/a.png", "customer": "acme", "pages": 1, "tags": ["x"]}',
    '{"id": 2, "url": "URL?sig=1", "batch": null}',
    '{"path": "scans/a.png", "customer": "no id"}',
    '{"id": "both", "path": "scans/a.png", "url": "URL"}',
    '{"id": "neither", "customer": "x"}',
    '{"id": "a", "path": "scans/b.png"}',
    "not json at all",
    '["an", "array"]',
    '{"id": "missing", "path": "scans/missing.png"}',
    '{"id": "b", "path": "scans/b.png"}',
]


async def test_a_jsonl_manifest_gives_one_record_per_row_bad_rows_included(
    cli_emulator: RunningEmulator, tmp_path: Path
) -> None:
    scans(tmp_path, "a.png", "b.png")
    url = cli_emulator.sample_url("hello.png")
    (tmp_path / "rows.jsonl").write_text(
        "\n".join(JSONL_ROWS).replace("URL", url) + "\n", encoding="utf-8"
    )

    code = await run_cli("run", "--manifest", "rows.jsonl", "--output", "out.jsonl")

    assert code == ExitCode.SOME_FAILED
    records = read_records(tmp_path / "out.jsonl")
    got = {
        source: (r.get("id"), r["ok"], r.get("metadata"), r["error"] and r["error"]["code"])
        for source, r in records.items()
    }
    assert got == {
        "scans/a.png": ("a", True, {"customer": "acme", "pages": 1, "tags": ["x"]}, None),
        f"{url}?sig=1": ("2", True, {"batch": None}, None),
        "rows.jsonl:3": (None, False, {"customer": "no id"}, "bad_manifest_row"),
        "rows.jsonl:4": ("both", False, {}, "bad_manifest_row"),
        "rows.jsonl:5": ("neither", False, {"customer": "x"}, "bad_manifest_row"),
        # rows.jsonl:6 repeats the id "a": sent once, as a duplicate input is
        "rows.jsonl:7": (None, False, None, "bad_manifest_row"),
        "rows.jsonl:8": (None, False, None, "bad_manifest_row"),
        "scans/missing.png": ("missing", False, {}, "not_found"),
        "scans/b.png": ("b", True, {}, None),
    }
    messages = {s: r["error"]["message"] for s, r in records.items() if s.startswith("rows")}
    assert messages == {
        "rows.jsonl:3": "rows.jsonl:3: the row has no id",
        "rows.jsonl:4": "rows.jsonl:4: the row with id 'both' has both a path and a url: give one",
        "rows.jsonl:5": "rows.jsonl:5: the row with id 'neither' has neither a path nor a url",
        "rows.jsonl:7": "rows.jsonl:7: not valid JSON: Expecting value at column 1",
        "rows.jsonl:8": "rows.jsonl:8: not a JSON object but an array",
    }
    assert all(
        r["error"]["local"] and r["attempts"] == 0
        for s, r in records.items()
        if s.startswith("rows")
    )
    assert "sha256" in records["scans/a.png"]
    assert "sha256" not in records[f"{url}?sig=1"]
    assert cli_emulator.stats.requests == 3  # a, 2 and b: nothing for a bad row


async def test_a_csv_manifest_from_stdin_keeps_metadata_as_strings(
    cli_emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scans(tmp_path, "a.png")
    url = cli_emulator.sample_url("hello.png")
    manifest = (
        "id,path,url,customer,note\n"
        "1,scans/a.png,,acme,\n"
        f'2,,{url},"Smith, J.","two\nlines"\n'
        ",scans/a.png,,no id,\n"
        f"3,scans/a.png,{url},both,\n"
        "4,,,neither,\n"
        "5,scans/a.png,too,many,fields,here\n"
    )
    read_end, write_end = os.pipe()
    os.write(write_end, manifest.encode())  # far less than a pipe holds
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(pipe))
        code = await run_cli("run", "--manifest", "-", "--output", "out.jsonl")

    assert code == ExitCode.SOME_FAILED
    records = read_records(tmp_path / "out.jsonl")
    assert records["scans/a.png"]["metadata"] == {"customer": "acme", "note": ""}
    assert records[url]["metadata"] == {"customer": "Smith, J.", "note": "two\nlines"}
    assert (records[url]["id"], records["scans/a.png"]["id"]) == ("2", "1")
    bad = {s: r["error"]["message"] for s, r in records.items() if not r["ok"]}
    assert bad == {
        "stdin:5": "stdin:5: the id is empty",
        "stdin:6": "stdin:6: the row with id '3' has both a path and a url: give one",
        "stdin:7": "stdin:7: the row with id '4' has neither a path nor a url",
        "stdin:8": "stdin:8: 6 fields where the header has 5",
    }
    assert cli_emulator.stats.requests == 2


# --- what the manifest flag refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["scans/a.png"], "--manifest names every input", id="with-inputs"),
        pytest.param(["--urls", "rows.jsonl"], "--manifest names every input", id="with-urls"),
    ],
)
async def test_a_manifest_goes_alone(
    cli_emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    scans(tmp_path, "a.png")
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "path": "scans/a.png"}\n')
    code = await run_cli("run", "--manifest", "rows.jsonl", *extra, "--output", "out.jsonl")
    assert code == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("path,note\na.png,x\n", "has no 'id' column", id="csv-without-id"),
        pytest.param(b"\x89PNG\r\n\x1a\n\xff\xfe" * 50, "not valid UTF-8", id="an-image"),
    ],
)
async def test_a_manifest_that_is_none_stops_before_the_output_exists(
    cli_emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | bytes,
    message: str,
) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    code = await run_cli("run", "--manifest", "rows.csv", "--output", "out.jsonl")
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "not a manifest: rows.csv:1" in err
    assert message in err
    assert not (tmp_path / "out.jsonl").exists()
    assert cli_emulator.stats.requests == 0


async def test_a_manifest_that_breaks_down_mid_way_exits_3_after_its_rows(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans(tmp_path, "a.png")
    # A line with no end in sight (a file appended to by mistake): reading stops there.
    rows = '{"id": "a", "path": "scans/a.png"}\n{"id": "b", "blob": "' + "x" * (70 << 20)
    (tmp_path / "rows.jsonl").write_text(rows)
    code = await run_cli("run", "--manifest", "rows.jsonl", "--output", "out.jsonl")
    assert code == ExitCode.CANNOT_PROCEED
    err = capsys.readouterr().err
    assert "the manifest could not be read on: rows.jsonl:2: no line end within" in err
    records = read_records(tmp_path / "out.jsonl")
    assert records["scans/a.png"]["ok"]
    assert records["rows.jsonl:2"]["error"]["code"] == "bad_manifest_row"  # the long line


async def test_a_missing_manifest_is_bad_usage(
    cli_emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli("run", "--manifest", "nope.csv", "-o", "out.jsonl") == ExitCode.USAGE
    assert "cannot read the manifest 'nope.csv'" in capsys.readouterr().err


# --- resume by id -----------------------------------------------------------------------------


async def test_resume_after_re_signing_sends_nothing_again(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans(tmp_path, "a.png")
    url = cli_emulator.sample_url("hello.png")

    def manifest(signature: str) -> None:
        rows = [{"id": f"u{n}", "url": f"{url}?n={n}&sig={signature}"} for n in range(5)]
        rows.append({"id": "file", "path": "scans/a.png"})
        (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    manifest("first")
    code = await run_cli("run", "--manifest", "rows.jsonl", "-o", "out.jsonl")
    assert (code, cli_emulator.stats.requests) == (ExitCode.OK, 6)
    # Interrupted after 3 records: the rest is left for --resume.
    out = tmp_path / "out.jsonl"
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:3]))
    left = {json.loads(line)["id"] for line in lines[3:]}

    manifest("second")  # every URL signed again: each is a new string
    capsys.readouterr()
    code = await run_cli("run", "--manifest", "rows.jsonl", "-o", "out.jsonl", "--resume")

    assert code == ExitCode.OK
    assert cli_emulator.stats.requests == 6 + 3  # only the three not yet done
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["file", "u0", "u1", "u2", "u3", "u4"]
    resent = {r["id"] for r in records[3:]}
    assert resent == left
    assert "skipped 3 inputs already done by an earlier run" in capsys.readouterr().err

    # Once more: everything is done, whatever the signatures.
    manifest("third")
    code = await run_cli("run", "--manifest", "rows.jsonl", "-o", "out.jsonl", "--resume")
    assert (code, cli_emulator.stats.requests) == (ExitCode.OK, 9)
