"""A compact set of source names, for duplicates and resumed runs.

A Python ``set`` of a million path strings costs well over 100 MB; this one
keeps a 64-bit hash per name in a single ``array`` with open addressing, at
most 32 bytes a name, so a run over millions of inputs stays small.

The price is that two different names could share a hash. With 64 bits the
chance of any collision among n names is about n**2 / 2**65: for ten million
names, about three in a million. A collision would make one input look
already seen; that is the documented risk.
"""

from __future__ import annotations

import hashlib
from array import array

__all__ = ["SourceSet"]

_EMPTY = 0


def _hash(name: str) -> int:
    # surrogatepass: names that were not valid UTF-8 still hash, distinctly.
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1  # 0 marks an empty slot


class SourceSet:
    """A set of strings stored as 64-bit hashes (open addressing, linear probing)."""

    __slots__ = ("_count", "_mask", "_slots")

    def __init__(self, expected: int = 1024) -> None:
        size = 16
        while size < expected * 2:
            size *= 2
        self._slots = array("Q", bytes(8 * size))
        self._mask = size - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _find(self, key: int) -> tuple[int, bool]:
        slots, mask = self._slots, self._mask
        index = key & mask
        while True:
            current = slots[index]
            if current == key:
                return index, True
            if current == _EMPTY:
                return index, False
            index = (index + 1) & mask

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(_hash(name))[1]

    def add(self, name: str) -> bool:
        """Add ``name``; True if it was not there before."""
        key = _hash(name)
        index, found = self._find(key)
        if found:
            return False
        self._slots[index] = key
        self._count += 1
        # Keep the load at or under one half so probes stay short.
        if self._count * 2 > len(self._slots):
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = len(self._slots) - 1
        for key in old:
            if key != _EMPTY:
                self._slots[self._find(key)[0]] = key
