"""How the process's allocator treats large buffers: handed back to the system when freed.

A run holds large buffers for a short while: a PDF page rendered at 300 dpi
is 26 MB of pixels, a request body up to ``--max-bytes``. glibc serves a
buffer of 128 KiB or more from its own mapping, freed back to the system,
until the first such buffer is freed; from then on it raises that threshold
to the size of the largest buffer freed (up to 32 MiB), and buffers below
it come from heaps that keep their memory (one per thread at work). A run
over a 200-page scanned PDF then peaked at 850 MiB, where 300 MiB were in
use; with the threshold fixed at 1 MiB, at 310 MiB, at the same speed
(``python -m benchmarks.pdf_pages --run``). Setting it is what the
environment variable ``MALLOC_MMAP_THRESHOLD_`` does, from inside.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Final

__all__ = ["LARGE_BUFFER", "return_large_buffers"]

#: Buffers of this size or more are mapped alone and unmapped when freed.
LARGE_BUFFER: Final = 1024 * 1024
# malloc.h: mallopt(M_MMAP_THRESHOLD, bytes); 1 on success.
_M_MMAP_THRESHOLD: Final = -3


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold at :data:`LARGE_BUFFER`; True when it was set.

    Does nothing (False) off Linux, on a C library without ``mallopt``, or
    when the variable ``MALLOC_MMAP_THRESHOLD_`` already says what to do.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, LARGE_BUFFER))
