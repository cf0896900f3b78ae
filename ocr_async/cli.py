"""The command line: ``ocr-async run | serve | demo``.

Exit codes are a stable interface (see :class:`ExitCode` and the README).
Records go to the output; progress, log lines and the summary go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import enum
import logging
import math
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ocr_async import __version__, protocol
from ocr_async.batch import StopRequest, counted, run_batch
from ocr_async.client import OcrClient
from ocr_async.errors import ConfigurationError, OcrError
from ocr_async.imaging import PILLOW_HINT
from ocr_async.inputs import display_path, is_url, tidy_path
from ocr_async.limits import RateController
from ocr_async.models import Endpoint, ImageUrl, SourceItem
from ocr_async.options import (
    APPKEY_ENV,
    BASE_URL_ENV,
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_TIMEOUT,
    Credentials,
    Options,
    resolve_base_url,
    resolve_credentials,
)
from ocr_async.progress import Progress
from ocr_async.resume import NotAnOutputError, ResumeIndex, load_resume_index
from ocr_async.retry import RetryPolicy
from ocr_async.seen import SourceSet
from ocr_async.sink import JsonlSink, OutputExistsError, OutputLock, OutputLockError
from ocr_async.sources import (
    CONVERTIBLE_EXTENSIONS,
    IMAGE_EXTENSIONS,
    UrlListError,
    iter_inputs,
    iter_url_list,
)
from ocr_async.textdir import TextDirSink

__all__ = ["MAX_BODY_BYTES", "MAX_CONCURRENCY", "ExitCode", "build_parser", "main"]

log = logging.getLogger("ocr_async")


class ExitCode(enum.IntEnum):
    """What the process exit status means."""

    #: Every input ended as a successful record.
    OK = 0
    #: The run finished, but some inputs failed; each has its error record.
    SOME_FAILED = 1
    #: Bad usage: a wrong flag, a missing setting, an output that exists.
    USAGE = 2
    #: The run could not proceed: credentials refused, output unwritable.
    CANNOT_PROCEED = 3
    #: Interrupted by Ctrl-C.
    INTERRUPTED = 130


class CommandError(Exception):
    """A command cannot go on: its message for stderr, and the exit code it means.

    Raised anywhere below :func:`main`, which prints ``PREFIX: MESSAGE`` and
    returns :attr:`exit_code`: the one place an error becomes an exit code.
    """

    exit_code: ExitCode = ExitCode.CANNOT_PROCEED

    def __init__(self, message: str, *, prefix: str = "ocr-async") -> None:
        super().__init__(message)
        self.prefix = prefix


class UsageError(CommandError):
    """A mistake in how the command was called; exit code 2."""

    exit_code = ExitCode.USAGE


class CannotProceedError(CommandError):
    """The command could not proceed (credentials refused, output unwritable); exit code 3."""

    exit_code = ExitCode.CANNOT_PROCEED


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
    run.add_argument(
        "--no-progress", action="store_true", help="no progress bar even on a terminal"
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log retries and skips")


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = _Parser(
        prog="ocr-async",
        description="High-throughput batch client for NHN Cloud General OCR v1.1.",
        epilog="exit codes: 0 all ok, 1 some inputs failed, 2 bad usage, "
        "3 run could not proceed, 130 interrupted",
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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The parsed arguments, or SystemExit after one line on stderr.

    ``run`` takes inputs after flags too (``run a.png -o out.jsonl b.png``),
    which argparse alone leaves over as unrecognized. Anything else left
    over is reported by the subcommand that was given it, as an unknown flag.
    """
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    if args.command != "run" or any(arg.startswith("-") for arg in extras):
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


def _log_skip(path: str, reason: str) -> None:
    log.info("skipped %s: %s", path, reason)


