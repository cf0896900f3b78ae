"""The emulator's wire format: the bytes of requests and answers, and no I/O.

What the real service answers, built here once for the handlers
(:mod:`.handlers`): the JSON envelope with each code's documented message
(:data:`RESULT_MESSAGES`), the success ``result`` object
(:func:`build_result`), and the gateway page a fault delivers instead. And
what it reads from a request body already in memory: the ``image`` part of
a ``multipart/form-data`` body (:func:`multipart_field`) and the
``imageUrl`` of a JSON one (:func:`image_url`). Rules the client applies too
(image types, URL checks) live in :mod:`ocr_async.protocol`, not here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from email.message import Message
from typing import Any, Final

from ocr_async.emulator.engine import EngineLines, place
from ocr_async.protocol import RESULT_CODES, ImageType, decode_json

__all__ = [
    "BAD_GATEWAY_HTML",
    "RESULT_MESSAGES",
    "build_result",
    "envelope",
    "image_url",
    "multipart_field",
]

#: The ``resultMessage`` for each code, as NHN words it. The common codes
#: are the API guide's; the others are from General OCR's error-code page.
RESULT_MESSAGES: Final[Mapping[int, str]] = {
    0: "SUCCESS",
    -1: "Unknown error.",
    415: "Unsupported Media Type",
    4000001: "Invalid parameter.",
    4000002: "Invalid file.",
    4000003: "Invalid file type.",
    4000004: "Uploaded file is empty.",
    4000005: "Required headers is missing.",
    4000006: (
        "Api call limit exceeded, If you need to adjust the limit, please contact customer service."
    ),
    4000501: "General OCR not found in the image.",
    4000502: "Image size exceeded. Please check image URL.",
    4000503: "Image download takes more than 20 seconds. Please check image URL.",
    4000504: "Image download fail. Please check image URL.",
    4000505: "Image out of ratio. Please check image.",
    4010001: "Invalid appKey or secretKey.",
    4010006: "Invalid token.",
    4010007: "Permission denied.",
    4131000: "Request size is larger than permissible limit. the permissible limit is 5mb.",
    5000503: "The API you requested is temporarily unavailable. Please try again later.",
}

# The console calls images under 1280x720 "low" resolution (API-FACTS.md).
_NORMAL_LONG_SIDE: Final = 1280
_NORMAL_SHORT_SIDE: Final = 720
# RFC 2046 5.1.1: boundary=token or boundary="quoted string".
_BOUNDARY: Final = re.compile(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)
#: What nginx answers when its upstream fails: a gateway in front of the API.
BAD_GATEWAY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


# --- envelopes ------------------------------------------------------------------


def _message(code: int) -> str:
    message = RESULT_MESSAGES.get(code)
    if message is not None:
        return message
    known = RESULT_CODES.get(code)
    return known[0] if known is not None else "Unknown error."


def _dumps(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _build_envelope(code: int, result: Mapping[str, Any] | None) -> bytes:
    header = {"isSuccessful": code == 0, "resultCode": code, "resultMessage": _message(code)}
    return _dumps({"header": header} if result is None else {"header": header, "result": result})


# Failure answers never change: build their bytes once.
_FAILURES: Final[Mapping[int, bytes]] = {
    code: _build_envelope(code, None) for code in RESULT_MESSAGES if code != 0
}


def envelope(code: int, result: Mapping[str, Any] | None = None) -> bytes:
    """The answer's body: the JSON envelope with ``code``, and ``result`` if given.

    UTF-8 JSON with raw (unescaped) Korean and no spaces, as the API sends.
    """
    if result is None:
        cached = _FAILURES.get(code)
        if cached is not None:
            return cached
    return _build_envelope(code, result)


def image_url(body: bytes) -> str | None:
    """The ``imageUrl`` of a JSON request body, stripped; None if there is none.

    None as well for a body that is not JSON, not an object, or whose URL is
    not a non-empty string: the API answers all of them 4000001.
    """
    try:
        document = decode_json(body)
    except ValueError:
        return None
    url = document.get("imageUrl") if isinstance(document, dict) else None
    if not isinstance(url, str) or not url.strip():
        return None
    return url.strip()


# --- multipart ------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _header_param(value: str, header: str, param: str) -> str | None:
    # email.message parses quoted and RFC 2231 parameters the way HTTP does.
    # It is slow-ish, hence the cache: clients repeat the same part headers,
    # and the boundary, which changes per request, has its own fast path.
    message = Message()
    message[header] = value
    found = message.get_param(param, header=header)
    return found if isinstance(found, str) else None


def _boundary(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    return match.group(1) if match.group(1) is not None else match.group(2)


def _part_name(head: bytes) -> str | None:
    for line in head.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-disposition":
            return _header_param(value.decode("utf-8", "replace"), "content-disposition", "name")
    return None


def multipart_field(body: bytes, content_type: str, name: str) -> bytes | None:
    """The data of the first part called ``name`` in a multipart body.

    None when the body has no such part or is not valid multipart. Parsing
    a body already read (and size-checked) keeps the size rule exact and
    avoids aiohttp spooling file parts to disk.
    """
    boundary = _boundary(content_type)
    if not boundary:
        return None
    delimiter = b"--" + boundary.encode("utf-8")
    separator = b"\r\n" + delimiter
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:  # a preamble precedes the first delimiter (RFC 2046, 5.1.1)
        pos = body.find(separator)
        if pos < 0:
            return None
        pos += len(separator)
    while not body.startswith(b"--", pos):  # "--" after a delimiter closes the body
        line_end = body.find(b"\r\n", pos)
        head_end = body.find(b"\r\n\r\n", line_end) if line_end >= 0 else -1
        data_end = body.find(separator, head_end + 4) if head_end >= 0 else -1
        if data_end < 0:
            return None
        if _part_name(body[line_end + 2 : head_end]) == name:
            return body[head_end + 4 : data_end]
        pos = data_end + len(separator)
    return None


def build_result(
    file_type: ImageType, lines: EngineLines, size: tuple[int, int] | None, *, cropping: bool
) -> dict[str, Any]:
    """The success ``result`` object for recognized ``lines``.

    ``listOfInferTexts[i].inferTexts[j]`` pairs with
    ``listOfBoundingBoxes[i].boundingBoxes[j]`` (API-FACTS.md): one entry
    per line. A :class:`~ocr_async.emulator.engine.RecognizedWord` keeps the
    engine's box and confidence (rounded to 4 places); a plain string word
    gets the fixed fake layout (:func:`~ocr_async.emulator.engine.place`).
    Corners are integers, clockwise from the top left.
    ``/general/cropping`` adds ``slicesImages``: ``ceil(long / (2.5 short))``,
    at least 1, and 1 when the size is unknown.
    """
    texts: list[dict[str, Any]] = []
    boxes: list[dict[str, Any]] = []
    for words in place(lines):
        texts.append({"inferTexts": [{"value": w.value, "conf": round(w.conf, 4)} for w in words]})
        boxes.append({"boundingBoxes": [w.box_json() for w in words]})
    long_side, short_side = (max(size), min(size)) if size else (0, 0)
    normal = long_side >= _NORMAL_LONG_SIDE and short_side >= _NORMAL_SHORT_SIDE
    result: dict[str, Any] = {
        "fileType": file_type,
        "listOfInferTexts": texts,
        "listOfBoundingBoxes": boxes,
        "resolution": "normal" if normal else "low",
    }
    if cropping:
        # ceil(long / (2.5 * short)) in integers: ceil(2 long / (5 short)).
        result["slicesImages"] = max(1, -(-2 * long_side // (5 * short_side))) if size else 1
    return result
