"""``ocr-async run --dry-run``: everything a run does before its first request, and nothing more.

A dry run is the run itself (:func:`~ocr_async.pipeline.batch.run_batch`:
the same inputs, named and keyed alike, the same duplicates, the same
already-done records of ``--resume``, the same pre-check stage reading and
checking every file and counting its pages) with a recognizer that sends
nothing (:class:`NothingSent`). So what it says would be sent is what the
run would send, and what it says would be refused is refused by the same
code.

It writes nothing: the output is read (``--resume``) but never mended or
created, no lock is taken, no credentials are read and no token is issued.
On stdout, one JSON line per request the run would make or input it would
refuse::

    {"source": "scans/a.png", "would": "send", "endpoint": "general", "bytes": 48213, ...}
    {"source": "rows.jsonl:3", "would": "refuse", "error": {"code": "bad_manifest_row", ...}}

On stderr, the plan: how many requests, how many refused and why, what is
skipped, and an estimate of the time at ``--rps``, else at the rate the
last run on this output settled at (``OUT.meta.json``,
:mod:`ocr_async.outputs.runmeta`). Exit 0 when everything would be sent,
1 when something would be refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from typing import Any, Final

from ocr_async.cli.exits import CannotProceedError, ExitCode, UsageError
from ocr_async.cli.logs import summary as tell_summary
from ocr_async.cli.sources import CommandInputs, SkipCounter, log_skip
from ocr_async.models import OcrResult, Payload, Recognition, Record
from ocr_async.options import Options
from ocr_async.outputs.runmeta import read_run_meta
from ocr_async.pipeline.batch import run_batch
from ocr_async.pipeline.manifest import ManifestError
from ocr_async.pipeline.resume import NotAnOutputError, load_resume_index
from ocr_async.pipeline.sources import UrlListError
from ocr_async.wording import counted, skip_lines

__all__ = ["NothingSent", "Plan", "dry_run", "duration"]

# Where NothingSent leaves the size of the bytes that would be sent.
_SIZE: Final = "dry_run_bytes"


class NothingSent:
    """A recognizer that sends nothing: each payload it is handed would have been sent."""

    async def send(self, payload: Payload) -> Recognition:
        """A stand-in recognition that only remembers the payload's size."""
        size = None if payload.image is None else len(payload.image)
        return Recognition(OcrResult((), {_SIZE: size}), payload.endpoint, 0, 0.0)


class Plan:
    """A record sink that lists what a run would do, one JSON line each, and counts it."""

    def __init__(self) -> None:
        self.send = 0
        self.bytes = 0
        self.refused: Counter[str] = Counter()

    async def write(self, record: Record) -> None:
        """List one request the run would make, or one input it would refuse."""
        line: dict[str, Any] = {"source": record.source}
        if record.id is not None:
            line["id"] = record.id
        if record.ok:
            self.send += 1
            assert record.result is not None
            size = record.result[_SIZE]
            line.update(would="send", endpoint=record.endpoint.value)
            if size is not None:
                self.bytes += size
                line.update(bytes=size, sha256=record.sha256)
        else:
            assert record.error is not None
            self.refused[str(record.error.code)] += 1
            line.update(would="refuse", endpoint=record.endpoint.value)
            line["error"] = record.error.to_json()
        if record.transform is not None:
            line["transform"] = record.transform.to_json()
        # Strict JSON on stdout, as the records are; a pipe reads it line by line.
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


async def dry_run(
    args: argparse.Namespace, options: Options, inputs: CommandInputs, skips: SkipCounter
) -> ExitCode:
    """Run ``ocr-async run --dry-run``; 0 when everything would be sent, 1 when not."""
    output: str = args.output
    exists = output != "-" and await asyncio.to_thread(os.path.lexists, output)
    if exists and not (args.resume or args.overwrite):
        raise UsageError(
            f"{output} already exists: the run would stop here; pass --overwrite to "
            "replace it, or --resume to add to it"
        )
    done = None
    if args.resume:
        try:
            index = await asyncio.to_thread(
                load_resume_index, output, retry_failed=args.retry_failed, mend=False
            )
        except NotAnOutputError as exc:
            raise UsageError(f"cannot resume: {exc}") from None
        except OSError as exc:
            raise CannotProceedError(f"cannot read {output}: {exc}") from None
        done = index.done
    await inputs.prime()
    plan = Plan()
    try:
        batch = await run_batch(
            NothingSent(),
            inputs.items(done),
            plan,
            options=options,
            on_skip=log_skip,
            already_done=done,
        )
    except UrlListError as exc:
        raise UsageError(f"{exc} (a run would stop there too)") from None
    except ManifestError as exc:
        raise CannotProceedError(f"the manifest could not be read on: {exc}") from None
    except OSError as exc:
        raise CannotProceedError(f"the inputs could not be read on: {exc}") from None
    sys.stdout.flush()
    rate, rate_from = _rate(options, output)
    estimate = plan.send / rate if rate else None
    lines = [
        f"dry run: nothing was sent; {batch.elapsed_s:.1f} s to read and check every input",
        f"would send {counted(plan.send, 'request')} ({_size(plan.bytes)} of images; "
        "URLs are fetched by the API)",
    ]
    if plan.refused:
        codes = ", ".join(f"{code} x{n}" for code, n in sorted(plan.refused.items()))
        lines.append(
            f"would refuse {counted(plan.refused.total(), 'input')} here, never sent: {codes} "
            "(listed on stdout with why)"
        )
    lines += skip_lines("would skip", skips.count, batch.duplicates, batch.already_done)
    if estimate is None:
        lines.append(f"estimate: none; {rate_from}")
    else:
        lines.append(f"estimate: {duration(estimate)} at {rate:.1f} calls/s ({rate_from})")
    tell_summary(
        "\n".join(lines),
        event="dry_run",
        would_send=plan.send,
        would_send_bytes=plan.bytes,
        would_refuse=dict(plan.refused),
        skipped=skips.count,
        duplicates=batch.duplicates,
        already_done=batch.already_done,
        rate=rate,
        rate_from=rate_from,
        estimate_s=estimate,
    )
    return ExitCode.SOME_FAILED if plan.refused else ExitCode.OK


def _rate(options: Options, output: str) -> tuple[float | None, str]:
    """Calls per second to estimate with, and where the figure comes from."""
    if options.rps is not None:
        return options.rps, "--rps"
    meta = None if output == "-" else read_run_meta(output)
    if meta is not None and (rate := meta.rate):
        when = f", {meta.finished}" if meta.finished else ""
        return rate, f"the rate the last run on {output} settled at{when}"
    return None, "pass --rps, or run once on this output: its rate is kept for the next dry run"


def duration(seconds: float) -> str:
    """``about 3 min 20 s``: a time estimate in words, to the precision it deserves."""
    if seconds < 1:
        return "under a second"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"about {hours} h {minutes} min"
    if minutes:
        return f"about {minutes} min {secs} s"
    return f"about {secs} s"


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return counted(count, "byte")
