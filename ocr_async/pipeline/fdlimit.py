"""How many requests at once the open-file limit (``ulimit -n``) leaves room for.

Every request in flight holds a connection, and a worker reading its image
holds the file too: each costs a file descriptor. A run asking for more at
once than ``RLIMIT_NOFILE`` allows would not run faster; its connections
and reads would fail with EMFILE instead. So the pipeline runs at most as
many workers as the descriptors still free allow, keeping a reserve for
everything else (the event loop, the output and its lock, the URL list,
the token provider's connection, name lookups), and says so once.
"""

from __future__ import annotations

import os
import resource
from typing import Final

__all__ = ["DESCRIPTORS_PER_WORKER", "RESERVED_DESCRIPTORS", "fit_concurrency"]

#: A worker's connection and the image file it may be reading.
DESCRIPTORS_PER_WORKER: Final = 2
#: Kept free for everything that is not a worker.
RESERVED_DESCRIPTORS: Final = 16


def _open_descriptors() -> int:
    # /dev/fd lists this process's descriptors on Linux and macOS; the
    # listing itself holds one while it runs.
    try:
        return max(0, len(os.listdir("/dev/fd")) - 1)
    except OSError:
        return 0


def fit_concurrency(requested: int) -> tuple[int, str | None]:
    """``requested``, or fewer when the open-file limit has no room for it.

    Returns the concurrency to use and, when it is lower, a sentence saying
    why (for a warning); None when ``requested`` fits.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested, None
    in_use = _open_descriptors()
    allowed = max(1, (soft - in_use - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_WORKER)
    if requested <= allowed:
        return requested, None
    return allowed, (
        f"concurrency {requested} lowered to {allowed}: the open-file limit (ulimit -n) is "
        f"{soft} and {in_use} files are open; raise the limit to run more at once"
    )
