"""The run hands large buffers back to the system: glibc's mmap threshold, fixed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ocr_async.cli.memory import return_large_buffers

CHILD = """
import resource, sys, threading
from ocr_async.cli.memory import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()
# One 32 MiB buffer freed: glibc, left alone, now serves buffers up to that
# size from its heaps. Then, as page images come and go in worker threads,
# 16 MiB buffers, each with a small buffer that outlives it.
big = bytearray(32 << 20)
del big
kept = []
def pages():
    for _ in range(30):
        image = bytearray(16 << 20)
        kept.append(bytearray(200_000))
        del image
threads = [threading.Thread(target=pages) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with open("/proc/self/statm") as statm:
    print(int(statm.read().split()[1]) * resource.getpagesize() >> 20)
"""


def resident_after(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return int(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_page_buffers_go_back_to_the_system() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    # Resident MiB once the large buffers are freed (24 MiB of small ones
    # kept): about 60 with the threshold fixed, 120 without.
    assert resident_after("fixed") < resident_after("dynamic") - 32


def test_it_does_nothing_when_the_environment_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert return_large_buffers() is False
