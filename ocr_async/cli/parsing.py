"""The command line's grammar: every subcommand's flags, checked as they are parsed.

Flags are declared here, and nothing else happens here: the commands read
the parsed arguments in their own modules, and the argparse ``Namespace``
never leaves the ``cli`` package (``run`` turns it into one
:class:`~ocr_async.options.Options`).
"""

from __future__ import annotations

import argparse
import difflib
import math
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ocr_async import __version__, protocol
from ocr_async.cli.exits import ExitCode
from ocr_async.models import Endpoint
from ocr_async.options import (
    APPKEY_ENV,
    BASE_URL_ENV,
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_PDF_DPI,
    DEFAULT_TIMEOUT,
    MAX_PDF_DPI,
    MIN_PDF_DPI,
    SHARED_QUOTA_ENV,
)
from ocr_async.retry import RetryPolicy

__all__ = [
    "ENGINE_CHOICES",
    "LOG_FORMATS",
    "MAX_BODY_BYTES",
    "MAX_CONCURRENCY",
    "QUOTA_KINDS",
    "build_parser",
    "parse",
]

#: The most requests ``--concurrency`` allows in flight. Past a few hundred
#: the API's call limit, not the number of workers, bounds the throughput,
#: while each worker in flight holds a socket and a request body of up to
#: ``--max-bytes``; a thousand sockets already meet the usual limit of 1024
#: open files. A million workers took 1.6 GB and 42 s to start (issue 8).
MAX_CONCURRENCY = 1000
#: The largest ``--max-bytes``: 64 MiB, three times the 20 MB NHN documents.
#: Every image up to this size is read into memory whole, by each worker.
MAX_BODY_BYTES = 64 * 1024 * 1024


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, not the usage before it.

    Flags are never abbreviated (``--out`` is not ``--output``): an
    abbreviation a script relies on silently changes meaning when a flag
    that shares its prefix is added.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit 2."""
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def unknown(self, extras: Sequence[str]) -> NoReturn:
        """Report arguments this parser does not take, the first unknown flag first."""
        flags = [arg for arg in extras if arg.startswith("-") and arg != "-"]
        if not flags:
            self.error(f"unexpected argument{'s' if len(extras) > 1 else ''} {' '.join(extras)}")
        flag = flags[0].split("=", 1)[0]
        known = [name for action in self._actions for name in action.option_strings]
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.8)
        hint = f"; did you mean {close[0]}?" if close else ""
        self.error(f"unknown flag {flag}{hint}")


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (inclusive)."""

    def parse(text: str) -> int:
        value = _whole_number(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}: {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}: {text}")
        return value

    return parse


_positive_int = _int_in(1)


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):  # nan or inf: no timeout or rate means that
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _positive_float(text: str) -> float:
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _share(text: str) -> float:
    value = _finite_float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1: {text}")
    return value


