"""A new file that takes the place of another in one step, and has no name until then.

For files that are rewritten whole (a report page, an output that
``--resume --retry-failed`` rewrites): readers see the old file or the new
one, never half of either, and nothing is left behind when the writer fails.

On Linux the new file is made with ``O_TMPFILE`` in the target's folder: it
has no name while it is written, so no failure, Ctrl-C, SIGTERM or even
``kill -9`` leaves a temporary file behind. :meth:`AtomicFile.commit` links
it under a temporary name (through ``/proc/self/fd``) and renames that over
the target. Where ``O_TMPFILE`` is missing (another OS, a file system
without it) it is a hidden ``.NAME.<random>.tmp`` beside the target from
the start, removed on any failure the process lives through.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

__all__ = ["AtomicFile"]


class AtomicFile:
    """Write ``file``, then :meth:`commit` to replace ``target`` with it.

    Leaving the ``with`` block without committing discards it. ``target``
    is replaced as a name: resolve a symlink first to write through it. The
    file is opened like any new file (``0o666`` less the umask); give it
    another mode with ``os.fchmod(file.fileno(), ...)``. With ``encoding``
    the file is opened for text, otherwise for bytes.
    """

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        encoding: str | None = None,
        errors: str | None = None,
    ) -> None:
        self._target = Path(target)
        self._named: Path | None = None
        descriptor = self._open_unnamed()
        if descriptor is None:
            self._named = self._temporary_name()
            descriptor = os.open(
                self._named, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
            )
        if encoding is None:
            self.file: IO[Any] = os.fdopen(descriptor, "wb")
        else:
            self.file = os.fdopen(descriptor, "w", encoding=encoding, errors=errors)

    def _open_unnamed(self) -> int | None:
        flag = getattr(os, "O_TMPFILE", None)
        # /proc/self/fd is how an unnamed file gets its name at the end.
        if flag is None or not os.path.isdir("/proc/self/fd"):
            return None
        try:
            return os.open(self._target.parent, flag | os.O_WRONLY | os.O_CLOEXEC, 0o666)
        except IsADirectoryError:
            return None  # the kernel knows O_TMPFILE, this file system does not
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return None
            raise

    def _temporary_name(self) -> Path:
        return self._target.with_name(f".{self._target.name}.{secrets.token_hex(4)}.tmp")

    def commit(self) -> None:
        """Put the complete file in place of the target, in one step."""
        self.file.flush()
        if self._named is None:
            named = self._temporary_name()
            # A dir fd makes Python call linkat() with AT_SYMLINK_FOLLOW
            # (plain link() would try to link the /proc symlink itself).
            folder = os.open(named.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.link(f"/proc/self/fd/{self.file.fileno()}", named.name, dst_dir_fd=folder)
            finally:
                os.close(folder)
            self._named = named
        os.replace(self._named, self._target)
        self._named = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.file.close()
        if self._named is not None:  # not committed: a failure
            self._named.unlink(missing_ok=True)