class _SkipLog:
    """Counts folder entries passed over, and names them with --verbose."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: str, reason: str) -> None:
        self.count += 1
        _log_skip(path, reason)


async def _all_items(
    inputs: Sequence[str],
    urls: str | None,
    on_skip: _SkipLog,
    extensions: frozenset[str],
    done: SourceSet | None = None,
) -> AsyncIterator[SourceItem]:
    async for item in iter_inputs(inputs, on_skip=on_skip, extensions=extensions):
        if isinstance(item.image, ImageUrl):
            yield item
            continue
        # An output written before sources were tidied keeps its spelling,
        # so that resuming it with the same command still skips what is done.
        tidy = tidy_path(item.source)
        if tidy != item.source and not (done is not None and item.source in done):
            item = SourceItem(tidy, item.image)
        yield item
    if urls is not None:
        async for item in iter_url_list(urls):
            yield item


def _check_run_args(args: argparse.Namespace) -> None:
    if args.output is None:
        raise UsageError("no output: pass --output OUT.jsonl (or --output - for stdout)")
    if not args.inputs and args.urls is None:
        raise UsageError("nothing to do: name INPUT files/folders/URLs or --urls FILE")
    if args.urls not in (None, "-") and (
        os.path.isdir(args.urls) or not os.access(args.urls, os.R_OK)
    ):
        raise UsageError(f"cannot read the URL list {args.urls!r}: give a readable file")
    if args.output != "-" and os.path.isdir(args.output):
        raise UsageError(
            f"the output {args.output!r} is a folder: name a file, "
            f"e.g. --output {os.path.join(args.output, 'out.jsonl')}"
        )
    if args.retry_failed and not args.resume:
        raise UsageError("--retry-failed goes with --resume")
    if args.resume and args.output == "-":
        raise UsageError("--resume needs an output file, not stdout")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    if args.rps is not None and args.no_adapt:
        raise UsageError("--rps and --no-adapt contradict each other")
    # The environment is read here, as everywhere, by resolve_credentials;
    # only the URL is checked now, in the order the mistakes were always told.
    _check_base_url(resolve_base_url(args.base_url))
    _check_pillow(args)


def _check_base_url(url: str) -> None:
    # Caught here, before any call: a mistyped host would otherwise cost
    # every image its retries and end as a pile of transport records.
    parts = urlsplit(url)
    problem = None
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        problem = "contains a space or a control character"
    elif parts.scheme.lower() not in ("http", "https"):
        problem = "does not start with http:// or https://"
    elif not parts.hostname:
        problem = "names no host"
    elif parts.query or parts.fragment:
        problem = "has a query (?) or fragment (#); give the host only"
    else:
        try:
            parts.port  # noqa: B018 (parsing the port is the check)
        except ValueError:
            problem = "has a port that is not a number from 0 to 65535"
    if problem is not None:
        raise UsageError(
            f"the API base URL {url!r} {problem}: pass --base-url (or set {BASE_URL_ENV}) "
            f"to the API host, e.g. {protocol.DEFAULT_BASE_URL}"
        )


def _check_pillow(args: argparse.Namespace) -> None:
    flags = [
        flag for flag, wanted in (("--convert", args.convert), ("--shrink", args.shrink)) if wanted
    ]
    if not flags:
        return
    try:
        import PIL.Image  # noqa: F401 (only whether it imports)
    except ImportError:
        needs = "needs" if len(flags) == 1 else "need"
        raise UsageError(
            f"{' and '.join(flags)} {needs} Pillow, which is not installed: {PILLOW_HINT}"
        ) from None


def _check_inputs_exist(inputs: Sequence[str]) -> None:
    # A path mistyped on the command line is a usage error, not an error
    # record: the run does not start, so no output is created that the
    # corrected run would have to overwrite. A file that goes missing once
    # the run has started still gets its not_found record.
    missing = [given for given in inputs if not is_url(given) and not os.path.lexists(given)]
    if not missing:
        return
    shown = ", ".join(repr(display_path(given)) for given in missing[:3])
    if len(missing) > 3:
        shown += f" and {len(missing) - 3} more"
    raise UsageError(
        f"no such file or folder: {shown}; check the path (nothing was sent, no output written)"
    )


def _options(args: argparse.Namespace) -> Options:
    """The run's one options object, from its flags."""
    return Options(
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_bytes=args.max_bytes,
        retry=RetryPolicy(max_attempts=args.max_attempts, max_throttled=args.max_throttled),
        rps=args.rps,
        adapt_rate=not args.no_adapt,
        endpoint="auto" if args.endpoint == "auto" else Endpoint(args.endpoint),
        convert=args.convert,
        shrink=args.shrink,
        grace=args.grace,
    )


async def _run(args: argparse.Namespace) -> ExitCode:
    _check_run_args(args)
    options = _options(args)
    credentials = resolve_credentials(
        appkey=args.appkey,
        base_url=args.base_url,
        token_file=args.token_file,
        appkey_flag="--appkey",
    )
    _check_inputs_exist(args.inputs)
    uak = credentials.user_access_key
    if uak is None:
        return await _run_with(args, options, credentials)
    # A User Access Key (NHN_UAK_ID/NHN_UAK_SECRET) issues its own tokens and
    # wins over a fixed token; it is asked for one before any image is read,
    # so a refused key stops the run at once (exit 3), not image by image.
    async with uak:
        try:
            await uak.get_token()
        except (ConfigurationError, OcrError) as exc:
            raise CannotProceedError(f"cannot get a token: {exc}") from None
        code = await _run_with(args, options, credentials)
        log.info("tokens issued from the User Access Key: %d", uak.issued)
        return code


