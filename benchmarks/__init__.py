"""Benchmarks run against the emulator on loopback; see docs/benchmarks.md."""
