"""``ocr-async verify``: one record per input, or the findings and exit code that say otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from ocr_async.cli import ExitCode
from ocr_async.emulator import RunningEmulator, make_png


def findings(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]], str]:
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


def by_source(output: Path) -> dict[str, dict[str, Any]]:
    return {
        record["source"]: record
        for record in map(json.loads, output.read_text(encoding="utf-8").splitlines())
    }


def write(output: Path, *records: dict[str, Any]) -> None:
    output.write_text("".join(json.dumps(record) + "\n" for record in records))


@pytest.fixture
async def done_run(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A folder run to out.jsonl: three images, one of them empty (a failed record)."""
    (tmp_path / "scans" / "sub").mkdir(parents=True)
    (tmp_path / "scans" / "a.png").write_bytes(make_png("a"))
    (tmp_path / "scans" / "sub" / "b.png").write_bytes(make_png("b"))
    (tmp_path / "scans" / "empty.png").write_bytes(b"")
    assert await run_cli("run", "./scans//", "-o", "out.jsonl") == ExitCode.SOME_FAILED
    capsys.readouterr()
    return tmp_path / "out.jsonl"


async def test_complete_with_failures_names_the_failed_and_exits_1(
    done_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Spelled otherwise than the run spelled it: the same inputs, tidied alike.
    assert await run_cli("verify", "scans", "-o", "out.jsonl") == ExitCode.SOME_FAILED
    found, err = findings(capsys)
    assert found == [
        {
            "finding": "failed",
            "identity": "scans/empty.png",
            "line": found[0]["line"],
            "code": 4000004,
            "message": found[0]["message"],
            "retryable": False,
        }
    ]
    assert "verify out.jsonl: complete with failures" in err
    assert "3 inputs expected, 3 records read: 2 ok, 1 failed" in err


async def test_complete_exits_0_and_prints_no_finding(
    done_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scans" / "empty.png").unlink()
    records = by_source(done_run)
    write(done_run, records["scans/a.png"], records["scans/sub/b.png"])
    assert await run_cli("verify", "scans", "--output", "out.jsonl") == ExitCode.OK
    found, err = findings(capsys)
    assert found == []
    assert "verify out.jsonl: complete" in err


async def test_missing_duplicated_and_unexpected_records_are_a_mismatch(
    done_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = by_source(done_run)
    stray = {**records["scans/a.png"], "source": "elsewhere.png"}
    # sub/b.png lost, a.png twice, one nobody asked for
    write(
        done_run, records["scans/a.png"], records["scans/a.png"], records["scans/empty.png"], stray
    )

    assert await run_cli("verify", "scans", "-o", "out.jsonl") == ExitCode.MISMATCH

    found, err = findings(capsys)
    assert sorted((f["finding"], f["identity"]) for f in found) == [
        ("duplicated", "scans/a.png"),
        ("failed", "scans/empty.png"),
        ("missing", "scans/sub/b.png"),
        ("unexpected", "elsewhere.png"),
    ]
    assert "verify out.jsonl: mismatch" in err
    assert "not one record per input: 1 missing, 1 duplicated (1 extra record), 1 unexpected" in err


async def test_a_manifest_is_verified_by_id_whatever_the_urls_now_say(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = cli_emulator.sample_url("hello.png")
    rows = [{"id": f"r{n}", "url": f"{url}?sig=old{n}", "n": n} for n in range(3)]
    rows.append({"url": url})  # no id: a bad row, recorded by its place
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert await run_cli("run", "--manifest", "rows.jsonl", "-o", "out.jsonl") == 1
    manifest.write_text(manifest.read_text().replace("sig=old", "sig=new"))
    capsys.readouterr()

    code = await run_cli("verify", "--manifest", "rows.jsonl", "-o", "out.jsonl")

    assert code == ExitCode.SOME_FAILED  # the bad row's record is its failure
    found, err = findings(capsys)
    assert [(f["finding"], f["identity"], f["code"]) for f in found] == [
        ("failed", "rows.jsonl:4", "bad_manifest_row")
    ]
    assert "4 rows expected, 4 records read: 3 ok, 1 failed" in err
    # A row added since: missing, by its id.
    with manifest.open("a") as more:
        more.write(json.dumps({"id": "r9", "url": url}) + "\n")
    assert await run_cli("verify", "--manifest", "rows.jsonl", "-o", "out.jsonl") == 4
    found, _ = findings(capsys)
    assert ("missing", "r9") in [(f["finding"], f["identity"]) for f in found]


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        pytest.param(
            "a README\n", ExitCode.USAGE, "out.jsonl is not an ocr-async output", id="foreign"
        ),
        pytest.param(None, ExitCode.CANNOT_PROCEED, "cannot read the output", id="missing"),
    ],
)
async def test_an_output_that_is_not_ours_is_2_and_one_that_is_not_there_is_3(
    cli_emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    code: ExitCode,
    message: str,
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    if content is not None:
        (tmp_path / "out.jsonl").write_text(content)
    assert await run_cli("verify", "a.png", "-o", "out.jsonl") == code
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["verify", "a.png"], "no output", id="no-output"),
        pytest.param(["verify", "-o", "out.jsonl"], "nothing to do", id="no-inputs"),
        pytest.param(["verify", "gone.png", "-o", "out.jsonl"], "no such file", id="gone"),
        pytest.param(["verify", "a.png", "-o", "-"], "give a file", id="stdout"),
    ],
)
async def test_bad_usage_is_2(
    cli_emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    assert await run_cli(*argv) == ExitCode.USAGE
    assert message in capsys.readouterr().err
