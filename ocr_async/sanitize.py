"""What a server sends back, made safe to keep, show and write.

Any string an API, gateway or OAuth server sends may end up in a record, a
log line or the review page. This module is the one place that makes such
text safe: a URL is shown by its origin only.

A leaf of the core: no I/O, and it imports nothing of the package.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urljoin, urlsplit

__all__ = ["url_origin"]

# A hostname is at most 253 characters (RFC 1035); anything longer is not one.
_HOST_LIMIT: Final = 253


def url_origin(url: str, base: str = "") -> str:
    """``scheme://host[:port]`` of ``url`` (resolved against ``base``), and nothing more.

    A redirect's target is shown this way: its user part, path and query
    may hold credentials or signatures, and its host is all a user needs to
    see where the answer pointed. Anything that is not an http(s) URL with a
    plausible host is shown as ``an unreadable address``.
    """
    try:
        parts = urlsplit(urljoin(base, url.strip()))
        port = parts.port
    except ValueError:
        return "an unreadable address"
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or len(host) > _HOST_LIMIT:
        return "an unreadable address"
    if not all(ch.isascii() and (ch.isalnum() or ch in "-._:") for ch in host):
        return "an unreadable address"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