async def _open_output(args: argparse.Namespace) -> tuple[JsonlSink, ResumeIndex | None]:
    # Locked before resume reads (and perhaps rewrites) the file, and until
    # the sink closes: one run at a time on one output.
    lock = OutputLock(args.output)
    try:
        await asyncio.to_thread(lock.acquire)
    except OutputLockError as exc:
        raise UsageError(str(exc)) from None
    try:
        return await _open_locked_output(args, lock)
    except BaseException:
        lock.release()
        raise


async def _open_locked_output(
    args: argparse.Namespace, lock: OutputLock
) -> tuple[JsonlSink, ResumeIndex | None]:
    resumed = None
    if args.resume:
        try:
            resumed = await asyncio.to_thread(
                load_resume_index, args.output, retry_failed=args.retry_failed
            )
        except NotAnOutputError as exc:
            raise UsageError(f"cannot resume: {exc}") from None
        print(
            f"ocr-async: resuming {args.output}: {counted(resumed.kept, 'record')} kept, "
            f"{counted(resumed.removed_broken, 'broken line')} removed, "
            f"{counted(resumed.removed_for_retry, 'failed record')} to send again",
            file=sys.stderr,
        )
    sink = JsonlSink(args.output, overwrite=args.overwrite, append=args.resume, lock=lock)
    try:
        await sink.open()
    except OutputExistsError as exc:
        raise UsageError(str(exc)) from None
    return sink, resumed


def _describe_rate(controller: RateController | None) -> str | None:
    if controller is None:
        return None
    if controller.sent == 0:  # all refused locally, or all done already
        return "rate: no calls sent"
    if controller.fixed_rps is not None:
        mode = f"fixed at {controller.fixed_rps:g} calls/s"
    elif controller.throttled == 0:
        mode = "adaptive; the call limit was never met"
    elif controller.quota_estimate is None:
        mode = "adaptive; call limit met, still probing for it"
    else:
        mode = f"adaptive; call limit met, estimated near {controller.quota_estimate:.1f} calls/s"
    return (
        f"rate: settled at {controller.settled_rate:.1f} calls/s ({mode}); "
        f"{counted(controller.throttled, 'call')} refused for the limit"
    )


