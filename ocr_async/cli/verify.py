"""``ocr-async verify``: proof that nothing was dropped, with an exit code a pipeline can test.

``ocr-async verify INPUT... --output OUT.jsonl`` (or ``--urls FILE``, or
``--manifest FILE``) checks that the output holds exactly one record for
every input, naming the inputs exactly as ``run`` names them (the same
:class:`~ocr_async.cli.sources.CommandInputs`): paths tidied, folders
walked alike, manifest rows by their ``id``. The work is
:class:`~ocr_async.pipeline.verify.Verification`'s; this module reads the
inputs, prints and maps the verdict to the exit code.

On stdout, one JSON line per finding (``failed``, ``duplicated``,
``missing``, ``unexpected``)::

    {"finding": "missing", "identity": "doc-17"}
    {"finding": "failed", "identity": "scans/b.png", "line": 2, "code": 4000003, ...}

On stderr, the summary. Exit codes: 0 complete (one ok record per input),
1 complete with failures, 2 bad usage or a file that is not an ocr-async
output, 3 something could not be read, 4 a mismatch (missing, duplicated or
unexpected records; it wins over failures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from ocr_async.cli.exits import CannotProceedError, ExitCode, UsageError
from ocr_async.cli.logs import summary as tell_summary
from ocr_async.cli.sources import CommandInputs, check_inputs_exist
from ocr_async.pipeline.manifest import ManifestError
from ocr_async.pipeline.resume import NotAnOutputError
from ocr_async.pipeline.sources import CONVERTIBLE_EXTENSIONS, IMAGE_EXTENSIONS, UrlListError
from ocr_async.pipeline.verify import Finding, Verdict, Verification, VerifyReport
from ocr_async.wording import counted

__all__ = ["verify_command"]

_EXIT: dict[Verdict, ExitCode] = {
    Verdict.COMPLETE: ExitCode.OK,
    Verdict.COMPLETE_WITH_FAILURES: ExitCode.SOME_FAILED,
    Verdict.MISMATCH: ExitCode.MISMATCH,
}


def _print_finding(finding: Finding) -> None:
    line: dict[str, Any] = {"finding": finding.kind.value, "identity": finding.identity}
    for name in ("line", "code", "message", "retryable"):
        if (value := getattr(finding, name)) is not None:
            line[name] = value
    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")


async def verify_command(args: argparse.Namespace) -> ExitCode:
    """Run ``ocr-async verify``; the exit code of the verdict (errors are raised)."""
    if args.output is None:
        raise UsageError("no output: pass --output OUT.jsonl, the output to check")
    if args.output == "-":
        raise UsageError("verify reads the output twice: give a file, not -")
    extensions = IMAGE_EXTENSIONS | (CONVERTIBLE_EXTENSIONS if args.convert else frozenset())
    inputs = CommandInputs(
        args.inputs, urls=args.urls, manifest=args.manifest, extensions=extensions
    )
    inputs.check()
    check_inputs_exist(inputs.inputs)
    await inputs.prime()
    verification = Verification(args.output, by_id=inputs.by_id)
    try:
        await asyncio.to_thread(verification.read_output, _print_finding)
    except NotAnOutputError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise CannotProceedError(f"cannot read the output: {exc}") from None
    try:
        async for item in inputs.items():
            if (finding := verification.expect(item.identity)) is not None:
                _print_finding(finding)
    except (OSError, UrlListError, ManifestError) as exc:
        raise CannotProceedError(f"the inputs could not be read on: {exc}") from None
    try:
        await asyncio.to_thread(verification.read_unexpected, _print_finding)
    except (OSError, NotAnOutputError) as exc:  # changed between the two readings
        raise CannotProceedError(f"cannot read the output again: {exc}") from None
    sys.stdout.flush()
    report = verification.report
    tell_summary(
        _describe(args.output, report, by_id=inputs.by_id), event="verify", **_fields(report)
    )
    return _EXIT[report.verdict]


def _describe(output: str, report: VerifyReport, *, by_id: bool) -> str:
    inputs = counted(report.expected, "row" if by_id else "input")
    lines = [
        f"verify {output}: {report.verdict.value.replace('_', ' ')}",
        f"{inputs} expected, {counted(report.records, 'record')} read: "
        f"{report.ok} ok, {report.failed} failed "
        f"({report.failed_retryable} of them retryable with --resume --retry-failed)",
    ]
    problems = [
        (report.missing, "missing"),
        (report.duplicated, f"duplicated ({counted(report.extra_records, 'extra record')})"),
        (report.unexpected, "unexpected"),
    ]
    named = [f"{count} {what}" for count, what in problems if count]
    if named:
        lines.append("not one record per input: " + ", ".join(named))
    if report.torn:
        lines.append("the last line is torn (a run killed mid-write): its input shows as missing")
    if report.expected_repeats:
        lines.append(f"{counted(report.expected_repeats, 'input')} given more than once")
    return "\n".join(lines)


def _fields(report: VerifyReport) -> dict[str, Any]:
    fields = {name: getattr(report, name) for name in VerifyReport.__dataclass_fields__}
    return {"verdict": report.verdict.value, **fields}
