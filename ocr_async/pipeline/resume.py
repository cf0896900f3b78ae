"""Resume: read what an earlier run wrote, mend it, and say what to skip.

An input is identified by its key (:attr:`ocr_async.models.SourceItem.key`):
the ``id`` of its record when it has one (a manifest row's, so a re-signed
URL is still its row), else the ``source`` string: the path as given on the
command line (for files found in a folder, the folder as given joined with
the path inside it) or the URL exactly as written. So resume a run with the
same arguments from the same working directory (``./scans`` and ``scans``
are spelled alike, :func:`ocr_async.inputs.tidy_path`).

What an earlier record means for the resumed run:

- ``ok``: done; skipped.
- failed with ``retryable: false`` (a file the API refuses, say): final;
  skipped, since sending it again would get the same answer.
- failed with ``retryable: true`` (call limit, timeouts, refused credentials,
  ...): skipped too, unless ``retry_failed`` is set; then its record is
  removed and the source is sent again, so it still ends as one record.

What counts as this tool's output: every line is a record, that is a JSON
object with a string ``source``, a boolean ``ok`` and an ``error`` that is
null or an object (the keys of docs/record.schema.json that resume reads).
The one exception is the last line when it has no newline and begins the
way the writer begins every line (``{"source"``), or is a shorter piece of
that beginning: what ``kill -9`` or a full disk leaves mid-write. That torn
line alone is repaired, by truncating the file in place.

Anything else (a README, an image, another program's JSONL, a blank line or
garbage between records) raises :class:`NotAnOutputError` before a byte is
changed: resume never guesses which parts of a foreign file to keep.

With ``retry_failed`` the records to send again are removed by rewriting
the file through a temporary file and an atomic rename, so a crash during
the rewrite loses nothing either. The new file keeps the old one's mode,
and a symlinked output stays a link: the file it points to is replaced.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from ocr_async.models import ID_KEY_MARK
from ocr_async.pipeline.atomicfile import AtomicFile
from ocr_async.pipeline.sourceset import SourceSet

__all__ = ["NotAnOutputError", "ResumeIndex", "load_resume_index", "record_identity", "record_key"]

#: How the writer begins every line (encode_record: compact, ``source`` first).
_RECORD_START: Final = b'{"source"'
# A line is judged on its first chunk: a file that is not ours (an image, a
# log with no newline) is refused without reading it whole into memory.
_CHUNK: Final = 64 * 1024


class NotAnOutputError(ValueError):
    """The file to resume is not a JSONL output of this tool; it was left untouched."""


@dataclass(slots=True)
class ResumeIndex:
    """What an earlier run left, after mending."""

    #: The keys (ids, else sources) of inputs that already have their final record.
    done: SourceSet = field(default_factory=SourceSet)
    #: Records kept.
    kept: int = 0
    #: Of those, failures (final ones, or retryable ones not sent again).
    failed_kept: int = 0
    #: Broken lines removed: at most one, a torn last line.
    removed_broken: int = 0
    #: Failed records removed because their sources will be sent again.
    removed_for_retry: int = 0


def _record(line: bytes) -> dict[str, Any] | str:
    """A complete line as a record of ours, or why it is not one."""
    if not line.strip():
        return "is blank"
    if not line.lstrip().startswith(b"{"):
        return "is not a JSON object"
    try:
        record = json.loads(line)
    except ValueError:
        return "is not JSON"
    if not isinstance(record, dict):
        return "is not a JSON object"
    error = record.get("error", False)
    if not (
        isinstance(record.get("source"), str)
        and isinstance(record.get("ok"), bool)
        and (error is None or isinstance(error, dict))
    ):
        return "is a JSON object without the record keys source, ok and error"
    return record


def record_identity(record: Mapping[str, Any], *, by_id: bool) -> tuple[str, str | None]:
    """A record's identity and, for a page of a multi-page file, the input's.

    ``(key, None)`` for an ordinary record; ``(key, base)`` for a page, where
    ``key`` names the page (``base#page=N``) and ``base`` the input. The page
    is taken from ``transform.page``, not guessed from the name, so a file
    really called ``a#page=2.png`` is no page.
    """
    record_id = record.get("id")
    by = record_id if by_id and isinstance(record_id, str) else None
    source: str = record["source"]
    transform = record.get("transform")
    page = transform.get("page") if isinstance(transform, dict) else None
    if not isinstance(page, int) or isinstance(page, bool):
        return (source if by is None else by), None
    suffix = f"#page={page}"
    if by is not None:
        return by + suffix, by
    if source.endswith(suffix):
        return source, source[: -len(suffix)]
    return source, None


def record_key(record: Mapping[str, Any]) -> str:
    """What a resumed run knows a record's input by: the :attr:`SourceItem.key` it had.

    Its ``id`` (marked, as :attr:`~ocr_async.models.SourceItem.key` marks
    it) when it has one, else its ``source``; a page's is its input's key
    with ``#page=N``.
    """
    key, _ = record_identity(record, by_id=True)
    return ID_KEY_MARK + key if isinstance(record.get("id"), str) else key


def _is_torn_record(tail: bytes) -> bool:
    # A power cut may leave zeros where the last bytes were never written.
    tail = tail.rstrip(b"\0")
    return tail.startswith(_RECORD_START) or _RECORD_START.startswith(tail)


def _should_retry(record: dict[str, Any]) -> bool:
    error = record.get("error")
    return (
        record.get("ok") is not True and isinstance(error, dict) and error.get("retryable") is True
    )


def _lines(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(offset, line) for each line; a line that is not a JSON object is cut at one chunk."""
    offset = 0
    while line := handle.readline(_CHUNK):
        if not line.endswith(b"\n") and line.lstrip().startswith(b"{"):
            line += handle.readline()  # a record longer than a chunk: read it whole
        yield offset, line
        offset += len(line)


def load_resume_index(path: str, *, retry_failed: bool = False, mend: bool = True) -> ResumeIndex:
    """Read and mend the output at ``path``; a missing file is an empty index.

    With ``mend=False`` (a dry run) the index is the same but the file is
    left exactly as it is: no torn line cut, no failed record removed.

    Blocking file I/O: call it in a thread from async code. Raises
    :class:`NotAnOutputError` (the file unchanged) when the file is not this
    tool's output, and ``OSError`` when it cannot be read or mended.
    """
    index = ResumeIndex()
    torn_at: int | None = None  # offset of a torn last line
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below, in every case)
    except FileNotFoundError:
        return index
    with handle:
        for number, (offset, line) in enumerate(_lines(handle), start=1):
            if not line.endswith(b"\n"):
                if handle.read(1):  # cut at one chunk: it began as no JSON object does
                    raise _refusal(path, number, "is not a JSON object")
                if not _is_torn_record(line):
                    raise _refusal(path, number, "is not a record, and it has no line end")
                torn_at = offset  # the last line: what a crash mid-write leaves
                index.removed_broken += 1
                break
            record = _record(line)
            if isinstance(record, str):
                raise _refusal(path, number, record)
            if retry_failed and _should_retry(record):
                index.removed_for_retry += 1
                continue
            index.done.add(record_key(record))
            index.kept += 1
            index.failed_kept += record["ok"] is not True
    if not mend:
        return index
    if index.removed_for_retry:
        _rewrite_without_retried(path)
    elif torn_at is not None:
        os.truncate(path, torn_at)  # only the tail goes: cheap and atomic enough
    return index


def _refusal(path: str, number: int, why: str) -> NotAnOutputError:
    return NotAnOutputError(
        f"{path} is not an ocr-async output: line {number} {why}. Nothing was changed; "
        "resume only a file that ocr-async wrote, or write to another output"
    )


def _rewrite_without_retried(path: str) -> None:
    # Keeps every record except the failures to send again; drops a torn
    # last line on the way (the scan above vouched for every other line).
    # A symlinked output keeps its link: the file it names is replaced, in
    # its own folder, and keeps its mode (and owner, where allowed).
    target = os.path.realpath(path)
    info = os.stat(target)
    with AtomicFile(target) as kept, open(target, "rb") as source:
        for _, line in _lines(source):
            if line.endswith(b"\n") and not _should_retry(json.loads(line)):
                kept.file.write(line)
        kept.file.flush()
        os.fchmod(kept.file.fileno(), stat.S_IMODE(info.st_mode))
        with contextlib.suppress(PermissionError):
            os.fchown(kept.file.fileno(), info.st_uid, info.st_gid)
        os.fsync(kept.file.fileno())
        kept.commit()
