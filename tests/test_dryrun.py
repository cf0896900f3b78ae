"""``ocr-async run --dry-run``: the run up to its first request, and not one request more."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from ocr_async.cli import ExitCode
from ocr_async.cli.dryrun import duration
from ocr_async.emulator import RunningEmulator, make_png
from ocr_async.outputs.runmeta import RunMeta, meta_path, read_run_meta, write_run_meta

Image = pytest.importorskip("PIL.Image", reason="Pillow is the optional 'image' extra")


def planned(capsys: pytest.CaptureFixture[str]) -> tuple[list[dict[str, Any]], str]:
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


def folder(root: Path) -> None:
    scans = root / "scans"
    scans.mkdir()
    (scans / "a.png").write_bytes(make_png("a"))
    (scans / "b.png").write_bytes(make_png("b"))
    (scans / "empty.png").write_bytes(b"")
    (scans / "notes.txt").write_text("not an image")
    pages = [Image.new("L", (80, 60), 255) for _ in range(3)]
    pages[0].save(scans / "letter.tiff", save_all=True, append_images=pages[1:])


async def test_it_lists_what_would_be_sent_and_refused_and_sends_nothing(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder(tmp_path)
    url = cli_emulator.sample_url("hello.png")
    refused_url = "http://127.0.0.1:99/x.png"  # a port the API never fetches from
    code = await run_cli(
        "run", "scans", url, refused_url, "scans/a.png", "-o", "out.jsonl", "--convert",
        "--dry-run", "--rps", "2",
    )  # fmt: skip

    assert code == ExitCode.SOME_FAILED  # empty.png and the URL's port would be refused
    assert cli_emulator.stats.requests == 0
    assert sorted(os.listdir(tmp_path)) == ["scans"]  # no output, no lock, no meta
    lines, err = planned(capsys)
    would = {line["source"]: line["would"] for line in lines}
    assert would == {
        "scans/a.png": "send",
        "scans/b.png": "send",
        "scans/empty.png": "refuse",
        "scans/letter.tiff#page=1": "send",
        "scans/letter.tiff#page=2": "send",
        "scans/letter.tiff#page=3": "send",
        url: "send",
        refused_url: "refuse",
    }
    sent = {line["source"]: line for line in lines}
    assert sent["scans/a.png"]["bytes"] == (tmp_path / "scans/a.png").stat().st_size
    assert len(sent["scans/a.png"]["sha256"]) == 64
    assert sent["scans/letter.tiff#page=2"]["transform"]["page"] == 2
    assert "bytes" not in sent[url]
    assert sent["scans/empty.png"]["error"]["code"] == 4000004
    assert "would send 6 requests" in err
    assert "would refuse 2 inputs here, never sent: 4000001 x1, 4000004 x1" in err
    assert "would skip 1 non-image file found in folders" in err
    assert "would skip 1 duplicate input (sent once)" in err
    assert "estimate: about 3 s at 2.0 calls/s (--rps)" in err


async def test_everything_sendable_exits_0_and_needs_no_credentials(
    cli_emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("NHN_OCR_TOKEN")
    (tmp_path / "a.png").write_bytes(make_png("a"))
    assert await run_cli("run", "a.png", "-o", "out.jsonl", "--dry-run") == ExitCode.OK
    _, err = planned(capsys)
    assert "estimate: none; pass --rps, or run once on this output" in err
    assert cli_emulator.stats.requests == 0


async def test_a_resumed_dry_run_skips_what_is_done_and_leaves_the_output_untouched(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = cli_emulator.sample_url("hello.png")
    rows = [{"id": f"r{n}", "url": f"{url}?n={n}&sig=old"} for n in range(4)]
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert await run_cli("run", "--manifest", "rows.jsonl", "-o", "out.jsonl") == ExitCode.OK
    sent = cli_emulator.stats.requests
    out = tmp_path / "out.jsonl"
    # Two records lost, and a torn line a crash left: a run would mend it.
    kept = out.read_text().splitlines(keepends=True)[:2]
    out.write_text("".join(kept) + '{"source": "ht')
    before = out.read_bytes()
    manifest.write_text(manifest.read_text().replace("sig=old", "sig=new"))
    capsys.readouterr()

    code = await run_cli(
        "run", "--manifest", "rows.jsonl", "-o", "out.jsonl", "--resume", "--dry-run"
    )

    assert code == ExitCode.OK
    assert cli_emulator.stats.requests == sent
    assert out.read_bytes() == before
    lines, err = planned(capsys)
    done = {json.loads(line)["id"] for line in kept}
    assert {line["id"] for line in lines} == {f"r{n}" for n in range(4)} - done
    assert "would skip 2 inputs already done by an earlier run" in err
    # The run before measured its rate: the estimate uses it.
    assert "the rate the last run on out.jsonl settled at" in err


async def test_an_output_a_run_would_refuse_is_refused_here_too(
    cli_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    (tmp_path / "out.jsonl").write_text("")
    assert await run_cli("run", "a.png", "-o", "out.jsonl", "--dry-run") == ExitCode.USAGE
    assert "out.jsonl already exists" in capsys.readouterr().err
    (tmp_path / "out.jsonl").write_text("not ours\n")
    code = await run_cli("run", "a.png", "-o", "out.jsonl", "--dry-run", "--resume")
    assert code == ExitCode.USAGE
    assert "cannot resume: out.jsonl is not an ocr-async output" in capsys.readouterr().err


# --- the kept rate ------------------------------------------------------------------------


async def test_a_run_keeps_its_rate_beside_the_output(
    cli_emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    assert await run_cli("run", "a.png", "-o", "out.jsonl") == ExitCode.OK
    meta = read_run_meta(str(tmp_path / "out.jsonl"))
    assert meta is not None
    assert (meta.records, meta.requests) == (1, 1)
    assert meta.rate is not None
    assert meta.rate > 0
    assert meta.finished is not None
    assert meta.finished.endswith("Z")


def test_the_meta_file_round_trips_and_a_bad_one_is_no_estimate(tmp_path: Path) -> None:
    out = str(tmp_path / "out.jsonl")
    assert read_run_meta(out) is None
    write_run_meta(out, RunMeta(elapsed_s=10.0, records=100, requests=104, settled_calls_per_s=9.5))
    meta = read_run_meta(out)
    assert meta is not None
    assert (meta.records, meta.rate) == (100, 9.5)
    assert meta_path(out) == f"{out}.meta.json"
    write_run_meta(out, RunMeta(elapsed_s=10.0, records=100, requests=None))
    meta = read_run_meta(out)
    assert meta is not None
    assert (meta.requests, meta.settled_calls_per_s, meta.rate) == (None, None, 10.0)
    for garbage in ("{", "[]", '{"version": 2}', '{"version": 1, "elapsed_s": -1, "records": 1}'):
        Path(meta_path(out)).write_text(garbage)
        assert read_run_meta(out) is None, garbage


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        pytest.param(0.2, "under a second", id="instant"),
        pytest.param(3.4, "about 3 s", id="seconds"),
        pytest.param(200, "about 3 min 20 s", id="minutes"),
        pytest.param(7500, "about 2 h 5 min", id="hours"),
    ],
)
def test_durations_are_said_in_words(seconds: float, said: str) -> None:
    assert duration(seconds) == said
