"""Immutable values that flow through the pipeline, in the order they flow.

Inputs (:class:`ImageFile`, :class:`ImageBytes`, :class:`ImageUrl`), each
named by a :class:`SourceItem`, go into the pre-check stage, which hands
on a :class:`Payload` per image to send; an :class:`OcrResult` comes back
from the API; a :class:`Record` is the one JSON line written per input,
to a :class:`RecordSink`. A :class:`PageSink` gets each :class:`FinishedPage`
(the record with the image it was read from) just before.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ocr_async.errors import OcrError

__all__ = [
    "ID_KEY_MARK",
    "BoundingBox",
    "Endpoint",
    "ErrorInfo",
    "FinishedPage",
    "ImageBytes",
    "ImageFile",
    "ImageInput",
    "ImageType",
    "ImageUrl",
    "JsonWritable",
    "Line",
    "OcrResult",
    "PageSink",
    "Payload",
    "Recognition",
    "Record",
    "RecordSink",
    "SourceItem",
    "Word",
]

#: The two image types the API reads, as the pre-check names them.
ImageType = Literal["jpg", "png"]


class Endpoint(enum.StrEnum):
    """The two recognition endpoints of General OCR v1.1."""

    GENERAL = "general"
    #: For long images: the server slices the image before recognition.
    CROPPING = "cropping"

    @property
    def path_suffix(self) -> str:
        """The part of the path after ``/v1.1/appkeys/{appKey}``."""
        return "/general" if self is Endpoint.GENERAL else "/general/cropping"


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An image file on disk, sent as multipart field ``image``."""

    path: str | os.PathLike[str]

    def __str__(self) -> str:
        return os.fspath(self.path)


@dataclass(frozen=True, slots=True)
class ImageBytes:
    """Image bytes already in memory, sent as multipart field ``image``."""

    data: bytes = field(repr=False)
    name: str = "image"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ImageUrl:
    """An image the API downloads itself, sent as JSON ``{"imageUrl": ...}``."""

    url: str

    def __str__(self) -> str:
        return self.url


#: What :meth:`ocr_async.OcrClient.recognize` accepts. A ``str`` containing
#: ``://`` is a URL; any other ``str`` or path-like is a file path.
ImageInput = (
    ImageFile | ImageBytes | ImageUrl | bytes | bytearray | memoryview | str | os.PathLike[str]
)


