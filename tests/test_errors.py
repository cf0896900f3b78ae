"""Tests for ocr_async.errors: the tree, the flags, and how errors print."""

from __future__ import annotations

import ast
import copy
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

import ocr_async
import ocr_async.errors
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
    TransportError,
    UnknownApiError,
)

# (class, direct parent, retryable, local) as the module docstring draws the tree.
TREE = [
    pytest.param(OcrError, Exception, False, False, id="OcrError"),
    pytest.param(LocalCheckError, OcrError, False, True, id="LocalCheckError"),
    pytest.param(SourceError, OcrError, False, True, id="SourceError"),
    pytest.param(ApiError, OcrError, False, False, id="ApiError"),
    pytest.param(InvalidRequestError, ApiError, False, False, id="InvalidRequestError"),
    pytest.param(AuthError, ApiError, False, False, id="AuthError"),
    pytest.param(InvalidTokenError, AuthError, False, False, id="InvalidTokenError"),
    pytest.param(RateLimitedError, ApiError, True, False, id="RateLimitedError"),
    pytest.param(
        TemporarilyUnavailableError, ApiError, True, False, id="TemporarilyUnavailableError"
    ),
    pytest.param(ImageDownloadError, ApiError, True, False, id="ImageDownloadError"),
    pytest.param(ServerFailureError, ApiError, True, False, id="ServerFailureError"),
    pytest.param(UnknownApiError, ApiError, False, False, id="UnknownApiError"),
    pytest.param(TransportError, OcrError, True, False, id="TransportError"),
    pytest.param(ConnectionFailedError, TransportError, True, False, id="ConnectionFailedError"),
    pytest.param(RequestTimeoutError, TransportError, True, False, id="RequestTimeoutError"),
    pytest.param(MalformedResponseError, TransportError, True, False, id="MalformedResponseError"),
    pytest.param(AnswerTooLargeError, TransportError, False, False, id="AnswerTooLargeError"),
]

# Every class constructed as cls(code, message); HttpStatusError takes a status.
CODE_MESSAGE_CLASSES = [
    pytest.param(cls, id=cls.__name__)
    for cls in (
        OcrError,
        LocalCheckError,
        SourceError,
        ApiError,
        InvalidRequestError,
        AuthError,
        InvalidTokenError,
        RateLimitedError,
        TemporarilyUnavailableError,
        ImageDownloadError,
        ServerFailureError,
        UnknownApiError,
        TransportError,
        ConnectionFailedError,
        RequestTimeoutError,
        MalformedResponseError,
        AnswerTooLargeError,
    )
]


@pytest.mark.parametrize(("cls", "parent", "retryable", "local"), TREE)
def test_tree_and_flags(
    cls: type[OcrError], parent: type[Exception], retryable: bool, local: bool
) -> None:
    assert cls.__bases__ == (parent,)
    assert cls.retryable is retryable
    assert cls.local is local
    err = cls(4000001, "m")
    assert err.retryable is retryable
    assert err.local is local
    assert isinstance(err, OcrError)


def test_http_status_error_is_a_transport_error() -> None:
    assert HttpStatusError.__bases__ == (TransportError,)
    err = HttpStatusError(502, "bad gateway")
    assert isinstance(err, TransportError)
    assert isinstance(err, OcrError)
    assert not isinstance(err, ApiError)
    assert err.local is False


def test_invalid_token_is_an_auth_error() -> None:
    err = InvalidTokenError(4010006, "INVALID_TOKEN")
    assert isinstance(err, AuthError)
    assert isinstance(err, ApiError)
    assert err.retryable is False


def test_configuration_error_is_not_about_one_image() -> None:
    assert issubclass(ConfigurationError, Exception)
    assert not issubclass(ConfigurationError, OcrError)


@pytest.mark.parametrize(
    ("err", "text", "representation"),
    [
        pytest.param(
            InvalidRequestError(4000001, "INVALID_PARAMETER: Invalid parameter."),
            "[4000001] INVALID_PARAMETER: Invalid parameter.",
            "InvalidRequestError(code=4000001, message='INVALID_PARAMETER: Invalid parameter.')",
            id="api-int-code",
        ),
        pytest.param(
            ServerFailureError(-1, "FAIL: Unknown error."),
            "[-1] FAIL: Unknown error.",
            "ServerFailureError(code=-1, message='FAIL: Unknown error.')",
            id="negative-code",
        ),
        pytest.param(
            RequestTimeoutError("timeout", "no answer in 30 s"),
            "[timeout] no answer in 30 s",
            "RequestTimeoutError(code='timeout', message='no answer in 30 s')",
            id="string-code",
        ),
        pytest.param(
            HttpStatusError(502, "HTTP 502 without an API envelope: '<html>'"),
            "[http_502] HTTP 502 without an API envelope: '<html>'",
            "HttpStatusError(code='http_502', "
            "message=\"HTTP 502 without an API envelope: '<html>'\")",
            id="http-status",
        ),
        pytest.param(
            LocalCheckError(4000004, ""),
            "[4000004] ",
            "LocalCheckError(code=4000004, message='')",
            id="empty-message",
        ),
        pytest.param(
            SourceError("not_found", "한글.png: no such file"),
            "[not_found] 한글.png: no such file",
            "SourceError(code='not_found', message='한글.png: no such file')",
            id="non-ascii",
        ),
    ],
)
def test_str_and_repr(err: OcrError, text: str, representation: str) -> None:
    assert str(err) == text
    assert repr(err) == representation


