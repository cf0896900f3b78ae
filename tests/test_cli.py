"""The command line end to end against the emulator on a loopback port.

``main()`` runs in a worker thread (it owns its own event loop) while the
emulator runs in the test's loop; a few tests run the real process to check
what reaches stdout, stderr and the exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import APPKEY, TOKEN, run_cli

from ocr_async.cli import ExitCode, main
from ocr_async.emulator import (
    EmulatorConfig,
    FaultPlan,
    RunningEmulator,
    find_free_port,
    make_jpeg,
    make_png,
    running_emulator,
)
from ocr_async.inputs import source_path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
    monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
    monkeypatch.delenv("NHN_OCR_TOKEN_FILE", raising=False)


@pytest.fixture
def emulator(emulator: RunningEmulator, env: None) -> RunningEmulator:
    """The shared emulator (conftest.py), with its credentials in the environment."""
    return emulator


@pytest.fixture
async def image_host(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    """A static file server on a port the API accepts in imageUrl (10000-12000)."""
    root = tmp_path / "hosted"
    root.mkdir()
    app = web.Application()
    app.router.add_static("/", root)
    runner = web.AppRunner(app)
    await runner.setup()
    port = find_free_port(10000, 12000)
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", root
    finally:
        await runner.cleanup()


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def make_scans(root: Path, count: int) -> dict[str, str]:
    """count PNG/JPEG files in nested folders; returns path -> embedded text."""
    expected: dict[str, str] = {}
    for n in range(count):
        folder = root / f"box{n % 7}" / f"folder{n % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        text = f"page {n}\n스캔 {n * 7}"
        if n % 5 == 0:
            path = folder / f"scan{n:04d}.jpg"
            path.write_bytes(make_jpeg(text))
        else:
            path = folder / f"scan{n:04d}.png"
            path.write_bytes(make_png(text))
        expected[str(path)] = text
    return expected


async def test_folder_of_1000_images_gives_one_correct_record_each(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    expected = make_scans(tmp_path / "scans", 1000)
    (tmp_path / "scans" / "readme.txt").write_text("not an image")
    out = tmp_path / "out.jsonl"

    code = await run_cli(
        "run", str(tmp_path / "scans"), "--output", str(out),
        "--base-url", emulator.base_url, "--concurrency", "32",
    )  # fmt: skip

    assert code == ExitCode.OK
    records = read_records(out)
    assert len(records) == 1000
    assert {r["source"]: r["text"] for r in records} == expected
    assert all(r["ok"] and r["error"] is None and r["attempts"] == 1 for r in records)
    assert all(r["endpoint"] == "general" for r in records)
    assert emulator.stats.requests == 1000


async def test_url_list_gives_one_correct_record_each(
    emulator: RunningEmulator, image_host: tuple[str, Path], tmp_path: Path
) -> None:
    host, root = image_host
    urls: dict[str, str] = {}
    for n in range(200):
        (root / f"u{n}.png").write_bytes(make_png(f"url image {n}"))
        urls[f"{host}/u{n}.png"] = f"url image {n}"
    url_file = tmp_path / "urls.txt"
    url_file.write_text("# scans hosted locally\n\n" + "\n".join(urls) + "\n")
    out = tmp_path / "out.jsonl"

    code = await run_cli(
        "run", "--urls", str(url_file), "-o", str(out), "--base-url", emulator.base_url
    )

    assert code == ExitCode.OK
    records = read_records(out)
    assert {r["source"]: r["text"] for r in records} == urls
    assert emulator.stats.downloads == 200


async def test_bad_files_get_local_errors_and_never_reach_the_server(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("this is text, not a PNG")
    big = make_png("too big")
    (folder / "huge.png").write_bytes(big + b"\0" * (6_000_000 - len(big)))  # a 6 MB image
    (folder / "good.png").write_bytes(make_png("fine"))
    out = tmp_path / "out.jsonl"

    code = await run_cli("run", str(folder), "-o", str(out), "--base-url", emulator.base_url)

    assert code == ExitCode.SOME_FAILED
    by_name = {Path(r["source"]).name: r for r in read_records(out)}
    assert {name: r["error"] and r["error"]["code"] for name, r in by_name.items()} == {
        "empty.png": 4000004,
        "notes.png": 4000003,
        "huge.png": 4131000,
        "good.png": None,
    }
    for name in ("empty.png", "notes.png", "huge.png"):
        assert by_name[name]["error"]["local"] is True
        assert by_name[name]["attempts"] == 0
        assert by_name[name]["ok"] is False
    assert by_name["good.png"]["text"] == "fine"
    # Only the good image was sent; nothing over the limit reached the server.
    assert emulator.stats.requests == 1
    assert emulator.stats.oversize == 0
    assert emulator.stats.bytes_received < 10_000


async def test_max_bytes_raises_the_limit(emulator: RunningEmulator, tmp_path: Path) -> None:
    big = make_png("big but allowed")
    image = tmp_path / "big.png"
    image.write_bytes(big + b"\0" * (6_000_000 - len(big)))
    out = tmp_path / "out.jsonl"
    code = await run_cli(
        "run", str(image), "-o", str(out), "--base-url", emulator.base_url,
        "--max-bytes", str(5 * 1024 * 1024),
    )  # fmt: skip
    assert code == ExitCode.SOME_FAILED
    # With the limit raised on both sides it goes through.
    (record,) = read_records(out)
    assert record["error"]["code"] == 4131000
    assert emulator.stats.requests == 0
    # Raised on both sides (NHN now documents 20 MB), the same file goes through.
    out.unlink()
    config = EmulatorConfig(tokens=frozenset({TOKEN}), max_bytes=20 * 1024 * 1024)
    async with running_emulator(config) as roomy:
        code = await run_cli(
            "run", str(image), "-o", str(out), "--base-url", roomy.base_url,
            "--max-bytes", str(20 * 1024 * 1024),
        )  # fmt: skip
    assert code == ExitCode.OK
    assert read_records(out)[0]["text"] == "big but allowed"


async def test_cropping_endpoint(emulator: RunningEmulator, tmp_path: Path) -> None:
    image = tmp_path / "long.png"
    image.write_bytes(make_png("a long receipt", 1000, 100))
    out = tmp_path / "out.jsonl"
    code = await run_cli(
        "run", str(image), "-o", str(out), "--base-url", emulator.base_url,
        "--endpoint", "cropping",
    )  # fmt: skip
    assert code == ExitCode.OK
    (record,) = read_records(out)
    assert record["endpoint"] == "cropping"
    assert record["result"]["slicesImages"] == 4
    assert record["text"] == "a long receipt"


async def test_call_limit_is_retried_until_every_image_is_done(env: None, tmp_path: Path) -> None:
    config = EmulatorConfig(tokens=frozenset({TOKEN}), quota_rps=40, quota_burst=4)
    expected = make_scans(tmp_path / "scans", 30)
    out = tmp_path / "out.jsonl"
    async with running_emulator(config) as limited:
        code = await run_cli(
            "run", str(tmp_path / "scans"), "-o", str(out), "--base-url", limited.base_url,
            "--concurrency", "16", "--max-attempts", "20",
        )  # fmt: skip
        rejected = limited.stats.rate_limited
    assert code == ExitCode.OK
    records = read_records(out)
    assert {r["source"]: r["text"] for r in records} == expected
    assert rejected > 0  # the quota really bit
    assert sum(r["attempts"] - 1 for r in records) == rejected


async def test_existing_output_is_never_clobbered(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(make_png("a"))
    out = tmp_path / "out.jsonl"
    out.write_text("precious\n")
    code = await run_cli("run", str(image), "-o", str(out), "--base-url", emulator.base_url)
    assert code == ExitCode.USAGE
    assert out.read_text() == "precious\n"
    assert "--overwrite" in capsys.readouterr().err
    code = await run_cli(
        "run", str(image), "-o", str(out), "--base-url", emulator.base_url, "--overwrite"
    )
    assert code == ExitCode.OK
    assert read_records(out)[0]["text"] == "a"


async def test_refused_token_stops_the_run_with_exit_3(
    emulator: RunningEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NHN_OCR_TOKEN", "not-the-right-token")
    make_scans(tmp_path / "scans", 200)
    out = tmp_path / "out.jsonl"
    code = await run_cli(
        "run", str(tmp_path / "scans"), "-o", str(out), "--base-url", emulator.base_url,
        "--concurrency", "4",
    )  # fmt: skip
    assert code == ExitCode.CANNOT_PROCEED
    records = read_records(out)
    assert 1 <= len(records) <= 8  # the ones in flight, not 200 refusals
    assert {r["error"]["code"] for r in records} == {4010006}
    assert emulator.stats.requests == len(records)


@pytest.mark.parametrize(
    ("argv", "unset", "message"),
    [
        pytest.param(
            ["run", "x.png", "-o", "OUT"], "NHN_OCR_TOKEN", "NHN_OCR_TOKEN", id="no-token"
        ),
        pytest.param(["run", "x.png", "-o", "OUT"], "NHN_OCR_APPKEY", "app key", id="no-appkey"),
        pytest.param(["run", "-o", "OUT"], None, "nothing to do", id="no-inputs"),
        pytest.param(
            ["run", "--urls", "missing.txt", "-o", "OUT"], None, "URL list", id="missing-url-list"
        ),
        pytest.param(["run", "x.png"], None, "--output", id="no-output"),
        pytest.param(
            ["run", "x.png", "-o", "OUT", "--concurrency", "0"], None, "at least 1", id="c0"
        ),
        pytest.param(
            ["run", "x.png", "-o", "OUT", "--endpoint", "x"], None, "invalid", id="endpoint"
        ),
        pytest.param(["frobnicate"], None, "invalid choice", id="unknown-command"),
    ],
)
def test_bad_usage_exits_2_with_a_clear_message(
    env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    argv: list[str],
    unset: str | None,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if unset:
        monkeypatch.delenv(unset)
    assert main(argv) == ExitCode.USAGE
    assert message in capsys.readouterr().err
    assert not (tmp_path / "OUT").exists()


def test_unwritable_output_exits_3(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(make_png("a"))
    code = main(["run", str(image), "-o", str(tmp_path / "no-such-dir" / "out.jsonl")])
    assert code == ExitCode.CANNOT_PROCEED
    assert "cannot open" in capsys.readouterr().err


# --- the real process: streams and exit status ------------------------------------


@pytest.fixture
def process_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHN_")}
    env.update(NHN_OCR_TOKEN=TOKEN, NHN_OCR_APPKEY=APPKEY)
    return env


async def run_process(
    args: list[str], env: dict[str, str], stdin: bytes | None = None
) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ocr_async", *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def test_stdin_to_stdout_pipeline_keeps_stdout_clean(
    emulator: RunningEmulator,
    image_host: tuple[str, Path],
    process_env: dict[str, str],
) -> None:
    host, root = image_host
    for n in range(5):
        (root / f"p{n}.png").write_bytes(make_png(f"piped {n}"))
    urls = "".join(f"{host}/p{n}.png\n" for n in range(5)).encode()

    code, stdout, stderr = await run_process(
        ["run", "--urls", "-", "--output", "-", "--base-url", emulator.base_url, "--verbose"],
        process_env,
        stdin=urls,
    )

    assert code == ExitCode.OK, stderr.decode()
    records = [json.loads(line) for line in stdout.splitlines()]  # only JSON on stdout
    assert sorted(r["text"] for r in records) == [f"piped {n}" for n in range(5)]
    assert b"5 records: 5 ok, 0 failed" in stderr
    assert b"\r" not in stderr  # no progress bar when stderr is not a terminal


async def test_token_never_appears_in_any_output(
    emulator: RunningEmulator, process_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "good.png").write_bytes(make_png("ok"))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "out.jsonl"
    for token in (TOKEN, "a-wrong-token-77e1"):
        env = dict(process_env, NHN_OCR_TOKEN=token)
        code, stdout, stderr = await run_process(
            ["run", str(tmp_path), "-o", str(out), "--overwrite", "--verbose",
             "--base-url", emulator.base_url],
            env,
        )  # fmt: skip
        assert code in (ExitCode.SOME_FAILED, ExitCode.CANNOT_PROCEED)
        for stream in (stdout, stderr, out.read_bytes()):
            assert token.encode() not in stream


async def test_python_dash_m_and_version(process_env: dict[str, str]) -> None:
    code, stdout, _ = await run_process(["--version"], process_env)
    assert code == 0
    assert stdout.startswith(b"ocr-async ")


async def test_concurrency_is_lowered_to_what_the_open_file_limit_allows(
    env: None, process_env: dict[str, str], tmp_path: Path
) -> None:
    expected = make_scans(tmp_path / "scans", 100)
    out = tmp_path / "out.jsonl"
    # The run under a 64-file limit asks for 200 requests at once.
    limited = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)); "
        "from ocr_async.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    # Slow answers: without the cap, 100 connections would be open at once.
    config = EmulatorConfig(tokens=frozenset({TOKEN}), latency=0.5)
    async with running_emulator(config) as emulator:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", limited, "run", str(tmp_path / "scans"), "-o", str(out),
            "--concurrency", "200", "--base-url", emulator.base_url,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=process_env,
        )  # fmt: skip
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), 60)
    stderr = stderr_bytes.decode()
    assert process.returncode == ExitCode.OK, stderr
    records = read_records(out)
    assert sorted(r["source"] for r in records) == sorted(expected)
    assert all(r["ok"] for r in records)
    assert stderr.count("concurrency 200 lowered to ") == 1
    assert "open-file limit (ulimit -n) is 64" in stderr


# --- interrupted runs: kill -9, SIGINT, resume ----------------------------------


async def start_process(args: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ocr_async", *args,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def wait_for_lines(path: Path, count: int, process: asyncio.subprocess.Process) -> None:
    for _ in range(3000):
        if await asyncio.to_thread(count_lines, path) >= count:
            return
        assert process.returncode is None, "the run ended before it could be interrupted"
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} records after 30 s")


async def test_kill_9_midway_then_resume_ends_with_one_record_each(
    env: None, process_env: dict[str, str], tmp_path: Path
) -> None:
    expected = make_scans(tmp_path / "scans", 300)
    out = tmp_path / "out.jsonl"
    config = EmulatorConfig(tokens=frozenset({TOKEN}), latency=0.02)
    args = ["run", str(tmp_path / "scans"), "-o", str(out), "--concurrency", "8"]
    async with running_emulator(config) as emulator:
        args += ["--base-url", emulator.base_url]
        process = await start_process(args, process_env)
        await wait_for_lines(out, 150, process)
        process.kill()  # SIGKILL: no chance to flush or clean up
        await process.wait()
        written_before = out.read_bytes().count(b"\n")
        assert (tmp_path / "out.jsonl.lock").exists()  # left behind, but no longer held

        code, _, stderr = await run_process([*args, "--resume"], process_env)

        calls = emulator.stats.requests
    assert code == ExitCode.OK, stderr.decode()
    lines = out.read_bytes().splitlines()
    records = [json.loads(line) for line in lines]  # every line valid JSON
    assert sorted(r["source"] for r in records) == sorted(expected)  # one each
    assert all(r["ok"] and r["text"] == expected[r["source"]] for r in records)
    # Paid twice at most for what was in flight when the first run died:
    # requests being answered (8) and records queued but not yet written.
    assert 300 <= calls <= 300 + 16
    assert b"resuming" in stderr
    assert written_before < 300
    assert not (tmp_path / "out.jsonl.lock").exists()  # taken over, then removed


async def test_sigint_stops_gracefully_exit_130_and_resume_finishes(
    env: None, process_env: dict[str, str], tmp_path: Path
) -> None:
    expected = make_scans(tmp_path / "scans", 200)
    out = tmp_path / "out.jsonl"
    config = EmulatorConfig(tokens=frozenset({TOKEN}), latency=0.05)
    args = ["run", str(tmp_path / "scans"), "-o", str(out), "--concurrency", "4"]
    async with running_emulator(config) as emulator:
        args += ["--base-url", emulator.base_url]
        process = await start_process(args, process_env)
        await wait_for_lines(out, 20, process)
        process.send_signal(signal.SIGINT)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), 30)
        first_calls = emulator.stats.requests
        first = [json.loads(line) for line in out.read_bytes().splitlines()]

        code, _, _ = await run_process([*args, "--resume"], process_env)
        total_calls = emulator.stats.requests

    stderr = stderr_bytes.decode()
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "finishing requests in flight" in stderr
    assert "interrupted" in stderr  # the summary was printed
    assert len(first) == first_calls  # every request sent got its record
    assert len(first) < 200
    assert code == ExitCode.OK
    records = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert sorted(r["source"] for r in records) == sorted(expected)
    assert total_calls == 200  # graceful: nothing was paid for twice


async def test_a_second_run_on_the_same_output_stops_at_once_with_exit_2(
    env: None, process_env: dict[str, str], tmp_path: Path
) -> None:
    expected = make_scans(tmp_path / "scans", 20)
    out = tmp_path / "out.jsonl"
    lock_file = tmp_path / "out.jsonl.lock"
    (tmp_path / "link.jsonl").symlink_to(out)
    config = EmulatorConfig(tokens=frozenset({TOKEN}), latency=0.5)
    scans = str(tmp_path / "scans")
    async with running_emulator(config) as emulator:
        base = ["--base-url", emulator.base_url]
        # One request at a time, half a second each: busy for ten seconds.
        first = await start_process(
            ["run", scans, "-o", str(out), "--concurrency", "1", *base], process_env
        )
        # The lock is taken before the output is opened: wait for both.
        for _ in range(3000):
            if await asyncio.to_thread(lambda: lock_file.exists() and out.exists()):
                break
            assert first.returncode is None, "the first run ended early"
            await asyncio.sleep(0.01)
        for output, extra in [
            (out, ["--resume"]),
            (out, ["--overwrite"]),
            (out, ["--resume", "--retry-failed"]),
            (tmp_path / "link.jsonl", ["--overwrite"]),  # the same file by another name
        ]:
            before = out.read_bytes()
            code, _, stderr = await run_process(
                ["run", scans, "-o", str(output), *extra, *base], process_env
            )
            assert code == ExitCode.USAGE, stderr.decode()
            assert (
                f"{output} is in use by another ocr-async run (pid {first.pid})" in stderr.decode()
            )
            assert out.read_bytes().startswith(before)  # nothing truncated or rewritten
        assert first.returncode is None  # refused while the first run held the output
        first.send_signal(signal.SIGINT)
        await asyncio.wait_for(first.communicate(), 30)
        assert first.returncode == ExitCode.INTERRUPTED
        assert not lock_file.exists()

        code, _, stderr = await run_process(
            ["run", scans, "-o", str(out), "--resume", "--concurrency", "20", *base], process_env
        )
        calls = emulator.stats.requests
    assert code == ExitCode.OK, stderr.decode()
    records = read_records(out)
    assert sorted(r["source"] for r in records) == sorted(expected)  # one each, none torn
    assert calls == 20  # the refused runs sent nothing
    assert not lock_file.exists()


async def test_retry_failed_sends_only_retryable_failures_again(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(make_png("good"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"text")
    out = tmp_path / "out.jsonl"
    error = {"code": 4000006, "message": "limit", "local": False, "retryable": True}
    retried_file = {"source": str(good), "ok": False, "endpoint": "general", "attempts": 5,
                    "elapsed_ms": 1.0, "text": None, "result": None, "error": error}  # fmt: skip
    out.write_text(json.dumps(retried_file) + "\n")
    base = ["-o", str(out), "--base-url", emulator.base_url, "--resume"]

    code = await run_cli("run", str(good), str(bad), *base)  # without --retry-failed
    assert code == ExitCode.SOME_FAILED  # the old failure stands, bad.png fails
    assert emulator.stats.requests == 0  # bad.png is refused locally, good.png was done

    code = await run_cli("run", str(good), str(bad), *base, "--retry-failed")
    records = read_records(out)
    by_source = {r["source"]: r for r in records}
    assert len(records) == 2  # still one record per input
    assert by_source[str(good)]["ok"] is True
    assert by_source[str(bad)]["error"]["code"] == 4000003
    assert emulator.stats.requests == 1
    assert code == ExitCode.SOME_FAILED


def test_resume_flag_conflicts_are_usage_errors(env: None, tmp_path: Path) -> None:
    assert main(["run", "x.png", "-o", "-", "--resume"]) == ExitCode.USAGE
    assert main(["run", "x.png", "-o", "o", "--retry-failed"]) == ExitCode.USAGE
    assert main(["run", "x.png", "-o", "o", "--resume", "--overwrite"]) == ExitCode.USAGE


@pytest.mark.parametrize(
    "content",
    [
        pytest.param((Path(__file__).parent.parent / "README.md").read_bytes(), id="readme"),
        pytest.param(make_png("an image"), id="png"),
        pytest.param(b'{"file": "a.png", "text": "hi"}\n', id="another-programs-jsonl"),
    ],
)
async def test_resume_refuses_a_file_it_did_not_write_and_leaves_it_alone(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(make_png("a"))
    out = tmp_path / "notes.md"
    out.write_bytes(content)
    code = await run_cli(
        "run", str(image), "-o", str(out), "--resume", "--base-url", emulator.base_url
    )
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"{out} is not an ocr-async output: line 1" in err
    assert out.read_bytes() == content
    assert emulator.stats.requests == 0


# --- bad input, all of it ------------------------------------------------------------


async def test_every_kind_of_bad_file_gets_one_clear_record(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "good1.png").write_bytes(make_png("good one"))
    (folder / "good2.jpg").write_bytes(make_jpeg("good two"))
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("plain text named like an image")
    full = make_png("cut short")
    (folder / "truncated.png").write_bytes(full[: len(full) // 2])
    big = make_png("six megabytes")
    (folder / "huge.png").write_bytes(big + b"\0" * (6_000_000 - len(big)))
    (folder / "gone.png").symlink_to(folder / "missing.png")  # broken symlink
    (folder / "loop-a.png").symlink_to(folder / "loop-b.png")  # a symlink loop on files
    (folder / "loop-b.png").symlink_to(folder / "loop-a.png")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)  # a directory loop
    os.mkfifo(folder / "pipe.png")  # exists, but no regular file to read
    raw_name = os.fsencode(folder) + b"/scan-\xff\xfe.png"  # not valid UTF-8
    with open(raw_name, "wb") as handle:  # noqa: ASYNC230 (test setup)
        handle.write(make_png("odd name"))
    (folder / "notes.txt").write_text("skipped: not an image by extension")
    out = tmp_path / "out.jsonl"

    code = await run_cli("run", str(folder), "-o", str(out), "--base-url", emulator.base_url)

    assert code == ExitCode.SOME_FAILED
    records = read_records(out)
    outcome = {
        Path(r["source"]).name: (r["text"] if r["ok"] else r["error"]["code"]) for r in records
    }
    assert outcome == {
        "good1.png": "good one",
        "good2.jpg": "good two",
        "scan-\\xff\\xfe.png": "odd name",
        "empty.png": 4000004,
        "text.png": 4000003,
        "truncated.png": 4000002,
        "huge.png": 4131000,
        "gone.png": "broken_symlink",
        "loop-a.png": "symlink_loop",
        "loop-b.png": "symlink_loop",
        "pipe.png": "not_a_file",
    }
    assert len(records) == len(outcome)  # exactly one record each
    assert all(r["error"]["local"] for r in records if not r["ok"])  # none of them was sent
    assert emulator.stats.requests == 3


async def test_a_raw_byte_name_and_its_escaped_spelling_are_two_inputs(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    byte_name = os.fsencode(folder) + b"/\xff.png"  # the byte 0xFF
    text_name = os.fsencode(folder) + b"/\\xff.png"  # backslash, x, f, f
    with open(byte_name, "wb") as handle:  # noqa: ASYNC230 (test setup)
        handle.write(make_png("the byte"))
    with open(text_name, "wb") as handle:  # noqa: ASYNC230 (test setup)
        handle.write(make_png("the text"))
    out = tmp_path / "out.jsonl"
    args = ["run", str(folder), "-o", str(out), "--base-url", emulator.base_url]

    assert await run_cli(*args) == ExitCode.OK
    records = read_records(out)
    assert len(records) == 2
    by_file = {os.fsencode(source_path(r["source"])): r["text"] for r in records}
    assert by_file == {byte_name: "the byte", text_name: "the text"}

    assert await run_cli(*args, "--resume") == ExitCode.OK
    assert len(read_records(out)) == 2  # each recognized as done
    assert emulator.stats.requests == 2


async def test_every_kind_of_bad_url_line_gets_one_clear_record_or_a_skip(
    emulator: RunningEmulator, image_host: tuple[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    host, root = image_host
    (root / "a.png").write_bytes(make_png("url a"))
    (root / "b.png").write_bytes(make_png("url b"))
    url_list = tmp_path / "urls.txt"
    url_list.write_text(
        "# a comment line\n"
        "\n"
        "   \n"
        f"{host}/a.png\n"
        "not a url at all\n"
        "ftp://127.0.0.1/x.png\n"
        "http://127.0.0.1:8080/refused-port.png\n"
        "http://:10001/no-host.png\n"
        f"{host}/a.png\n"  # a duplicate line: sent once
        f"{host}/missing.png\n"  # the API cannot download it
        f"  {host}/b.png  \n"
    )
    out = tmp_path / "out.jsonl"

    code = await run_cli(
        "run", "--urls", str(url_list), "-o", str(out), "--base-url", emulator.base_url,
        "--max-attempts", "2", "--verbose",
    )  # fmt: skip

    assert code == ExitCode.SOME_FAILED
    outcome = {
        r["source"]: (r["text"] if r["ok"] else r["error"]["code"]) for r in read_records(out)
    }
    assert outcome == {
        f"{host}/a.png": "url a",
        f"{host}/b.png": "url b",
        "not a url at all": 4000001,
        "ftp://127.0.0.1/x.png": 4000001,
        "http://127.0.0.1:8080/refused-port.png": 4000001,
        "http://:10001/no-host.png": 4000001,
        f"{host}/missing.png": 4000504,
    }
    assert len(read_records(out)) == 7
    err = capsys.readouterr().err
    assert "duplicate input" in err
    assert "skipped 1 duplicate input (sent once)" in err


# --- report --------------------------------------------------------------------------


async def test_report_writes_a_review_page_and_never_clobbers(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.png").write_bytes(make_png("hello review", 200, 60))
    (tmp_path / "in" / "bad.png").write_text("nope")
    out = tmp_path / "out.jsonl"
    await run_cli("run", str(tmp_path / "in"), "-o", str(out), "--base-url", emulator.base_url)
    page = tmp_path / "review.html"

    assert main(["report", str(out), "--html", str(page)]) == ExitCode.OK
    html = page.read_text(encoding="utf-8")
    assert html.index("bad.png") < html.index("good.png")  # failures first
    assert "hello" in html
    assert "data:image/png;base64," in html
    err = capsys.readouterr().err
    assert "2 records: 1 ok, 1 failed; 1 images embedded" in err
    assert f"review page written to {page}" in err

    assert main(["report", str(out), "--html", str(page)]) == ExitCode.USAGE
    assert main(["report", str(out), "--html", str(page), "--overwrite", "--no-images"]) == 0
    assert "data:image/png;base64," not in page.read_text(encoding="utf-8")


# --- faults, tokens that expire, the call limit -----------------------------------------


async def test_a_15_percent_fault_run_ends_with_every_image_right(
    env: None, tmp_path: Path
) -> None:
    expected = make_scans(tmp_path / "scans", 300)
    out = tmp_path / "out.jsonl"
    faults = FaultPlan(rate=0.15, seed=7, slow_seconds=3.0)  # every kind, slow ones too
    config = EmulatorConfig(tokens=frozenset({TOKEN}), faults=faults)
    async with running_emulator(config) as emulator:
        code = await run_cli(
            "run", str(tmp_path / "scans"), "-o", str(out), "--base-url", emulator.base_url,
            "--concurrency", "32", "--max-attempts", "8", "--timeout", "1",
        )  # fmt: skip
        stats = emulator.stats
    assert code == ExitCode.OK
    records = read_records(out)
    assert len(records) == 300  # no duplicate record
    assert {r["source"]: r["text"] for r in records} == expected
    assert sum(stats.faults.values()) > 20  # the faults really happened
    assert set(stats.faults) >= {"drop", "502", "truncated", "cut", "unavailable", "unknown"}
    assert stats.answered_ok == 300


async def test_short_lived_uak_tokens_are_renewed_a_handful_of_times(
    env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = make_scans(tmp_path / "scans", 300)
    out = tmp_path / "out.jsonl"
    config = EmulatorConfig(uak={"uak-id": "uak-secret-9f3"}, token_lifetime=3.0, latency=0.08)
    async with running_emulator(config) as emulator:
        monkeypatch.setenv("NHN_UAK_ID", "uak-id")
        monkeypatch.setenv("NHN_UAK_SECRET", "uak-secret-9f3")
        monkeypatch.setenv("NHN_OAUTH_URL", emulator.base_url)
        monkeypatch.delenv("NHN_OCR_TOKEN")  # only issued tokens are accepted anyway
        code = await run_cli(
            "run", str(tmp_path / "scans"), "-o", str(out), "--base-url", emulator.base_url,
            "--concurrency", "8",
        )  # fmt: skip
        stats = emulator.stats
    assert code == ExitCode.OK
    assert {r["source"]: r["text"] for r in read_records(out)} == expected
    # About 300 * 0.08 / 8 = 3 s of calls: a handful of tokens, not one per request.
    assert 2 <= stats.tokens_issued <= 6
    assert stats.requests == 300 + stats.tokens_rejected_expired


async def test_refused_user_access_key_exits_3_before_any_image(
    env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_scans(tmp_path / "scans", 5)
    config = EmulatorConfig(uak={"uak-id": "right-secret"})
    async with running_emulator(config) as emulator:
        monkeypatch.setenv("NHN_UAK_ID", "uak-id")
        monkeypatch.setenv("NHN_UAK_SECRET", "wrong-secret-77")
        monkeypatch.setenv("NHN_OAUTH_URL", emulator.base_url)
        code = await run_cli(
            "run", str(tmp_path / "scans"), "-o", str(tmp_path / "out.jsonl"),
            "--base-url", emulator.base_url,
        )  # fmt: skip
        requests = emulator.stats.requests
    err = capsys.readouterr().err
    assert code == ExitCode.CANNOT_PROCEED
    assert "invalid_client" in err
    assert "wrong-secret-77" not in err
    assert requests == 0


async def test_unknown_call_limit_is_found_and_reported(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = make_scans(tmp_path / "scans", 150)
    out = tmp_path / "out.jsonl"
    config = EmulatorConfig(tokens=frozenset({TOKEN}), quota_rps=60, latency=0.05)
    async with running_emulator(config) as limited:
        code = await run_cli(
            "run", str(tmp_path / "scans"), "-o", str(out), "--base-url", limited.base_url,
            "--concurrency", "32",
        )  # fmt: skip
        refused = limited.stats.rate_limited
    assert code == ExitCode.OK
    assert {r["source"]: r["text"] for r in read_records(out)} == expected
    err = capsys.readouterr().err
    assert "rate: settled at" in err
    assert "adaptive; call limit met" in err
    assert f"{refused} call{'' if refused == 1 else 's'} refused for the limit" in err


async def test_fixed_rps_stays_under_the_quota(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_scans(tmp_path / "scans", 40)
    out = tmp_path / "out.jsonl"
    # A burst of a few calls, as real gateways allow: with none at all, two
    # requests paced 40 ms apart can still arrive closer under scheduling jitter.
    config = EmulatorConfig(tokens=frozenset({TOKEN}), quota_rps=40, quota_burst=4)
    async with running_emulator(config) as limited:
        code = await run_cli(
            "run", str(tmp_path / "scans"), "-o", str(out), "--base-url", limited.base_url,
            "--concurrency", "16", "--rps", "25",
        )  # fmt: skip
        refused = limited.stats.rate_limited
    assert code == ExitCode.OK
    assert refused == 0  # paced at 25/s, a 40/s limit is never met
    assert "fixed at 25 calls/s" in capsys.readouterr().err


async def test_text_dir_mirrors_the_inputs(emulator: RunningEmulator, tmp_path: Path) -> None:
    expected = make_scans(tmp_path / "scans", 20)
    (tmp_path / "scans" / "bad.png").write_text("no image")
    texts = tmp_path / "texts"
    code = await run_cli(
        "run", str(tmp_path / "scans"), "-o", str(tmp_path / "out.jsonl"),
        "--base-url", emulator.base_url, "--text-dir", str(texts),
    )  # fmt: skip
    assert code == ExitCode.SOME_FAILED
    written = {
        str(path.relative_to(texts)): path.read_text(encoding="utf-8")
        for path in texts.rglob("*.txt")
    }
    assert written == {
        f"{source.lstrip('/')}.txt": text + "\n" for source, text in expected.items()
    }  # the failed image has no text file


async def test_a_text_file_that_cannot_be_written_costs_a_warning_not_the_run(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    long_name = "x" * 250 + ".png"  # a fine image name; its .txt is 258 bytes, too long
    (scans / long_name).write_bytes(make_png("long"))
    (scans / "a?b.png").write_bytes(make_png("question"))
    (scans / "a_b.png").write_bytes(make_png("underscore"))
    out = tmp_path / "out.jsonl"
    texts = tmp_path / "texts"
    code = await run_cli(
        "run", str(scans), "-o", str(out), "--base-url", emulator.base_url,
        "--text-dir", str(texts),
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == ExitCode.SOME_FAILED, err  # not 3: the run went on
    assert sorted((r["ok"], r["text"]) for r in read_records(out)) == [
        (True, "long"), (True, "question"), (True, "underscore"),
    ]  # fmt: skip
    assert f"{long_name} not written" in err
    assert "the name is too long" in err
    assert "text files: 2 written" in err
    assert "1 not written" in err
    folder = texts / str(scans).lstrip("/")
    assert (folder / "a%3Fb.png.txt").read_text() == "question\n"
    assert (folder / "a_b.png.txt").read_text() == "underscore\n"
