"""``ocr-async run``: recognize files, folders and URL lists into one JSONL output.

The flags become one :class:`~ocr_async.options.Options` and one set of
:class:`~ocr_async.options.Credentials`; the inputs flow
``sources -> pre-check -> client -> batch -> JSONL (and text files)``, with
the progress bar and the summary on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ocr_async import protocol
from ocr_async.cli.dryrun import dry_run
from ocr_async.cli.exits import CannotProceedError, ExitCode, UsageError
from ocr_async.cli.logs import notice
from ocr_async.cli.logs import summary as tell_summary
from ocr_async.cli.memory import return_large_buffers
from ocr_async.cli.sources import CommandInputs, SkipCounter, check_inputs_exist, log_skip
from ocr_async.client import OcrClient
from ocr_async.errors import ConfigurationError, OcrError
from ocr_async.imaging import PILLOW_HINT
from ocr_async.inputs import display_path, is_url
from ocr_async.limits import RateController
from ocr_async.models import Endpoint, Record
from ocr_async.options import (
    BASE_URL_ENV,
    SHARED_QUOTA_ENV,
    Credentials,
    Options,
    resolve_base_url,
    resolve_credentials,
)
from ocr_async.outputs.jsonl import JsonlSink, OutputExistsError, OutputLock, OutputLockError
from ocr_async.outputs.pagefiles import (
    AltoFolder,
    HocrFolder,
    PageFiles,
    PageFormat,
    SearchablePdfFolder,
    digitize_support,
)
from ocr_async.outputs.progress import Progress
from ocr_async.outputs.runmeta import RunMeta, write_run_meta
from ocr_async.outputs.textdir import TextDirSink
from ocr_async.pdfpages import is_pdf_name, pdf_support
from ocr_async.pipeline.batch import BatchSummary, StopRequest, run_batch
from ocr_async.pipeline.manifest import ManifestError
from ocr_async.pipeline.resume import NotAnOutputError, ResumeIndex, load_resume_index
from ocr_async.pipeline.sources import CONVERTIBLE_EXTENSIONS, WALKED_EXTENSIONS, UrlListError
from ocr_async.retry import RetryPolicy
from ocr_async.wording import counted

if TYPE_CHECKING:  # the optional extras ('metrics', 'cluster'): imported when asked for
    from ocr_async.outputs.metrics import OcrMetrics
    from ocr_async.pipeline.cluster import ClusterRun
    from ocr_async.shared_quota import SharedQuota

__all__ = ["run_command"]

log = logging.getLogger("ocr_async")


def _check_run_args(args: argparse.Namespace) -> None:
    if args.output is None:
        raise UsageError("no output: pass --output OUT.jsonl (or --output - for stdout)")
    _inputs(args, frozenset()).check()
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
    _check_scale_out_args(args)
    # The environment is read here, as everywhere, by resolve_credentials;
    # only the URL is checked now, in the order the mistakes were always told.
    _check_base_url(resolve_base_url(args.base_url))
    _check_pillow(args)
    _check_pdf_support(args.inputs)
    _check_page_outputs(args)


# -- scale-out (issue 11): --shared-quota, --cluster ---------------------------------


def _shared_quota_url(args: argparse.Namespace) -> str | None:
    """``--shared-quota``, else ``OCR_ASYNC_SHARED_QUOTA`` (stripped; empty is unset)."""
    return args.shared_quota or os.environ.get(SHARED_QUOTA_ENV, "").strip() or None


def _check_scale_out_args(args: argparse.Namespace) -> None:
    if _shared_quota_url(args) is not None:
        given = "--shared-quota" if args.shared_quota else f"a shared quota ({SHARED_QUOTA_ENV})"
        for flag, set_ in (("--rps", args.rps is not None), ("--no-adapt", args.no_adapt)):
            if set_:
                raise UsageError(
                    f"{flag} and {given} contradict each other: a shared quota is one "
                    "adaptive controller for every process on the app key"
                )
    if args.cluster is not None and args.rps is not None:
        raise UsageError(
            "--rps caps one process, not a cluster: a --cluster run shares one adaptive "
            "quota among its workers (or --shared-quota's)"
        )
    if args.cluster is not None:
        for flag, name in _PAGE_OUTPUTS:
            if getattr(args, name):
                raise UsageError(
                    f"{flag} is written from the images sent, which stay on the workers "
                    "of a --cluster run: run without --cluster for page files"
                )


@contextlib.asynccontextmanager
async def _watching_share(client: OcrClient) -> AsyncIterator[None]:
    """With -v: say when the group sharing the quota grows or shrinks, and this process's share."""
    shared = _shared(client)
    if shared is None:
        yield
        return

    async def watch() -> None:
        heard = shared.members
        while True:
            await asyncio.sleep(1.0)
            if shared.members != heard and shared.members:
                heard = shared.members
                log.info(
                    "shared quota: %s now; this process's share %.0f%% of %.1f calls/s",
                    counted(heard, "member"),
                    100 * shared.fraction,
                    shared.global_rate(),
                )

    watcher = asyncio.create_task(watch(), name="ocr-shared-quota-watch")
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


