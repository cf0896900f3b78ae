"""Tesseract as an emulator engine: Debian's ``tesseract-ocr`` (+ ``-kor``).

No Python package is needed: each call runs the ``tesseract`` program,
feeds it the image on stdin and reads two answers of the same run: TSV,
which gives every word with its box, confidence (0-100) and line, and the
plain text, which spaces Korean words right where the TSV cuts them into
pieces (see :func:`lines_from_tsv`). Words keep tesseract's line grouping
(page, block, paragraph, line), in its reading order; boxes are upright
rectangles; confidence is divided by 100.

Languages: ``kor+eng`` when both are installed (Debian ``tesseract-ocr-kor``
and ``tesseract-ocr-eng``), else whichever of the two is.

Settings, measured on the bundled samples: page segmentation mode 6 ("a
single uniform block of text"), because the automatic mode 3 lost or
scrambled lines of short Korean texts; ``OMP_THREAD_LIMIT=1``, because
tesseract's OpenMP threads made one call two to three times slower on two
cores, and the emulator runs one call per core at once anyway.

Each call starts a process that loads the language data (about 0.3 s on
the machine this was measured on); the process, not Python, does the work,
so the emulator's worker threads only wait on it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar, Final

from ocr_async.emulator.engine import RecognizedWord
from ocr_async.errors import ConfigurationError

__all__ = [
    "DEFAULT_PSM",
    "INSTALL_HINT",
    "TesseractEngine",
    "installed_languages",
    "lines_from_tsv",
]

#: How to get this engine on Debian.
INSTALL_HINT: Final = "apt-get install tesseract-ocr tesseract-ocr-kor"
#: Page segmentation mode: 6 is "a single uniform block of text".
DEFAULT_PSM: Final = 6
#: Languages used when installed, in tesseract's ``-l`` order.
_WANTED: Final = ("kor", "eng")
_TSV_COLUMNS: Final = 12
_WORD_LEVEL: Final = "5"
# Generous: a large page takes a few seconds; a stuck process must not
# hold a worker thread for ever.
_TIMEOUT: Final = 120.0


def installed_languages(program: str) -> frozenset[str]:
    """The language data ``program --list-langs`` reports (empty on failure)."""
    try:
        done = subprocess.run(
            [program, "--list-langs"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    # The first line is a heading: 'List of available languages in "..." (3):'
    lines = (done.stdout or done.stderr).splitlines()
    return frozenset(line.strip() for line in lines[1:] if line.strip())


def lines_from_tsv(tsv: str, text: str | None = None) -> list[list[RecognizedWord]]:
    """Tesseract's TSV answer as lines of words, in its reading order.

    Pure (no tesseract needed). Only word rows (level 5) with text count; a
    word's confidence is tesseract's divided by 100, at least 0. With
    ``text``, tesseract's plain-text answer from the same run, each line's
    words are re-joined as that text spaces them (see :func:`_respace`).
    """
    lines: dict[tuple[str, str, str, str], list[RecognizedWord]] = {}
    for row in _rows(tsv.splitlines()[1:]):
        level, page, block, par, line, _, left, top, width, height, conf, word_text = row
        if level != _WORD_LEVEL or not word_text.strip():
            continue
        x, y, w, h = int(left), int(top), int(width), int(height)
        confidence = max(0.0, float(conf) / 100.0)
        word = RecognizedWord.from_rect(word_text.strip(), confidence, x, y, x + w, y + h)
        lines.setdefault((page, block, par, line), []).append(word)
    found = list(lines.values())
    if text is None:
        return found
    spaced = [line.split() for line in text.splitlines() if line.strip()]
    if len(spaced) != len(found):
        return found
    return [_respace(words, line) for words, line in zip(found, spaced, strict=True)]


def _respace(words: list[RecognizedWord], spaced: list[str]) -> list[RecognizedWord]:
    """``words`` re-joined into the words of ``spaced``, the same line as text.

    Tesseract's TSV cuts Korean words into pieces (``감 사 합 니다``) that its
    text output writes whole (``감사합니다``). Each word of the text takes the
    pieces that spell it: the box is their union, the confidence their
    lowest. When the two disagree on any character the pieces are kept.
    """
    if "".join(w.value for w in words) != "".join(spaced):
        return words
    joined: list[RecognizedWord] = []
    pieces = iter(words)
    for target in spaced:
        taken: list[RecognizedWord] = []
        while "".join(w.value for w in taken) != target:
            piece = next(pieces, None)
            if piece is None or len("".join(w.value for w in taken)) >= len(target):
                return words
            taken.append(piece)
        joined.append(
            RecognizedWord.from_rect(
                target,
                min(w.conf for w in taken),
                min(w.box[0][0] for w in taken),
                min(w.box[0][1] for w in taken),
                max(w.box[2][0] for w in taken),
                max(w.box[2][1] for w in taken),
            )
        )
    return joined


def _rows(lines: Iterable[str]) -> Iterable[list[str]]:
    for line in lines:
        # The text is the last column: split at most 11 times.
        row = line.split("\t", _TSV_COLUMNS - 1)
        if len(row) == _TSV_COLUMNS:
            yield row


class TesseractEngine:
    """Real recognition with the ``tesseract`` program (Korean and English).

    Raises :class:`~ocr_async.errors.ConfigurationError` when the program or
    both of its Korean and English data are missing.
    """

    name: ClassVar[str] = "tesseract"

    def __init__(self, *, program: str = "tesseract", psm: int = DEFAULT_PSM) -> None:
        found = shutil.which(program)
        if found is None:
            raise ConfigurationError(
                f"the tesseract engine is not available (no {program!r} program); "
                f"install it with {INSTALL_HINT}"
            )
        installed = installed_languages(found)
        languages = [lang for lang in _WANTED if lang in installed]
        if not languages:
            raise ConfigurationError(
                f"the tesseract engine has neither Korean nor English data; install it with "
                f"{INSTALL_HINT}"
            )
        self.program = found
        self.languages = "+".join(languages)
        self.psm = psm
        self.scripts = frozenset({"latin"} | ({"hangul"} if "kor" in languages else set()))
        # Only OMP_THREAD_LIMIT is changed: see the module docstring.
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}

    def recognize(self, data: bytes) -> list[list[RecognizedWord]]:
        """Lines of words with boxes and confidences read from ``data``."""
        with tempfile.TemporaryDirectory(prefix="ocr-async-tesseract-") as scratch:
            base = Path(scratch) / "out"
            command = [self.program, "stdin", str(base), "-l", self.languages]
            done = subprocess.run(
                [*command, "--psm", str(self.psm), "txt", "tsv"],
                input=data,
                capture_output=True,
                timeout=_TIMEOUT,
                env=self._env,
                check=False,
            )
            if done.returncode != 0:
                message = done.stderr.decode("utf-8", "replace").strip().splitlines()
                raise RuntimeError(
                    f"tesseract exited with {done.returncode}: {message[-1] if message else ''}"
                )
            tsv = base.with_suffix(".tsv").read_text("utf-8", "replace")
            text = base.with_suffix(".txt").read_text("utf-8", "replace")
        return lines_from_tsv(tsv, text)
