"""Reading an answer off the wire with a cap, shared by the client and the OAuth provider.

The only place that reads an HTTP answer's body: whatever a server sends,
no more than the cap is ever held in memory.
"""

from __future__ import annotations

import aiohttp

from ocr_async.errors import AnswerTooLargeError

__all__ = ["read_capped"]


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of ``response``, or :class:`AnswerTooLargeError` past ``limit`` bytes.

    The limit counts the body as decompressed: aiohttp inflates gzip,
    deflate and br a bounded piece at a time, and the pieces are counted as
    they come. A ``Content-Length`` over the limit is refused before any of
    the body is read. When this raises inside ``async with`` the response is
    released unread, which closes the connection: nothing more is received.
    """
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    announced = response.content_length
    if announced is not None and announced > limit and not encoded:
        raise _too_large(limit, f"announced as {announced} bytes")
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise _too_large(limit, "once decompressed" if encoded else "as sent")
        pieces.append(piece)
    return b"".join(pieces)


def _too_large(limit: int, how: str) -> AnswerTooLargeError:
    return AnswerTooLargeError(
        "answer_too_large",
        f"the answer is over the {limit}-byte limit ({how}); reading stopped, not retried "
        "(an answer of the API is far smaller: is the server right?)",
    )
