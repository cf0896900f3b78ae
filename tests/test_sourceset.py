from __future__ import annotations

import random

from ocr_async.pipeline.sourceset import SourceSet


def test_add_and_contains() -> None:
    names = SourceSet()
    assert names.add("a.png") is True
    assert names.add("a.png") is False
    assert "a.png" in names
    assert "b.png" not in names
    assert 42 not in names
    assert len(names) == 1


def test_grows_and_keeps_every_name() -> None:
    names = SourceSet(expected=4)
    inputs = [f"scans/box{n % 97}/page{n}.png" for n in range(50_000)]
    assert all(names.add(name) for name in inputs)
    assert len(names) == 50_000
    assert all(name in names for name in inputs)
    rng = random.Random(7)
    absent = [f"other/{rng.random()}" for _ in range(5_000)]
    assert not any(name in names for name in absent)


def test_non_utf8_names_are_distinct() -> None:
    names = SourceSet()
    assert names.add("scan\udcff.png")
    assert names.add("scan\udcfe.png")
    assert "scan\udcff.png" in names


def test_memory_is_compact() -> None:
    names = SourceSet()
    for n in range(100_000):
        names.add(f"https://example.test/{n}.png")
    # one 8-byte slot per name at load <= 1/2: at most 4 x 8 bytes a name after growth
    assert names._slots.itemsize * len(names._slots) <= 32 * 100_000
