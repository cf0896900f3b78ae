"""The General OCR v1.1 wire protocol, with no I/O.

Everything about bytes on the wire lives here and nowhere else: building a
request (pre-checks included), reading an answer, and mapping result codes
to errors. This module never imports aiohttp or asyncio, so it is tested with
plain bytes and reused by the emulator, which must agree with it.

References: the API guide (``shared/spec/000_*.txt``) and ``API-FACTS.md``.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import math
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlsplit

from ocr_async.errors import (
    ApiError,
    AuthError,
    HttpStatusError,
    ImageDownloadError,
    InvalidRequestError,
    InvalidTokenError,
    LocalCheckError,
    MalformedResponseError,
    RateLimitedError,
    ServerFailureError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
    UnknownApiError,
)
from ocr_async.models import BoundingBox, Endpoint, ImageType, Line, OcrResult, Word
from ocr_async.sanitize import Redactor, server_text, strict_json, url_origin

__all__ = [
    "AUTH_HEADER",
    "BOUNDARY_LENGTH",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_BYTES",
    "JPEG_SIGNATURE",
    "LEGACY_BASE_URL",
    "NO_TEXT_CODE",
    "PNG_SIGNATURE",
    "RESULT_CODES",
    "ImageType",
    "PreparedRequest",
    "assemble_file_request",
    "assemble_url_request",
    "build_file_request",
    "build_url_request",
    "check_body_size",
    "check_image_bytes",
    "check_image_url",
    "decode_json",
    "endpoint_url",
    "error_for_code",
    "multipart_size",
    "new_boundary",
    "parse_response",
    "parse_result",
    "parse_retry_after",
    "redirect_error",
    "sniff_image_type",
]

#: The current host (API-FACTS.md: added 2026-08-11).
DEFAULT_BASE_URL: Final = "https://api-ocr.nhncloudservice.com"
#: The seed guide's host; still served until 2027-07-31.
LEGACY_BASE_URL: Final = "https://ocr.api.nhncloudservice.com"
#: The header that carries ``Bearer <token>`` on every call.
AUTH_HEADER: Final = "X-NHN-Authorization"
#: 4131000 "the permissible limit is 5mb" (seed guide). NHN now documents
#: 20 MB, so callers may raise it; 5 MiB is what the user asked for.
DEFAULT_MAX_BYTES: Final = 5 * 1024 * 1024
#: 4000501: a valid answer that found no text; not a failure for the user.
NO_TEXT_CODE: Final = 4000501

# The guide: "an explicit port in imageUrl must be 80, 443 or 10000-12000".
_URL_PORT_RANGE: Final = range(10000, 12001)
_URL_PORTS: Final = frozenset({80, 443})

#: The first bytes of every PNG (PNG spec, 5.2).
PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
#: The first bytes of a JPEG the API takes: SOI and the next marker's 0xFF.
JPEG_SIGNATURE: Final = b"\xff\xd8\xff"
_PNG_END: Final = b"IEND\xaeB`\x82"  # the IEND chunk type and its fixed CRC
#: The length of every multipart boundary the client sends: the framing of a
#: request is a function of this and the image type (:func:`multipart_size`).
BOUNDARY_LENGTH: Final = len("ocr-async-") + 32
_CONTENT_TYPES: Final[Mapping[ImageType, str]] = {"jpg": "image/jpeg", "png": "image/png"}
# Characters of a body without an envelope quoted in the error message.
_SNIPPET_LIMIT: Final = 120


#: Every documented result code: (resultKey, error class). The keys are NHN's
#: own (General OCR error-code page); 4000005/4000006 come from the API guide.
RESULT_CODES: Final[Mapping[int, tuple[str, type[ApiError]]]] = {
    -1: ("FAIL", ServerFailureError),
    400: ("BAD_REQUEST", InvalidRequestError),
    401: ("UNAUTHORIZED", AuthError),
    403: ("FORBIDDEN", AuthError),
    404: ("NOT_FOUND", InvalidRequestError),
    405: ("METHOD_NOT_ALLOWED", InvalidRequestError),
    415: ("UNSUPPORTED_MEDIA_TYPE", InvalidRequestError),
    4000001: ("INVALID_PARAMETER", InvalidRequestError),
    4000002: ("INVALID_FILE", InvalidRequestError),
    4000003: ("INVALID_FILE_TYPE", InvalidRequestError),
    4000004: ("UPLOADED_FILE_IS_EMPTY", InvalidRequestError),
    4000005: ("REQUIRED_HEADERS_MISSING", InvalidRequestError),
    4000006: ("API_CALL_LIMIT_EXCEEDED", RateLimitedError),
    4000502: ("GENERAL_OCR_IMAGE_SIZE_EXCEED", InvalidRequestError),
    4000503: ("GENERAL_OCR_IMAGE_DOWNLOAD_TIME_OUT", ImageDownloadError),
    4000504: ("GENERAL_OCR_IMAGE_DOWNLOAD_FAIL", ImageDownloadError),
    4000505: ("GENERAL_OCR_IMAGE_OUT_OF_RATIO", InvalidRequestError),
    4010001: ("INVALID_APPKEY_SECRETKEY", AuthError),
    4010002: ("INVALID_UUID", AuthError),
    4010003: ("NOT_ALLOWED_USER", AuthError),
    4010004: ("INVALID_PROJECT", AuthError),
    4010005: ("UNAUTHORIZED_ROLE", AuthError),
    4010006: ("INVALID_TOKEN", InvalidTokenError),
    4010007: ("PERMISSION_DENIED", AuthError),
    4131000: ("MAX_UPLOAD_SIZE_EXCEEDED", InvalidRequestError),
    5000001: ("INTERNAL_API_FAIL", ServerFailureError),
    5000002: ("ERROR_PARSING_FAIL", ServerFailureError),
    5000003: ("DATABASE_FAIL", ServerFailureError),
    5000004: ("RESOURCE_DELETE_FAIL", ServerFailureError),
    5000005: ("FILE_READ_FAIL", ServerFailureError),
    5000503: ("API_TEMPORARILY_UNAVAILABLE", TemporarilyUnavailableError),
    5005001: ("OCR_GENERAL_API_FAIL", ServerFailureError),
    5005002: ("OCR_GENERAL_API_RETURN_EMPTY", ServerFailureError),
    5005003: ("OCR_GENERAL_RECOGNITION_FAIL", ServerFailureError),
}


def error_for_code(code: int, message: str) -> ApiError:
    """The typed error for an API result code (never for 0 or 4000501).

    Codes missing from the table are classified by family so that a new
    5xxxxxx is still retried and a new 401xxxx still stops a run.
    """
    known = RESULT_CODES.get(code)
    if known is not None:
        key, cls = known
        return cls(code, f"{key}: {message}" if message else key)
    # Undocumented HTTP-like codes in an envelope follow HTTP's meaning.
    if code == 429:
        return RateLimitedError(code, message or "too many requests")
    if 5000000 <= code < 6000000 or 500 <= code < 600:
        return ServerFailureError(code, message or "server failure")
    if 4010000 <= code < 4020000:
        return AuthError(code, message or "authorization failure")
    if 4000000 <= code < 5000000:
        return InvalidRequestError(code, message or "invalid request")
    return UnknownApiError(code, message or "undocumented result code")


# --- pre-checks --------------------------------------------------------------


def sniff_image_type(data: bytes) -> ImageType | None:
    """``"jpg"`` or ``"png"`` by magic bytes, or None for anything else."""
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SIGNATURE):
        return "jpg"
    return None


def check_image_bytes(data: bytes) -> ImageType:
    """Refuse, as the server would, an empty file, one not JPEG/PNG, a cut-off PNG.

    Raises :class:`LocalCheckError` with 4000004 (empty), 4000003 (type) or
    4000002 (a PNG without its closing IEND chunk: a copy or download that
    stopped short). JPEGs are not checked for their end marker: decoders
    accept many that lack it.
    """
    if not data:
        raise LocalCheckError(4000004, "UPLOADED_FILE_IS_EMPTY: the file is empty (not sent)")
    kind = sniff_image_type(data)
    if kind is None:
        raise LocalCheckError(
            4000003,
            "INVALID_FILE_TYPE: not a JPEG or PNG by its first bytes "
            f"({data[:8].hex(' ')}) (not sent)",
        )
    # IEND is the last chunk: a PNG cut short has none. Searched anywhere,
    # not just at the end, because decoders tolerate data after it.
    if kind == "png" and _PNG_END not in data:
        raise LocalCheckError(
            4000002, "INVALID_FILE: the PNG is cut off (no IEND chunk at its end) (not sent)"
        )
    return kind


def check_image_url(url: str) -> None:
    """Refuse, as the server would, a URL that is not http(s) or names a bad port.

    Raises :class:`LocalCheckError` with 4000001 (INVALID_PARAMETER).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise LocalCheckError(
            4000001, f"INVALID_PARAMETER: malformed URL ({exc}) (not sent)"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise LocalCheckError(
            4000001,
            f"INVALID_PARAMETER: imageUrl must be http or https, not {parts.scheme!r} (not sent)",
        )
    if not parts.hostname:
        raise LocalCheckError(4000001, "INVALID_PARAMETER: imageUrl has no host (not sent)")
    if port is not None and port not in _URL_PORTS and port not in _URL_PORT_RANGE:
        raise LocalCheckError(
            4000001,
            f"INVALID_PARAMETER: imageUrl port {port} is refused by the API "
            "(allowed: 80, 443, 10000-12000) (not sent)",
        )


# --- requests -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready to send: the I/O layer only moves these bytes.

    Its repr never shows the token.
    """

    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def __repr__(self) -> str:
        kind = self.headers.get("Content-Type", "").split(";")[0]
        return f"PreparedRequest(POST {self.url}, {kind}, {len(self.body)} bytes)"


def endpoint_url(base_url: str, appkey: str, endpoint: Endpoint) -> str:
    """``{base}/v1.1/appkeys/{appKey}/general[/cropping]``, app key escaped."""
    return f"{base_url.rstrip('/')}/v1.1/appkeys/{quote(appkey, safe='')}{endpoint.path_suffix}"


def _auth_headers(token: str) -> dict[str, str]:
    return {AUTH_HEADER: f"Bearer {token}", "Accept": "application/json"}


def new_boundary() -> str:
    """A fresh multipart boundary: random, and always :data:`BOUNDARY_LENGTH` long."""
    return f"ocr-async-{secrets.token_hex(16)}"


def _multipart_head(boundary: str, kind: ImageType) -> bytes:
    # The part's filename is fixed: the server only needs the extension, and
    # local names (possibly not UTF-8, possibly private) never leave the machine.
    return (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="image.{kind}"\r\n'
        f"Content-Type: {_CONTENT_TYPES[kind]}\r\n\r\n"
    ).encode("ascii")


def _multipart_tail(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("ascii")


def multipart_size(
    kind: ImageType, image_bytes: int, boundary_length: int = BOUNDARY_LENGTH
) -> int:
    """The size of the multipart body that sends an image of ``image_bytes`` bytes.

    The framing depends only on the boundary's length and the image type
    (its Content-Type: ``image/jpeg`` is one byte longer than ``image/png``).
    """
    boundary = "-" * boundary_length
    return len(_multipart_head(boundary, kind)) + image_bytes + len(_multipart_tail(boundary))


def check_body_size(kind: ImageType, image_bytes: int, max_bytes: int) -> None:
    """Refuse, as the server would (4131000), an image whose request body is over ``max_bytes``.

    The limit applies to the whole body that would be sent, multipart
    framing included, because the server's 4131000 is about the request.
    """
    size = multipart_size(kind, image_bytes)
    if size > max_bytes:
        raise LocalCheckError(
            4131000,
            f"MAX_UPLOAD_SIZE_EXCEEDED: request would be {size} bytes, "
            f"over the {max_bytes}-byte limit (not sent)",
        )


def assemble_file_request(
    *,
    base_url: str,
    appkey: str,
    token: str,
    endpoint: Endpoint,
    image: bytes,
    kind: ImageType,
    boundary: str,
) -> PreparedRequest:
    """The multipart request that sends ``image``, already checked as ``kind``.

    Checks nothing: the pre-check stage did (:func:`check_image_bytes`,
    :func:`check_body_size`). ``boundary`` should be :data:`BOUNDARY_LENGTH`
    long, as the size check assumed.
    """
    # RFC 2046 5.1.1: the boundary must not occur in the data. A boundary
    # reused across requests (OcrClient keeps one) that happens to (about
    # 2**-128 per image) is replaced for this request alone.
    if boundary.encode("ascii") in image:
        boundary = new_boundary()
    headers = _auth_headers(token)
    headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
    return PreparedRequest(
        url=endpoint_url(base_url, appkey, endpoint),
        headers=headers,
        body=b"".join((_multipart_head(boundary, kind), image, _multipart_tail(boundary))),
    )


def assemble_url_request(
    *, base_url: str, appkey: str, token: str, endpoint: Endpoint, image_url: str
) -> PreparedRequest:
    """The JSON request that names ``image_url``, already checked."""
    headers = _auth_headers(token)
    headers["Content-Type"] = "application/json"
    return PreparedRequest(
        url=endpoint_url(base_url, appkey, endpoint),
        headers=headers,
        body=json.dumps({"imageUrl": image_url}).encode("utf-8"),
    )


def build_file_request(
    *,
    base_url: str,
    appkey: str,
    token: str,
    endpoint: Endpoint,
    image: bytes,
    max_bytes: int = DEFAULT_MAX_BYTES,
    boundary: str | None = None,
) -> PreparedRequest:
    """Check an image as the pre-check stage does, then assemble its request.

    For callers holding bytes and nothing else (the emulator's tests, a
    script): :func:`check_image_bytes`, :func:`check_body_size`, then
    :func:`assemble_file_request`. Raises :class:`LocalCheckError`
    (4000004, 4000003, 4000002, 4131000).
    """
    kind = check_image_bytes(image)
    check_body_size(kind, len(image), max_bytes)
    return assemble_file_request(
        base_url=base_url,
        appkey=appkey,
        token=token,
        endpoint=endpoint,
        image=image,
        kind=kind,
        boundary=boundary or new_boundary(),
    )


def build_url_request(
    *, base_url: str, appkey: str, token: str, endpoint: Endpoint, image_url: str
) -> PreparedRequest:
    """Check an image URL (:func:`check_image_url`), then assemble its request.

    Raises :class:`LocalCheckError` (4000001).
    """
    check_image_url(image_url)
    return assemble_url_request(
        base_url=base_url, appkey=appkey, token=token, endpoint=endpoint, image_url=image_url
    )


# --- responses ----------------------------------------------------------------


def _merge_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The seed's sample repeats "inferTexts" inside one object; plain json
    # keeps only the last group. Lists under a repeated key are concatenated
    # in order so every word survives; for other values the last one wins,
    # as in plain JSON.
    merged = dict(pairs)
    if len(merged) == len(pairs):
        return merged  # no key repeated, the usual case: built in C
    merged = {}
    for key, value in pairs:
        previous = merged.get(key)
        if isinstance(previous, list) and isinstance(value, list):
            merged[key] = previous + value
        else:
            merged[key] = value
    return merged


def decode_json(body: bytes) -> Any:
    """Decode JSON, keeping every list under a key repeated in one object.

    Bytes that are not UTF-8 are replaced rather than refused, so an envelope
    with a mis-encoded message still yields its result code. Raises
    ``ValueError`` on anything that is not JSON, nesting too deep included.
    """
    return _decode_json_text(body.decode("utf-8", "replace"))


def _decode_json_text(text: str, *, strict: bool = False) -> Any:
    try:
        document = json.loads(
            text,
            object_pairs_hook=_merge_duplicate_keys,
            # NaN and Infinity are not JSON (RFC 8259): they say "no number".
            parse_constant=_no_number if strict else None,
        )
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # A lone surrogate escape decodes to half a character, which no strict
    # JSON writer, text file or terminal takes: the values are walked only
    # when the text has a surrogate escape at all. A plain substring search,
    # not a regular expression: this may run in a worker thread over 64 MB,
    # and the regex engine would hold the GIL, and so the event loop, for
    # over a second. (A number too large for a float reads as inf; the sink
    # writes it as null, and no coordinate or confidence takes it.)
    if strict and ("\\ud" in text or "\\uD" in text):
        return strict_json(document)
    return document


def _no_number(constant: str) -> None:
    return None


def _number(value: Any) -> float:
    # Numbers, or numbers sent as strings; a huge integer overflows float()
    # and NaN/infinity are no coordinate: all refused alike.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    try:
        number = float(value)
    except OverflowError:
        raise ValueError(value) from None
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _parse_box(raw: Any) -> BoundingBox | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return BoundingBox(
            *(_number(raw[k]) for k in ("x1", "y1", "x2", "y2", "x3", "y3", "x4", "y4"))
        )
    except (KeyError, ValueError):
        return None


def _word_value(raw: Any) -> str | None:
    # A word without a value (null, or not an object with one) is no word:
    # it must not become the text "None".
    if isinstance(raw, str | int | float) and not isinstance(raw, bool):
        return str(raw)
    if not isinstance(raw, Mapping):
        return None
    value = raw.get("value")
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _parse_word(raw: Any, box: BoundingBox | None) -> Word | None:
    value = _word_value(raw)
    if value is None:
        return None
    conf = raw.get("conf") if isinstance(raw, Mapping) else None
    try:
        conf_value = None if conf is None else _number(conf)
    except ValueError:
        conf_value = None
    return Word(value=value, conf=conf_value, box=box)


def _list_of(container: Any, key: str) -> list[Any]:
    value = container.get(key) if isinstance(container, Mapping) else None
    return value if isinstance(value, list) else []


def _lines_of(result: Mapping[str, Any]) -> tuple[Line, ...]:
    # listOfInferTexts[i].inferTexts[j] is paired with
    # listOfBoundingBoxes[i].boundingBoxes[j] (API-FACTS.md, "the real shape").
    box_groups = _list_of(result, "listOfBoundingBoxes")
    lines: list[Line] = []
    for i, group in enumerate(_list_of(result, "listOfInferTexts")):
        boxes = _list_of(box_groups[i], "boundingBoxes") if i < len(box_groups) else []
        # Pair by the index as received, before dropping any empty word.
        paired = (
            _parse_word(raw, _parse_box(boxes[j]) if j < len(boxes) else None)
            for j, raw in enumerate(_list_of(group, "inferTexts"))
        )
        lines.append(Line(tuple(word for word in paired if word is not None)))
    return tuple(lines)


def _text_of(result: Mapping[str, Any]) -> str:
    # What "\n".join(line.text for line in _lines_of(result)) gives, without
    # building a word or a box: the record needs only the text.
    return "\n".join(
        " ".join(
            value
            for raw in _list_of(group, "inferTexts")
            if (value := _word_value(raw)) is not None
        )
        for group in _list_of(result, "listOfInferTexts")
    )


def parse_result(result: Mapping[str, Any], *, no_text: bool = False) -> OcrResult:
    """Turn the API's ``result`` object into an :class:`OcrResult`.

    ``listOfInferTexts[i].inferTexts[j]`` is paired with
    ``listOfBoundingBoxes[i].boundingBoxes[j]`` (API-FACTS.md, "the real
    shape"); a word without a matching box gets ``box=None``. Entries of the
    wrong shape are tolerated, never fatal: ``raw`` keeps them as received.
    The lines, words and boxes are built when first asked for: a record
    needs only the text.
    """
    file_type = result.get("fileType")
    slices = result.get("slicesImages")
    return OcrResult.from_raw(
        result,
        _lines_of,
        _text_of,
        file_type=file_type if isinstance(file_type, str) else None,
        slices_images=slices if isinstance(slices, int) and not isinstance(slices, bool) else None,
        no_text=no_text,
    )


def _result_code(header: Mapping[str, Any]) -> int | None:
    code = header.get("resultCode")
    if isinstance(code, bool):
        return None
    if isinstance(code, int):
        return code
    if isinstance(code, str):
        try:
            return int(code.strip())
        except ValueError:
            return None
    return None


def redirect_error(status: int, location: str | None, request_url: str) -> HttpStatusError:
    """The error for a 3xx answer: an API call never follows a redirect.

    Followed, it would carry the token to whatever host ``Location`` names,
    and a 301, 302 or 303 would turn the POST into a GET whose answer is no
    recognition at all. The API itself never redirects (it answers 200), so
    a redirect means a wrong base URL or something in between: not retried.
    The message names the target's origin only; its path and query may hold
    anything.
    """
    target = url_origin(location, request_url) if location else "nowhere (no Location)"
    return HttpStatusError(
        status,
        f"HTTP {status}: a redirect to {target}, not followed "
        "(API calls never follow redirects: is the base URL right?)",
    )


def parse_retry_after(
    value: str | None, *, date: str | None = None, now: float | None = None
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None if there is none.

    RFC 9110 10.2.3: either a whole number of seconds or an HTTP-date. A
    date is measured against the answer's own ``Date`` header when it has
    one (so the two clocks need not agree), else against ``now`` (Unix
    seconds, the caller's clock); a date already past is 0 s. Anything
    unreadable is None: no wait asked for.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    when = _http_date(text)
    if when is None:
        return None
    reference = _http_date(date) if date is not None else None
    if reference is None:
        if now is None:
            return None
        reference = now
    return max(when - reference, 0.0)


def _http_date(text: str) -> float | None:
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # RFC 9110: HTTP-dates are in GMT
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_response(
    status: int,
    body: bytes,
    *,
    redact: Redactor | Collection[str] = (),
    retry_after: float | None = None,
) -> OcrResult:
    """Read one answer: an :class:`OcrResult`, or a typed error raised.

    The API answers HTTP 200 with a JSON envelope, failures included. A
    failure envelope is honoured whatever the status (a gateway may send
    4000006 with a 429); a 429 without one is a
    :class:`TooManyRequestsError`, another non-200 an :class:`HttpStatusError`;
    a 200 whose body is not the envelope (HTML, truncated JSON) is a
    :class:`MalformedResponseError`. Error messages quote the start of such a
    body.

    Every secret in ``redact`` (the token, as a :class:`Redactor` or a list)
    is blanked out of everything taken from the answer: the messages, and
    the result itself, words included. What strict JSON cannot hold is
    replaced too: ``NaN`` and ``Infinity`` by None, a lone surrogate escape
    by U+FFFD, so no record, text file or message carries half a character.
    ``retry_after`` (seconds, from :func:`parse_retry_after`) is attached to
    the error raised, as its ``retry_after``.
    """
    redactor = Redactor.of(redact)
    text = body.decode("utf-8", "replace")
    try:
        document = _decode_json_text(text, strict=True)
        is_json = True
    except ValueError:
        document, is_json = None, False
    # Searched once in the whole text; the decoded values are walked only
    # when a secret is there to be blanked out.
    if is_json and redactor.found_in(text):
        document = redactor.redact_value(document)
    header = document.get("header") if isinstance(document, Mapping) else None
    code = _result_code(header) if isinstance(header, Mapping) else None

    if header is None or code is None:
        snippet = server_text(text, redactor, limit=_SNIPPET_LIMIT)
        if status == 429:
            # RFC 6585: too many requests. A gateway's refusal for the rate,
            # the same signal as 4000006.
            too_many = TooManyRequestsError(
                status, f"HTTP 429 without an API envelope: {snippet!r}"
            )
            too_many.retry_after = retry_after
            raise too_many
        if status != 200:
            raise HttpStatusError(status, f"HTTP {status} without an API envelope: {snippet!r}")
        what = "JSON without a valid header" if is_json else "not JSON (truncated or HTML?)"
        raise MalformedResponseError("bad_response", f"response body is {what}: {snippet!r}")

    assert isinstance(document, Mapping)  # header came from it
    raw_result = document.get("result")
    result: Mapping[str, Any] = raw_result if isinstance(raw_result, Mapping) else {}

    if code == 0 and header.get("isSuccessful") is True:
        if not isinstance(raw_result, Mapping):
            raise MalformedResponseError("bad_response", "success envelope without a result object")
        return parse_result(result)
    if code == NO_TEXT_CODE:
        return parse_result(result, no_text=True)
    if code == 0:
        flag = server_text(repr(header.get("isSuccessful")), redactor, limit=40)
        raise UnknownApiError(0, f"resultCode 0 with isSuccessful={flag}")
    # Made safe only here: a success's message is never shown.
    message = header.get("resultMessage")
    message = server_text(message, redactor) if isinstance(message, str) else ""
    error = error_for_code(code, message)
    error.retry_after = retry_after
    raise error
