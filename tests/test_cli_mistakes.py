"""Common mistakes at the command line: one clear line each, the documented exit code.

Each case was tried as a hurried newcomer would (issue 8, "One clear line for
every mistake"): the message names the problem and the fix, nothing is sent,
no output file is left behind, and no traceback is printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import APPKEY, TOKEN, run_cli

from ocr_async.cli import (
    MAX_BODY_BYTES,
    MAX_CONCURRENCY,
    ExitCode,
    build_parser,
    main,
)
from ocr_async.emulator import RunningEmulator, find_free_port, make_png


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
    monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
    for name in ("NHN_OCR_TOKEN_FILE", "NHN_OCR_BASE_URL", "NHN_UAK_ID", "NHN_UAK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OCR_ASYNC_SHARED_QUOTA", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def emulator(emulator: RunningEmulator, env: None) -> RunningEmulator:
    """The shared emulator (conftest.py), with its credentials in the environment."""
    return emulator


def read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def one_line(err: str) -> str:
    """The single line of stderr; fails when there is more, or a traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NHN_OCR_TOKEN=TOKEN, NHN_OCR_APPKEY=APPKEY, **extra)
    # The tests may run against another checkout (PYTHONPATH): keep it.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


# --- argparse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(
            ["run", "a.png", "-o", "out.jsonl", "--bogus"],
            "ocr-async run: error: unknown flag --bogus (see ocr-async run --help)",
            id="unknown-flag",
        ),
        pytest.param(
            ["run", "a.png", "--outp", "out.jsonl"],
            "ocr-async run: error: unknown flag --outp; did you mean --output? "
            "(see ocr-async run --help)",
            id="abbreviation-is-unknown",
        ),
        pytest.param(
            ["run", "a.png", "-o", "out.jsonl", "--retry"],
            "ocr-async run: error: unknown flag --retry",
            id="prefix-of-retry-failed",
        ),
        pytest.param(
            ["run", "a.png", "-o", "out.jsonl", "--concurrency", "many"],
            "ocr-async run: error: argument --concurrency: not a whole number: 'many' "
            "(see ocr-async run --help)",
            id="bad-value",
        ),
        pytest.param(
            ["report", "a.jsonl", "b.jsonl", "--html", "r.html"],
            "ocr-async report: error: unexpected argument b.jsonl",
            id="extra-positional",
        ),
        pytest.param(
            ["runn"], "ocr-async: error: argument COMMAND: invalid choice: 'runn'", id="command"
        ),
        pytest.param(
            ["run", "a.png", "-o", "out.jsonl", "--concurrency", str(MAX_CONCURRENCY + 1)],
            f"argument --concurrency: must be at most {MAX_CONCURRENCY}",
            id="concurrency-cap",
        ),
        pytest.param(
            ["run", "a.png", "-o", "out.jsonl", "--max-bytes", "50000000000"],
            f"argument --max-bytes: must be at most {MAX_BODY_BYTES}",
            id="max-bytes-ceiling",
        ),
        pytest.param(
            ["serve", "--port", "70000"],
            "ocr-async serve: error: argument --port: must be at most 65535",
            id="port-range",
        ),
        pytest.param(
            ["serve", "--port", "-1"], "argument --port: must be at least 0", id="port-negative"
        ),
        pytest.param(
            ["run", "a.png", "-o", "out.jsonl", "--timeout", "nan"],
            "argument --timeout: not a finite number: 'nan'",
            id="timeout-nan",
        ),
        pytest.param(
            ["serve", "--latency", "-1"],
            "argument --latency: must not be negative: -1",
            id="negative-latency",
        ),
        pytest.param(
            ["serve", "--fault-rate", "2"],
            "argument --fault-rate: must be from 0 to 1: 2",
            id="fault-rate",
        ),
    ],
)
def test_argparse_errors_are_one_line_naming_the_flag(
    env: None, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    assert main(argv) == ExitCode.USAGE
    line = one_line(capsys.readouterr().err)
    assert expected in line
    assert "usage:" not in line
    assert not Path("out.jsonl").exists()


def test_documented_maximums_are_accepted() -> None:
    args = build_parser().parse_args(
        ["run", "a.png", "-o", "o", "--concurrency", str(MAX_CONCURRENCY), "--max-bytes",
         str(MAX_BODY_BYTES)]
    )  # fmt: skip
    assert (args.concurrency, args.max_bytes) == (MAX_CONCURRENCY, MAX_BODY_BYTES)


async def test_inputs_may_follow_flags(emulator: RunningEmulator, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.png").write_bytes(make_png(name))
    code = await asyncio.to_thread(
        main,
        ["run", "a.png", "-o", "out.jsonl", "b.png", "--base-url", emulator.base_url, "c.png"],
    )
    assert code == ExitCode.OK
    assert sorted(r["source"] for r in read_records(tmp_path / "out.jsonl")) == [
        "a.png",
        "b.png",
        "c.png",
    ]


# --- checked at start, before anything is sent ----------------------------------------


@pytest.mark.parametrize(
    ("base_url", "problem"),
    [
        pytest.param("htp://api.example.com", "does not start with http:// or https://", id="htp"),
        pytest.param("api.example.com", "does not start with http:// or https://", id="no-scheme"),
        pytest.param("localhost:10080", "does not start with http:// or https://", id="host-port"),
        pytest.param("http://", "names no host", id="no-host"),
        pytest.param("https://:443", "names no host", id="port-only"),
        pytest.param("http://h:99999", "has a port that is not", id="bad-port"),
        pytest.param("https://api.example.com /", "contains a space", id="space"),
        pytest.param("https://api.example.com?x=1", "has a query", id="query"),
    ],
)
def test_mistyped_base_url_is_a_usage_error_before_any_call(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, base_url: str, problem: str
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    assert main(["run", "a.png", "-o", "out.jsonl", "--base-url", base_url]) == ExitCode.USAGE
    line = one_line(capsys.readouterr().err)
    assert f"the API base URL {base_url!r} {problem}" in line
    assert "--base-url" in line
    assert "NHN_OCR_BASE_URL" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_base_url_from_the_environment_is_checked_too(
    env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NHN_OCR_BASE_URL", "htp://typo.example.com")
    assert main(["run", "a.png", "-o", "out.jsonl"]) == ExitCode.USAGE
    assert "'htp://typo.example.com'" in one_line(capsys.readouterr().err)


def test_missing_inputs_are_named_and_no_output_is_created(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "here.png").write_bytes(make_png("here"))
    (tmp_path / "scans").mkdir()
    code = main(["run", "here.png", "scnas/", "scans", "gone.png", "-o", "out.jsonl"])
    assert code == ExitCode.USAGE
    line = one_line(capsys.readouterr().err)
    assert "no such file or folder: 'scnas/', 'gone.png'" in line
    assert "here.png" not in line
    assert not (tmp_path / "out.jsonl").exists()


def test_many_missing_inputs_are_counted_not_listed(
    env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", *(f"m{n}.png" for n in range(10)), "-o", "out.jsonl"])
    assert code == ExitCode.USAGE
    assert "'m0.png', 'm1.png', 'm2.png' and 7 more" in one_line(capsys.readouterr().err)


async def test_a_broken_symlink_named_is_still_an_input_with_its_record(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    code = await asyncio.to_thread(
        main, ["run", "dangling.png", "-o", "out.jsonl", "--base-url", emulator.base_url]
    )
    assert code == ExitCode.SOME_FAILED
    (record,) = read_records(tmp_path / "out.jsonl")
    assert record["error"]["code"] == "broken_symlink"


def test_output_that_is_a_folder_says_so(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    (tmp_path / "results").mkdir()
    for extra in ([], ["--overwrite"], ["--resume"]):
        assert main(["run", "a.png", "-o", "results", *extra]) == ExitCode.USAGE
        line = one_line(capsys.readouterr().err)
        assert "the output 'results' is a folder: name a file" in line
        assert "--overwrite to replace" not in line
    assert list((tmp_path / "results").iterdir()) == []


def test_url_list_that_is_a_folder_says_so(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "lists").mkdir()
    assert main(["run", "--urls", "lists", "-o", "out.jsonl"]) == ExitCode.USAGE
    assert "cannot read the URL list 'lists'" in one_line(capsys.readouterr().err)


def run_without(module: str, argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``ocr-async ARGV`` in a child process where ``module`` is not installed."""
    # None in sys.modules makes any import of it fail, as if not installed.
    script = (
        f"import sys; sys.modules[{module!r}] = None; from ocr_async.cli import main; "
        f"sys.exit(main({argv!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("flags", [["--convert"], ["--shrink"], ["--convert", "--shrink"]])
def test_image_flags_without_pillow_are_a_usage_error_at_start(
    tmp_path: Path, flags: list[str]
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    ran = run_without("PIL", ["run", "a.png", "-o", "out.jsonl", *flags], tmp_path)
    assert ran.returncode == ExitCode.USAGE, ran.stderr
    line = one_line(ran.stderr)
    assert f"{' and '.join(flags)} need" in line
    assert "pip install 'ocr-async[image]'" in line
    assert not (tmp_path / "out.jsonl").exists()


def test_a_pdf_named_without_the_pdf_extra_is_a_usage_error_at_start(tmp_path: Path) -> None:
    (tmp_path / "book.pdf").write_bytes(b"%PDF-1.7\n")
    ran = run_without("pypdfium2", ["run", "book.pdf", "-o", "out.jsonl"], tmp_path)
    assert ran.returncode == ExitCode.USAGE, ran.stderr
    line = one_line(ran.stderr)
    assert "book.pdf is a PDF, and reading PDFs needs pypdfium2" in line
    assert "pip install 'ocr-async[pdf]'" in line
    assert not (tmp_path / "out.jsonl").exists()


# --- tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variables", "token_file", "expected"),
    [
        pytest.param(
            {"NHN_OCR_TOKEN": f"{TOKEN}\x01"},
            None,
            "the token in NHN_OCR_TOKEN contains a control character",
            id="env",
        ),
        pytest.param(
            {}, "token.txt", "the token in the token file 'token.txt' contains a control", id="file"
        ),
        pytest.param(
            {"NHN_UAK_ID": "id", "NHN_UAK_SECRET": "sec\x1bret"},
            None,
            "the User Access Key secret contains a control character",
            id="uak",
        ),
        pytest.param({}, "/dev/zero", "is larger than 16 KiB", id="endless-file"),
    ],
)
def test_unusable_token_is_a_usage_error_at_start(
    env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    variables: dict[str, str],
    token_file: str | None,
    expected: str,
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    (tmp_path / "token.txt").write_text(f"{TOKEN}\x07\n", encoding="utf-8")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    argv = ["run", "a.png", "-o", "out.jsonl", "--base-url", "http://127.0.0.1:9"]
    if token_file is not None:
        argv += ["--token-file", token_file]
    assert main(argv) == ExitCode.USAGE
    line = one_line(capsys.readouterr().err)
    assert expected in line
    assert TOKEN not in line
    assert not (tmp_path / "out.jsonl").exists()


# --- URL lists ------------------------------------------------------------------------


async def test_url_list_with_a_monstrous_line_keeps_the_lines_before_it(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The API would fetch these; a port outside 10000-12000 makes each a
    # local 4000001 record, which is all this test needs: one record each.
    urls = tmp_path / "urls.txt"
    urls.write_bytes(b"\xef\xbb\xbfhttp://127.0.0.1:9/a.png\rhttp://127.0.0.1:9/b.png\r\n")
    with urls.open("ab") as handle:
        handle.truncate(urls.stat().st_size + 200_000)  # one line of NULs, no break
    code = await asyncio.to_thread(
        main, ["run", "--urls", "urls.txt", "-o", "out.jsonl", "--base-url", emulator.base_url]
    )
    assert code == ExitCode.USAGE
    line = one_line(capsys.readouterr().err)
    assert "the URL list 'urls.txt': line 3 is longer than 65536 bytes" in line
    assert "--resume" in line
    assert sorted(r["source"] for r in read_records(tmp_path / "out.jsonl")) == [
        "http://127.0.0.1:9/a.png",
        "http://127.0.0.1:9/b.png",
    ]


def test_url_list_of_endless_zeros_is_a_usage_error(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["run", "--urls", "/dev/zero", "-o", "out.jsonl"])
    assert code == ExitCode.USAGE
    assert "line 1 is longer than 65536 bytes" in one_line(capsys.readouterr().err)
    assert (tmp_path / "out.jsonl").read_bytes() == b""


# --- one input never stops the run ------------------------------------------------------


async def test_shrink_on_an_image_too_wide_for_jpeg_is_one_record(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    image = pytest.importorskip("PIL.Image", reason="needs Pillow (the 'image' extra)")
    wide = image.new("L", (70_000, 60), 255)
    for x in range(0, 70_000, 7):
        wide.putpixel((x, 30), 0)
    wide.save(tmp_path / "wide.png")
    (tmp_path / "ok.png").write_bytes(make_png("fine"))
    argv = ["run", "wide.png", "ok.png", "-o", "out.jsonl", "--shrink", "--max-bytes", "2500"]
    argv += ["--base-url", emulator.base_url]

    assert await asyncio.to_thread(main, argv) == ExitCode.SOME_FAILED
    records = {r["source"]: r for r in read_records(tmp_path / "out.jsonl")}
    assert records["ok.png"]["text"] == "fine"
    assert records["wide.png"]["error"]["code"] == 4131000
    assert "65500 px a side" in records["wide.png"]["error"]["message"]
    # A resumed run does not stop at it either: nothing is left to do.
    assert await asyncio.to_thread(main, [*argv, "--resume"]) == ExitCode.SOME_FAILED
    assert len(read_records(tmp_path / "out.jsonl")) == 2


# --- wording ---------------------------------------------------------------------------


async def test_one_record_and_no_calls_sent_are_said_plainly(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.png").write_bytes(b"")  # refused locally: nothing is sent
    code = await asyncio.to_thread(
        main, ["run", "empty.png", "-o", "out.jsonl", "--base-url", emulator.base_url]
    )
    assert code == ExitCode.SOME_FAILED
    err = capsys.readouterr().err
    assert err.startswith("1 record: 0 ok, 1 failed; 0 retries;")
    assert "rate: no calls sent" in err
    assert "settled at 0.0 calls/s" not in err
    assert emulator.stats.requests == 0


# --- report ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "why"),
    [
        pytest.param("nope.jsonl", "No such file or directory", id="missing"),
        pytest.param("scan.png", "it is not JSON Lines", id="png"),
        pytest.param("README.md", "it is not JSON Lines", id="readme"),
        pytest.param("runs", "it is a folder", id="folder"),
        pytest.param("/dev/zero", "not a regular file", id="endless-zeros"),
    ],
)
def test_report_on_what_is_not_records_says_it_cannot_read_it(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path, given: str, why: str
) -> None:
    (tmp_path / "scan.png").write_bytes(make_png("not records"))
    (tmp_path / "README.md").write_text("# Notes\n\nnot records\n", encoding="utf-8")
    (tmp_path / "runs").mkdir()
    assert main(["report", given, "--html", "review.html"]) == ExitCode.CANNOT_PROCEED
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"ocr-async: cannot read {given}: {why}")
    assert "cannot write" not in line
    assert not (tmp_path / "review.html").exists()


def test_report_that_cannot_be_written_names_the_page(
    env: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    record = {"source": "a.png", "ok": True, "text": "a", "result": None, "error": None}
    (tmp_path / "out.jsonl").write_text("\ufeff" + json.dumps(record) + "\n", encoding="utf-8")
    code = main(["report", "out.jsonl", "--html", "missing-folder/review.html"])
    assert code == ExitCode.CANNOT_PROCEED
    assert one_line(capsys.readouterr().err) == (
        "ocr-async: cannot write the report to missing-folder/review.html: "
        "No such file or directory"
    )


# --- resume: one spelling per path ------------------------------------------------------


def make_small(root: Path) -> None:
    (root / "small" / "sub").mkdir(parents=True)
    (root / "small" / "a.png").write_bytes(make_png("a"))
    (root / "small" / "sub" / "b.png").write_bytes(make_png("b"))


async def test_resume_matches_a_folder_spelled_another_way(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_small(tmp_path)
    base = ["-o", "out.jsonl", "--base-url", emulator.base_url]
    assert await run_cli("run", "./small", *base) == ExitCode.OK
    sent = emulator.stats.requests
    assert await run_cli("run", "small/", *base, "--resume") == ExitCode.OK
    assert await run_cli("run", "small//sub/./b.png", *base, "--resume") == ExitCode.OK
    assert emulator.stats.requests == sent == 2  # nothing sent again
    records = read_records(tmp_path / "out.jsonl")
    assert sorted(r["source"] for r in records) == ["small/a.png", "small/sub/b.png"]
    assert "note: none of" not in capsys.readouterr().err


async def test_one_file_spelled_two_ways_is_sent_once(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    make_small(tmp_path)
    code = await run_cli(
        "run", "small/a.png", "./small/a.png", "small", "-o", "out.jsonl",
        "--base-url", emulator.base_url,
    )  # fmt: skip
    assert code == ExitCode.OK
    assert emulator.stats.requests == 2
    assert len(read_records(tmp_path / "out.jsonl")) == 2


async def test_an_output_with_untidy_sources_still_resumes(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    # As an earlier version wrote it: the folder as typed, "./" and all.
    make_small(tmp_path)
    done = {"source": "./small/a.png", "ok": True, "text": "a", "error": None}
    (tmp_path / "out.jsonl").write_text(json.dumps(done) + "\n", encoding="utf-8")
    code = await run_cli(
        "run", "./small", "-o", "out.jsonl", "--base-url", emulator.base_url, "--resume"
    )
    assert code == ExitCode.OK
    assert emulator.stats.requests == 1  # only b.png
    records = read_records(tmp_path / "out.jsonl")
    assert sorted(r["source"] for r in records) == ["./small/a.png", "small/sub/b.png"]


async def test_resume_that_matches_nothing_says_so(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_small(tmp_path)
    base = ["-o", "out.jsonl", "--base-url", emulator.base_url]
    assert await run_cli("run", "small", *base) == ExitCode.OK
    capsys.readouterr()
    # The same folder, named from its absolute path: other sources.
    assert await run_cli("run", str(tmp_path / "small"), *base, "--resume") == ExitCode.OK
    err = capsys.readouterr().err
    assert (
        "ocr-async: note: none of the 2 records already in out.jsonl matched an input of "
        "this run, so every input was sent; a source is matched as spelled: resume from the "
        "same folder, with the same paths"
    ) in err


# --- scale-out: --shared-quota, --cluster ------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environment", "expected"),
    [
        pytest.param(
            ["--shared-quota", "redis://127.0.0.1:6379/0", "--rps", "5"],
            {},
            "--rps and --shared-quota contradict each other",
            id="flag-rps",
        ),
        pytest.param(
            ["--no-adapt"],
            {"OCR_ASYNC_SHARED_QUOTA": "redis://127.0.0.1:6379/0"},
            "--no-adapt and a shared quota (OCR_ASYNC_SHARED_QUOTA) contradict each other",
            id="env-no-adapt",
        ),
        pytest.param(
            ["--shared-quota", "http://127.0.0.1:6379"],
            {},
            "the shared quota's URL must start with redis://, rediss:// or unix://",
            id="not-redis",
        ),
        pytest.param(
            ["--cluster", "tcp://127.0.0.1:8786", "--rps", "5"],
            {},
            "--rps caps one process, not a cluster",
            id="cluster-rps",
        ),
        pytest.param(
            ["--cluster", "tcp://127.0.0.1:8786", "--hocr", "hocr"],
            {},
            "--hocr is written from the images sent, which stay on the workers",
            id="cluster-page-files",
        ),
    ],
)
def test_scale_out_mistakes_are_usage_errors_before_anything_is_written(
    env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    argv: list[str],
    environment: dict[str, str],
    expected: str,
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("a"))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert main(["run", "a.png", "-o", "out.jsonl", *argv]) == ExitCode.USAGE
    assert expected in one_line(capsys.readouterr().err)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_shared_quota_store_that_is_down_is_exit_2_with_nothing_written(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("redis")
    (tmp_path / "a.png").write_bytes(make_png("a"))
    down = f"redis://:pw@127.0.0.1:{find_free_port(20000, 60000)}/0"  # nobody listens
    code = main(["run", "a.png", "-o", "out.jsonl", "--base-url", emulator.base_url,
                 "--shared-quota", down])  # fmt: skip
    assert code == ExitCode.USAGE
    line = one_line(capsys.readouterr().err)
    assert "the shared quota's store at redis://:***@127.0.0.1:" in line
    assert "start Redis or run without a shared quota" in line
    assert not (tmp_path / "out.jsonl").exists()
    assert emulator.stats.requests == 0


def test_a_cluster_that_cannot_be_reached_is_exit_2_with_nothing_written(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    driver = pytest.importorskip("ocr_async.pipeline.cluster.driver")
    monkeypatch.setattr(driver, "CONNECT_TIMEOUT", 0.5)
    (tmp_path / "a.png").write_bytes(make_png("a"))
    nobody = f"tcp://127.0.0.1:{find_free_port(20000, 60000)}"
    code = main(["run", "a.png", "-o", "out.jsonl", "--base-url", emulator.base_url,
                 "--cluster", nobody])  # fmt: skip
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert f"ocr-async: the Dask scheduler at {nobody} cannot be reached" in err
    assert "Traceback" not in err
    assert not (tmp_path / "out.jsonl").exists()
    assert emulator.stats.requests == 0
