"""``ocr-async serve``: which engine, tokens and quota it serves with, in one line."""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
from types import SimpleNamespace
from typing import Any

import pytest

from ocr_async.cli import CannotProceedError, build_parser, main, serve
from ocr_async.emulator import EmulatorConfig
from ocr_async.emulator.engine import EmbeddedFirst, FallbackEngine, TextEngine
from ocr_async.emulator.limiters import FixedWindowLimiter, ScheduledLimiter
from ocr_async.errors import ConfigurationError


class _Misreader:
    """A real engine that reads every image as the same two words."""

    name = "misreader"
    scripts = frozenset({"latin", "hangul"})

    def recognize(self, data: bytes) -> list[list[str]]:
        return [["Hello", "nonsense"]]


# --- serve's engine settings ------------------------------------------------------


def test_serve_defaults_to_the_best_installed_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once it defaulted to the fallback, and real images read "sha256 ...".
    asked: list[tuple[str, bool]] = []

    def choose(name: str, *, embedded_first: bool = True) -> TextEngine:
        asked.append((name, embedded_first))
        return FallbackEngine()

    monkeypatch.setattr(serve, "engine_from_name", choose)
    assert build_parser().parse_args(["serve"]).engine == "auto"
    settings = serve._engine_settings(argparse.Namespace())
    assert asked == [("auto", True)]
    assert isinstance(settings["engine"], FallbackEngine)
    assert "engine_workers" not in settings


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


@pytest.mark.parametrize(
    ("argv", "engine", "says"),
    [
        pytest.param(
            ["--engine", "embedded"],
            FallbackEngine(),
            "tokens: any; app key: any; engine: embedded (the text embedded in test images, "
            "else a sha256 fingerprint)",
            id="embedded",
        ),
        pytest.param(
            [],
            FallbackEngine(),
            "no OCR engine installed: pip install 'ocr-async[ocr]'",
            id="auto-fell-back",
        ),
        pytest.param(
            ["--token", "t1", "--appkey", "k"],
            EmbeddedFirst(_Misreader()),
            "tokens: as given with --token; app key: k; engine: misreader (embedded text first)",
            id="real-engine",
        ),
        pytest.param(
            ["--uak", "id:secret"],
            FallbackEngine(),
            "tokens: those issued for --uak, with NHN_OAUTH_URL=http://127.0.0.1:10123;",
            id="uak",
        ),
        pytest.param(
            ["--uak", "id:secret", "--token", "t1"],
            FallbackEngine(),
            "tokens: those issued for --uak and those given with --token, with NHN_OAUTH_URL=",
            id="uak-and-token",
        ),
    ],
)
async def test_serve_says_in_one_line_which_engine_and_tokens_it_uses(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    engine: TextEngine,
    says: str,
) -> None:
    # With --uak the banner said "token: any", and then refused any token.
    monkeypatch.setattr(serve, "engine_from_name", lambda name, embedded_first=True: engine)

    async def serve_once(config: object, *, host: str, port: int, on_ready: Any) -> None:
        on_ready(SimpleNamespace(base_url=f"http://{host}:10123"))

    monkeypatch.setattr(serve, "serve_forever", serve_once)
    assert await serve.serve_command(serve_args(*argv)) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ocr-async emulator: General OCR v1.1 at http://127.0.0.1:10123 (")
    assert says in err


async def test_serve_on_a_port_in_use_is_one_line_and_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = await asyncio.to_thread(main, ["serve", "--port", str(port), "--engine", "embedded"])
    assert code == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip() == (
        f"ocr-async serve: cannot listen on 127.0.0.1:{port}: the port is in use; "
        "pick another --port (0 picks a free one)"
    )


@pytest.mark.parametrize(
    ("error", "says"),
    [
        pytest.param(
            PermissionError(errno.EACCES, "Permission denied"),
            "cannot listen on 127.0.0.1:10080: permission denied; pick a --port from 1024 up",
            id="privileged-port",
        ),
        pytest.param(
            OSError(errno.EADDRNOTAVAIL, "error while attempting to bind on address ..."),
            f"cannot listen on 127.0.0.1:10080: {os.strerror(errno.EADDRNOTAVAIL)}; check --host",
            id="address-not-here",
        ),
    ],
)
async def test_serve_cannot_listen_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch, error: OSError, says: str
) -> None:
    async def refuse(config: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(serve, "serve_forever", refuse)
    with pytest.raises(CannotProceedError) as raised:
        await serve.serve_command(serve_args("--engine", "embedded"))
    assert says in str(raised.value)
    assert (raised.value.prefix, raised.value.exit_code) == ("ocr-async serve", 3)


def test_serve_engine_settings_follow_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_async.emulator import engines

    class Fake:
        name = "fake"
        warmed = False

        def recognize(self, data: bytes) -> list[list[str]]:
            return []

        def warm_up(self) -> None:
            Fake.warmed = True

    monkeypatch.setattr(engines, "real_engine", lambda name: Fake())
    first = serve._engine_settings(argparse.Namespace(engine="rapidocr", engine_workers=3))
    assert isinstance(first["engine"], EmbeddedFirst)
    assert first["engine_workers"] == 3
    assert Fake.warmed
    bare = serve._engine_settings(argparse.Namespace(engine="tesseract", ignore_embedded_text=True))
    assert isinstance(bare["engine"], Fake)


# --- serve's quota settings -------------------------------------------------------


def test_serve_quota_flags_make_each_kind_of_limiter() -> None:
    window = EmulatorConfig(
        **serve._quota_settings(serve_args("--quota-rps", "40", "--quota-kind", "window"))
    )
    assert isinstance(window.make_limiter(), FixedWindowLimiter)
    bucket = EmulatorConfig(
        **serve._quota_settings(serve_args("--quota-rps", "40", "--quota-burst", "5"))
    )
    assert bucket.burst == 5
    scheduled = EmulatorConfig(
        **serve._quota_settings(
            serve_args("--quota-kind", "sliding", "--quota-schedule", "0:40,10:20,20:60")
        )
    )
    assert scheduled.quota_rps == 40.0  # the first step, when no --quota-rps is given
    assert scheduled.quota_schedule == ((0.0, 40.0), (10.0, 20.0), (20.0, 60.0))
    assert isinstance(scheduled.make_limiter(), ScheduledLimiter)
    assert EmulatorConfig(**serve._quota_settings(serve_args())).make_limiter() is None


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(
            ("--quota-rps", "40", "--quota-kind", "window", "--quota-burst", "5"),
            id="burst-of-a-window",
        ),
        pytest.param(("--quota-schedule", "0:40,x"), id="bad-step"),
        pytest.param(("--quota-schedule", "5:40"), id="not-from-0"),
    ],
)
def test_serve_refuses_bad_quota_settings_before_serving(flags: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError, match="bad emulator settings"):
        asyncio.run(serve.serve_command(serve_args(*flags)))
