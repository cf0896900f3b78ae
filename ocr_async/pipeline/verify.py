"""Verify an output: exactly one record for every expected input, and which failed.

The expected inputs are identities (:attr:`ocr_async.models.SourceItem.identity`):
the ``source`` of each input (as ``ocr-async run`` names them), or, for a
manifest, each row's ``id`` (a bad row without one: its place,
``rows.jsonl:17``). A record's
identity is its ``id`` when verifying by id and the record has one, else its
``source``. A page of a multi-page file (``transform.page``) is recorded
as ``scan.tiff#page=2``, or by id as ``doc-1#page=2``; any page of an
expected input stands for it.

Findings, each once:

- **failed**: a record with ``ok: false`` (its code, and whether
  ``--resume --retry-failed`` would send it again);
- **duplicated**: an identity recorded more than once (named at the second
  record; ``extra_records`` counts every record beyond the first);
- **missing**: an expected identity with no record;
- **unexpected**: a record whose identity nobody expected.

Memory holds identities, never records, and only as 64-bit hashes
(:class:`~ocr_async.pipeline.sourceset.SourceSet`, at most 32 bytes each, with its
documented collision risk): names are reported when they are at hand,
which is why the output is read twice, before and after the expected
identities, and the expected ones only once (a manifest on stdin can be
read only once). Reading the output is blocking I/O: call it in a thread
from async code. Nothing here prints.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# Resume judges "is this our file" and parses our lines: the same judgement
# here, from the same functions (the refactor makes them public).
from ocr_async.pipeline.resume import (
    NotAnOutputError,
    _is_torn_record,
    _lines,
    _record,
    record_identity,
)
from ocr_async.pipeline.sourceset import SourceSet

__all__ = [
    "Finding",
    "FindingKind",
    "Verdict",
    "Verification",
    "VerifyReport",
    "verify_output",
]


class FindingKind(enum.StrEnum):
    """What is wrong with one identity."""

    FAILED = "failed"
    DUPLICATED = "duplicated"
    MISSING = "missing"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing to report about one identity."""

    kind: FindingKind
    identity: str
    #: The output line of the record concerned; None for a missing identity.
    line: int | None = None
    #: For a failure: the record's error code, message and retryable flag.
    code: int | str | None = None
    message: str | None = None
    retryable: bool | None = None


class Verdict(enum.StrEnum):
    """The outcome, from the strongest claim down."""

    #: Exactly one record per expected identity, none unexpected, all ok.
    COMPLETE = "complete"
    #: One to one, but some records failed.
    COMPLETE_WITH_FAILURES = "complete_with_failures"
    #: Not one to one: something missing, duplicated or unexpected.
    MISMATCH = "mismatch"


@dataclass(slots=True)
class VerifyReport:
    """The counts behind a verdict."""

    #: Distinct expected identities.
    expected: int = 0
    #: Expected identities given again (a run sends those once).
    expected_repeats: int = 0
    #: Records read, and of those ok and failed.
    records: int = 0
    ok: int = 0
    failed: int = 0
    #: Failed records that ``--resume --retry-failed`` would send again.
    failed_retryable: int = 0
    #: Expected identities without a record.
    missing: int = 0
    #: Identities with more than one record, and the records beyond the first.
    duplicated: int = 0
    extra_records: int = 0
    #: Records whose identity was not expected.
    unexpected: int = 0
    #: A torn last line (a run killed mid-write): its input shows as missing.
    torn: int = 0

    @property
    def verdict(self) -> Verdict:
        """The strongest claim the counts allow."""
        if self.missing or self.duplicated or self.unexpected:
            return Verdict.MISMATCH
        return Verdict.COMPLETE_WITH_FAILURES if self.failed else Verdict.COMPLETE


FindingSink = Callable[[Finding], None]


