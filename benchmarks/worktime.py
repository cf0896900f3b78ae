"""Run a module's ``main(argv)`` and report the CPU it used, imports excluded.

    python -m benchmarks.worktime [--preload MODULE ...] MODULE [ARGS ...]

Imports ``MODULE`` and every ``--preload`` module, reads the process's CPU
time (user plus system, every thread: ``getrusage(RUSAGE_SELF)``), calls
``MODULE.main(ARGS)``, and when it returns (or raises) prints
``work CPU <seconds> s`` on stderr. The process then exits with what
``main`` returned, as ``python -m`` would.

Interpreter start-up and imports are a fixed cost, some 0.2 s of CPU: over
3,000 images that alone would be 0.07 ms an image, a tenth of what the
benchmark measures. Rates exclude start-up for the same reason
(docs/benchmarks.md). This module imports nothing else, so it adds no
objects for the garbage collector to walk.
"""

from __future__ import annotations

import importlib
import resource
import sys

#: The line printed on stderr; ``benchmarks.overhead`` reads it.
LINE = "work CPU {:.4f} s"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str]) -> int:
    """``worktime.py [--preload MODULE ...] MODULE [ARGS ...]``; returns main's exit code."""
    while len(argv) >= 2 and argv[0] == "--preload":
        importlib.import_module(argv[1])
        argv = argv[2:]
    if not argv:
        raise SystemExit("usage: python -m benchmarks.worktime [--preload M ...] MODULE [ARGS]")
    module = importlib.import_module(argv[0])
    before = _cpu()
    try:
        code = module.main(argv[1:])
    finally:
        print(LINE.format(_cpu() - before), file=sys.stderr, flush=True)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
