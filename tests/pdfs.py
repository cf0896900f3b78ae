"""PDFs made for the tests: text pages (fpdf2), scan-like pages (Pillow), bad ones.

Plain functions, imported where needed (as tests/fakes.py is). Text is set
in NanumGothic when installed (Debian fonts-nanum, which CI installs), so
Hangul is real text in the PDF; otherwise in Helvetica.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def text_pdf(
    pages: list[tuple[str, str]], password: str | None = None, *, size: float = 24
) -> bytes:
    """One A4 page per (orientation, text): "P" portrait or "L" landscape.

    Each line of the text (split at ``\\n``) is set from 1 inch in, 2 inches down.
    """
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="A4")
    font = "helvetica"
    if NANUM.exists():
        pdf.add_font("nanum", fname=NANUM)
        font = "nanum"
    for orientation, text in pages:
        pdf.add_page(orientation=orientation)
        pdf.set_font(font, size=size)
        for row, line in enumerate(text.split("\n")):
            pdf.text(72, 144 + row * size * 1.6, line)
    if password is not None:
        pdf.set_encryption(owner_password="owner", user_password=password)
    return bytes(pdf.output())


def photo_pdf(count: int, size: tuple[int, int] = (600, 800)) -> bytes:
    """Scan-like pages: each a JPEG-compressed photograph filling the page."""
    from PIL import Image

    images = [Image.effect_noise(size, 60 + n).convert("RGB") for n in range(count)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=100)
    return buffer.getvalue()


def zero_page_pdf() -> bytes:
    """A well-formed PDF with no page at all."""
    import pikepdf

    buffer = io.BytesIO()
    with pikepdf.new() as pdf:
        pdf.save(buffer)
    return buffer.getvalue()


def count_renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The page numbers :meth:`PdfPages.render` is asked for, from now on, in order."""
    from ocr_async.pdfpages import PdfPage, PdfPages

    rendered: list[int] = []
    real = PdfPages.render

    def counting(self: PdfPages, number: int) -> PdfPage:
        rendered.append(number)
        return real(self, number)

    monkeypatch.setattr(PdfPages, "render", counting)
    return rendered
