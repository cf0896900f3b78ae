"""PDF input: pages rendered per second, and memory while streaming a long PDF.

    python -m benchmarks.pdf_pages              # 200 pages, text and scan-like
    python -m benchmarks.pdf_pages --pages 50   # quicker
    python -m benchmarks.pdf_pages --run        # end to end: `ocr-async run` on PDFs
    python -m benchmarks.pdf_pages --run --engine tesseract   # ... read by a real engine

Makes two PDFs of ``--pages`` pages in a temporary folder: "text" pages
(vector text in NanumGothic/DejaVu, written by fpdf2: they go as PNG) and
"scan" pages (one JPEG photograph per page, written by Pillow: they go as
JPEG). Each is then streamed through :func:`iter_pdf_pages` at 300 dpi in a
fresh child process, which reports pages per second and its resident memory
after the first page, at the middle and at the end, and its peak: flat
memory means no page is kept. A last child streams the scan pages into a
searchable PDF (:func:`write_searchable_pdf`), which must stay flat too.

``--run`` measures the whole pipeline instead: ``ocr-async run`` in a child
process against the emulator (in another child, on loopback; its quick
fallback engine unless ``--engine`` names a real one; ``--latency`` adds
seconds to each answer, as a distant API does), on the text PDF
alone, on the same with ``--alto``, ``--hocr`` and ``--searchable-pdf``, on
the scan with all three (not with a real engine: its pages are noise), and
on a folder of 20-page PDFs holding as many pages. Each gives pages per
second (records over the run's wall time, as its summary says), the
requests the emulator saw and the peak resident memory of the client
process (``wait4``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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


def run_through_emulator(
    work: Path, text: Path, scan: Path, engine: str, latency: float
) -> dict[str, Any]:
    """``ocr-async run`` on PDFs against the emulator: pages/s, requests, peak RSS."""
    from benchmarks.harness import emulator_process

    pages = int(text.stem.split("-")[-1])
    folder = work / "folder"
    folder.mkdir()
    for number in range(max(1, pages // 20)):
        make_text_pdf(folder / f"doc{number:03d}.pdf", 20)
    results: dict[str, Any] = {}
    with emulator_process("--engine", engine, "--latency", str(latency)) as emulator:
        scenarios = {
            "one_text_pdf": (text, False),
            "one_text_pdf_all_outputs": (text, True),
            "one_scan_pdf_all_outputs": (scan, True),
            f"folder_of_{pages // 20}_text_pdfs": (folder, False),
        }
        if engine != "embedded":
            # Its pages are noise: a real engine spends minutes on each, and
            # the requests time out waiting for it. Not a figure of the client.
            del scenarios["one_scan_pdf_all_outputs"]
        for name, (given, outputs) in scenarios.items():
            emulator.reset()
            out = work / name
            out.mkdir()
            argv = [
                sys.executable, "-m", "ocr_async", "run", str(given), "--no-progress",
                "--output", str(out / "out.jsonl"), "--base-url", emulator.base_url,
            ]  # fmt: skip
            if outputs:
                argv += [
                    "--alto", str(out / "alto"), "--hocr", str(out / "hocr"),
                    "--searchable-pdf", str(out / "pdf"),
                ]  # fmt: skip
            results[name] = {**timed_child(argv), "requests": emulator.stats().requests}
    return results


def timed_child(argv: list[str]) -> dict[str, Any]:
    """Run ``argv``: its pages/s (from its summary), wall seconds and peak RSS (wait4)."""
    from benchmarks.harness import CHILD_TIMEOUT, child_env

    with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=errors)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > CHILD_TIMEOUT:
                process.kill()
                raise RuntimeError(f"{argv[3:5]} took over {CHILD_TIMEOUT:.0f} s")
            time.sleep(0.05)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        errors.seek(0)
        stderr = errors.read()
    match = _SUMMARY.search(stderr)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"{argv[3:5]} exited {process.returncode}: {stderr[-500:]}")
    return {
        "records": int(match.group(1)),
        "pages_per_second": float(match.group(2)),
        "seconds": float(match.group(3)),
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
    }


_SUMMARY = re.compile(r"(\d+) records?: .*?([0-9.]+) images/s over ([0-9.]+) s", re.DOTALL)


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
    parser.add_argument("--run", action="store_true", help="end to end through the emulator")
    parser.add_argument("--engine", default="embedded", help="the emulator's, with --run")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added per answer (--run)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_stream(*rest) if kind == "stream" else child_searchable(*rest)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as work:
        text = Path(work, f"text-{args.pages}.pdf")
        scan = Path(work, f"scan-{args.pages}.pdf")
        make_text_pdf(text, args.pages)
        make_scan_pdf(scan, args.pages)
        if args.run:
            report = {"pages": args.pages, "engine": args.engine, "latency": args.latency}
            report |= run_through_emulator(Path(work), text, scan, args.engine, args.latency)
            print(json.dumps(report, indent=2))
            return
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
