"""The sample images shipped with the package, and the text each one holds.

They exist for demos (``GET /samples/{name}`` on a running emulator, handy
for URL-mode requests) and for tests that want real files on disk. Each was
made by :func:`write_samples`, so its embedded text is :data:`SAMPLES`'s
value; ``blank.png`` holds no text on purpose (the API's 4000501), and
``long-receipt.png`` is long enough for ``/general/cropping`` to slice it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final

from ocr_async.emulator.images import make_jpeg, make_png

__all__ = ["SAMPLES", "SAMPLES_DIR", "iter_samples", "sample_path", "write_samples"]

#: Where the bundled files live (package data ``emulator/samples/*``).
SAMPLES_DIR: Final = Path(__file__).with_name("samples")

# name -> (text, width, height). Sizes are small to keep the wheel small;
# the long receipt is 4:1 wide so that cropping reports 2 slices.
_RECIPES: Final[Mapping[str, tuple[str, int, int]]] = {
    "hello.png": ("Hello World", 160, 40),
    "stella.jpg": ("stella artois\nbelgium", 160, 64),
    "korean.png": ("안녕하세요 세계", 200, 48),
    "korean-receipt.jpg": ("영수증 합계 12,000원\n감사합니다 Thank you", 240, 96),
    "long-receipt.png": ("NHN Cloud General OCR\nline two\nline three", 1000, 250),
    "blank.png": ("", 64, 32),
}

#: File name -> the text the emulator recognizes in it (lines joined by "\n").
SAMPLES: Final[Mapping[str, str]] = MappingProxyType(
    {name: text for name, (text, _, _) in _RECIPES.items()}
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
    """(Re)create every sample in ``directory``; returns the paths written.

    This is how the bundled files were made (``write_samples(SAMPLES_DIR)``);
    it also gives tests and demos a fresh copy they may modify.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (text, width, height) in _RECIPES.items():
        make = make_png if name.endswith(".png") else make_jpeg
        path = directory / name
        path.write_bytes(make(text, width, height))
        written.append(path)
    return written
