"""``ocr-async serve``: the emulator on this machine, for tests and offline work."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import Any

from ocr_async.auth import OAUTH_URL_ENV
from ocr_async.cli.exits import CannotProceedError, ExitCode
from ocr_async.emulator import (
    EmulatorConfig,
    FaultPlan,
    RunningEmulator,
    parse_fault_kinds,
    serve_forever,
)
from ocr_async.emulator.engine import FallbackEngine, TextEngine, engine_name
from ocr_async.emulator.engines import engine_from_name
from ocr_async.emulator.limiters import parse_schedule
from ocr_async.errors import ConfigurationError

__all__ = ["serve_command"]


def _key_pair(text: str) -> tuple[str, str]:
    key_id, sep, secret = text.partition(":")
    if not sep or not key_id or not secret:
        raise ConfigurationError("--uak takes ID:SECRET")
    return key_id, secret


def _engine_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``engine`` and ``engine_workers`` for ``serve``'s EmulatorConfig.

    ``--engine`` (default ``auto``, the best engine installed, as the demo
    picks) names the engine; real engines read an image's pixels only when
    it carries no embedded text, unless ``--ignore-embedded-text`` is given
    (see :mod:`ocr_async.emulator.engines`). ``--engine-workers`` bounds the
    recognitions running at once.
    """
    name = getattr(args, "engine", None) or "auto"
    embedded_first = not getattr(args, "ignore_embedded_text", False)
    settings: dict[str, Any] = {"engine": engine_from_name(name, embedded_first=embedded_first)}
    workers = getattr(args, "engine_workers", None)
    if workers is not None:
        settings["engine_workers"] = workers
    warm_up = getattr(settings["engine"], "warm_up", None)
    if callable(warm_up):
        warm_up()  # a bad install fails now, not on the first request
    return settings


def _serve_engine_text(engine: TextEngine, asked: str) -> str:
    if not isinstance(engine, FallbackEngine):
        return f"engine: {engine_name(engine)}"
    text = "engine: embedded (the text embedded in test images, else a sha256 fingerprint"
    if asked == "auto":
        text += "; no OCR engine installed: pip install 'ocr-async[ocr]'"
    return text + ")"


def _serve_token_text(args: argparse.Namespace, base_url: str) -> str:
    # With --uak, only the tokens issued for those keys (and any --token)
    # are accepted: saying "any" there would invite a token it refuses.
    if args.uak:
        also = " and those given with --token" if args.token else ""
        return f"tokens: those issued for --uak{also}, with {OAUTH_URL_ENV}={base_url}"
    return "tokens: as given with --token" if args.token else "tokens: any"


def _listen_error(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is in use; "
            "pick another --port (0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied; pick a --port from 1024 up"
    # asyncio's message repeats the address; the plain reason reads better.
    detail = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"cannot listen on {where}: {detail}; check --host (default 127.0.0.1) and --port"


def _quota_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--quota-*`` flags as :class:`EmulatorConfig` keyword arguments."""
    return {
        "quota_rps": args.quota_rps,
        "quota_kind": args.quota_kind,
        "quota_burst": args.quota_burst,
        "quota_schedule": parse_schedule(args.quota_schedule) if args.quota_schedule else (),
    }


async def serve_command(args: argparse.Namespace) -> ExitCode:
    """Serve the emulator until Ctrl-C; 3 when it cannot listen on the address."""
    faults = None
    if args.fault_rate:
        try:
            faults = FaultPlan(
                rate=args.fault_rate,
                seed=args.fault_seed,
                kinds=parse_fault_kinds(args.fault_kinds),
                slow_seconds=args.fault_slow_seconds,
            )
        except ValueError as exc:
            raise ConfigurationError(f"bad fault settings: {exc}") from None
    try:
        config = EmulatorConfig(
            latency=args.latency,
            **_quota_settings(args),
            max_bytes=args.max_bytes,
            tokens=frozenset(args.token) if args.token else None,
            appkey=args.appkey,
            faults=faults,
            uak=dict(_key_pair(text) for text in args.uak) if args.uak else None,
            token_lifetime=args.token_lifetime,
            **_engine_settings(args),
        )
    except ValueError as exc:  # the config checks its values: one line, exit 2
        raise ConfigurationError(f"bad emulator settings: {exc}") from None

    quota = "none"
    if config.quota_schedule:
        steps = ",".join(f"{at:g}:{rate:g}" for at, rate in config.quota_schedule)
        quota = f"{config.quota_kind} on schedule {steps}"
    elif config.quota_rps is not None:
        quota = f"{config.quota_kind} {config.quota_rps:g}/s"

    def ready(emulator: RunningEmulator) -> None:
        # One line: scripts (and the docs tests) wait for it.
        print(
            f"ocr-async emulator: General OCR v1.1 at {emulator.base_url} "
            f"({_serve_token_text(args, emulator.base_url)}; "
            f"app key: {args.appkey or 'any'}; {_serve_engine_text(config.engine, args.engine)}; "
            f"quota: {quota}); "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    # Ctrl-C ends this through KeyboardInterrupt, which the CLI maps to 130.
    try:
        await serve_forever(config, host=args.host, port=args.port, on_ready=ready)
    except OSError as exc:  # the socket could not be bound
        raise CannotProceedError(
            _listen_error(exc, args.host, args.port), prefix="ocr-async serve"
        ) from None
    return ExitCode.OK
