r"""Where inputs come from: files, folders walked recursively, URL lists, stdin.

Everything is lazy. A folder is listed one directory at a time, in a worker
thread so a slow disk never stalls the event loop; a URL list is read in
64 KiB chunks, and a line of it may be at most 64 KiB. However many inputs
there are, memory holds one directory listing or one chunk, never the whole
list.

Identity: a record's ``source`` is the input as given: a URL exactly as
written, a file as the path given on the command line, or, for files found in
a folder, that folder's path as given joined with the path inside it. In a
path, bytes that are not valid UTF-8 are shown as ``\xNN`` and a backslash
as ``\\``, so two files never share a source
(:func:`ocr_async.inputs.display_path`).
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass

import aiofiles

from ocr_async.inputs import as_source_item, display_path, is_url
from ocr_async.models import ImageFile, ImageUrl, SourceItem

__all__ = [
    "CONVERTIBLE_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_URL_LINE",
    "PDF_EXTENSIONS",
    "WALKED_EXTENSIONS",
    "FolderEntry",
    "SkipReporter",
    "UrlListError",
    "iter_inputs",
    "iter_url_lines",
    "iter_url_list",
    "walk_folder",
]

#: Files found in a folder are taken by these extensions (case-insensitive);
#: other files are reported as skipped. Files named explicitly are always
#: taken, and the pre-check decides by their first bytes.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png"})
#: Also taken from folders with ``--convert``.
CONVERTIBLE_EXTENSIONS = frozenset({".tif", ".tiff", ".bmp", ".webp", ".gif"})
#: PDFs, each page its own record (:mod:`ocr_async.pdfpages`; the ``pdf`` extra).
PDF_EXTENSIONS = frozenset({".pdf"})
#: What a folder walk takes unless told otherwise: images the API reads, and PDFs.
WALKED_EXTENSIONS = IMAGE_EXTENSIONS | PDF_EXTENSIONS

_CHUNK = 64 * 1024
#: The longest line of a URL list, in bytes. Far longer than any URL a
#: server takes (commonly 8 KiB); a longer line stops the reading
#: (:class:`UrlListError`) rather than growing without bound.
MAX_URL_LINE = 64 * 1024
# CRLF first, so that it is one line break, not two.
_LINE_BREAK = re.compile(rb"\r\n|\r|\n")

#: Called with (path, reason) for each folder entry that is not taken.
SkipReporter = Callable[[str, str], None]


def _ignore(path: str, reason: str) -> None:
    del path, reason


def _list_directory(path: str) -> tuple[list[tuple[str, bool]], OSError | None]:
    # Runs in a thread. DirEntry.is_dir() follows symlinks and uses the type
    # the OS returned with the listing, so this costs no stat per file.
    entries: list[tuple[str, bool]] = []
    try:
        with os.scandir(path) as listing:
            for entry in listing:
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    is_dir = False
                entries.append((entry.name, is_dir))
    except OSError as exc:
        return entries, exc
    entries.sort()
    return entries, None


def _directory_key(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


@dataclass(frozen=True, slots=True)
class FolderEntry:
    """A file or directory met in a folder walk: taken as an input, or skipped and why."""

    path: str
    #: Why it is not an input; None when it is one.
    skipped: str | None = None


def walk_folder(root: str, extensions: frozenset[str]) -> Iterator[list[FolderEntry]]:
    """Every entry below ``root``, as the run takes them: the one folder walk.

    Depth first, names sorted within each directory, so runs are
    repeatable. Symlinked folders are followed; directories on the current
    path are remembered by (device, inode), so a symlink leading back to an
    ancestor is reported once, not followed. Files are taken by
    ``extensions`` (case-insensitive); broken symlinks and unreadable files
    named like images are inputs too (reading them gives their error
    record).

    Blocking: each step lists one directory, so run it a step at a time in
    a worker thread (:func:`iter_inputs` does). The progress bar's count
    (:func:`ocr_async.outputs.progress.count_images`) walks with it too, so
    the total is what the run will take.
    """
    ancestors: list[tuple[int, int] | None] = []
    not_taken = f"not a {_describe(extensions)} file"

    def visit(directory: str) -> Iterator[list[FolderEntry]]:
        key = _directory_key(directory)
        if key is not None and key in ancestors:
            yield [FolderEntry(directory, "symlink loop: directory already being walked")]
            return
        entries, error = _list_directory(directory)
        found: list[FolderEntry] = []
        if error is not None:
            found.append(FolderEntry(directory, f"cannot list directory: {error.strerror}"))
        ancestors.append(key)
        try:
            for name, is_dir in entries:
                path = os.path.join(directory, name)
                if is_dir:
                    if found:
                        yield found
                        found = []
                    yield from visit(path)
                elif os.path.splitext(name)[1].lower() in extensions:
                    found.append(FolderEntry(path))
                else:
                    found.append(FolderEntry(path, not_taken))
            if found:
                yield found
        finally:
            ancestors.pop()

    yield from visit(root)


async def _walk(
    root: str, on_skip: SkipReporter, extensions: frozenset[str]
) -> AsyncIterator[SourceItem]:
    # One step of the walk (one directory listed) per worker-thread call, so
    # a slow disk never stalls the event loop; skips are reported on the loop.
    steps = walk_folder(root, extensions)
    while (found := await asyncio.to_thread(next, steps, None)) is not None:
        for entry in found:
            if entry.skipped is None:
                yield SourceItem(display_path(entry.path), ImageFile(entry.path))
            else:
                on_skip(display_path(entry.path), entry.skipped)


def _describe(extensions: frozenset[str]) -> str:
    names = sorted(extensions)
    return ", ".join(names[:-1]) + f" or {names[-1]}"


async def iter_inputs(
    inputs: Iterable[str],
    *,
    on_skip: SkipReporter = _ignore,
    extensions: frozenset[str] = WALKED_EXTENSIONS,
) -> AsyncIterator[SourceItem]:
    """Every input named on a command line: URLs, files, and folders (recursively).

    Files in folders are taken by ``extensions``; others go to ``on_skip``.

    A name that is neither a folder nor a URL is taken as a file even if it
    does not exist, so that it ends as an error record instead of vanishing.
    """
    for given in inputs:
        if not is_url(given) and await asyncio.to_thread(os.path.isdir, given):
            async for item in _walk(given, on_skip, extensions):
                yield item
        else:
            yield as_source_item(given)


def iter_url_lines(lines: Iterable[str]) -> Iterable[SourceItem]:
    """URL items from lines of text; blank lines and ``#`` comments are skipped."""
    for line in lines:
        url = line.strip()
        if url and not url.startswith("#"):
            yield SourceItem(url, ImageUrl(url))


