"""Exit codes: what a command raises becomes its code and one line on stderr, in main alone."""

from __future__ import annotations

import argparse

import pytest

import ocr_async.cli as main_module
from ocr_async.cli import CannotProceedError, ExitCode, UsageError, main
from ocr_async.errors import ConfigurationError


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        pytest.param(UsageError("bad flag"), 2, "ocr-async: bad flag", id="usage"),
        pytest.param(
            CannotProceedError("no output"), 3, "ocr-async: no output", id="cannot-proceed"
        ),
        pytest.param(
            CannotProceedError("port in use", prefix="ocr-async serve"),
            3,
            "ocr-async serve: port in use",
            id="its-own-prefix",
        ),
        pytest.param(ConfigurationError("no token"), 2, "ocr-async: no token", id="settings"),
        pytest.param(KeyboardInterrupt(), 130, "ocr-async: interrupted", id="ctrl-c"),
    ],
)
def test_what_a_command_raises_is_mapped_once(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    raised: BaseException,
    code: int,
    line: str,
) -> None:
    def command(args: argparse.Namespace) -> ExitCode:
        raise raised

    monkeypatch.setattr(main_module, "_dispatch", command)
    assert main(["report", "out.jsonl"]) == code
    assert capsys.readouterr().err == line + "\n"


def test_what_a_command_returns_is_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(main_module, "_dispatch", lambda args: ExitCode.SOME_FAILED)
    assert main(["report", "out.jsonl"]) == 1


def test_bad_usage_is_2_and_help_is_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-such-flag"]) == 2
    assert main(["--help"]) == 0
