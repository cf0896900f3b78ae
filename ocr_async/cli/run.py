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
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ocr_async import protocol
from ocr_async.cli.exits import CannotProceedError, ExitCode, UsageError
from ocr_async.client import OcrClient
from ocr_async.errors import ConfigurationError, OcrError
from ocr_async.imaging import PILLOW_HINT
from ocr_async.inputs import display_path, is_url, tidy_path
from ocr_async.limits import RateController
from ocr_async.models import Endpoint, ImageUrl, SourceItem
from ocr_async.options import (
    BASE_URL_ENV,
    SHARED_QUOTA_ENV,
    Credentials,
    Options,
    resolve_base_url,
    resolve_credentials,
)
from ocr_async.outputs.jsonl import JsonlSink, OutputExistsError, OutputLock, OutputLockError
from ocr_async.outputs.progress import Progress
from ocr_async.outputs.textdir import TextDirSink
from ocr_async.pipeline.batch import StopRequest, run_batch
from ocr_async.pipeline.resume import NotAnOutputError, ResumeIndex, load_resume_index
from ocr_async.pipeline.sources import (
    CONVERTIBLE_EXTENSIONS,
    IMAGE_EXTENSIONS,
    UrlListError,
    iter_inputs,
    iter_url_list,
)
from ocr_async.pipeline.sourceset import SourceSet
from ocr_async.retry import RetryPolicy
from ocr_async.wording import counted

if TYPE_CHECKING:
    from ocr_async.pipeline.cluster import ClusterRun
    from ocr_async.shared_quota import SharedQuota

__all__ = ["run_command"]

log = logging.getLogger("ocr_async")


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
    _check_scale_out_args(args)
    # The environment is read here, as everywhere, by resolve_credentials;
    # only the URL is checked now, in the order the mistakes were always told.
    _check_base_url(resolve_base_url(args.base_url))
    _check_pillow(args)


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


def _describe_sharing(client: OcrClient) -> str | None:
    shared = _shared(client)
    if shared is None:
        return None
    if shared.lost:
        return "shared quota: the store was lost during the run; this process paced alone since"
    return (
        f"shared quota: {counted(shared.members, 'member')} at the end; this process's "
        f"share {100 * shared.fraction:.0f}% of the group's {shared.global_rate():.1f} calls/s"
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
        shared_quota=_shared_quota_url(args),
    )


async def run_command(args: argparse.Namespace) -> ExitCode:
    """Run ``ocr-async run``; the exit code of how the run went (errors are raised)."""
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
        # With --cluster the workers send, and share the quota; this process only writes.
        options=replace(options, shared_quota=None) if args.cluster else options,
    )
    # Opened, and joined to a shared quota or connected to the cluster, before
    # the output is created: a store or a scheduler that cannot be reached
    # stops the run (exit 2) with nothing written.
    async with (
        client,
        _watching_share(client),
        _connected(args, options, credentials) as cluster,
    ):
        return await _run_opened(args, options, client, cluster)


async def _run_opened(
    args: argparse.Namespace, options: Options, client: OcrClient, cluster: ClusterRun | None
) -> ExitCode:
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
        if cluster is not None:
            summary = await cluster.run(
                _all_items(
                    args.inputs, args.urls, skips, extensions, resumed.done if resumed else None
                ),
                sink if texts is None else texts,
                on_record=progress.update,
                on_skip=_log_skip,
                already_done=resumed.done if resumed else None,
                stop=stop,
            )
        else:
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
    rate = cluster.describe_rate() if cluster else _describe_rate(client.rate_controller)
    if rate is not None:
        print(rate, file=sys.stderr)
    if (sharing := _describe_sharing(client)) is not None:
        print(sharing, file=sys.stderr)
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