def _shared(client: OcrClient) -> SharedQuota | None:
    """The client's shared quota over Redis, or None."""
    if client.shared_quota is None:
        return None
    from ocr_async.shared_quota import SharedQuota  # there is one: redis-py is installed

    return client.shared_quota if isinstance(client.shared_quota, SharedQuota) else None


def _tell_sharing(client: OcrClient) -> None:
    """The summary's line on the shared quota, if the run had one."""
    shared = _shared(client)
    if shared is None:
        return
    if shared.lost:
        tell_summary(
            "shared quota: the store was lost during the run; this process paced alone since",
            event="shared_quota",
            lost=True,
        )
        return
    tell_summary(
        f"shared quota: {counted(shared.members, 'member')} at the end; this process's "
        f"share {100 * shared.fraction:.0f}% of the group's {shared.global_rate():.1f} calls/s",
        event="shared_quota",
        lost=False,
        members=shared.members,
        share=round(shared.fraction, 4),
        group_calls_per_s=round(shared.global_rate(), 2),
    )


@contextlib.asynccontextmanager
async def _connected(
    args: argparse.Namespace, options: Options, credentials: Credentials
) -> AsyncIterator[ClusterRun | None]:
    """With --cluster: the run on the Dask cluster, connected (a worker present); else None."""
    if args.cluster is None:
        yield None
        return
    try:
        from ocr_async.pipeline.cluster import ClusterRun
    except ImportError:
        raise UsageError(
            "--cluster needs Dask distributed, which is not installed: "
            "pip install 'ocr-async[cluster]'"
        ) from None
    async with ClusterRun(args.cluster, credentials, options) as cluster:
        yield cluster


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


def _check_pdf_support(inputs: Sequence[str]) -> None:
    # A PDF named on the command line without the extra is a usage error, as
    # --convert without Pillow is. PDFs met in folders are known only once
    # walked: each gets its error record (retryable: --resume --retry-failed
    # reads them once the extra is installed).
    named = [given for given in inputs if not is_url(given) and is_pdf_name(given)]
    if named and (missing := pdf_support()) is not None:
        raise UsageError(f"{display_path(named[0])} is a PDF, and {missing}")


#: The page-output flags and what each writes.
_PAGE_OUTPUTS = (("--alto", "alto"), ("--hocr", "hocr"), ("--searchable-pdf", "searchable_pdf"))


def _check_page_outputs(args: argparse.Namespace) -> None:
    wanted = [(flag, getattr(args, name)) for flag, name in _PAGE_OUTPUTS if getattr(args, name)]
    for flag, folder in wanted:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UsageError(f"{flag} {folder!r} is a file: name a folder (made if needed)")
    for flag, _ in wanted:
        missing = digitize_support(pdf=flag == "--searchable-pdf")
        if missing is not None:
            raise UsageError(f"{flag} {missing}")


