"""One validated options object for a run, and the one place credentials are resolved.

:class:`Options` is built once, from the command line (``ocr-async run``)
or from :func:`ocr_async.recognize_many`'s arguments, and read by the
client (concurrency, timeout, size limits, retries, rate), the pre-check
stage (endpoint, ``convert``, ``shrink``, size limits) and the pipeline
(concurrency, grace): each setting is given once, so the parts cannot
disagree. It is frozen and checks its values when built, raising
:class:`~ocr_async.errors.ConfigurationError`.

:func:`resolve_credentials` turns what the caller gave (or did not) into a
base URL, an app key and a token provider, reading the environment where
nothing was given. The command line and the library both call it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from ocr_async.auth import (
    StaticToken,
    TokenProvider,
    UserAccessKeyTokens,
    token_from_environment,
    uak_from_environment,
)
from ocr_async.errors import ConfigurationError
from ocr_async.models import Endpoint
from ocr_async.pdfpages import DEFAULT_DPI
from ocr_async.protocol import DEFAULT_BASE_URL, DEFAULT_MAX_BYTES
from ocr_async.retry import RetryPolicy

__all__ = [
    "APPKEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_CONCURRENCY",
    "DEFAULT_GRACE",
    "DEFAULT_MAX_ANSWER_BYTES",
    "DEFAULT_PDF_DPI",
    "DEFAULT_READ_LIMIT",
    "DEFAULT_TIMEOUT",
    "MAX_PDF_DPI",
    "MIN_PDF_DPI",
    "SHARED_QUOTA_ENV",
    "Credentials",
    "EndpointChoice",
    "Options",
    "resolve_base_url",
    "resolve_credentials",
]

#: The environment variable naming the API host.
BASE_URL_ENV: Final = "NHN_OCR_BASE_URL"
#: The environment variable holding the app key.
APPKEY_ENV: Final = "NHN_OCR_APPKEY"

#: The environment variable naming a shared quota's store (``--shared-quota``).
SHARED_QUOTA_ENV: Final = "OCR_ASYNC_SHARED_QUOTA"
#: The schemes redis-py connects to: TCP, TLS, a Unix socket.
SHARED_QUOTA_SCHEMES: Final = ("redis", "rediss", "unix")

#: Requests in flight at once, and the size of the connection pool.
DEFAULT_CONCURRENCY: Final = 16
#: Seconds for one request, upload and answer included.
DEFAULT_TIMEOUT: Final = 60.0
#: The most of one answer that is read, counted after decompression. A dense
#: page is about 1,000 words, some 200 kB of JSON; even a 20 MB image packed
#: with 10-pixel text (about 40,000 words) answers under 10 MB. 64 MiB leaves
#: ample room and still bounds memory against a gzip bomb or a server that
#: is not the API: with 16 requests in flight, at most 1 GiB of answers.
DEFAULT_MAX_ANSWER_BYTES: Final = 64 * 1024 * 1024
#: With ``convert`` or ``shrink`` a file may be larger than the upload limit
#: before it is made to fit; this bounds what is read into memory.
DEFAULT_READ_LIMIT: Final = 256 * 1024 * 1024
#: Seconds requests in flight may take to finish after a stop request.
DEFAULT_GRACE: Final = 10.0
#: PDF pages are rendered at this resolution unless they would not fit.
DEFAULT_PDF_DPI: Final = DEFAULT_DPI
#: The range ``pdf_dpi`` may take: below 72 text is too small to read, and
#: above 600 a page is larger than any request limit allows.
MIN_PDF_DPI: Final = 72
MAX_PDF_DPI: Final = 600

#: An endpoint, or ``"auto"``: chosen per image from its aspect ratio.
EndpointChoice = Endpoint | Literal["auto"]


@dataclass(frozen=True, slots=True)
class Options:
    """How a run behaves: one value, validated once, read by every stage.

    The client reads ``concurrency``, ``timeout``, ``max_bytes``,
    ``max_answer_bytes``, ``retry``, ``rps``, ``adapt_rate`` and
    ``shared_quota``; the
    pre-check stage ``endpoint``, ``convert``, ``shrink``, ``max_bytes``,
    ``read_limit`` and ``pdf_dpi``; the pipeline ``concurrency`` and ``grace``.
    """

    #: Requests in flight at once (and workers, and pooled connections).
    concurrency: int = DEFAULT_CONCURRENCY
    #: Seconds for one request, upload and answer included.
    timeout: float = DEFAULT_TIMEOUT
    #: The largest request body sent; larger ones are refused (4131000) or,
    #: with ``shrink``, made to fit.
    max_bytes: int = DEFAULT_MAX_BYTES
    #: The most of one answer read (see :data:`DEFAULT_MAX_ANSWER_BYTES`).
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Never more requests per second than this; None: adapt to the quota.
    rps: float | None = None
    #: Share one rate controller that finds the call limit (ignored with ``rps``).
    adapt_rate: bool = True
    #: The endpoint, or ``"auto"`` (cropping beyond 1:2.5, refused beyond 1:10).
    endpoint: EndpointChoice = Endpoint.GENERAL
    #: Turn TIFF (every page), BMP, WebP and GIF into PNG before sending.
    convert: bool = False
    #: Re-encode an image over ``max_bytes`` to fit instead of refusing it.
    shrink: bool = False
    #: The most of one file read, with ``convert`` or ``shrink``.
    read_limit: int = DEFAULT_READ_LIMIT
    #: Seconds requests in flight may take to finish after a stop request.
    grace: float = DEFAULT_GRACE
    #: The resolution PDF pages are rendered at, lowered per page when the
    #: image would not fit ``max_bytes`` (:mod:`ocr_async.pdfpages`).
    pdf_dpi: int = DEFAULT_PDF_DPI
    # -- scale-out (issue 11) ---------------------------------------------------
    #: A Redis URL: the rate controller joins every other process that shares
    #: the quota of this app key there (:mod:`ocr_async.shared_quota`).
    #: Needs the adaptive controller. Not in the repr: it may hold a password.
    shared_quota: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if not self.timeout > 0:  # also refuses NaN
            raise ConfigurationError("timeout must be positive")
        if self.max_bytes < 1:
            raise ConfigurationError("max_bytes must be positive")
        if self.max_answer_bytes < 1:
            raise ConfigurationError("max_answer_bytes must be positive")
        if self.read_limit < 1:
            raise ConfigurationError("read_limit must be positive")
        if self.rps is not None and not (math.isfinite(self.rps) and self.rps > 0):
            raise ConfigurationError("rps must be a positive number of requests per second")
        if not (math.isfinite(self.grace) and self.grace >= 0):
            raise ConfigurationError("grace must be a non-negative number of seconds")
        if not MIN_PDF_DPI <= self.pdf_dpi <= MAX_PDF_DPI:
            raise ConfigurationError(f"pdf_dpi must be from {MIN_PDF_DPI} to {MAX_PDF_DPI}")
        if self.endpoint != "auto":
            try:
                endpoint = Endpoint(self.endpoint)
            except ValueError:
                choices = ", ".join([*(e.value for e in Endpoint), "auto"])
                raise ConfigurationError(
                    f"endpoint must be one of {choices}, not {self.endpoint!r}"
                ) from None
            object.__setattr__(self, "endpoint", endpoint)
        self._check_shared_quota()

    def _check_shared_quota(self) -> None:
        if self.shared_quota is None:
            return
        # The URL is never echoed: it may carry the store's password.
        scheme = self.shared_quota.partition("://")[0].lower()
        if "://" not in self.shared_quota or scheme not in SHARED_QUOTA_SCHEMES:
            raise ConfigurationError(
                "the shared quota's URL must start with redis://, rediss:// or unix://"
            )
        if self.rps is not None:
            raise ConfigurationError("a shared quota is adaptive: it does not go with rps")
        if not self.adapt_rate:
            raise ConfigurationError("a shared quota needs the adaptive rate controller")

    @property
    def auto_endpoint(self) -> bool:
        """Whether the endpoint is chosen per image (``endpoint="auto"``)."""
        return self.endpoint == "auto"

    @property
    def fixed_endpoint(self) -> Endpoint:
        """The endpoint every image goes to, or the one before ``auto`` chooses."""
        return Endpoint.GENERAL if self.endpoint == "auto" else Endpoint(self.endpoint)

    @property
    def changes_images(self) -> bool:
        """Whether the pre-check stage may look at or change image bytes beyond checking them."""
        return self.auto_endpoint or self.convert or self.shrink

    def with_changes(self, **changes: Any) -> Options:
        """A copy with the ``changes`` that are not None applied (and validated).

        For keyword arguments whose ``None`` means "not given"; to set
        ``rps`` back to None, use :func:`dataclasses.replace`.
        """
        given = {name: value for name, value in changes.items() if value is not None}
        return replace(self, **given) if given else self


@dataclass(frozen=True, slots=True)
class Credentials:
    """Where to send requests, and as whom."""

    base_url: str
    appkey: str
    tokens: TokenProvider = field(repr=False)
    #: True when the provider was made here (from the environment's User
    #: Access Key): whoever resolved the credentials closes it (:meth:`aclose`).
    owns_tokens: bool = False

    @property
    def user_access_key(self) -> UserAccessKeyTokens | None:
        """The provider when it issues tokens from a User Access Key, else None."""
        return self.tokens if isinstance(self.tokens, UserAccessKeyTokens) else None

    async def aclose(self) -> None:
        """Close the token provider if it was made here."""
        if self.owns_tokens and isinstance(self.tokens, UserAccessKeyTokens):
            await self.tokens.aclose()


def resolve_base_url(base_url: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``base_url``, else ``NHN_OCR_BASE_URL`` (stripped; empty is unset), else the NHN host."""
    env = os.environ if env is None else env
    return base_url or env.get(BASE_URL_ENV, "").strip() or DEFAULT_BASE_URL


