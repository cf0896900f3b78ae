"""The command line: ``ocr-async run | serve | demo``.

Exit codes are a stable interface (see :class:`ExitCode` and the README).
Records go to the output; progress, log lines and the summary go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from ocr_async import __version__, protocol
from ocr_async.auth import TokenProvider, token_from_environment, uak_from_environment
from ocr_async.batch import StopRequest, run_batch
from ocr_async.client import (
    APPKEY_ENV,
    BASE_URL_ENV,
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    OcrClient,
    RetryPolicy,
)
from ocr_async.errors import ConfigurationError, OcrError
from ocr_async.limits import RateController
from ocr_async.models import Endpoint
from ocr_async.prepare import Preparation
from ocr_async.progress import Progress
from ocr_async.resume import NotAnOutputError, ResumeIndex, load_resume_index
from ocr_async.sink import JsonlSink, OutputExistsError, OutputLock, OutputLockError
from ocr_async.sources import (
    CONVERTIBLE_EXTENSIONS,
    IMAGE_EXTENSIONS,
    SourceItem,
    iter_inputs,
    iter_url_list,
)
from ocr_async.textdir import TextDirSink

__all__ = ["ExitCode", "build_parser", "main"]

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


class UsageError(Exception):
    """A mistake in how the command was called; exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _add_run_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="recognize images from folders, files or URL lists into JSONL",
        description="Send every image to General OCR and write one JSON line per input.",
    )
    run.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders, or URLs")
    run.add_argument("--urls", metavar="FILE", help="a file with one image URL a line; - is stdin")
    run.add_argument(
        "-o", "--output", required=True, metavar="OUT.jsonl", help="where records go; - is stdout"
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
        default=os.environ.get(BASE_URL_ENV, protocol.DEFAULT_BASE_URL),
        help=f"API host (env {BASE_URL_ENV}; default {protocol.DEFAULT_BASE_URL})",
    )
    run.add_argument(
        "--appkey", default=os.environ.get(APPKEY_ENV), help=f"the app key (env {APPKEY_ENV})"
    )
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
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"requests in flight at once (default {DEFAULT_CONCURRENCY})",
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
        type=_positive_int,
        default=protocol.DEFAULT_MAX_BYTES,
        help=f"largest request body to send (default {protocol.DEFAULT_MAX_BYTES}, the 5 MB limit)",
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
        default=10.0,
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


#: ``--engine`` choices (ocr_async.emulator.engines.ENGINE_NAMES, kept here so
#: that ``ocr-async run`` does not import the emulator).
ENGINE_CHOICES = ("auto", "rapidocr", "tesseract", "embedded")


def _add_serve_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the local API emulator",
        description="Serve the General OCR v1.1 API on this machine, for tests and offline work.",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default loopback)"
    )
    serve.add_argument("--port", type=int, default=10080, help="port (default 10080)")
    serve.add_argument("--latency", type=float, default=0.0, help="seconds added to each answer")
    serve.add_argument(
        "--quota-rps", type=_positive_float, help="calls per second before answering 4000006"
    )
    serve.add_argument(
        "--max-bytes", type=_positive_int, default=protocol.DEFAULT_MAX_BYTES, help="request limit"
    )
    serve.add_argument(
        "--token", action="append", help="accept only this token (repeatable; default any)"
    )
    serve.add_argument("--appkey", help="accept only this app key (default any)")
    serve.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of calls that get a fault (0..1)"
    )
    serve.add_argument("--fault-seed", type=int, default=0, help="seed of the fault sequence")
    serve.add_argument(
        "--fault-kinds",
        default="all",
        help="comma list of drop, 502, truncated, cut, unavailable, unknown, slow (default all)",
    )
    serve.add_argument(
        "--fault-slow-seconds", type=float, default=30.0, help="how long a 'slow' fault waits"
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
        default="embedded",
        help="what reads the images: embedded (default: text embedded in test images, else "
        "a fingerprint), rapidocr (the 'ocr' extra), tesseract (Debian tesseract-ocr), "
        "auto (the best installed)",
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
    parser = argparse.ArgumentParser(
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
    report.add_argument("--html", required=True, metavar="REVIEW.html", help="the page to write")
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
    inputs: Sequence[str], urls: str | None, on_skip: _SkipLog, extensions: frozenset[str]
) -> AsyncIterator[SourceItem]:
    async for item in iter_inputs(inputs, on_skip=on_skip, extensions=extensions):
        yield item
    if urls is not None:
        async for item in iter_url_list(urls):
            yield item


def _check_run_args(args: argparse.Namespace) -> None:
    if not args.inputs and args.urls is None:
        raise UsageError("nothing to do: name INPUT files/folders/URLs or --urls FILE")
    if args.urls not in (None, "-") and not os.access(args.urls, os.R_OK):
        raise UsageError(f"cannot read the URL list {args.urls!r}")
    if args.retry_failed and not args.resume:
        raise UsageError("--retry-failed goes with --resume")
    if args.resume and args.output == "-":
        raise UsageError("--resume needs an output file, not stdout")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite contradict each other")
    if args.rps is not None and args.no_adapt:
        raise UsageError("--rps and --no-adapt contradict each other")


async def _run(args: argparse.Namespace) -> ExitCode:
    _check_run_args(args)
    if not args.appkey:
        raise UsageError(f"no app key: set {APPKEY_ENV} or pass --appkey")
    # A User Access Key (NHN_UAK_ID/NHN_UAK_SECRET) issues its own tokens and
    # wins over a fixed token; it is asked for one before any image is read,
    # so a refused key stops the run at once (exit 3), not image by image.
    uak = uak_from_environment()
    if uak is None:
        return await _run_with_tokens(args, token_from_environment(token_file=args.token_file))
    async with uak:
        try:
            await uak.get_token()
        except (ConfigurationError, OcrError) as exc:
            print(f"ocr-async: cannot get a token: {exc}", file=sys.stderr)
            return ExitCode.CANNOT_PROCEED
        code = await _run_with_tokens(args, uak)
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
            f"ocr-async: resuming {args.output}: {resumed.kept} records kept, "
            f"{resumed.removed_broken} broken lines removed, "
            f"{resumed.removed_for_retry} failed records to send again",
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
        f"{controller.throttled} calls refused for the limit"
    )