#: Marks a key made from an id (see :attr:`SourceItem.key`): no path or URL
#: begins with a NUL, so an id never meets a source in one set.
ID_KEY_MARK = "\0"


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One input: what its record will call it (``source``), and what to send.

    An input from a manifest row also carries the caller's ``id`` and
    ``metadata``, which its record carries back. A row that could not be
    used (no id, both or neither of path and url, not JSON ...) is an item
    with its ``error`` and no ``image``: the pre-check stage turns it
    straight into its failed record, and nothing is sent.
    """

    source: str
    #: What to send; None only when ``error`` says why there is nothing.
    image: ImageFile | ImageBytes | ImageUrl | None
    #: The caller's identity for the input (a manifest row's ``id``).
    id: str | None = None
    #: The caller's context for the input, handed back untouched in its record.
    metadata: Mapping[str, Any] | None = None
    #: Why the input cannot be sent at all (a bad manifest row); its record's error.
    error: OcrError | None = None

    @property
    def identity(self) -> str:
        """What the input is called by: its ``id``, else its ``source``."""
        return self.source if self.id is None else self.id

    @property
    def key(self) -> str:
        """What duplicate detection and ``--resume`` know the input by.

        Its ``id`` when it has one (so a re-signed URL is still its row),
        marked with :data:`ID_KEY_MARK` so that an id never equals a path;
        else its ``source``. A page of it is ``f"{key}#page={n}"``.
        """
        return self.source if self.id is None else ID_KEY_MARK + self.id


class JsonWritable(Protocol):
    """A value a record writes as a JSON object (a :class:`Payload`'s transform, say)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object."""
        ...


@dataclass(frozen=True, slots=True)
class Payload:
    """One image as the pre-check stage hands it on: ready to send, or refused.

    Exactly one of ``image`` (checked JPEG or PNG bytes, whole, and within
    the request-size limit), ``url`` (checked for scheme and port) and
    ``error`` (the local error that stops it; nothing is sent) is set. A
    page of a multi-page input is its own payload, named
    ``<source>#page=<n>``.
    """

    source: str
    endpoint: Endpoint
    image: bytes | None = field(default=None, repr=False)
    #: The type the pre-check found in ``image``'s first bytes.
    kind: ImageType | None = None
    url: str | None = None
    #: What was done to the input before sending (converted, shrunk, endpoint
    #: chosen); None: sent as it was.
    transform: JsonWritable | None = None
    error: OcrError | None = None
    #: The input's ``id`` and ``metadata`` (a manifest row's), for its record.
    id: str | None = None
    metadata: Mapping[str, Any] | None = None
    #: The sha256 of ``image`` (64 lower-case hex digits), taken where it was
    #: read or made; None for a URL or a refused input.
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """Four corners, clockwise from the top left, in image pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    x3: float
    y3: float
    x4: float
    y4: float


@dataclass(frozen=True, slots=True)
class Word:
    """One recognized word with its confidence and, where the API gave one, its box."""

    value: str
    conf: float | None
    box: BoundingBox | None


@dataclass(frozen=True, slots=True)
class Line:
    """One ``listOfInferTexts`` entry: roughly one line of text."""

    words: tuple[Word, ...]

    @property
    def text(self) -> str:
        """The words joined by single spaces."""
        return " ".join(word.value for word in self.words)


@dataclass(frozen=True, slots=True)
class OcrResult:
    """A successful recognition.

    ``raw`` is the API's ``result`` object exactly as received (unknown fields
    kept), except that a key repeated inside one object has all its list
    values concatenated in order, so no group of words is lost.
    """

    lines: tuple[Line, ...]
    raw: Mapping[str, Any]
    file_type: str | None = None
    slices_images: int | None = None
    #: True when the API answered 4000501: a valid answer with no text.
    no_text: bool = False

    @property
    def text(self) -> str:
        """One line per ``listOfInferTexts`` entry, words joined by spaces."""
        return "\n".join(line.text for line in self.lines)

    @property
    def words(self) -> tuple[Word, ...]:
        """Every word, in reading order."""
        return tuple(word for line in self.lines for word in line.words)


@dataclass(frozen=True, slots=True)
class Recognition:
    """What :meth:`ocr_async.OcrClient.recognize` returns."""

    result: OcrResult
    endpoint: Endpoint
    #: Requests sent for this image, retries included (at least 1).
    attempts: int
    #: From the first attempt to the final answer, backoff waits included.
    elapsed_ms: float

    @property
    def text(self) -> str:
        """Shortcut for ``result.text``."""
        return self.result.text


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The ``error`` member of a failed record."""

    code: int | str
    message: str
    #: True when decided on this machine: the request was never sent.
    local: bool
    #: True when the same input may succeed if tried again later.
    retryable: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON object written into the record."""
        return {
            "code": self.code,
            "message": self.message,
            "local": self.local,
            "retryable": self.retryable,
        }


@dataclass(frozen=True, slots=True)
class Record:
    """The one JSON line written for one input. See ``docs/`` for the schema."""

    source: str
    ok: bool
    endpoint: Endpoint
    attempts: int
    elapsed_ms: float
    text: str | None
    result: Mapping[str, Any] | None
    error: ErrorInfo | None
    #: What was done to the image before sending (--convert, --shrink,
    #: --endpoint auto); anything with a ``to_json()``. None: sent as it was.
    transform: JsonWritable | None = None
    #: The caller's identity for the input (a manifest row's ``id``); None
    #: when the input has none, and then ``source`` is its identity.
    id: str | None = None
    #: The caller's context for the input (a manifest row's other fields),
    #: written back untouched; must be JSON-serialisable. None: there was none.
    metadata: Mapping[str, Any] | None = None
    #: The sha256 of the bytes sent (after --convert or --shrink), as 64
    #: lower-case hex digits; None for a URL (the API fetches those bytes) or
    #: an input refused before its bytes were ready.
    sha256: str | None = None
    #: The recognition as parsed (its ``raw`` is ``result``), for outputs
    #: that need words and boxes (text files, ALTO, hOCR) without parsing
    #: ``result`` again. Not written: the JSON line is the same without it.
    parsed: OcrResult | None = field(default=None, compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The JSON object written as one line, keys in a stable order.

        ``id`` (after ``source``), ``sha256`` and ``metadata`` (last) are
        written only when set, so records of inputs without them keep their
        exact shape.
        ``source`` stays first: resume recognises a torn line by it.
        """
        document = {
            "source": self.source,
            "ok": self.ok,
            "endpoint": self.endpoint.value,
            "attempts": self.attempts,
            "elapsed_ms": round(self.elapsed_ms, 1),
            "text": self.text,
            "result": self.result,
            "error": None if self.error is None else self.error.to_json(),
            "transform": None if self.transform is None else self.transform.to_json(),
        }
        if self.id is not None:
            # "source" keeps its first place; "id" goes right after it.
            document = {"source": self.source, "id": self.id, **document}
        if self.sha256 is not None:
            document["sha256"] = self.sha256
        if self.metadata is not None:
            document["metadata"] = self.metadata
        return document


class RecordSink(Protocol):
    """Anything that takes finished records: a JSONL file, a text folder, a queue."""

    async def write(self, record: Record) -> None:
        """Take one record."""
        ...


@dataclass(frozen=True, slots=True)
class FinishedPage:
    """One image or page done, with what page formats need: its record and what was sent.

    A :class:`PageSink` gets it before the record is written, so that a
    record in the output means its page files were written too (a resumed
    run redoes what a crash cut off). It holds the image bytes until the
    page sink is done with it, and no longer.
    """

    #: The input's ``source``: a PDF's or a TIFF's pages share it.
    input: str
    record: Record
    #: What the pre-check stage handed on: the image sent (None for a URL,
    #: which the API fetched) and its ``transform`` (page, pages, dpi ...).
    payload: Payload


class PageSink(Protocol):
    """Anything that writes files per page as records finish: ALTO, hOCR, searchable PDFs."""

    async def write_page(self, page: FinishedPage) -> None:
        """Take one finished page (a failure too); never raise for a file not written."""
        ...
