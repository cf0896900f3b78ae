"""Render the bundled sample images from their known text (a build step).

``python -m ocr_async.emulator.make_samples [DIR]`` writes every sample of
:data:`~ocr_async.emulator.samples.SAMPLES` into ``DIR`` (default: the
package's ``emulator/samples/``). Each is black text on white, rendered with
Pillow, and carries its text embedded too (PNG ``iTXt`` / JPEG ``COM``, key
``ocr-async:text``) so that the default engine answers it without OCR.

This runs when the samples change, not at run time: it needs Pillow and two
font families that the package cannot depend on, DejaVu for Latin text and
Nanum Gothic for Korean (Debian ``fonts-dejavu-core`` and ``fonts-nanum``).
With the same fonts, Pillow and zlib/libjpeg the output is byte for byte the
same; elsewhere the pixels may differ by antialiasing, never the sizes or
the text (the tests check that much).

:func:`render_text` is also what tests use to make their own scans.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from ocr_async.emulator.images import TEXT_KEYWORD
from ocr_async.emulator.samples import SAMPLES, SAMPLES_DIR

__all__ = [
    "FONT_PATHS",
    "RECIPES",
    "Recipe",
    "encode",
    "find_font",
    "main",
    "render_sample",
    "render_text",
]

#: Where Debian installs the fonts, by role; the first existing path wins.
FONT_PATHS: Final[Mapping[str, Sequence[str]]] = {
    "latin": (
        "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
        "/usr/share/fonts/dejavu/DejaVuSerif.ttf",
    ),
    "sans": (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ),
    "hangul": (
        "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
        "/usr/share/fonts/nanum/NanumGothic.ttf",
    ),
}
_FONT_PACKAGES: Final = {"latin": "fonts-dejavu-core", "sans": "fonts-dejavu-core"}

# Text is black on white; lines are 1.5 font sizes apart.
_LINE_SPACING: Final = 1.5
_JPEG_QUALITY: Final = 85


@dataclass(frozen=True, slots=True)
class Recipe:
    """How one sample is drawn: font role, font size in px, and canvas."""

    font: str
    size: int
    #: Fixed canvas ``(width, height)``, or None to fit the text plus padding.
    canvas: tuple[int, int] | None = None
    padding: int = 32


#: Sample name -> how it is drawn. Sizes are those of a 10-12 pt print
#: scanned at 200-300 dpi; ``long-receipt.png`` is 4:1 so that
#: ``/general/cropping`` reports 2 slices; ``blank.png`` is tiny and empty.
RECIPES: Final[Mapping[str, Recipe]] = {
    "hello.png": Recipe("latin", 40),
    "stella.jpg": Recipe("latin", 36),
    "korean.png": Recipe("hangul", 40),
    "korean-receipt.jpg": Recipe("hangul", 34),
    "long-receipt.png": Recipe("latin", 44, canvas=(1000, 250)),
    "invoice.png": Recipe("latin", 32),
    "notice.jpg": Recipe("hangul", 36),
    "blank.png": Recipe("latin", 12, canvas=(64, 32)),
}


def find_font(role: str) -> Path:
    """The font file for ``role`` ("latin", "sans" or "hangul")."""
    for candidate in FONT_PATHS[role]:
        path = Path(candidate)
        if path.is_file():
            return path
    package = _FONT_PACKAGES.get(role, "fonts-nanum")
    raise FileNotFoundError(f"no {role} font found; install Debian's {package}")


def render_text(
    text: str,
    font: Path,
    size: int,
    *,
    canvas: tuple[int, int] | None = None,
    padding: int = 32,
) -> Image.Image:
    """``text`` drawn black on a white grayscale image, one line per newline.

    Without ``canvas`` the image fits the text plus ``padding`` on every
    side; with it the text starts at ``padding`` from the top left and
    lines are centred vertically.
    """
    face = ImageFont.truetype(str(font), size)
    lines = text.split("\n")
    pitch = round(size * _LINE_SPACING)
    text_width = max((round(face.getlength(line)) for line in lines), default=0)
    text_height = pitch * (len(lines) - 1) + size
    if canvas is None:
        canvas = (text_width + 2 * padding, text_height + 2 * padding)
        top = padding
    else:
        top = max(0, (canvas[1] - text_height) // 2)
    image = Image.new("L", canvas, 255)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((padding, top + i * pitch), line, font=face, fill=0)
    return image


def encode(image: Image.Image, name: str, embedded: str | None) -> bytes:
    """``image`` as PNG or JPEG (by ``name``), with ``embedded`` text if not None."""
    buffer = io.BytesIO()
    if name.endswith(".png"):
        info = PngInfo()
        if embedded is not None:
            info.add_itxt(TEXT_KEYWORD, embedded)
        image.save(buffer, "PNG", optimize=True, pnginfo=info)
    else:
        comment = b"" if embedded is None else f"{TEXT_KEYWORD}={embedded}".encode()
        image.save(buffer, "JPEG", quality=_JPEG_QUALITY, optimize=True, comment=comment)
    return buffer.getvalue()


def render_sample(name: str) -> bytes:
    """The bytes of bundled sample ``name``, rendered from its recipe and text."""
    recipe = RECIPES[name]
    text = SAMPLES[name]
    image = render_text(
        text, find_font(recipe.font), recipe.size, canvas=recipe.canvas, padding=recipe.padding
    )
    return encode(image, name, text)


def main(argv: Sequence[str] | None = None) -> int:
    """Write every sample into the folder given (default: the bundled one)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("directory", nargs="?", type=Path, default=SAMPLES_DIR)
    args = parser.parse_args(argv)
    directory: Path = args.directory
    directory.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in SAMPLES:
        data = render_sample(name)
        (directory / name).write_bytes(data)
        total += len(data)
        print(f"{name:<20} {len(data):>7} bytes", file=sys.stderr)
    print(f"{len(SAMPLES)} samples, {total} bytes, in {directory}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