async def _run_with_tokens(args: argparse.Namespace, tokens: TokenProvider) -> ExitCode:
    preparation = Preparation(
        endpoint=Endpoint.GENERAL if args.endpoint == "auto" else Endpoint(args.endpoint),
        auto_endpoint=args.endpoint == "auto",
        convert=args.convert,
        shrink=args.shrink,
        max_bytes=args.max_bytes,
    )
    client = OcrClient(
        appkey=args.appkey,
        token=tokens,
        base_url=args.base_url,
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_bytes=args.max_bytes,
        retry=RetryPolicy(max_attempts=args.max_attempts, max_throttled=args.max_throttled),
        rps=args.rps,
        adapt_rate=not args.no_adapt,
    )
    try:
        sink, resumed = await _open_output(args)
    except OSError as exc:
        print(f"ocr-async: cannot open {args.output}: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    progress = Progress(enabled=sys.stderr.isatty() and not args.no_progress)
    extensions = IMAGE_EXTENSIONS | (CONVERTIBLE_EXTENSIONS if args.convert else frozenset())
    if args.urls is None:
        progress.count_in_background(list(args.inputs), extensions)
    skips = _SkipLog()
    texts = TextDirSink(sink, Path(args.text_dir)) if args.text_dir else None
    stop = StopRequest()
    _install_stop_handlers(stop, progress)
    failure: OSError | None = None
    try:
        async with client:
            summary = await run_batch(
                client,
                _all_items(args.inputs, args.urls, skips, extensions),
                sink if texts is None else texts,
                preparation=preparation,
                concurrency=args.concurrency,
                on_record=progress.update,
                on_skip=_log_skip,
                already_done=resumed.done if resumed else None,
                stop=stop,
                grace=args.grace,
            )
    except OSError as exc:
        failure = exc
    finally:
        progress.close()
        try:
            await sink.close()
        except OSError as exc:  # the writer failed (disk full) on the last lines
            failure = failure or exc
    if failure is not None:
        print(f"ocr-async: the run could not go on: {failure}", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
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
    # A resumed job is judged whole: failures an earlier run recorded count.
    earlier_failures = resumed.failed_kept if resumed else 0
    if earlier_failures:
        print(f"{earlier_failures} failed records from earlier runs remain", file=sys.stderr)
    # A text file asked for and missing fails the run too: its warning may go unread.
    texts_failed = texts.failed if texts is not None else 0
    return (
        ExitCode.SOME_FAILED if summary.failed or earlier_failures or texts_failed else ExitCode.OK
    )


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, as print() does."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    from ocr_async.report import write_report

    if os.path.exists(args.html) and not args.overwrite:
        raise UsageError(f"{args.html} already exists: pass --overwrite to replace it")
    try:
        summary = write_report(Path(args.jsonl), Path(args.html), embed_images=not args.no_images)
    except (OSError, ValueError) as exc:
        print(f"ocr-async: cannot write the report: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    print(summary.describe(), file=sys.stderr)
    print(f"review page written to {args.html}", file=sys.stderr)
    return ExitCode.OK


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
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
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
    except (UsageError, ConfigurationError) as exc:
        print(f"ocr-async: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("ocr-async: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
