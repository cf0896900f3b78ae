"""Resume: read what an earlier run wrote, mend it, and say what to skip.

A source is identified by the ``source`` string of its record: the path as
given on the command line (for files found in a folder, the folder as given
joined with the path inside it) or the URL exactly as written. So resume a
run with the same arguments from the same working directory; a path spelled
differently (``./scans`` for ``scans``) names a different source.

What an earlier record means for the resumed run:

- ``ok``: done; skipped.
- failed with ``retryable: false`` (a file the API refuses, say): final;
  skipped, since sending it again would get the same answer.
- failed with ``retryable: true`` (call limit, timeouts, refused credentials,
  ...): skipped too, unless ``retry_failed`` is set; then its record is
  removed and the source is sent again, so it still ends as one record.

A line that is not a complete JSON record (a run killed mid-write) is
removed. When that line is the last one, which is what ``kill -9`` leaves,
the file is truncated in place; otherwise it is rewritten through a
temporary file and an atomic rename, so a crash during the repair loses
nothing either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from ocr_async.seen import SourceSet

__all__ = ["ResumeIndex", "load_resume_index"]


@dataclass(slots=True)
class ResumeIndex:
    """What an earlier run left, after mending."""

    #: Sources that already have their final record.
    done: SourceSet = field(default_factory=SourceSet)
    #: Records kept.
    kept: int = 0
    #: Of those, failures (final ones, or retryable ones not sent again).
    failed_kept: int = 0
    #: Broken lines removed (a torn last line, garbage).
    removed_broken: int = 0
    #: Failed records removed because their sources will be sent again.
    removed_for_retry: int = 0


def _parse(line: bytes) -> dict[str, Any] | None:
    if not line.endswith(b"\n"):
        return None  # torn: the writer always ends a record with a newline
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("source"), str):
        return None
    return record


def _should_retry(record: dict[str, Any]) -> bool:
    error = record.get("error")
    return (
        record.get("ok") is not True and isinstance(error, dict) and error.get("retryable") is True
    )


def _lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    offset = 0
    for line in handle:
        yield offset, line
        offset += len(line)


def load_resume_index(path: str, *, retry_failed: bool = False) -> ResumeIndex:
    """Read and mend the output at ``path``; a missing file is an empty index.

    Blocking file I/O: call it in a thread from async code. Raises ``OSError``
    when the file exists but cannot be read or mended.
    """
    index = ResumeIndex()
    keep_until: int | None = None  # offset of the first line to drop
    needs_rewrite = False
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, in every case)
    except FileNotFoundError:
        return index
    with handle:
        for offset, line in _lines(handle):
            record = _parse(line)
            if record is None:
                index.removed_broken += 1
            elif retry_failed and _should_retry(record):
                index.removed_for_retry += 1
            else:
                index.done.add(record["source"])
                index.kept += 1
                index.failed_kept += record.get("ok") is not True
                if keep_until is not None:
                    needs_rewrite = True  # a dropped line is followed by a kept one
                continue
            if keep_until is None:
                keep_until = offset
    if keep_until is None:
        return index
    if needs_rewrite:
        _rewrite_without_dropped(path, retry_failed)
    else:
        os.truncate(path, keep_until)  # only the tail goes: cheap and atomic enough
    return index


def _rewrite_without_dropped(path: str, retry_failed: bool) -> None:
    temporary = f"{path}.resume-tmp"
    with open(path, "rb") as source, open(temporary, "wb") as target:
        for _, line in _lines(source):
            record = _parse(line)
            if record is not None and not (retry_failed and _should_retry(record)):
                target.write(line)
        target.flush()
        os.fsync(target.fileno())
    os.replace(temporary, path)