def _add_run_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    run = commands.add_parser(
        "run",
        help="recognize images from folders, files or URL lists into JSONL",
        description="Send every image to General OCR and write one JSON line per input.",
    )
    run.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders, or URLs")
    run.add_argument("--urls", metavar="FILE", help="a file with one image URL a line; - is stdin")
    # Required, but checked after parsing: an unknown flag (--outptu x) is
    # then reported as unknown, not as a missing --output.
    run.add_argument(
        "-o", "--output", metavar="OUT.jsonl", help="where records go (required); - is stdout"
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    run.add_argument(
        "--resume",
        action="store_true",
        help="add to an existing output, skipping inputs that already have their record",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: send again inputs whose record failed with a retryable error",
    )
    run.add_argument(
        "--base-url",
        help=f"API host (env {BASE_URL_ENV}; default {protocol.DEFAULT_BASE_URL})",
    )
    run.add_argument("--appkey", help=f"the app key (env {APPKEY_ENV})")
    run.add_argument(
        "--token-file", metavar="FILE", help="file holding the token (else env NHN_OCR_TOKEN)"
    )
    run.add_argument(
        "--endpoint",
        choices=[*(e.value for e in Endpoint), "auto"],
        default=Endpoint.GENERAL.value,
        help="general; cropping for long images; auto: cropping beyond 1:2.5, "
        "refused beyond 1:10 (default general)",
    )
    run.add_argument(
        "--convert",
        action="store_true",
        help="turn TIFF (every page), BMP, WebP and GIF into PNG before sending "
        "(needs the 'image' extra)",
    )
    run.add_argument(
        "--shrink",
        action="store_true",
        help="re-encode an image over --max-bytes to fit instead of failing "
        "(needs the 'image' extra)",
    )
    run.add_argument(
        "--concurrency",
        type=_int_in(1, MAX_CONCURRENCY),
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight at once, 1 to {MAX_CONCURRENCY} (default {DEFAULT_CONCURRENCY})",
    )
    run.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=RetryPolicy().max_attempts,
        help=f"requests per image at most, retries included (default {RetryPolicy().max_attempts})",
    )
    run.add_argument(
        "--max-throttled",
        type=_positive_int,
        default=RetryPolicy().max_throttled,
        help="call-limit refusals (4000006, 5000503) per image at most; they are paced by "
        "the rate controller, not counted in --max-attempts "
        f"(default {RetryPolicy().max_throttled})",
    )
    run.add_argument(
        "--rps",
        type=_positive_float,
        help="never send more than this many requests per second (default: adapt to the "
        "call limit, found from 4000006 answers)",
    )
    run.add_argument(
        "--no-adapt",
        action="store_true",
        help="no shared rate control: each refused call backs off on its own",
    )
    _add_scale_out_flags(run)
    run.add_argument(
        "--max-bytes",
        type=_int_in(1, MAX_BODY_BYTES),
        default=protocol.DEFAULT_MAX_BYTES,
        help=f"largest request body to send, at most {MAX_BODY_BYTES} "
        f"(default {protocol.DEFAULT_MAX_BYTES}, the 5 MB limit)",
    )
    run.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds per request (default {DEFAULT_TIMEOUT:g})",
    )
    run.add_argument(
        "--grace",
        type=_positive_float,
        default=DEFAULT_GRACE,
        help="on Ctrl-C, seconds to let requests in flight finish (default 10)",
    )
    run.add_argument(
        "--text-dir",
        metavar="DIR",
        help="also write one .txt per recognized image below DIR, mirroring the inputs' "
        "paths (never outside DIR)",
    )
    _add_page_output_flags(run)
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log retries and skips")
    _add_pipeline_flags(run)


def _add_scale_out_flags(run: argparse.ArgumentParser) -> None:
    # Issue 11: one quota shared by many processes; runs spread over Dask.
    run.add_argument(
        "--shared-quota",
        metavar="URL",
        help=f"share the app key's quota with every process using this Redis "
        f"(redis://HOST:6379/0; env {SHARED_QUOTA_ENV}; needs the 'cluster' extra)",
    )
    run.add_argument(
        "--cluster",
        metavar="tcp://SCHEDULER:8786",
        help="spread the run over a Dask cluster: the workers prepare and send, the "
        "records are written here (needs the 'cluster' extra)",
    )


def _add_page_output_flags(run: argparse.ArgumentParser) -> None:
    # For digitization (issue 12): PDF pages in; ALTO, hOCR, searchable PDFs out.
    run.add_argument(
        "--alto",
        metavar="DIR",
        help="also write one ALTO v4 XML file per recognized image or page below DIR, "
        "mirroring the inputs' paths (needs the 'digitize' extra)",
    )
    run.add_argument(
        "--hocr",
        metavar="DIR",
        help="also write one hOCR file per recognized image or page below DIR, "
        "mirroring the inputs' paths (needs the 'digitize' extra)",
    )
    run.add_argument(
        "--searchable-pdf",
        metavar="DIR",
        help="also write one searchable PDF per input below DIR: its images with the "
        "words as invisible text (needs the 'digitize' extra and a Hangul font)",
    )
    run.add_argument(
        "--pdf-dpi",
        type=_int_in(MIN_PDF_DPI, MAX_PDF_DPI),
        default=DEFAULT_PDF_DPI,
        help=f"render PDF pages at this resolution, {MIN_PDF_DPI} to {MAX_PDF_DPI}, lowered "
        f"for a page that would not fit --max-bytes (default {DEFAULT_PDF_DPI})",
    )