def _page_files(args: argparse.Namespace) -> PageFiles | None:
    """The page outputs asked for, or None."""
    formats: list[PageFormat] = []
    if args.alto:
        formats.append(AltoFolder(Path(args.alto)))
    if args.hocr:
        formats.append(HocrFolder(Path(args.hocr)))
    if args.searchable_pdf:
        formats.append(SearchablePdfFolder(Path(args.searchable_pdf), resumed=args.resume))
    return PageFiles(formats) if formats else None


def _extensions(options: Options) -> frozenset[str]:
    """What a folder walk takes: JPEG, PNG and PDF, and with ``--convert`` what becomes PNG."""
    return WALKED_EXTENSIONS | (CONVERTIBLE_EXTENSIONS if options.convert else frozenset())


def _inputs(
    args: argparse.Namespace,
    extensions: frozenset[str],
    on_skip: Callable[[str, str], None] = log_skip,
) -> CommandInputs:
    """The run's inputs: INPUT..., --urls or --manifest, named as verify names them."""
    return CommandInputs(
        args.inputs,
        urls=args.urls,
        manifest=args.manifest,
        extensions=extensions,
        on_skip=on_skip,
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
        pdf_dpi=args.pdf_dpi,
        shared_quota=_shared_quota_url(args),
    )