@pytest.mark.parametrize("cls", CODE_MESSAGE_CLASSES)
def test_attributes_and_attempts_default(cls: type[OcrError]) -> None:
    err = cls(4000002, "INVALID_FILE")
    assert err.code == 4000002
    assert err.message == "INVALID_FILE"
    assert err.args == (4000002, "INVALID_FILE")
    assert err.attempts == 0
    err.attempts = 3  # the client fills it in
    assert err.attempts == 3
    assert cls(4000002, "x").attempts == 0  # per instance, not shared


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        pytest.param(408, True, id="408"),
        pytest.param(425, True, id="425"),
        pytest.param(429, True, id="429"),
        pytest.param(500, True, id="500"),
        pytest.param(502, True, id="502"),
        pytest.param(503, True, id="503"),
        pytest.param(504, True, id="504"),
        pytest.param(599, True, id="599"),
        pytest.param(400, False, id="400"),
        pytest.param(401, False, id="401"),
        pytest.param(403, False, id="403"),
        pytest.param(404, False, id="404"),
        pytest.param(405, False, id="405"),
        pytest.param(413, False, id="413"),
        pytest.param(415, False, id="415"),
        pytest.param(418, False, id="418"),
        pytest.param(301, False, id="301"),
        pytest.param(204, False, id="204"),
    ],
)
def test_http_status_error_retryable_by_status(status: int, retryable: bool) -> None:
    err = HttpStatusError(status, "m")
    assert err.status == status
    assert err.code == f"http_{status}"
    assert err.retryable is retryable
    assert err.attempts == 0
    # The instance flag never leaks into the class hierarchy.
    assert HttpStatusError.retryable is True
    assert TransportError.retryable is True


def test_raised_errors_are_caught_by_their_bases() -> None:
    with pytest.raises(ApiError) as info:
        raise InvalidTokenError(4010006, "INVALID_TOKEN")
    assert info.value.code == 4010006
    with pytest.raises(TransportError):
        raise HttpStatusError(503, "m")


@pytest.mark.parametrize("cls", CODE_MESSAGE_CLASSES)
def test_pickle_and_copy_round_trip(cls: type[OcrError]) -> None:
    err = cls(4000006, "API_CALL_LIMIT_EXCEEDED")
    err.attempts = 4
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert type(clone) is cls
        assert clone.code == 4000006
        assert clone.message == "API_CALL_LIMIT_EXCEEDED"
        assert clone.attempts == 4
        assert str(clone) == str(err)


@pytest.mark.parametrize(
    "clone",
    [
        pytest.param(lambda e: pickle.loads(pickle.dumps(e)), id="pickle"),
        pytest.param(copy.copy, id="copy"),
        pytest.param(copy.deepcopy, id="deepcopy"),
    ],
)
def test_http_status_error_pickle_and_copy_round_trip(
    clone: Callable[[HttpStatusError], HttpStatusError],
) -> None:
    err = HttpStatusError(502, "bad gateway")
    err.attempts = 2
    copied = clone(err)
    assert type(copied) is HttpStatusError
    assert copied.status == 502
    assert copied.code == "http_502"
    assert copied.retryable is True
    assert copied.attempts == 2
    assert str(copied) == "[http_502] bad gateway"


def test_errors_is_a_leaf_module() -> None:
    source = Path(ocr_async.errors.__file__).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert node.module is not None
            assert not node.module.startswith("ocr_async")
            assert node.level == 0
        elif isinstance(node, ast.Import):
            assert all(not alias.name.startswith("ocr_async") for alias in node.names)


def test_public_names() -> None:
    names = ocr_async.errors.__all__
    assert names == sorted(names)
    for name in names:
        obj = getattr(ocr_async.errors, name)
        assert isinstance(obj, type)
        assert issubclass(obj, Exception)
        assert obj.__doc__
        assert getattr(ocr_async, name) is obj  # re-exported by the package
