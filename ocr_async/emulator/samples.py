"""The sample images shipped with the package, and the text each one holds.

They exist for the demo, for demos of your own (``GET /samples/{name}`` on a
running emulator, handy for URL-mode requests) and for tests that want real
files on disk.

Each sample is real pixels: its text rendered with Pillow from
:data:`SAMPLES` at build time by :mod:`ocr_async.emulator.make_samples`
(DejaVu for Latin, Nanum Gothic for Korean), so a real engine
(:mod:`ocr_async.emulator.engines`) reads it as it would read a scan. Each
also carries the same text embedded (PNG ``iTXt`` / JPEG ``COM``, key
``ocr-async:text``), so the default engine answers it deterministically,
without OCR. ``blank.png`` holds no text on purpose (the API's 4000501), and
``long-receipt.png`` is 4:1, long enough for ``/general/cropping`` to slice
it in two.

Nothing here needs Pillow or a font at run time: the files are shipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

__all__ = ["SAMPLES", "SAMPLES_DIR", "iter_samples", "sample_path", "write_samples"]

#: Where the bundled files live (package data ``emulator/samples/*``).
SAMPLES_DIR: Final = Path(__file__).with_name("samples")

#: File name -> the text it holds: lines joined by "\n", words by spaces.
#: English and Korean, PNG and JPEG, one and several lines.
SAMPLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "hello.png": "Hello World",
        "stella.jpg": "stella artois\nbelgium",
        "korean.png": "안녕하세요 세계",
        "korean-receipt.jpg": "영수증 합계 12,000원\n감사합니다 Thank you",
        "long-receipt.png": "NHN Cloud General OCR\nline two\nline three",
        "invoice.png": (
            "INVOICE No. 2026-0412\n"
            "Bill to: Hanbit Books Ltd.\n"
            "Three boxes of A4 paper\n"
            "Total due: 45,000 KRW by May 31"
        ),
        "notice.jpg": "공지사항\n토요일 오전 열 시부터\n서버 점검이 있습니다\n이용에 참고해 주세요",
        "blank.png": "",
    }
)


def sample_path(name: str) -> Path:
    """The path of a bundled sample. Raises ``KeyError`` for an unknown name.

    Only names in :data:`SAMPLES` are accepted, so a name taken from a URL
    can never reach outside the samples folder.
    """
    if name not in SAMPLES:
        raise KeyError(f"no sample named {name!r}; known: {', '.join(sorted(SAMPLES))}")
    return SAMPLES_DIR / name


def iter_samples() -> Iterator[tuple[Path, str]]:
    """``(path, expected text)`` for every bundled sample, in a stable order."""
    for name in sorted(SAMPLES):
        yield sample_path(name), SAMPLES[name]


def write_samples(directory: Path) -> list[Path]:
    """Copy every bundled sample into ``directory``; returns the paths written.

    A fresh copy that tests and demos may modify. To re-render the bundled
    files themselves from their text, run
    ``python -m ocr_async.emulator.make_samples`` (needs Pillow and fonts).
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SAMPLES:
        path = directory / name
        shutil.copyfile(sample_path(name), path)
        written.append(path)
    return written
