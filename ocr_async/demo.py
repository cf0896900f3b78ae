"""``ocr-async demo`` and ``ocr-async serve``: the product run against the emulator.

The demo needs no account and no network: it starts the emulator in this
process on a loopback port, runs the real batch pipeline over the bundled
sample images twice (as files, then as URLs the emulator downloads), writes
the JSONL, and checks every record's text against the text each sample holds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from ocr_async.batch import BatchSummary, run_batch
from ocr_async.client import OcrClient, RetryPolicy
from ocr_async.emulator import (
    SAMPLES,
    EmulatorConfig,
    FaultPlan,
    RunningEmulator,
    find_free_port,
    iter_samples,
    parse_fault_kinds,
    running_emulator,
    serve_forever,
)
from ocr_async.errors import ConfigurationError
from ocr_async.models import ImageFile, ImageUrl, Record
from ocr_async.sink import JsonlSink, OutputExistsError
from ocr_async.sources import SourceItem

__all__ = ["DEMO_APPKEY", "DEMO_TOKEN", "demo_command", "serve_command"]

DEMO_APPKEY = "demo-appkey"
#: The emulator in the demo accepts only this token, so auth is exercised too.
DEMO_TOKEN = "demo-token"

# imageUrl may only name ports 80, 443 or 10000-12000 (the API guide), so the
# emulator, which also hosts the samples for URL mode, binds in that range.
_URL_PORTS = (10000, 12000)


async def _sample_items(emulator: RunningEmulator) -> AsyncIterator[SourceItem]:
    for path, _ in iter_samples():
        yield SourceItem(str(path), ImageFile(path))
    for path, _ in iter_samples():
        url = f"{emulator.base_url}/samples/{path.name}"
        yield SourceItem(url, ImageUrl(url))


def _expected_text(source: str) -> str:
    return SAMPLES[source.rsplit("/", 1)[-1]]


def _report(record: Record, out: list[str]) -> bool:
    expected = _expected_text(record.source)
    matched = record.ok and record.text == expected
    mode = "url " if "://" in record.source else "file"
    name = record.source.rsplit("/", 1)[-1]
    shown = (record.text or "").replace("\n", " / ") if record.ok else str(record.error)
    out.append(f"  {'ok ' if matched else 'BAD'} {mode} {name:<20} {shown or '(no text)'}")
    return matched


async def demo_command(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every sample came back with its own text."""
    with tempfile.TemporaryDirectory(prefix="ocr-async-demo-") as scratch:
        output = args.output or str(Path(scratch) / "demo.jsonl")
        config = EmulatorConfig(tokens=frozenset({DEMO_TOKEN}), appkey=DEMO_APPKEY)
        async with running_emulator(config, port=find_free_port(*_URL_PORTS)) as emulator:
            print(f"ocr-async demo: emulator serving General OCR v1.1 at {emulator.base_url}")

            records: list[Record] = []
            try:
                async with (
                    OcrClient(
                        appkey=DEMO_APPKEY,
                        token=DEMO_TOKEN,
                        base_url=emulator.base_url,
                        concurrency=4,
                        retry=RetryPolicy(max_attempts=3),
                    ) as client,
                    JsonlSink(output) as sink,
                ):
                    summary: BatchSummary = await run_batch(
                        client,
                        _sample_items(emulator),
                        sink,
                        concurrency=4,
                        on_record=records.append,
                    )
            except OutputExistsError as exc:
                print(f"ocr-async: {exc}", file=sys.stderr)
                return 2
        lines: list[str] = []
        matched = sum(_report(record, lines) for record in sorted(records, key=lambda r: r.source))
        print("\n".join(lines))
        print(summary.describe())
        print(f"text matched the sample for {matched}/{len(SAMPLES) * 2} records")
        if args.output:
            print(f"records written to {output}")
        else:
            print("records were written to a temporary file; pass --output FILE to keep them")
        return 0 if matched == len(SAMPLES) * 2 else 1


def _key_pair(text: str) -> tuple[str, str]:
    key_id, sep, secret = text.partition(":")
    if not sep or not key_id or not secret:
        raise ConfigurationError("--uak takes ID:SECRET")
    return key_id, secret


async def serve_command(args: argparse.Namespace) -> int:
    """Serve the emulator until Ctrl-C."""
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
    config = EmulatorConfig(
        latency=args.latency,
        quota_rps=args.quota_rps,
        max_bytes=args.max_bytes,
        tokens=frozenset(args.token) if args.token else None,
        appkey=args.appkey,
        faults=faults,
        uak=dict(_key_pair(text) for text in args.uak) if args.uak else None,
        token_lifetime=args.token_lifetime,
    )

    def ready(emulator: RunningEmulator) -> None:
        print(
            f"ocr-async emulator: General OCR v1.1 at {emulator.base_url} "
            f"(token: {'as given' if args.token else 'any'}, "
            f"app key: {args.appkey or 'any'}); Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    # Ctrl-C ends this through KeyboardInterrupt, which the CLI maps to 130.
    await serve_forever(config, host=args.host, port=args.port, on_ready=ready)
    return 0