class Verification:
    """The three steps of a verification, for callers that stream the expected identities.

    1. :meth:`read_output` (blocking I/O): failures and duplicates;
    2. :meth:`expect` once per expected identity: missing ones;
    3. :meth:`read_unexpected` (blocking I/O): records nobody expected.

    :func:`verify_output` runs all three over a plain iterable.
    """

    def __init__(self, output: str, *, by_id: bool = False) -> None:
        self.output = output
        self.by_id = by_id
        self.report = VerifyReport()
        self._recorded = SourceSet()
        self._page_of = SourceSet()  # inputs with at least one page recorded
        self._duplicated = SourceSet()
        self._expected = SourceSet()
        self._step = 0

    def _advance(self, step: int) -> None:
        # read_output first and once; then expect (any number of times, or
        # none); then read_unexpected, once.
        allowed = {1: (0,), 2: (1, 2), 3: (1, 2)}[step]
        if self._step not in allowed:
            raise RuntimeError("verification steps run in order: read_output, expect, unexpected")
        self._step = step

    def read_output(self, on_finding: FindingSink) -> None:
        """Step 1: read every record; report failures and duplicates.

        Raises :class:`~ocr_async.pipeline.resume.NotAnOutputError` when the file is
        not an ocr-async output, and ``OSError`` when it cannot be read.
        """
        self._advance(1)
        report = self.report
        for number, record in self._records():
            report.records += 1
            key, base = record_identity(record, by_id=self.by_id)
            if not self._recorded.add(key):
                report.extra_records += 1
                if self._duplicated.add(key):
                    report.duplicated += 1
                    on_finding(Finding(FindingKind.DUPLICATED, key, number))
            if base is not None:
                self._page_of.add(base)
            if record["ok"] is True:
                report.ok += 1
                continue
            report.failed += 1
            error = record["error"] or {}
            retryable = error.get("retryable") is True
            report.failed_retryable += retryable
            on_finding(
                Finding(
                    FindingKind.FAILED,
                    key,
                    number,
                    code=error.get("code"),
                    message=error.get("message"),
                    retryable=retryable,
                )
            )

    def expect(self, identity: str) -> Finding | None:
        """Step 2, once per expected identity: the finding if it has no record."""
        self._advance(2)
        if not self._expected.add(identity):
            self.report.expected_repeats += 1
            return None
        self.report.expected += 1
        if identity in self._recorded or identity in self._page_of:
            return None
        self.report.missing += 1
        return Finding(FindingKind.MISSING, identity)

    def read_unexpected(self, on_finding: FindingSink) -> None:
        """Step 3: read the records again; report those whose identity nobody expected."""
        self._advance(3)
        for number, record in self._records():
            key, base = record_identity(record, by_id=self.by_id)
            if key not in self._expected and (base is None or base not in self._expected):
                self.report.unexpected += 1
                on_finding(Finding(FindingKind.UNEXPECTED, key, number))

    def _records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        # Resume's judgement of the file, without its mending: a torn last
        # line is counted (once), anything else foreign is refused.
        self.report.torn = 0
        with open(self.output, "rb") as handle:
            for number, (_, line) in enumerate(_lines(handle), start=1):
                if not line.endswith(b"\n"):
                    if handle.read(1):
                        raise self._refusal(number, "is not a JSON object")
                    if not _is_torn_record(line):
                        raise self._refusal(number, "is not a record, and it has no line end")
                    self.report.torn = 1
                    return
                record = _record(line)
                if isinstance(record, str):
                    raise self._refusal(number, record)
                yield number, record

    def _refusal(self, number: int, why: str) -> NotAnOutputError:
        return NotAnOutputError(f"{self.output} is not an ocr-async output: line {number} {why}")


def verify_output(
    output: str,
    expected: Iterable[str],
    *,
    by_id: bool = False,
    on_finding: FindingSink | None = None,
) -> VerifyReport:
    """Verify ``output`` against ``expected`` identities; each finding goes to ``on_finding``.

    Blocking I/O. ``expected`` is iterated once. Raises what
    :meth:`Verification.read_output` raises.
    """
    sink: FindingSink = on_finding if on_finding is not None else _drop
    verification = Verification(output, by_id=by_id)
    verification.read_output(sink)
    for identity in expected:
        if (finding := verification.expect(identity)) is not None:
            sink(finding)
    verification.read_unexpected(sink)
    return verification.report


def _drop(finding: Finding) -> None:
    del finding
