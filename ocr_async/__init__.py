"""ocr-async: a high-throughput asyncio batch client for NHN Cloud General OCR v1.1."""

from ocr_async.auth import StaticToken, TokenProvider, UserAccessKeyTokens
from ocr_async.batch import BatchSummary, StopRequest, run_batch
from ocr_async.client import OcrClient
from ocr_async.errors import (
    AnswerTooLargeError,
    ApiError,
    AuthError,
    ConfigurationError,
    ConnectionFailedError,
    HttpStatusError,
    ImageDownloadError,
    InvalidRequestError,
    InvalidTokenError,
    LocalCheckError,
    MalformedResponseError,
    OcrError,
    RateLimitedError,
    RequestTimeoutError,
    ServerFailureError,
    SourceError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
    TransportError,
    UnknownApiError,
)
from ocr_async.limits import RateController
from ocr_async.models import (
    BoundingBox,
    Endpoint,
    ErrorInfo,
    ImageBytes,
    ImageFile,
    ImageInput,
    ImageUrl,
    Line,
    OcrResult,
    Recognition,
    Record,
    Word,
)
from ocr_async.options import Credentials, Options, resolve_credentials
from ocr_async.retry import RetryPolicy
from ocr_async.sink import JsonlSink
from ocr_async.stream import RecordStream, recognize_many

__version__ = "0.1.0"

__all__ = [
    "AnswerTooLargeError",
    "ApiError",
    "AuthError",
    "BatchSummary",
    "BoundingBox",
    "ConfigurationError",
    "ConnectionFailedError",
    "Credentials",
    "Endpoint",
    "ErrorInfo",
    "HttpStatusError",
    "ImageBytes",
    "ImageDownloadError",
    "ImageFile",
    "ImageInput",
    "ImageUrl",
    "InvalidRequestError",
    "InvalidTokenError",
    "JsonlSink",
    "Line",
    "LocalCheckError",
    "MalformedResponseError",
    "OcrClient",
    "OcrError",
    "OcrResult",
    "Options",
    "RateController",
    "RateLimitedError",
    "Recognition",
    "Record",
    "RecordStream",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerFailureError",
    "SourceError",
    "StaticToken",
    "StopRequest",
    "TemporarilyUnavailableError",
    "TokenProvider",
    "TooManyRequestsError",
    "TransportError",
    "UnknownApiError",
    "UserAccessKeyTokens",
    "Word",
    "__version__",
    "recognize_many",
    "resolve_credentials",
    "run_batch",
]
