from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ocr_async.emulator import make_png
from ocr_async.pipeline import fdlimit


@pytest.fixture
def limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A soft limit of 64 open files, 10 of them in use."""
    monkeypatch.setattr(resource, "getrlimit", lambda which: (64, 4096))
    monkeypatch.setattr(fdlimit, "_open_descriptors", lambda: 10)


@pytest.mark.usefixtures("limit")
def test_concurrency_that_fits_is_kept() -> None:
    assert fdlimit.fit_concurrency(19) == (19, None)


@pytest.mark.usefixtures("limit")
def test_concurrency_beyond_the_open_file_limit_is_lowered_with_a_reason() -> None:
    allowed, why = fdlimit.fit_concurrency(1000)
    # (64 - 10 in use - 16 reserved) // 2 per worker
    assert allowed == 19
    assert why is not None
    assert "concurrency 1000 lowered to 19" in why
    assert "ulimit -n" in why


def test_no_limit_keeps_any_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    assert fdlimit.fit_concurrency(100_000) == (100_000, None)


def test_at_least_one_worker_however_low_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda which: (8, 8))
    assert fdlimit.fit_concurrency(4)[0] == 1


def test_the_open_descriptors_are_counted() -> None:
    before = fdlimit._open_descriptors()
    with open(__file__, "rb"), open(__file__, "rb"):
        assert fdlimit._open_descriptors() == before + 2


def test_running_out_of_descriptors_gives_a_retryable_error(tmp_path: Path) -> None:
    # A real EMFILE: a process whose limit is used up, then asked to read.
    image = tmp_path / "a.png"
    image.write_bytes(make_png("a"))
    script = textwrap.dedent(
        f"""
        import json, os, resource
        from ocr_async.errors import SourceError
        from ocr_async.precheck import _read
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        held = []
        try:
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            _read({str(image)!r}, 10_000_000)
        except SourceError as exc:
            print(json.dumps([exc.code, exc.retryable, exc.message]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    code, retryable, message = json.loads(done.stdout)
    assert code == "too_many_open_files"
    assert retryable is True
    assert "too many open files" in message
