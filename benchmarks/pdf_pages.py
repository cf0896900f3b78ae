"""PDF input: pages rendered per second, and memory while streaming a long PDF.

    python -m benchmarks.pdf_pages              # 200 pages, text and scan-like
    python -m benchmarks.pdf_pages --pages 50   # quicker

Makes two PDFs of ``--pages`` pages in a temporary folder: "text" pages
(vector text in NanumGothic/DejaVu, written by fpdf2: they go as PNG) and
"scan" pages (one JPEG photograph per page, written by Pillow: they go as
JPEG). Each is then streamed through :func:`iter_pdf_pages` at 300 dpi in a
fresh child process, which reports pages per second and its resident memory
after the first page, at the middle and at the end, and its peak: flat
memory means no page is kept. A last child streams the scan pages into a
searchable PDF (:func:`write_searchable_pdf`), which must stay flat too.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

NANUM = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
LINES = (
    "Digitization benchmark: a page of text set in a proportional font.",
    "디지털화 벤치마크: 한글과 영문이 섞인 문서의 한 쪽입니다.",
    "Invoice 2026-11-05, total 1,234,500 KRW, paid by transfer.",
)


def make_text_pdf(path: Path, pages: int) -> None:
    from fpdf import FPDF

    pdf = FPDF(unit="pt", format="A4")
    font = "helvetica"
    if NANUM.exists():
        pdf.add_font("nanum", fname=NANUM)
        font = "nanum"
    for number in range(pages):
        pdf.add_page()
        pdf.set_font(font, size=11)
        for row in range(40):
            pdf.text(56, 72 + row * 17, f"{number + 1}.{row + 1} {LINES[row % len(LINES)]}")
    pdf.output(str(path))


def make_scan_pdf(path: Path, pages: int) -> None:
    from PIL import Image

    # One 150-dpi photograph reused: the file stays small, PDFium decodes
    # each page's image anew (pages share no decoded state).
    photo = Image.effect_noise((1240, 1754), 40).convert("RGB")
    photo.save(path, "PDF", save_all=True, append_images=[photo] * (pages - 1), resolution=150)


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def child_stream(pdf: str) -> dict[str, Any]:
    from ocr_async.pdfpages import iter_pdf_pages

    started = time.perf_counter()
    count = 0
    total_bytes = 0
    marks: dict[str, int] = {}
    kinds: set[str] = set()
    pages_total = None
    for page in iter_pdf_pages(pdf):
        assert page.ok, page.error
        count += 1
        total_bytes += len(page.data)
        kinds.add(f"{page.image_type}@{page.dpi}")
        pages_total = page.pages
        if count in (1, (page.pages + 1) // 2, page.pages):
            marks[f"rss_kib_after_page_{count}"] = rss_kib()
    elapsed = time.perf_counter() - started
    return {
        "pages": count,
        "of": pages_total,
        "seconds": round(elapsed, 2),
        "pages_per_second": round(count / elapsed, 2),
        "mean_image_kib": round(total_bytes / count / 1024),
        "kinds": sorted(kinds),
        **marks,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def child_searchable(pdf: str, out: str) -> dict[str, Any]:
    from collections.abc import Iterator

    from ocr_async.models import OcrResult
    from ocr_async.outputs.searchable_pdf import SearchablePage, write_searchable_pdf
    from ocr_async.pdfpages import iter_pdf_pages

    marks: dict[str, int] = {}

    def pages() -> Iterator[SearchablePage]:
        for page in iter_pdf_pages(pdf, dpi=150):
            if page.number in (1, page.pages):
                marks[f"rss_kib_at_page_{page.number}"] = rss_kib()
            yield SearchablePage(page.data, OcrResult(lines=(), raw={}), dpi=page.dpi)

    started = time.perf_counter()
    count = write_searchable_pdf(pages(), out)
    elapsed = time.perf_counter() - started
    return {
        "pages": count,
        "seconds": round(elapsed, 2),
        "pages_per_second": round(count / elapsed, 2),
        "output_mib": round(Path(out).stat().st_size / 2**20, 1),
        **marks,
        "rss_kib_after_join": rss_kib(),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def in_child(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.pdf_pages", "--child", *args],
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_stream(*rest) if kind == "stream" else child_searchable(*rest)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as work:
        text, scan = Path(work, "text.pdf"), Path(work, "scan.pdf")
        make_text_pdf(text, args.pages)
        make_scan_pdf(scan, args.pages)
        baseline = in_child("stream", str(make_one_page(Path(work))))
        report = {
            "pages": args.pages,
            "text_pdf_mib": round(text.stat().st_size / 2**20, 1),
            "scan_pdf_mib": round(scan.stat().st_size / 2**20, 1),
            "one_page_baseline": baseline,
            "text": in_child("stream", str(text)),
            "scan": in_child("stream", str(scan)),
            "searchable_from_scan": in_child("searchable", str(scan), str(Path(work, "out.pdf"))),
        }
    print(json.dumps(report, indent=2))


def make_one_page(work: Path) -> Path:
    path = work / "one.pdf"
    make_text_pdf(path, 1)
    return path


if __name__ == "__main__":
    main()