async def _read_chunks(name: str) -> AsyncIterator[bytes]:
    if name == "-":
        # os.read returns what the pipe has, without waiting to fill the chunk.
        stdin = sys.stdin.fileno()
        while chunk := await asyncio.to_thread(os.read, stdin, _CHUNK):
            yield chunk
        return
    async with aiofiles.open(name, "rb") as handle:
        while chunk := await handle.read(_CHUNK):
            yield chunk


class UrlListError(ValueError):
    """A URL list that is not one URL a line (a line longer than :data:`MAX_URL_LINE`)."""


def _split_lines(chunk: bytes, after_cr: bool) -> tuple[list[bytes], bool]:
    """``chunk`` cut at each CRLF, LF or lone CR; the last piece is unfinished.

    ``after_cr`` says the previous chunk ended with a CR, so a LF at the
    start of this one ends nothing more. Returns the pieces and whether
    this chunk ends with a CR.
    """
    if after_cr and chunk.startswith(b"\n"):
        chunk = chunk[1:]
    if b"\r" not in chunk:  # the common case, at the speed of bytes.split
        return chunk.split(b"\n"), False
    return _LINE_BREAK.split(chunk), chunk.endswith(b"\r")


async def iter_url_list(name: str) -> AsyncIterator[SourceItem]:
    """URL items from a file with one URL per line, or from stdin for ``-``.

    Read lazily in chunks, in time linear in its size: a list of millions of
    URLs costs one chunk of memory. Lines end with LF, CRLF or a lone CR; a
    UTF-8 byte-order mark at the start is dropped. Raises ``OSError`` if the
    file cannot be read, and :class:`UrlListError` at a line longer than
    :data:`MAX_URL_LINE` bytes (``/dev/zero``, an image named by mistake),
    after the URLs before it.
    """
    shown = "the URL list on standard input" if name == "-" else f"the URL list {name!r}"
    line = bytearray()  # the unfinished line, across chunks
    number = 1  # of the unfinished line, for the error
    after_cr = False
    async for chunk in _read_chunks(name):
        pieces, after_cr = _split_lines(chunk, after_cr)
        if len(pieces) > 1:
            # The unfinished line ends here; the pieces between are whole lines.
            line += pieces[0]
            _check_line_length(line, number, shown)
            complete = [_decode_line(line, number)]
            line.clear()
            for offset, piece in enumerate(pieces[1:-1], start=1):
                _check_line_length(piece, number + offset, shown)
                complete.append(piece.decode("utf-8", "replace"))
            number += len(pieces) - 1
            for item in iter_url_lines(complete):
                yield item
        line += pieces[-1]
        _check_line_length(line, number, shown)
    for item in iter_url_lines([_decode_line(line, number)]):
        yield item


def _check_line_length(line: bytes | bytearray, number: int, shown: str) -> None:
    if len(line) > MAX_URL_LINE:
        raise UrlListError(
            f"{shown}: line {number} is longer than {MAX_URL_LINE} bytes without a line "
            "break; is it a list of URLs, one a line?"
        )


def _decode_line(line: bytearray, number: int) -> str:
    if number == 1 and line.startswith(codecs.BOM_UTF8):
        del line[: len(codecs.BOM_UTF8)]
    return line.decode("utf-8", "replace")
