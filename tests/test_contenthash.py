"""The content hash: sha256 of the bytes sent, as sha256sum prints it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ocr_async.pipeline.contenthash import content_sha256


@pytest.mark.parametrize(
    ("data", "digest"),
    [
        pytest.param(
            b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", id="empty"
        ),
        pytest.param(
            b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", id="abc"
        ),
    ],
)
def test_known_digests(data: bytes, digest: str) -> None:
    assert content_sha256(data) == digest


def test_every_buffer_of_the_same_bytes_hashes_alike() -> None:
    data = bytes(range(256)) * 100
    assert content_sha256(data) == content_sha256(bytearray(data))
    assert content_sha256(data) == content_sha256(memoryview(data))
    assert content_sha256(data) != content_sha256(data[:-1])


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="no sha256sum")
def test_it_matches_sha256sum(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(5000))
    printed = subprocess.run(
        ["sha256sum", str(path)], check=True, capture_output=True, text=True
    ).stdout
    assert printed.split()[0] == content_sha256(path.read_bytes())
