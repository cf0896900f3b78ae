"""The images of the review page: read, checked and embedded as ``data:`` URIs.

Only regular files that are PNG or JPEG by their first bytes are embedded,
within a per-image size limit and a budget for the whole page; a URL
source becomes a link (``http``/``https`` only) and is never fetched.
"""

from __future__ import annotations

import base64
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ocr_async.imaging import image_size
from ocr_async.inputs import is_url, source_path
from ocr_async.outputs.report.summary import ReportSummary
from ocr_async.protocol import sniff_image_type

__all__ = ["Image", "ImageLoader"]

_MIME: Final[Mapping[str, str]] = {"png": "image/png", "jpg": "image/jpeg"}


@dataclass(frozen=True, slots=True)
class Image:
    """An embedded image, or why there is none."""

    data_uri: str | None = None
    size: tuple[int, int] | None = None
    #: Shown under the (missing) image; None when embedded.
    note: str | None = None
    #: For an http(s) source: the link to show instead.
    url: str | None = None


@dataclass(slots=True)
class ImageLoader:
    """Loads each record's image for the page, within the size limits.

    Counts what it embeds and why it embeds nothing into ``summary``.
    """

    enabled: bool
    max_bytes: int
    budget: int | None
    base_dir: Path | None
    summary: ReportSummary
    embedded_bytes: int = 0

    def load(self, source: str) -> Image:
        """The image of ``source``, or the note and link that stand in for it."""
        if is_url(source):
            self.summary.images_not_embedded["url"] += 1
            scheme = urlsplit(source).scheme.lower() if source.isprintable() else ""
            # Only web URLs become links: "javascript://%0a..." also has "://".
            link = source if scheme in ("http", "https") else None
            return Image(url=link, note=None if link else "URL source: not fetched")
        if not source:
            return self._skip("no_source", "no source file")
        if not self.enabled:
            return self._skip("disabled", "image not embedded")
        path = Path(source_path(source))  # undo the \\ and \xNN escapes of odd names
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return self._read(path)

    def _skip(self, reason: str, note: str) -> Image:
        self.summary.images_not_embedded[reason] += 1
        return Image(note=note)

    def _read(self, path: Path) -> Image:
        try:
            info = path.stat()
            if not stat.S_ISREG(info.st_mode):
                # A FIFO or device would block or never end: never opened.
                return self._skip("not_image", "not a regular file: not shown")
            if info.st_size > self.max_bytes:
                return self._skip(
                    "too_large",
                    f"image not embedded: {info.st_size} bytes, over the "
                    f"{self.max_bytes}-byte limit",
                )
            if self.budget is not None and self.embedded_bytes + info.st_size > self.budget:
                return self._skip(
                    "budget", f"image not embedded: the page's {self.budget}-byte budget is used up"
                )
            with path.open("rb") as handle:
                # read(n) allocates n bytes up front: ask for what stat promised.
                data = handle.read(info.st_size + 1)
        except FileNotFoundError:
            return self._skip("missing", "image file not found")
        except OSError as exc:
            return self._skip("unreadable", f"image unreadable: {exc.strerror or exc}")
        except ValueError:  # a NUL or a lone surrogate: no such file can exist
            return self._skip("missing", "image file not found")
        if len(data) > info.st_size:
            return self._skip("unreadable", "image unreadable: the file changed while read")
        kind = sniff_image_type(data)
        if kind is None:
            return self._skip("not_image", "not a PNG or JPEG: not shown")
        self.embedded_bytes += len(data)
        self.summary.images_embedded += 1
        encoded = base64.b64encode(data).decode("ascii")
        return Image(data_uri=f"data:{_MIME[kind]};base64,{encoded}", size=image_size(data))


# --- rendering ----------------------------------------------------------------
