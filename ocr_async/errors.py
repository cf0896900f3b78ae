"""The exception tree: whose fault it was, and whether trying again can help.

A leaf module: it imports nothing of the package, so every other module can
raise these without import cycles.

::

    OcrError
    ├── LocalCheckError        decided here, before a byte was sent
    ├── SourceError            the input itself could not be read
    ├── ApiError               the API answered with a failure envelope
    │   ├── InvalidRequestError      4000001..4000005, 4000502, 4000505, 4131000, 4xx
    │   ├── AuthError                4010001..4010005, 4010007, 401, 403
    │   ├── InvalidTokenError        4010006 (worth one retry with a new token)
    │   ├── RateLimitedError         4000006 (back off)
    │   ├── TemporarilyUnavailableError  5000503 (back off)
    │   ├── ImageDownloadError       4000503, 4000504 (the API could not fetch imageUrl)
    │   ├── ServerFailureError       -1, 5000001..5000005, 5005001..5005003
    │   └── UnknownApiError          a code not in the documentation
    └── TransportError         no usable answer at all
        ├── ConnectionFailedError    refused, reset, dropped
        ├── RequestTimeoutError      no answer in time
        ├── HttpStatusError          a gateway answered non-200 (or redirected)
        │   └── TooManyRequestsError     429: too fast (back off, Retry-After)
        ├── MalformedResponseError   200, but not the JSON envelope (HTML, torn)
        └── AnswerTooLargeError      an answer over the size cap (not retried)

Plus :class:`ConfigurationError` for a client that cannot start at all (no
token, no app key); it is not an :class:`OcrError` because it is never about
one image.

Messages never contain a token: they are built from result codes, statuses
and exception class names only.
"""

from __future__ import annotations

from typing import Self

__all__ = [
    "AnswerTooLargeError",
    "ApiError",
    "AuthError",
    "ConfigurationError",
    "ConnectionFailedError",
    "HttpStatusError",
    "ImageDownloadError",
    "InvalidRequestError",
    "InvalidTokenError",
    "LocalCheckError",
    "MalformedResponseError",
    "OcrError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ServerFailureError",
    "SourceError",
    "TemporarilyUnavailableError",
    "TooManyRequestsError",
    "TransportError",
    "UnknownApiError",
]


class OcrError(Exception):
    """Base of every error about one image.

    ``code`` is the API's result code (an int) where there is one, including
    for local pre-checks, which carry the code the server would have answered;
    otherwise a short stable string such as ``"timeout"`` or ``"http_502"``.
    ``attempts`` says how many requests were sent for the image (0 when the
    error was decided locally); the client raises the error of the last
    attempt as :meth:`with_attempts` gives it.
    """

    #: Whether sending the same request again may succeed.
    retryable: bool = False
    #: Whether this was decided on this machine (nothing or nothing more sent).
    local: bool = False
    #: Seconds the server asked to wait before trying again (``Retry-After``
    #: of a 429 or 503), where it said; the rate controller honours it.
    retry_after: float | None = None

    def __init__(self, code: int | str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.attempts = 0

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def with_attempts(self, attempts: int) -> Self:
        """A copy of this error saying ``attempts`` requests were sent; this one is unchanged.

        The copy keeps the type, the attributes and the traceback; no
        ``__init__`` runs again, so subclasses with other signatures copy too.
        """
        copied = type(self).__new__(type(self), *self.args)
        copied.__dict__.update(self.__dict__)
        copied.attempts = attempts
        return copied.with_traceback(self.__traceback__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class LocalCheckError(OcrError):
    """A pre-check refused the input; nothing was sent.

    ``code`` is what the API would have answered (4000004 for an empty file,
    4000003 for a type other than JPEG/PNG, 4131000 for an oversized body,
    4000001 for a URL the API refuses).
    """

    local = True


class SourceError(OcrError):
    """The input could not be read (missing, no permission, not a file)."""

    local = True


class ApiError(OcrError):
    """The API answered with ``isSuccessful: false``."""

    code: int


class InvalidRequestError(ApiError):
    """The request itself is wrong; the same request will fail again."""


class AuthError(ApiError):
    """The credentials, app key or permissions were refused.

    Fatal for a whole run: every other request would be refused the same way.
    """


class InvalidTokenError(AuthError):
    """4010006: the token is invalid or expired.

    Worth exactly one more try, and only after a new token was issued; the
    client decides that with its token provider.
    """


class RateLimitedError(ApiError):
    """4000006: the API call limit was exceeded. Back off and try again."""

    retryable = True


class TemporarilyUnavailableError(ApiError):
    """5000503: the service is overloaded upstream. Back off and try again."""

    retryable = True


class ImageDownloadError(ApiError):
    """4000503/4000504: the API could not download ``imageUrl`` this time."""

    retryable = True


class ServerFailureError(ApiError):
    """-1 and the 5000xxx/5005xxx family: a failure on the server's side."""

    retryable = True


class UnknownApiError(ApiError):
    """A result code the documentation does not list; not retried."""


class TransportError(OcrError):
    """No usable answer arrived; by default worth another try."""

    retryable = True


class ConnectionFailedError(TransportError):
    """The connection was refused, reset or dropped mid-answer."""


class RequestTimeoutError(TransportError):
    """No complete answer within the client's timeout."""


class HttpStatusError(TransportError):
    """Something in front of the API answered with a non-200 status.

    The API itself always answers 200; a non-200 comes from a gateway or
    proxy. 408, 425, 429 and 5xx are transient; other statuses are not.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"http_{status}", message)
        self.status = status
        self.retryable = status in (408, 425, 429) or status >= 500

    def __reduce__(self) -> tuple[type[HttpStatusError], tuple[int, str], dict[str, object]]:
        # Rebuild from (status, message), not from the base class's args.
        return type(self), (self.status, self.message), self.__dict__


class TooManyRequestsError(HttpStatusError):
    """A gateway in front of the API answered 429 Too Many Requests.

    The same signal as 4000006, from something that does not speak the
    API's envelope: it goes through the rate controller like a refusal, and
    its ``retry_after`` (seconds) pauses every worker.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)
        self.retryable = True


class MalformedResponseError(TransportError):
    """A 200 whose body is not the JSON envelope: HTML, truncated, garbage."""


class AnswerTooLargeError(TransportError):
    """An answer larger than the client reads (after decompression): a bomb, or no API.

    Not retried: the same server would send the same thing again.
    """

    retryable = False


class ConfigurationError(Exception):
    """The client cannot start: a missing token, app key or bad setting.

    Raised before any image is looked at; the CLI maps it to exit code 2.
    """