def _add_pipeline_flags(run: argparse.ArgumentParser) -> None:
    """``run``'s flags for pipelines and services (issue 13), kept together."""
    run.add_argument(
        "--manifest",
        metavar="FILE",
        help="JSONL or CSV (with a header), one row per input: an id and a path or a url; "
        "every other field comes back as the record's metadata; - is stdin",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="send nothing: pre-check every input, list what would be sent and what "
        "refused, and estimate the time",
    )
    run.add_argument(
        "--metrics-port",
        type=_int_in(0, 65535),
        metavar="N",
        help="serve Prometheus metrics on 127.0.0.1:N/metrics during the run (0: any free port)",
    )
    _add_log_format(run)


def _add_log_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (default), or json: one JSON object per line on stderr",
    )


#: ``--log-format`` choices.
LOG_FORMATS = ("text", "json")
#: ``--quota-kind`` choices (ocr_async.emulator.limiters.LIMITER_KINDS).
QUOTA_KINDS = ("bucket", "window", "sliding")
#: ``--engine`` choices (ocr_async.emulator.engines.ENGINE_NAMES, kept here so
#: that ``ocr-async run`` does not import the emulator).
ENGINE_CHOICES = ("auto", "rapidocr", "tesseract", "embedded")


def _add_serve_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the local API emulator",
        description="Serve the General OCR v1.1 API on this machine, for tests and offline work.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default loopback)"
    )
    serve.add_argument(
        "--port",
        type=_int_in(0, 65535),
        default=10080,
        help="port; 0 picks a free one (default 10080)",
    )
    serve.add_argument(
        "--latency", type=_non_negative_float, default=0.0, help="seconds added to each answer"
    )
    serve.add_argument(
        "--quota-rps", type=_positive_float, help="calls per second before answering 4000006"
    )
    serve.add_argument(
        "--quota-kind",
        choices=QUOTA_KINDS,
        default="bucket",
        help="how calls count against the quota: bucket (a token bucket, default), window "
        "(a fixed one-second window), sliding (HAProxy's http_req_rate(1s): refused calls "
        "count too)",
    )
    serve.add_argument(
        "--quota-burst",
        type=_positive_int,
        help="calls a bucket saves up (default: one second's worth)",
    )
    serve.add_argument(
        "--quota-schedule",
        metavar="T:R,...",
        help="change the quota over time: seconds since the first call, then calls/s, "
        'e.g. "0:40,10:20,20:60"',
    )
    serve.add_argument(
        "--max-bytes",
        type=_int_in(1, MAX_BODY_BYTES),
        default=protocol.DEFAULT_MAX_BYTES,
        help=f"request limit, at most {MAX_BODY_BYTES}",
    )
    serve.add_argument(
        "--token", action="append", help="accept only this token (repeatable; default any)"
    )
    serve.add_argument("--appkey", help="accept only this app key (default any)")
    serve.add_argument(
        "--fault-rate", type=_share, default=0.0, help="share of calls that get a fault (0..1)"
    )
    serve.add_argument("--fault-seed", type=int, default=0, help="seed of the fault sequence")
    serve.add_argument(
        "--fault-kinds",
        default="all",
        help="comma list of drop, 502, truncated, cut, unavailable, unknown, slow (default all)",
    )
    serve.add_argument(
        "--fault-slow-seconds",
        type=_non_negative_float,
        default=30.0,
        help="how long a 'slow' fault waits",
    )
    serve.add_argument(
        "--uak",
        action="append",
        metavar="ID:SECRET",
        help="serve the OAuth token endpoint for this User Access Key (repeatable)",
    )
    serve.add_argument(
        "--token-lifetime", type=_positive_float, default=86400.0, help="seconds a token lives"
    )
    serve.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="what reads images without embedded text: auto (default: the best installed, "
        "as the demo picks), rapidocr (the 'ocr' extra), tesseract (Debian tesseract-ocr), "
        "embedded (text embedded in test images, else a fingerprint)",
    )
    serve.add_argument(
        "--ignore-embedded-text",
        action="store_true",
        help="with a real --engine, read the pixels even of images that carry embedded text",
    )
    serve.add_argument(
        "--engine-workers",
        type=_positive_int,
        help="recognitions at once with a real engine (default: one per core, at most 2)",
    )


