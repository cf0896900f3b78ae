"""What a command's inputs are: ``INPUT...``, ``--urls FILE`` or ``--manifest FILE``.

``run``, ``run --dry-run`` and ``verify`` take the same inputs and must name
them alike, or ``verify`` would find every input of a run missing. So they
all read them through one :class:`CommandInputs`: positional paths spelled
one way (:func:`~ocr_async.inputs.tidy_path`), folders walked as the run
walks them, URL lists read line by line, manifests row by row (each row's
``id`` then being its identity).

A manifest is read up to its first row before anything else happens
(:meth:`CommandInputs.prime`), so a manifest that is no manifest at all (a
CSV header without ``id``, an image named by mistake) stops the command
with exit 2 before an output is created; a fault further down is raised
from the items, after the rows before it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence

from ocr_async.cli.exits import UsageError
from ocr_async.inputs import display_path, is_url, tidy_path
from ocr_async.models import ImageUrl, SourceItem
from ocr_async.pipeline.manifest import ManifestError, ManifestReader, iter_manifest
from ocr_async.pipeline.sources import iter_inputs, iter_url_list
from ocr_async.pipeline.sourceset import SourceSet

__all__ = ["CommandInputs", "SkipCounter", "check_inputs_exist", "log_skip"]

log = logging.getLogger("ocr_async")


def _ignore(path: str, reason: str) -> None:
    del path, reason


def log_skip(path: str, reason: str) -> None:
    """Name an input passed over (with ``--verbose``)."""
    log.info("skipped %s: %s", path, reason)


class SkipCounter:
    """Counts folder entries passed over, and names them with ``--verbose``."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, path: str, reason: str) -> None:
        """Count one entry passed over, and say why with ``--verbose``."""
        self.count += 1
        log_skip(path, reason)


class CommandInputs:
    """The inputs one command names, read lazily and named as ``run`` names them.

    Exactly one kind is given: ``inputs`` (files, folders, URLs) with or
    without ``urls`` (a URL list; ``-`` is stdin), or ``manifest`` alone.
    Folder entries are taken by ``extensions``; the others go to ``on_skip``.
    """

    def __init__(
        self,
        inputs: Sequence[str],
        *,
        urls: str | None = None,
        manifest: str | None = None,
        extensions: frozenset[str],
        on_skip: Callable[[str, str], None] = _ignore,
    ) -> None:
        self.inputs = list(inputs)
        self.urls = urls
        self.manifest = manifest
        self.extensions = extensions
        self.on_skip = on_skip
        #: The manifest's reader once primed (its format, rows and bad rows).
        self.reader: ManifestReader | None = None
        self._rows: AsyncGenerator[SourceItem, None] | None = None
        self._first: SourceItem | None = None

    @property
    def by_id(self) -> bool:
        """Whether inputs are known by their id (a manifest) rather than their source."""
        return self.manifest is not None

    def check(self) -> None:
        """The usage checks of the flags: one kind of input, lists readable.

        Whether the paths given exist is :func:`check_inputs_exist`, which
        ``run`` asks after the credentials, in the order mistakes were always told.
        """
        if self.manifest is not None and (self.inputs or self.urls is not None):
            raise UsageError("--manifest names every input: give it alone, without INPUT or --urls")
        if not self.inputs and self.urls is None and self.manifest is None:
            raise UsageError(
                "nothing to do: name INPUT files/folders/URLs, --urls FILE or --manifest FILE"
            )
        for flag, name, what in (
            ("--urls", self.urls, "the URL list"),
            ("--manifest", self.manifest, "the manifest"),
        ):
            if name not in (None, "-") and (os.path.isdir(name) or not os.access(name, os.R_OK)):
                raise UsageError(f"cannot read {what} {name!r}: give a readable file to {flag}")

    async def prime(self) -> None:
        """Read a manifest up to its first row; :class:`UsageError` if it cannot be.

        Nothing for other inputs. Call before creating an output.
        """
        if self.manifest is None or self.reader is not None:
            return
        self.reader = ManifestReader(self.manifest)
        self._rows = iter_manifest(self.reader)
        try:
            self._first = await anext(self._rows, None)
        except ManifestError as exc:
            raise UsageError(f"not a manifest: {exc} (nothing was sent)") from None
        except OSError as exc:
            raise UsageError(f"cannot read the manifest {self.manifest!r}: {exc}") from None

    async def items(self, done: SourceSet | None = None) -> AsyncIterator[SourceItem]:
        """Every input, as ``run`` names it; iterate once.

        ``done`` (a resumed output's keys) keeps a path spelled as an output
        written before paths were tidied spells it, so resuming it with the
        same command still skips what is done. Raises what reading raises
        (``OSError``, a URL list's or a manifest's error) after the inputs
        before the fault.
        """
        if self.manifest is not None:
            await self.prime()
            assert self._rows is not None
            try:
                if self._first is not None:
                    yield self._first
                    self._first = None
                async for row in self._rows:
                    yield row
            finally:
                await self._rows.aclose()
            return
        async for item in iter_inputs(
            self.inputs, on_skip=self.on_skip, extensions=self.extensions
        ):
            if isinstance(item.image, ImageUrl):
                yield item
                continue
            tidy = tidy_path(item.source)
            if tidy != item.source and not (done is not None and item.source in done):
                item = SourceItem(tidy, item.image)
            yield item
        if self.urls is not None:
            async for item in iter_url_list(self.urls):
                yield item


def check_inputs_exist(inputs: Sequence[str]) -> None:
    """Raise :class:`UsageError` naming the paths on the command line that do not exist.

    A path mistyped on the command line is a usage error, not an error
    record: the command does not start, so no output is created that the
    corrected run would have to overwrite. A file that goes missing once
    the run has started still gets its not_found record.
    """
    missing = [given for given in inputs if not is_url(given) and not os.path.lexists(given)]
    if not missing:
        return
    shown = ", ".join(repr(display_path(given)) for given in missing[:3])
    if len(missing) > 3:
        shown += f" and {len(missing) - 3} more"
    raise UsageError(
        f"no such file or folder: {shown}; check the path (nothing was sent, no output written)"
    )
