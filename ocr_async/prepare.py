"""The pre-check stage that may change an input: convert, shrink, choose the endpoint.

Between a source and its request: with ``--convert``, ``--shrink`` or
``--endpoint auto`` an image file is read here, handed to
:mod:`ocr_async.imaging` in a worker thread, and comes out as one or more
images to send (a multi-page TIFF gives one per page), each with the
endpoint to use and a record of what was done. Without those options the
input passes through untouched and is read by the client as usual.

A page of a multi-page file is its own input, named ``<source>#page=<n>``;
that is also its identity for ``--resume``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field

from ocr_async.errors import OcrError
from ocr_async.imaging import (
    ConvertedPage,
    Transform,
    aspect_ratio,
    choose_endpoint,
    convert_to_png,
    shrink_to_fit,
)
from ocr_async.models import Endpoint, ImageBytes, ImageFile, ImageUrl
from ocr_async.options import DEFAULT_READ_LIMIT, Options
from ocr_async.reading import read_image_file
from ocr_async.sources import SourceItem

__all__ = ["Preparation", "PreparedImage"]


@dataclass(frozen=True, slots=True)
class PreparedImage:
    """One image ready to send, or the local error that stops it."""

    source: str
    image: ImageFile | ImageBytes | ImageUrl
    endpoint: Endpoint
    #: What was done to it; None when it goes as it was.
    transform: Transform | None = None
    #: Set when preparing failed: nothing is sent, the record carries this.
    error: OcrError | None = None


@dataclass(frozen=True, slots=True)
class Preparation:
    """Which preparation steps a run takes."""

    endpoint: Endpoint = Endpoint.GENERAL
    #: ``--endpoint auto``: choose per image from its aspect ratio.
    auto_endpoint: bool = False
    convert: bool = False
    shrink: bool = False
    #: The upload limit that --shrink fits images under.
    max_bytes: int = 5 * 1024 * 1024
    read_limit: int = DEFAULT_READ_LIMIT
    # Decoding large images costs memory: only this many at once, whatever
    # the number of workers waiting on the network.
    _decoders: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(os.cpu_count() or 2), repr=False
    )

    @classmethod
    def from_options(cls, options: Options) -> Preparation:
        """The steps ``options`` asks for."""
        return cls(
            endpoint=options.fixed_endpoint,
            auto_endpoint=options.auto_endpoint,
            convert=options.convert,
            shrink=options.shrink,
            max_bytes=options.max_bytes,
            read_limit=options.read_limit,
        )

    @property
    def changes_images(self) -> bool:
        """Whether any step may look at or change image bytes."""
        return self.auto_endpoint or self.convert or self.shrink

    async def prepare(self, item: SourceItem) -> list[PreparedImage]:
        """The images to send for one input (errors included, never raised)."""
        image = item.image
        # A URL is fetched by the API, never by us: it goes as it is; with
        # --endpoint auto it goes to /general, its shape being unknown here.
        if not self.changes_images or isinstance(image, ImageUrl):
            return [PreparedImage(item.source, image, self.endpoint)]
        limit = self.read_limit if (self.convert or self.shrink) else self.max_bytes
        try:
            async with self._decoders:
                if isinstance(image, ImageBytes):
                    data = image.data
                else:
                    data = await read_image_file(image.path, limit)
                return await asyncio.to_thread(self._prepare_bytes, item.source, data)
        except OcrError as exc:
            return [PreparedImage(item.source, image, self.endpoint, error=exc)]

    def _prepare_bytes(self, source: str, data: bytes) -> list[PreparedImage]:
        pages: list[ConvertedPage | None] = list(convert_to_png(data)) if self.convert else [None]
        return [self._prepare_page(source, data, page) for page in pages]

    def _prepare_page(self, source: str, data: bytes, page: ConvertedPage | None) -> PreparedImage:
        if page is not None:
            data = page.data
            if page.pages > 1:
                source = f"{source}#page={page.page}"
        try:
            shrunk = shrink_to_fit(data, self.max_bytes) if self.shrink else None
            if shrunk is not None:
                data = shrunk.data
            endpoint = choose_endpoint(data) if self.auto_endpoint else self.endpoint
        except OcrError as exc:
            return PreparedImage(source, ImageBytes(data, source), self.endpoint, error=exc)
        transform = Transform.build(
            converted=page,
            shrunk=shrunk,
            endpoint_chosen=endpoint if self.auto_endpoint else None,
            aspect_ratio=aspect_ratio(data) if self.auto_endpoint else None,
        )
        return PreparedImage(
            source, ImageBytes(data, source), endpoint, None if transform.empty else transform
        )
