"""``OUT.meta.json``: what the last run on an output measured, for the next ``--dry-run``.

A dry run estimates how long a run would take at the rate the last run on
the same output settled at. That rate is not in the records (a record knows
its own request, not the pace of the run), and the JSONL must hold nothing
but records, so it is kept beside the output, as the lock is (``OUT.lock``),
in ``OUT.meta.json``::

    {"version": 1, "finished": "2026-05-01T10:00:00Z", "elapsed_s": 212.4,
     "records": 10000, "requests": 10003, "settled_calls_per_s": 47.5,
     "quota_estimate": 48.9}

``settled_calls_per_s`` is what the summary's ``rate: settled at`` line
says (the calls answered per second over the run's last 10 s). The file is
written whole, atomically (:class:`~ocr_async.pipeline.atomicfile.AtomicFile`),
at the end of each run that sent something; one that cannot be written is
a warning, never a failed run. A file that cannot be read back (missing,
garbled, from another version) is no estimate, never an error.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ocr_async.pipeline.atomicfile import AtomicFile

__all__ = ["RunMeta", "meta_path", "read_run_meta", "write_run_meta"]

_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class RunMeta:
    """What one run measured."""

    #: Wall time of the run, in seconds.
    elapsed_s: float
    #: Records it wrote.
    records: int
    #: Requests it sent, retries included (None without rate control).
    requests: int | None = None
    #: Calls answered per second over its last 10 s (None without rate control).
    settled_calls_per_s: float | None = None
    #: The call limit it measured, when it met it.
    quota_estimate: float | None = None
    #: When it finished (UTC, ISO 8601); set on writing.
    finished: str | None = None

    @property
    def rate(self) -> float | None:
        """The best figure of calls per second: settled, else the whole run's average."""
        if self.settled_calls_per_s:
            return self.settled_calls_per_s
        sent = self.requests if self.requests is not None else self.records
        return sent / self.elapsed_s if sent and self.elapsed_s > 0 else None


def meta_path(output: str) -> str:
    """Where the measurements of runs on ``output`` are kept: ``OUT.meta.json``.

    Beside the file the output names once symlinks are resolved, as the lock.
    """
    return f"{os.path.realpath(output)}.meta.json"


def write_run_meta(output: str, meta: RunMeta) -> str:
    """Write ``meta`` for ``output`` atomically; its path. Blocking; raises ``OSError``."""
    path = meta_path(output)
    finished = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    document = {"version": _VERSION, **asdict(meta), "finished": finished}
    with AtomicFile(path, encoding="utf-8") as kept:
        kept.file.write(json.dumps(document, allow_nan=False) + "\n")
        kept.commit()
    return path


def read_run_meta(output: str) -> RunMeta | None:
    """What the last run on ``output`` measured, or None when nothing usable is kept."""
    try:
        with open(meta_path(output), encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("version") != _VERSION:
        return None
    try:
        fields: dict[str, Any] = {key: document.get(key) for key in _FIELDS}
        meta = RunMeta(**fields)
    except TypeError:
        return None
    return meta if _plausible(meta) else None


_FIELDS: Final = tuple(RunMeta.__dataclass_fields__)


def _plausible(meta: RunMeta) -> bool:
    def number(value: Any, *, optional: bool = True) -> bool:
        if value is None:
            return optional
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        )

    return (
        number(meta.elapsed_s, optional=False)
        and number(meta.records, optional=False)
        and all(number(v) for v in (meta.requests, meta.settled_calls_per_s, meta.quota_estimate))
    )