def resolve_credentials(
    *,
    appkey: str | None = None,
    token: str | TokenProvider | None = None,
    token_file: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    appkey_flag: str = "appkey=",
) -> Credentials:
    """The base URL, app key and token provider, from what was given, else the environment.

    * base URL: ``base_url``, else ``NHN_OCR_BASE_URL``, else the NHN host;
    * app key: ``appkey``, else ``NHN_OCR_APPKEY``; missing is a
      :class:`ConfigurationError` that names ``appkey_flag`` (``--appkey`` on
      the command line);
    * token: ``token``, else a User Access Key (``NHN_UAK_ID`` and
      ``NHN_UAK_SECRET``, which then wins over a fixed token), else
      ``token_file``, ``NHN_OCR_TOKEN_FILE`` or ``NHN_OCR_TOKEN``
      (:func:`~ocr_async.auth.token_from_environment`).

    Values from the environment are stripped, and an empty one counts as
    unset. Raises :class:`ConfigurationError` naming what to set.
    """
    env = os.environ if env is None else env
    url = resolve_base_url(base_url, env)
    key = (appkey or env.get(APPKEY_ENV, "")).strip()
    if not key:
        raise ConfigurationError(f"no app key: set {APPKEY_ENV} or pass {appkey_flag}")
    if token is not None:
        return Credentials(url, key, StaticToken(token) if isinstance(token, str) else token)
    uak = uak_from_environment(env)
    if uak is not None:
        return Credentials(url, key, uak, owns_tokens=True)
    return Credentials(url, key, token_from_environment(env, token_file=token_file))
