"""An OCRmyPDF plugin: NHN Cloud General OCR as OCRmyPDF's OCR engine.

::

    pip install 'ocr-async[ocrmypdf]'
    export NHN_OCR_APPKEY=... NHN_UAK_ID=... NHN_UAK_SECRET=...   # or NHN_OCR_TOKEN
    ocrmypdf --plugin ocr_async.ocrmypdf -l kor+eng in.pdf out.pdf

OCRmyPDF keeps doing what it does (rasterizing, deskew, PDF/A, optimising,
the text layer); each page image it would give Tesseract goes to the API
instead, and its words come back as hOCR (:mod:`ocr_async.outputs.hocr`).
The settings are the command line's environment variables, resolved by
:func:`ocr_async.recognize_many` as for any library user.

**One client for all workers.** OCRmyPDF recognizes pages in parallel
worker processes (or threads, with ``--use-threads``), and the API's call
limit is one per app key. So the plugin starts one *broker* process when
OCRmyPDF checks its options, in the main process before any worker
exists: it holds the only :class:`~ocr_async.OcrClient` (one token, one
rate controller that finds the call limit from 4000006 answers, retries
with backoff), and workers hand it their page images over a Unix socket
in a private folder, each waiting for its page's record. A shared quota
across machines would plug in there, in the broker's client. The broker
stops when OCRmyPDF exits (it watches its standard input).

Each page image is shrunk to fit the 5 MB request limit when needed
(:func:`ocr_async.imaging.shrink_to_fit`), and the boxes the API answers
are scaled back to the page image. A page the API could not read after
its retries stops the document with an error naming it (exit 7), as a
Tesseract failure does: a searchable PDF silently missing a page's text
would be worse. A page with no text (4000501) is simply empty.

Languages: ``kor`` and ``eng`` (the API reads both at once, so ``-l``
only needs to name one of them). No orientation or skew detection: the
API has none (OCRmyPDF's ``--rotate-pages`` then does nothing; ``--deskew``
uses its own method). The ``sandwich`` renderer is not supported.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import io
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Set
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ocrmypdf import hookimpl
from ocrmypdf.exceptions import BadArgsError, ExitCode, ExitCodeException
from ocrmypdf.pluginspec import OcrEngine, OrientationConfidence

from ocr_async import __version__
from ocr_async.errors import ConfigurationError, OcrError
from ocr_async.imaging import convert_to_png, shrink_to_fit
from ocr_async.models import ImageBytes, OcrResult, Record, SourceItem
from ocr_async.outputs.hocr import hocr_document
from ocr_async.outputs.layout import PageLayout
from ocr_async.protocol import DEFAULT_MAX_BYTES, parse_result, sniff_image_type

if TYPE_CHECKING:
    from ocrmypdf._options import OcrOptions

__all__ = [
    "BROKER_ENV",
    "LANGUAGES",
    "NhnOcrEngine",
    "PageFailedError",
    "check_options",
    "get_ocr_engine",
]

#: The environment variable through which workers find the broker's socket.
BROKER_ENV: Final = "OCR_ASYNC_OCRMYPDF_BROKER"
#: What ``languages()`` tells OCRmyPDF (``-l`` is checked against it).
LANGUAGES: Final = frozenset({"kor", "eng"})
_ENGINE: Final = "NHN Cloud General OCR API v1.1"
_LENGTH: Final = struct.Struct(">I")
# The broker answers "ready" at once; a minute covers a loaded machine.
_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 10.0


class PageFailedError(ExitCodeException):
    """A page image could not be recognized: OCRmyPDF stops with exit code 7."""

    exit_code = ExitCode.child_process_error


# --- the engine (worker side) ---------------------------------------------------


class NhnOcrEngine(OcrEngine):
    """OCRmyPDF's view of NHN General OCR: each page image through the broker."""

    @staticmethod
    def version() -> str:
        """The plugin's version (the API has none to ask)."""
        return __version__

    @staticmethod
    def creator_tag(options: OcrOptions) -> str:
        """What the PDF's metadata says made its text."""
        return f"{_ENGINE} via ocr-async {__version__}"

    def __str__(self) -> str:
        return f"{_ENGINE} (ocr-async {__version__})"

    @staticmethod
    def languages(options: OcrOptions) -> Set[str]:
        """Korean and English, read together."""
        return LANGUAGES

    @staticmethod
    def get_orientation(input_file: Path, options: OcrOptions) -> OrientationConfidence:
        """No opinion: the API does not detect orientation."""
        return OrientationConfidence(angle=0, confidence=0.0)

    @staticmethod
    def get_deskew(input_file: Path, options: OcrOptions) -> float:
        """No opinion: the API does not measure skew."""
        return 0.0

    @staticmethod
    def generate_hocr(
        input_file: Path, output_hocr: Path, output_text: Path, options: OcrOptions
    ) -> None:
        """Recognize one page image; write its hOCR and its plain text."""
        result, size, dpi, scale = recognize_page(input_file)
        output_hocr.write_bytes(
            hocr_document(result, size, file_name=input_file.name, dpi=dpi, scale=scale)
        )
        text = PageLayout.from_result(result, size, scale=scale).text
        output_text.write_text(text + "\n" if text else "", encoding="utf-8")

    @staticmethod
    def generate_pdf(
        input_file: Path, output_pdf: Path, output_text: Path, options: OcrOptions
    ) -> None:
        """Not supported: OCRmyPDF's default renderer takes the hOCR instead."""
        raise BadArgsError(
            "the NHN OCR plugin makes hOCR, not text-only PDFs: use --pdf-renderer auto"
        )