def _add_verify_parser(commands: argparse._SubParsersAction[_Parser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="check that an output holds exactly one record for every input",
        description="Check that OUT.jsonl holds exactly one record for every input given "
        "(as 'run' names them, or each manifest row by its id); list the missing, the "
        "duplicated, the unexpected and the failed as JSON lines on stdout.",
    )
    verify.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders, or URLs")
    verify.add_argument(
        "--urls", metavar="FILE", help="a file with one image URL a line; - is stdin"
    )
    verify.add_argument(
        "--manifest", metavar="FILE", help="the manifest the run read (JSONL or CSV); - is stdin"
    )
    verify.add_argument(
        "-o", "--output", metavar="OUT.jsonl", help="the output to check (required)"
    )
    verify.add_argument(
        "--convert",
        action="store_true",
        help="as the run was: folders also hold TIFF, BMP, WebP and GIF",
    )
    _add_log_format(verify)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(
        prog="ocr-async",
        description="High-throughput batch client for NHN Cloud General OCR v1.1.",
        epilog="exit codes: 0 all ok, 1 some inputs failed, 2 bad usage, "
        "3 run could not proceed, 4 verify found a mismatch, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_parser(commands)
    _add_serve_parser(commands)
    report = commands.add_parser(
        "report",
        help="write a self-contained HTML review page from a JSONL output",
        description="Each image with its word boxes drawn over it and its text beside "
        "it, failures first, with filters by status and confidence.",
    )
    report.add_argument("jsonl", metavar="OUT.jsonl", help="records written by 'ocr-async run'")
    report.add_argument("--html", metavar="REVIEW.html", help="the page to write (required)")
    report.add_argument("--overwrite", action="store_true", help="replace an existing page")
    report.add_argument(
        "--no-images", action="store_true", help="draw boxes on blank sheets, embed no images"
    )
    _add_verify_parser(commands)
    demo = commands.add_parser(
        "demo",
        help="run the batch end to end against the built-in emulator",
        description="Start the emulator in-process and recognize the bundled sample images.",
    )
    demo.add_argument("-o", "--output", help="keep the records here (default: a temporary file)")
    demo.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="auto",
        help="what reads the samples (default auto: the best real engine installed, "
        "else the embedded text)",
    )
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments, or SystemExit after one line on stderr.

    ``run`` and ``verify`` take inputs after flags too (``run a.png -o out.jsonl b.png``),
    which argparse alone leaves over as unrecognized. Anything else left
    over is reported by the subcommand that was given it, as an unknown flag.
    """
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    if args.command not in ("run", "verify") or any(arg.startswith("-") for arg in extras):
        _subparser(parser, args.command).unknown(extras)
    args.inputs = [*args.inputs, *extras]
    return args


def _subparser(parser: argparse.ArgumentParser, name: str) -> _Parser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices[name]
            assert isinstance(chosen, _Parser)
            return chosen
    raise LookupError(name)
