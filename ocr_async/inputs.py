r"""What a caller hands in, and what its record will call it: the identity of an input.

One module decides both, for the client, ``recognize_many``, the folder
walk and the command line alike:

* :func:`is_url`: whether a name is a URL (it contains ``://``) or a path;
* :func:`display_path`, :func:`source_path`: a path as text that is always
  valid UTF-8 and different for every path (bytes that are not UTF-8 as
  ``\xNN``, a backslash as ``\\``), and back;
* :func:`tidy_path`: one spelling of a path given on the command line;
* :func:`as_source_item`: any accepted input (a path, a URL, bytes, an
  :class:`~ocr_async.models.ImageFile` ...) as a
  :class:`~ocr_async.models.SourceItem`.

A record's ``source`` is the input as given: a URL exactly as written, a
path as given (for files found in a folder, that folder's path as given
joined with the path inside it), an :class:`ImageBytes` name. It is also the
input's identity for duplicates and for ``--resume``.
"""

from __future__ import annotations

import os
import re
from typing import Final

from ocr_async.models import ImageBytes, ImageFile, ImageInput, ImageUrl, SourceItem

__all__ = [
    "InputLike",
    "as_source_item",
    "display_path",
    "is_url",
    "source_path",
    "tidy_path",
]

# The escapes display_path writes: a doubled backslash, or a byte.
_ESCAPE: Final = re.compile(r"(\\\\|\\x[0-9a-f]{2})")
# The name ImageBytes gets when none is given.
_UNNAMED: Final = ImageBytes(b"").name

#: Everything :func:`as_source_item` takes.
InputLike = ImageInput | SourceItem


def is_url(text: str) -> bool:
    """Whether an input names a URL rather than a path (it contains ``://``)."""
    return "://" in text


def display_path(path: str | os.PathLike[str]) -> str:
    r"""A path as text that is always valid UTF-8, and different for every path.

    Names that are not valid UTF-8 (undecodable bytes arrive from the OS as
    lone surrogates) are shown with ``\xNN`` escapes, so the record and the
    terminal stay readable and the same file always gets the same name. A
    backslash in a name is doubled, ``\\``, so that a name with the byte
    0xFF (``\xff``) and one that holds the four characters ``\xff``
    (``\\xff``) stay two inputs. :func:`source_path` reverses it.
    """
    raw = os.fsencode(path)
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")


def source_path(source: str) -> str:
    r"""The path that :func:`display_path` showed as ``source``, ready to open.

    ``\\`` becomes one backslash and ``\xNN`` that byte (as the OS's
    surrogate escape when it is not valid UTF-8); a backslash that starts
    neither stays as it is.
    """
    if "\\" not in source:
        return source
    raw = bytearray()
    for number, part in enumerate(_ESCAPE.split(source)):
        if number % 2 == 0:
            raw += part.encode("utf-8", "surrogateescape")
        else:
            raw += b"\\" if part == "\\\\" else bytes([int(part[2:], 16)])
    return os.fsdecode(bytes(raw))


def tidy_path(path: str) -> str:
    """``path`` spelled one way: no ``.`` components, no doubled or trailing slashes.

    ``./scans/a.png``, ``scans//a.png`` and ``scans/./a.png`` all become
    ``scans/a.png``; ``..`` is kept, since through a symlink ``a/../b`` need
    not be ``b``; an absolute path stays absolute. The file meant is the
    same, so only the record's ``source`` (its identity for ``--resume``
    and for duplicates) changes, never what is opened.
    """
    absolute = path.startswith("/")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    tidy = "/".join(parts)
    return f"/{tidy}" if absolute else tidy or "."


def as_source_item(given: InputLike, number: int | None = None) -> SourceItem:
    """``given`` as a :class:`SourceItem`: what to send, and what its record calls it.

    A ``str`` with ``://`` is a URL, any other ``str`` or path-like a file
    (named by :func:`display_path`), ``bytes`` the image itself. With
    ``number`` (the input's place in a stream), bytes without a name of
    their own are named ``bytes:<number>``, so that unnamed inputs are not
    all one source; without it they keep the name ``image``.
    """
    if isinstance(given, SourceItem):
        return given
    if isinstance(given, ImageUrl):
        return SourceItem(given.url, given)
    if isinstance(given, ImageFile):
        return SourceItem(display_path(given.path), given)
    if isinstance(given, bytes | bytearray | memoryview):
        given = ImageBytes(bytes(given))
    if isinstance(given, ImageBytes):
        if given.name == _UNNAMED and number is not None:
            given = ImageBytes(given.data, f"bytes:{number}")
        return SourceItem(given.name, given)
    if isinstance(given, str) and is_url(given):
        return SourceItem(given, ImageUrl(given))
    if isinstance(given, str | os.PathLike):
        return SourceItem(display_path(given), ImageFile(given))
    raise TypeError(
        f"cannot recognize a {type(given).__name__}: pass a path, a URL, bytes or a SourceItem"
    )