def recognize_page(
    image_file: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[OcrResult, tuple[int, int], float | None, tuple[float, float]]:
    """Send one page image through the broker.

    Returns the result, the image's size and stated DPI, and the scale from
    the API's coordinates to the image's (not 1 when it had to be shrunk).
    Raises :class:`PageFailedError` when the page failed, and
    :class:`BadArgsError` when no broker runs (see :func:`check_options`).
    """
    from PIL import Image

    address = os.environ.get(BROKER_ENV)
    if not address:
        raise BadArgsError(
            f"the NHN OCR broker is not running ({BROKER_ENV} is unset): "
            "load the plugin with ocrmypdf --plugin ocr_async.ocrmypdf"
        )
    data = image_file.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        size = image.size
        stated = image.info.get("dpi")
    dpi = float(stated[0]) if isinstance(stated, tuple) and stated and stated[0] else None
    try:
        if sniff_image_type(data) is None:  # OCRmyPDF writes PNG, but filters may not
            data = convert_to_png(data)[0].data
        shrunk = shrink_to_fit(data, max_bytes)
    except OcrError as exc:
        raise PageFailedError(f"{image_file.name}: {exc}") from None
    sent = (shrunk.width or size[0], shrunk.height or size[1])
    scale = (size[0] / sent[0], size[1] / sent[1])
    answer = _ask_broker(address, f"{uuid.uuid4().hex}:{image_file.name}", shrunk.data)
    if "fatal" in answer:
        raise PageFailedError(f"{image_file.name}: NHN OCR stopped: {answer['fatal']}")
    record = answer["record"]
    if not record["ok"]:
        error = record["error"]
        raise PageFailedError(
            f"{image_file.name}: NHN OCR failed after {record['attempts']} attempt(s): "
            f"[{error['code']}] {error['message']}"
        )
    return parse_result(record["result"] or {}), size, dpi, scale


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


def _receive(sock: socket.socket) -> bytes:
    def exactly(count: int) -> bytes:
        chunks = []
        while count:
            chunk = sock.recv(min(count, 1 << 20))
            if not chunk:
                raise PageFailedError("the NHN OCR broker went away (see its messages above)")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    (length,) = _LENGTH.unpack(exactly(_LENGTH.size))
    return exactly(length)


def _ask_broker(address: str, name: str, image: bytes) -> dict[str, Any]:
    # One connection per page: a worker has one page in hand at a time.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(_frame(name.encode("utf-8")) + _frame(image))
            answer: dict[str, Any] = json.loads(_receive(sock))
        except OSError as exc:
            raise PageFailedError(f"cannot reach the NHN OCR broker: {exc}") from None
    return answer


# --- hooks (main process) -------------------------------------------------------


@hookimpl
def get_ocr_engine(options: OcrOptions | None) -> OcrEngine | None:
    """The NHN OCR engine, unless ``--ocr-engine`` names another."""
    if options is not None and getattr(options, "ocr_engine", "auto") != "auto":
        return None
    return NhnOcrEngine()


@hookimpl
def check_options(options: OcrOptions) -> None:
    """Start the broker (once per process), before OCRmyPDF starts its workers.

    Raises :class:`BadArgsError` when the settings are missing or wrong
    (no app key, no token), with the message the command line would give.
    """
    if getattr(options, "ocr_engine", "auto") != "auto":
        return
    jobs = getattr(options, "jobs", None) or os.cpu_count() or 1
    _BROKER.ensure_running(concurrency=jobs)


class _BrokerProcess:
    """The broker child process, started once and stopped when this process exits."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._folder: str | None = None
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def ensure_running(self, *, concurrency: int) -> str:
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                assert self._folder is not None
                return os.path.join(self._folder, "broker.sock")
            self._folder = tempfile.mkdtemp(prefix="ocr-async-ocrmypdf-")  # mode 0700
            address = os.path.join(self._folder, "broker.sock")
            self._process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "ocr_async.ocrmypdf"),
                    *("--broker", address, "--concurrency", str(concurrency)),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            line = self._first_line(self._process)
            if line != "ready":
                self.stop()
                raise BadArgsError(f"NHN OCR: {line.removeprefix('error ') or 'cannot start'}")
            # Workers are started after this hook, forked or spawned: they inherit it.
            os.environ[BROKER_ENV] = address
            return address

    @staticmethod
    def _first_line(process: subprocess.Popen[bytes]) -> str:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
        if not ready:
            return "error the broker did not start in time"
        return process.stdout.readline().decode("utf-8", "replace").strip()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()  # the broker's signal to finish
            try:
                process.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._folder is not None:
            if os.path.dirname(os.environ.get(BROKER_ENV, "")) == self._folder:
                del os.environ[BROKER_ENV]
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None


_BROKER: Final = _BrokerProcess()


# --- the broker (its own process) -----------------------------------------------


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    return await reader.readexactly(length)


class _Broker:
    """Pages in from the workers' connections, records out through one client."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[SourceItem | None] = asyncio.Queue()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._fatal: str | None = None

    async def items(self) -> AsyncIterator[SourceItem]:
        while (item := await self._inbox.get()) is not None:
            yield item

    async def consume(self, records: AsyncIterator[Record]) -> None:
        try:
            async for record in records:
                waiting = self._waiting.pop(record.source, None)
                if waiting is not None and not waiting.done():
                    waiting.set_result({"record": record.to_json()})
        except ConfigurationError as exc:  # the API refused the credentials
            self._fatal = str(exc)
        finally:
            self._fatal = self._fatal or "the broker stopped"
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_result({"fatal": self._fatal})
            self._waiting.clear()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            name = (await _read_frame(reader)).decode("utf-8")
            image = await _read_frame(reader)
            if self._fatal is not None:
                answer: dict[str, Any] = {"fatal": self._fatal}
            else:
                waiting = asyncio.get_running_loop().create_future()
                self._waiting[name] = waiting
                await self._inbox.put(SourceItem(name, ImageBytes(image, name)))
                answer = await waiting
            writer.write(_frame(json.dumps(answer).encode("utf-8")))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the worker is gone; its page's record has nobody to go to
        finally:
            writer.close()

    def finish(self) -> None:
        self._inbox.put_nowait(None)


async def _serve(address: str, concurrency: int) -> int:
    from ocr_async.pipeline.record_stream import recognize_many

    broker = _Broker()
    try:
        # The settings are resolved here, as for any library user of recognize_many.
        records = recognize_many(broker.items(), concurrency=concurrency)
    except ConfigurationError as exc:
        print(f"error {exc}", flush=True)
        return 2
    server = await asyncio.start_unix_server(broker.handle, path=address)
    consumer = asyncio.create_task(broker.consume(records))
    print("ready", flush=True)
    # Standard input closes when the process that started us stops or dies.
    await asyncio.to_thread(sys.stdin.buffer.read)
    broker.finish()
    server.close()
    await server.wait_closed()
    await consumer
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m ocr_async.ocrmypdf --broker SOCKET``: what :func:`check_options` starts."""
    parser = argparse.ArgumentParser(prog="python -m ocr_async.ocrmypdf")
    parser.add_argument("--broker", required=True, metavar="SOCKET")
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args(argv)
    return asyncio.run(_serve(args.broker, max(1, args.concurrency)))


if __name__ == "__main__":
    sys.exit(main())
