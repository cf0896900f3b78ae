"""Watching a run: ``--metrics-port`` scraped while it runs, ``--log-format json`` on stderr."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import APPKEY, TOKEN, Samples, emulator_config, free_port, parse_metrics

from ocr_async.cli import ExitCode, main
from ocr_async.emulator import RunningEmulator, make_png, running_emulator


@pytest.fixture
async def slow_emulator(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[RunningEmulator]:
    """An emulator that takes 0.3 s per answer, its credentials in the environment."""
    async with running_emulator(emulator_config(latency=0.3)) as running:
        monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
        monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
        monkeypatch.setenv("NHN_OCR_BASE_URL", running.base_url)
        monkeypatch.delenv("NHN_OCR_TOKEN_FILE", raising=False)
        monkeypatch.chdir(tmp_path)
        yield running


async def test_the_metrics_endpoint_is_scraped_during_a_run_and_closed_after(
    slow_emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "scans").mkdir()
    for n in range(24):
        (tmp_path / "scans" / f"p{n:02d}.png").write_bytes(make_png(f"page {n}"))
    (tmp_path / "scans" / "empty.png").write_bytes(b"")
    port = free_port()
    argv = ["run", "scans", "-o", "out.jsonl", "--concurrency", "3", "--metrics-port", str(port)]
    run = asyncio.create_task(asyncio.to_thread(main, argv))
    url = f"http://127.0.0.1:{port}/metrics"
    during: Samples = {}
    async with aiohttp.ClientSession() as session:
        for _ in range(600):  # until requests are in flight (at most 30 s)
            try:
                async with session.get(url) as answer:
                    during = parse_metrics(await answer.text())
            except aiohttp.ClientConnectionError:
                during = {}  # not listening yet
            if during.get(("ocr_async_requests_in_flight", ()), 0) > 0:
                break
            await asyncio.sleep(0.05)
        code = await run
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url):
                pass  # closed once the run is over

    assert code == ExitCode.SOME_FAILED
    assert 1 <= during[("ocr_async_requests_in_flight", ())] <= 3
    assert ("ocr_async_rate_calls_per_second", ()) in during
    assert ("ocr_async_throttled_total", ()) in during
    ok = during.get(("ocr_async_records_total", (("code", ""), ("outcome", "ok"))), 0)
    assert ok < 24  # scraped while the run was going


async def test_json_logs_make_all_of_stderr_json_with_the_summarys_figures(
    slow_emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    (tmp_path / "empty.png").write_bytes(b"")
    code = await asyncio.to_thread(
        main, ["run", "a.png", "empty.png", "-o", "out.jsonl", "--log-format", "json", "-v"]
    )
    assert code == ExitCode.SOME_FAILED
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    events = {line.get("event"): line for line in lines}
    summary: dict[str, Any] = events["summary"]
    assert (summary["records"], summary["ok"], summary["failed"]) == (2, 1, {"4000004": 1})
    assert summary["level"] == "INFO"
    assert summary["message"].startswith("2 records: 1 ok, 1 failed")
    assert events["rate"]["sent"] == 1
    # Again on the same output: the refusal is one JSON line too.
    code = await asyncio.to_thread(
        main, ["run", "a.png", "-o", "out.jsonl", "--log-format", "json"]
    )
    assert code == ExitCode.USAGE
    [refusal] = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert (refusal["event"], refusal["exit_code"], refusal["level"]) == ("exit", 2, "ERROR")
    assert "out.jsonl already exists" in refusal["message"]
    # And back to text for the next call in this process.
    code = await asyncio.to_thread(main, ["run", "a.png", "-o", "out.jsonl"])
    assert capsys.readouterr().err.startswith("ocr-async: out.jsonl already exists")
