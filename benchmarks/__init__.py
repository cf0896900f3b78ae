"""Benchmarks run against the emulator on loopback; see docs/benchmarks.md."""

# Here rather than in benchmarks.harness, which imports the emulator: the
# peers read them too, and a bare loop must not carry the emulator's
# modules (more objects for every garbage collection to walk).
#: The credentials every client of a benchmark sends.
TOKEN = "bench-token"
APPKEY = "bench-appkey"