async def run_command(args: argparse.Namespace) -> ExitCode:
    """Run ``ocr-async run``; the exit code of how the run went (errors are raised)."""
    _check_run_args(args)
    options = _options(args)
    return_large_buffers()  # page images and bodies back to the system once freed
    if args.dry_run:
        # It sends nothing, so it needs no credentials (and issues no token).
        check_inputs_exist(args.inputs)
        skips = SkipCounter()
        return await dry_run(args, options, _inputs(args, _extensions(options), skips), skips)
    credentials = resolve_credentials(
        appkey=args.appkey,
        base_url=args.base_url,
        token_file=args.token_file,
        appkey_flag="--appkey",
    )
    check_inputs_exist(args.inputs)
    uak = credentials.user_access_key
    if uak is None:
        return await _run_observed(args, options, credentials)
    # A User Access Key (NHN_UAK_ID/NHN_UAK_SECRET) issues its own tokens and
    # wins over a fixed token; it is asked for one before any image is read,
    # so a refused key stops the run at once (exit 3), not image by image.
    async with uak:
        try:
            await uak.get_token()
        except (ConfigurationError, OcrError) as exc:
            raise CannotProceedError(f"cannot get a token: {exc}") from None
        code = await _run_observed(args, options, credentials)
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
        notice(
            f"resuming {args.output}: {counted(resumed.kept, 'record')} kept, "
            f"{counted(resumed.removed_broken, 'broken line')} removed, "
            f"{counted(resumed.removed_for_retry, 'failed record')} to send again",
            event="resume",
            kept=resumed.kept,
            removed_broken=resumed.removed_broken,
            removed_for_retry=resumed.removed_for_retry,
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


async def _run_observed(
    args: argparse.Namespace, options: Options, credentials: Credentials
) -> ExitCode:
    """The run; with --metrics-port, its metrics served on loopback until after the summary."""
    if args.metrics_port is None:
        return await _run_with(args, options, credentials)
    try:
        from ocr_async.outputs.metrics import OcrMetrics, serve_metrics
    except ImportError as exc:
        raise UsageError(f"--metrics-port: {exc}") from None
    metrics = OcrMetrics()
    try:
        server = await serve_metrics(metrics, args.metrics_port)
    except OSError as exc:
        raise CannotProceedError(
            f"cannot serve metrics on 127.0.0.1:{args.metrics_port}: {exc}"
        ) from None
    notice(f"metrics at {server.url}", event="metrics", url=server.url)
    try:
        return await _run_with(args, options, credentials, metrics)
    finally:
        await server.close()


async def _run_with(
    args: argparse.Namespace,
    options: Options,
    credentials: Credentials,
    metrics: OcrMetrics | None = None,
) -> ExitCode:
    client = OcrClient(
        appkey=credentials.appkey,
        token=credentials.tokens,
        base_url=credentials.base_url,
        # With --cluster the workers send, and share the quota; this process only writes.
        options=replace(options, shared_quota=None) if args.cluster else options,
        observer=metrics,
    )
    if metrics is not None and args.cluster is None:
        # A --cluster run's local client sends nothing: its rate would be a
        # lie (+Inf, never refused). The workers' pace is theirs to show.
        metrics.watch(client.rate_controller)
    skips = SkipCounter()
    inputs = _inputs(args, _extensions(options), skips)
    await inputs.prime()  # a manifest that is none stops here, before the output exists
    if inputs.reader is not None:
        log.info("manifest %s", inputs.reader.describe())
    # Opened, and joined to a shared quota or connected to the cluster, before
    # the output is created: a store or a scheduler that cannot be reached
    # stops the run (exit 2) with nothing written.
    async with (
        client,
        _watching_share(client),
        _connected(args, options, credentials) as cluster,
    ):
        return await _run_opened(args, options, client, cluster, inputs, skips, metrics)


async def _run_opened(
    args: argparse.Namespace,
    options: Options,
    client: OcrClient,
    cluster: ClusterRun | None,
    inputs: CommandInputs,
    skips: SkipCounter,
    metrics: OcrMetrics | None,
) -> ExitCode:
    try:
        sink, resumed = await _open_output(args)
    except OSError as exc:
        raise CannotProceedError(f"cannot open {args.output}: {exc}") from None
    # No bar between JSON lines: a log collector reads stderr.
    progress = Progress(
        enabled=sys.stderr.isatty() and not args.no_progress and args.log_format != "json"
    )
    if args.urls is None and args.manifest is None:
        progress.count_in_background(list(args.inputs), inputs.extensions)
    texts = TextDirSink(sink, Path(args.text_dir)) if args.text_dir else None
    page_files = _page_files(args)
    stop = StopRequest()
    _install_stop_handlers(stop, progress)
    failure: OSError | None = None
    bad_list: UrlListError | None = None
    bad_manifest: ManifestError | None = None
    on_record = progress.update if metrics is None else _both(progress, metrics)
    try:
        if cluster is not None:
            summary = await cluster.run(
                inputs.items(resumed.done if resumed else None),
                sink if texts is None else texts,
                on_record=on_record,
                on_skip=log_skip,
                already_done=resumed.done if resumed else None,
                stop=stop,
            )
        else:
            summary = await run_batch(
                client,
                inputs.items(resumed.done if resumed else None),
                sink if texts is None else texts,
                options=options,
                on_record=on_record,
                on_skip=log_skip,
                already_done=resumed.done if resumed else None,
                stop=stop,
                pages=page_files,
            )
        if page_files is not None:
            await page_files.finish()
    except OSError as exc:
        failure = exc
    except UrlListError as exc:
        bad_list = exc
    except ManifestError as exc:
        bad_manifest = exc
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
    if bad_manifest is not None:
        raise CannotProceedError(
            f"the manifest could not be read on: {bad_manifest} (the records of the rows "
            "before it are written; fix the manifest, then run again with --resume)"
        )
    summary.skipped = skips.count
    tell_summary(summary.describe(), event="summary", **_summary_fields(summary))
    if texts is not None:
        tell_summary(
            texts.describe(), event="text_files", written=texts.written, failed=texts.failed
        )
    if page_files is not None:
        tell_summary(page_files.describe(), event="page_files", failed=page_files.failed)
    if cluster is not None:
        tell_summary(cluster.describe_rate(), event="rate", workers=len(cluster.figures))
    elif (rate := _describe_rate(client.rate_controller)) is not None:
        tell_summary(rate, event="rate", **_rate_fields(client.rate_controller))
    _tell_sharing(client)
    if args.output != "-":
        await _keep_run_meta(args.output, summary, client.rate_controller)
    if summary.interrupted:
        return ExitCode.INTERRUPTED
    if summary.aborted:
        return ExitCode.CANNOT_PROCEED
    if resumed is not None and resumed.kept and not summary.already_done and summary.records:
        # Sources are matched as spelled: most likely the same inputs, named
        # from another folder or by another path.
        how = (
            "a row is matched by its id: is it the same manifest?"
            if args.manifest is not None
            else "a source is matched as spelled: resume from the same folder, with the same paths"
        )
        notice(
            f"note: none of the {counted(resumed.kept, 'record')} already in {args.output} "
            f"matched an input of this run, so every input was sent; {how}",
            event="resume_matched_nothing",
        )
    # A resumed job is judged whole: failures an earlier run recorded count.
    earlier_failures = resumed.failed_kept if resumed else 0
    if earlier_failures:
        remain = "remains" if earlier_failures == 1 else "remain"
        tell_summary(
            f"{counted(earlier_failures, 'failed record')} from earlier runs {remain}",
            event="earlier_failures",
            failed_kept=earlier_failures,
        )
    # A text file asked for and missing fails the run too: its warning may go unread.
    texts_failed = texts.failed if texts is not None else 0
    texts_failed += page_files.failed if page_files is not None else 0
    return (
        ExitCode.SOME_FAILED if summary.failed or earlier_failures or texts_failed else ExitCode.OK
    )


def _summary_fields(summary: BatchSummary) -> dict[str, Any]:
    """The summary's figures, for --log-format json."""
    return {
        "records": summary.records,
        "ok": summary.ok,
        "failed": dict(summary.failed),
        "retries": summary.retries,
        "skipped": summary.skipped,
        "duplicates": summary.duplicates,
        "already_done": summary.already_done,
        "interrupted": summary.interrupted,
        "aborted": summary.aborted,
        "elapsed_s": round(summary.elapsed_s, 3),
        "images_per_s": round(summary.images_per_s, 2),
    }


def _rate_fields(controller: RateController | None) -> dict[str, Any]:
    assert controller is not None
    return {
        "settled_calls_per_s": round(controller.settled_rate, 2),
        "sent": controller.sent,
        "throttled": controller.throttled,
        "fixed_rps": controller.fixed_rps,
        "quota_estimate": controller.quota_estimate,
    }


def _both(progress: Progress, metrics: OcrMetrics) -> Callable[[Record], None]:
    def on_record(record: Record) -> None:
        progress.update(record)
        metrics.on_record(record)

    return on_record


async def _keep_run_meta(
    output: str, summary: BatchSummary, controller: RateController | None
) -> None:
    """Keep what the run measured beside the output (OUT.meta.json), for a dry run's estimate."""
    if (controller is not None and controller.sent == 0) or summary.records == 0:
        return  # nothing sent: no rate to keep, and the last one still holds
    meta = RunMeta(
        elapsed_s=summary.elapsed_s,
        records=summary.records,
        requests=None if controller is None else controller.sent,
        settled_calls_per_s=None if controller is None else controller.settled_rate,
        quota_estimate=None if controller is None else controller.quota_estimate,
    )
    try:
        await asyncio.to_thread(write_run_meta, output, meta)
    except OSError as exc:
        log.warning("could not keep the run's rate for the next --dry-run: %s", exc)


def _install_stop_handlers(stop: StopRequest, progress: Progress) -> None:
    # SIGINT and SIGTERM both stop gracefully first; the second one stops now.
    loop = asyncio.get_running_loop()

    def on_signal(name: str) -> None:
        progress.close()
        if stop.graceful.is_set():
            notice(f"{name} again: stopping now", event="signal", signal=name)
        else:
            notice(
                f"{name}: finishing requests in flight, then stopping (again to stop at once)",
                event="signal",
                signal=name,
            )
        stop.request()

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, on_signal, signal.Signals(signum).name)
        except (RuntimeError, ValueError, NotImplementedError):
            # Not the main thread (main() called from a library or a test):
            # signals stay with whoever owns them.
            return