async def _run_with(
    args: argparse.Namespace, options: Options, credentials: Credentials
) -> ExitCode:
    client = OcrClient(
        appkey=credentials.appkey,
        token=credentials.tokens,
        base_url=credentials.base_url,
        options=options,
    )
    try:
        sink, resumed = await _open_output(args)
    except OSError as exc:
        raise CannotProceedError(f"cannot open {args.output}: {exc}") from None
    progress = Progress(enabled=sys.stderr.isatty() and not args.no_progress)
    extensions = IMAGE_EXTENSIONS | (CONVERTIBLE_EXTENSIONS if options.convert else frozenset())
    if args.urls is None:
        progress.count_in_background(list(args.inputs), extensions)
    skips = _SkipLog()
    texts = TextDirSink(sink, Path(args.text_dir)) if args.text_dir else None
    stop = StopRequest()
    _install_stop_handlers(stop, progress)
    failure: OSError | None = None
    bad_list: UrlListError | None = None
    try:
        async with client:
            summary = await run_batch(
                client,
                _all_items(
                    args.inputs, args.urls, skips, extensions, resumed.done if resumed else None
                ),
                sink if texts is None else texts,
                options=options,
                on_record=progress.update,
                on_skip=_log_skip,
                already_done=resumed.done if resumed else None,
                stop=stop,
            )
    except OSError as exc:
        failure = exc
    except UrlListError as exc:
        bad_list = exc
    finally:
        progress.close()
        try:
            await sink.close()
        except OSError as exc:  # the writer failed (disk full) on the last lines
            failure = failure or exc
    if failure is not None:
        raise CannotProceedError(f"the run could not go on: {failure}")
    if bad_list is not None:
        # The inputs before the bad line have their records: --resume goes on.
        raise UsageError(
            f"{bad_list} (the records of the inputs before it are written; "
            "fix the list, then run again with --resume)"
        )
    summary.skipped = skips.count
    print(summary.describe(), file=sys.stderr)
    if texts is not None:
        print(texts.describe(), file=sys.stderr)
    if (rate := _describe_rate(client.rate_controller)) is not None:
        print(rate, file=sys.stderr)
    if summary.interrupted:
        return ExitCode.INTERRUPTED
    if summary.aborted:
        return ExitCode.CANNOT_PROCEED
    if resumed is not None and resumed.kept and not summary.already_done and summary.records:
        # Sources are matched as spelled: most likely the same inputs, named
        # from another folder or by another path.
        print(
            f"ocr-async: note: none of the {counted(resumed.kept, 'record')} already in "
            f"{args.output} matched an input of this run, so every input was sent; a source "
            "is matched as spelled: resume from the same folder, with the same paths",
            file=sys.stderr,
        )
    # A resumed job is judged whole: failures an earlier run recorded count.
    earlier_failures = resumed.failed_kept if resumed else 0
    if earlier_failures:
        remain = "remains" if earlier_failures == 1 else "remain"
        print(
            f"{counted(earlier_failures, 'failed record')} from earlier runs {remain}",
            file=sys.stderr,
        )
    # A text file asked for and missing fails the run too: its warning may go unread.
    texts_failed = texts.failed if texts is not None else 0
    return (
        ExitCode.SOME_FAILED if summary.failed or earlier_failures or texts_failed else ExitCode.OK
    )


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, as print() does."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _report(args: argparse.Namespace) -> ExitCode:
    from ocr_async.report import write_report

    if args.html is None:
        raise UsageError("no page to write: pass --html REVIEW.html")
    if os.path.exists(args.html) and not args.overwrite:
        raise UsageError(f"{args.html} already exists: pass --overwrite to replace it")
    unreadable = _records_unreadable(args.jsonl)
    if unreadable is not None:
        raise CannotProceedError(f"cannot read {args.jsonl}: {unreadable}")
    try:
        summary = write_report(Path(args.jsonl), Path(args.html), embed_images=not args.no_images)
    except OSError as exc:
        reading = exc.filename is not None and os.fspath(exc.filename) == args.jsonl
        what = f"read {args.jsonl}" if reading else f"write the report to {args.html}"
        raise CannotProceedError(f"cannot {what}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise CannotProceedError(f"cannot write the report: {exc}") from None
    print(summary.describe(), file=sys.stderr)
    print(f"review page written to {args.html}", file=sys.stderr)
    return ExitCode.OK


#: How much of a report's input is looked at before reading it whole.
_SNIFF_BYTES = 4096


def _records_unreadable(path: str) -> str | None:
    """Why ``path`` cannot be records of ``ocr-async run``, or None when it may be.

    Looks at the first bytes only: a record line is a JSON object, so any
    other first character (a PNG, a README, /dev/zero) is not JSON Lines.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISDIR(mode):
        return "it is a folder; give the .jsonl file that ocr-async run wrote"
    if not stat.S_ISREG(mode):
        # Never opened: a FIFO with no writer would block open() itself.
        return "not a regular file (a device, pipe or socket); save the records to a file first"
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:
        return exc.strerror or str(exc)
    start = head.lstrip(b" \t\r\n").removeprefix(b"\xef\xbb\xbf")[:1]
    if start not in (b"", b"{"):
        return (
            "it is not JSON Lines (its first line is not a JSON object); "
            "give the .jsonl file that ocr-async run wrote"
        )
    return None


def _install_stop_handlers(stop: StopRequest, progress: Progress) -> None:
    # SIGINT and SIGTERM both stop gracefully first; the second one stops now.
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        progress.close()
        if stop.graceful.is_set():
            print(f"ocr-async: {name} again: stopping now", file=sys.stderr)
        else:
            print(
                f"ocr-async: {name}: finishing requests in flight, then stopping "
                "(again to stop at once)",
                file=sys.stderr,
            )
        stop.request()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
        except (RuntimeError, ValueError, NotImplementedError):
            # Not the main thread (main() called from a library or a test):
            # signals stay with whoever owns them.
            return


def _configure_logging(verbose: bool) -> None:
    # Once per process, however often main() is called (tests call it a lot).
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("ocr-async: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parse(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    _configure_logging(getattr(args, "verbose", False))
    try:
        if args.command == "run":
            return int(asyncio.run(_run(args)))
        if args.command == "report":
            return _report(args)
        if args.command == "serve":
            from ocr_async.demo import serve_command

            return int(asyncio.run(serve_command(args)))
        from ocr_async.demo import demo_command

        return int(asyncio.run(demo_command(args)))
    except CommandError as exc:
        print(f"{exc.prefix}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ConfigurationError as exc:
        print(f"ocr-async: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("ocr-async: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
