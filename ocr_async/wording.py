"""How a run's counts read in English, shared by every summary we print.

``ocr-async run`` (:meth:`~ocr_async.pipeline.batch.BatchSummary.describe`) and
``ocr-async report`` (:meth:`~ocr_async.outputs.report.ReportSummary.describe`)
open their summaries with the same two lines, ``N records: a ok, b failed;
...`` and ``failed by code: ...``, and a run and its dry run say what they
skip in the same words; they are written here once, so they cannot drift
apart. A leaf: it imports nothing of the package, so the core,
the pipeline, the outputs and the CLI may all use it.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["counted", "outcome_lines", "skip_lines"]


def counted(count: int, word: str, plural: str | None = None) -> str:
    """``1 record``, ``2 records``: ``count`` and ``word`` in the right number."""
    return f"{count} {word if count == 1 else plural or word + 's'}"


def outcome_lines(ok: int, failed: Mapping[str, int], *details: str) -> list[str]:
    """The opening lines of a summary: the records, then the failures by code.

    ``["3 records: 2 ok, 1 failed; DETAIL; ...", "failed by code: 4000003 x1"]``;
    the second line only when something failed. ``failed`` counts failures
    by error code as text (``"4000003"``, ``"timeout"``).
    """
    total_failed = sum(failed.values())
    head = f"{counted(ok + total_failed, 'record')}: {ok} ok, {total_failed} failed"
    lines = ["; ".join((head, *details))]
    if total_failed:
        by_code = ", ".join(f"{code} x{n}" for code, n in sorted(failed.items()))
        lines.append(f"failed by code: {by_code}")
    return lines


def skip_lines(verb: str, non_images: int, duplicates: int, already_done: int) -> list[str]:
    """What a run skipped (``verb`` "skipped") or a dry run would (``"would skip"``).

    One line per kind that happened: non-image files found in folders,
    inputs given twice, inputs an earlier run already did.
    """
    lines = []
    if non_images:
        lines.append(f"{verb} {counted(non_images, 'non-image file')} found in folders")
    if duplicates:
        lines.append(f"{verb} {counted(duplicates, 'duplicate input')} (sent once)")
    if already_done:
        lines.append(f"{verb} {counted(already_done, 'input')} already done by an earlier run")
    return lines
