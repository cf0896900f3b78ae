"""What the client sends and how it answers, over a fake transport that records every call.

No socket here: the transport seam (:mod:`ocr_async.transport`) lets a test
script the answers and look at the exact requests. tests/test_client.py
keeps the suite against aiohttp and real loopback servers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeClock, FakeTransport, Sleeps
from multidict import CIMultiDict

from ocr_async import protocol
from ocr_async.auth import StaticToken
from ocr_async.client import OcrClient
from ocr_async.emulator import make_png
from ocr_async.errors import (
    ConnectionFailedError,
    HttpStatusError,
    InvalidTokenError,
    LocalCheckError,
    RateLimitedError,
)
from ocr_async.models import Endpoint, Payload
from ocr_async.options import Options
from ocr_async.retry import RetryPolicy
from ocr_async.transport import Answer

APPKEY = "fake-appkey"
TOKEN = "fake-token-0123456789"
NEW_TOKEN = "fake-token-renewed-987"
BASE = "http://api.test"
PNG = make_png("fake transport")


def envelope(code: int = 0, text: str = "hello") -> bytes:
    result = {"listOfInferTexts": [{"inferTexts": [{"value": text, "conf": 0.9}]}]}
    header = {"isSuccessful": code == 0, "resultCode": code, "resultMessage": "m"}
    return json.dumps({"header": header, "result": result}).encode()


def ok(text: str = "hello", **headers: str) -> Answer:
    return Answer(200, CIMultiDict(headers), envelope(text=text))


class Renewing:
    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)

    async def get_token(self) -> str:
        return self.tokens[0]

    async def token_rejected(self, token: str) -> bool:
        self.tokens.pop(0)
        return bool(self.tokens)


def client_on(
    script: Sequence[Answer | Exception], **settings: Any
) -> tuple[OcrClient, FakeTransport, Sleeps]:
    transport = FakeTransport(list(script))
    sleeps = Sleeps()
    options: dict[str, Any] = {
        "appkey": APPKEY,
        "token": TOKEN,
        "base_url": BASE,
        "transport": transport,
        "sleep": sleeps,
        "adapt_rate": False,
    }
    options.update(settings)
    return OcrClient(**options), transport, sleeps


def image_payload(data: bytes = PNG, endpoint: Endpoint = Endpoint.GENERAL) -> Payload:
    return Payload("scan.png", endpoint, image=data, kind="png")


async def test_a_payload_becomes_exactly_one_multipart_request() -> None:
    client, transport, _ = client_on([ok()], max_answer_bytes=4096)
    recognition = await client.send(image_payload(endpoint=Endpoint.CROPPING))
    assert (recognition.text, recognition.attempts) == ("hello", 1)
    [call] = transport.posts
    assert call.request.url == f"{BASE}/v1.1/appkeys/{APPKEY}/general/cropping"
    assert call.request.headers[protocol.AUTH_HEADER] == f"Bearer {TOKEN}"
    assert call.request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert PNG in call.request.body
    assert len(call.request.body) == protocol.multipart_size("png", len(PNG))
    assert call.answer_limit == 4096
    assert call.redactor.redact(f"echo {TOKEN}") == "echo <redacted>"


async def test_a_url_payload_names_the_url_in_json() -> None:
    client, transport, _ = client_on([ok()])
    url = "https://img.test/a.png"
    await client.send(Payload(url, Endpoint.GENERAL, url=url))
    [call] = transport.posts
    assert json.loads(call.request.body) == {"imageUrl": url}
    assert call.request.headers["Content-Type"] == "application/json"


async def test_a_payload_refused_by_the_pre_check_sends_nothing() -> None:
    client, transport, _ = client_on([])
    refused = LocalCheckError(4000003, "INVALID_FILE_TYPE (not sent)")
    with pytest.raises(LocalCheckError) as raised:
        await client.send(Payload("x.gif", Endpoint.GENERAL, error=refused))
    assert (raised.value.code, raised.value.attempts) == (4000003, 0)
    assert transport.posts == []


async def test_recognize_reads_a_path_through_the_pre_check_stage(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(PNG)
    client, transport, _ = client_on([ok(), ok()])
    await client.recognize(path)
    await client.recognize(str(path), endpoint=Endpoint.CROPPING)
    first, second = transport.posts
    assert PNG in first.request.body
    assert second.request.url.endswith("/general/cropping")


async def test_recognize_follows_the_options_endpoint_choice() -> None:
    long_png = make_png("a long receipt", 400, 100)  # 1:4
    client, transport, _ = client_on([ok()], options=Options(endpoint="auto"))
    recognition = await client.recognize(long_png)
    assert recognition.endpoint is Endpoint.CROPPING
    assert transport.posts[0].request.url.endswith("/general/cropping")


async def test_a_transport_failure_is_retried_after_a_backoff() -> None:
    client, transport, sleeps = client_on(
        [ConnectionFailedError("connection", "reset"), ok()],
        retry=RetryPolicy(jitter=0.0),
    )
    recognition = await client.send(image_payload())
    assert recognition.attempts == 2
    assert sleeps.waits == [0.5]
    assert len(transport.posts) == 2


async def test_the_last_error_is_raised_with_every_attempt_counted() -> None:
    failure = ConnectionFailedError("connection", "reset")
    client, _, _ = client_on([failure] * 3, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ConnectionFailedError) as raised:
        await client.send(image_payload())
    assert raised.value.attempts == 3
    assert failure.attempts == 0  # the transport's exception itself is left as it was


async def test_a_redirect_is_not_followed_and_not_retried() -> None:
    moved = Answer(302, CIMultiDict({"Location": "https://elsewhere.test/steal?t=1"}), b"")
    client, transport, _ = client_on([moved, ok()])
    with pytest.raises(HttpStatusError) as raised:
        await client.send(image_payload())
    assert raised.value.status == 302
    assert "https://elsewhere.test" in raised.value.message
    assert "steal" not in raised.value.message
    assert len(transport.posts) == 1


async def test_a_429_with_retry_after_pauses_the_rate_controller(
    fake_clock: FakeClock, sleeps: Sleeps
) -> None:
    refused = Answer(429, CIMultiDict({"Retry-After": "3"}), b"slow down")
    client, _, _ = client_on([refused, ok()], adapt_rate=True, clock=fake_clock, sleep=sleeps)
    controller = client.rate_controller
    assert controller is not None
    recognition = await client.send(image_payload())
    assert recognition.attempts == 2
    assert controller.throttled == 1
    assert fake_clock.now >= 1003.0  # the second call waited out the Retry-After


async def test_a_refused_token_is_renewed_and_the_next_request_carries_the_new_one() -> None:
    refused = Answer(200, CIMultiDict(), envelope(4010006))
    client, transport, sleeps = client_on([refused, ok()], token=Renewing(TOKEN, NEW_TOKEN))
    recognition = await client.send(image_payload())
    assert recognition.attempts == 2
    tokens = [call.request.headers[protocol.AUTH_HEADER] for call in transport.posts]
    assert tokens == [f"Bearer {TOKEN}", f"Bearer {NEW_TOKEN}"]
    assert transport.posts[1].redactor.redact(NEW_TOKEN) == "<redacted>"
    assert sleeps.waits == []


async def test_a_static_token_refused_is_final() -> None:
    refused = Answer(200, CIMultiDict(), envelope(4010006))
    client, transport, _ = client_on([refused, ok()], token=StaticToken(TOKEN))
    with pytest.raises(InvalidTokenError) as raised:
        await client.send(image_payload())
    assert raised.value.attempts == 1
    assert len(transport.posts) == 1


async def test_call_limit_refusals_are_retried_within_their_own_budget() -> None:
    refused = Answer(200, CIMultiDict(), envelope(4000006))
    policy = RetryPolicy(max_attempts=1, max_throttled=3, jitter=0.0)
    client, transport, _ = client_on([refused] * 3 + [ok()], retry=policy)
    with pytest.raises(RateLimitedError) as raised:
        await client.send(image_payload())
    assert raised.value.attempts == 3
    assert len(transport.posts) == 3


async def test_a_transport_passed_in_is_opened_and_left_open() -> None:
    client, transport, _ = client_on([ok()])
    async with client:
        await client.send(image_payload())
    assert (transport.opened, transport.closed) == (1, 0)


# --- the request observer (metrics) --------------------------------------------------------


class Observed:
    """A RequestObserver that writes down what it hears."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.events: list[tuple[str, float, str | None]] = []

    def request_started(self) -> None:
        self.events.append(("started", self.clock(), None))

    def request_finished(self, elapsed_s: float, error: BaseException | None = None) -> None:
        self.events.append(("finished", elapsed_s, None if error is None else type(error).__name__))


class SlowTransport(FakeTransport):
    """Each post takes ``seconds`` of the fake clock."""

    def __init__(self, script: list[Answer | Exception], clock: FakeClock, seconds: float) -> None:
        super().__init__(script)
        self.clock, self.seconds = clock, seconds

    async def post(self, request: Any, *, answer_limit: int, redactor: Any) -> Answer:
        self.clock.now += self.seconds
        return await super().post(request, answer_limit=answer_limit, redactor=redactor)


async def test_the_observer_hears_every_attempt_and_an_api_error_as_an_answer() -> None:
    clock = FakeClock()
    observer = Observed(clock)
    script: list[Answer | Exception] = [
        ConnectionFailedError("connection", "reset"),
        Answer(200, CIMultiDict(), envelope(4000003)),
    ]
    transport = SlowTransport(script, clock, 0.25)
    client = OcrClient(
        appkey=APPKEY, token=TOKEN, base_url=BASE, transport=transport, adapt_rate=False,
        sleep=Sleeps(clock), clock=clock, observer=observer,
    )  # fmt: skip
    with pytest.raises(Exception, match="4000003"):
        await client.send(image_payload())
    assert [(kind, error) for kind, _, error in observer.events] == [
        ("started", None),
        ("finished", "ConnectionFailedError"),
        ("started", None),
        ("finished", "InvalidRequestError"),  # parsed inside: an answer of the API
    ]
    assert [elapsed for kind, elapsed, _ in observer.events if kind == "finished"] == [0.25, 0.25]


async def test_a_request_waiting_for_its_turn_is_not_observed_and_a_cancelled_one_is() -> None:
    clock = FakeClock()
    observer = Observed(clock)
    release = asyncio.Event()

    class Held(FakeTransport):
        async def post(self, request: Any, *, answer_limit: int, redactor: Any) -> Answer:
            await release.wait()
            return await super().post(request, answer_limit=answer_limit, redactor=redactor)

    client = OcrClient(
        appkey=APPKEY, token=TOKEN, base_url=BASE, transport=Held([ok(), ok()]),
        adapt_rate=False, concurrency=1, clock=clock, observer=observer,
    )  # fmt: skip
    first = asyncio.create_task(client.send(image_payload()))
    second = asyncio.create_task(client.send(image_payload()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert [kind for kind, _, _ in observer.events] == ["started"]  # the second waits its turn
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert observer.events[1] == ("finished", 0.0, "CancelledError")
    release.set()
    await second
    assert [kind for kind, _, _ in observer.events] == ["started", "finished"] * 2


async def test_recognize_reads_a_one_page_pdf_and_refuses_a_longer_one_unrendered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    from pdfs import count_renders, text_pdf

    rendered = count_renders(monkeypatch)
    one, long = tmp_path / "one.pdf", tmp_path / "long.pdf"
    one.write_bytes(text_pdf([("P", "single")]))
    long.write_bytes(text_pdf([("P", str(n)) for n in range(50)]))
    client, transport, _ = client_on([ok("single")], options=Options(pdf_dpi=72))

    assert (await client.recognize(one)).text == "single"
    assert transport.posts[0].request.body.count(b"\x89PNG") == 1
    with pytest.raises(LocalCheckError, match="has several pages") as caught:
        await client.recognize(long)
    assert caught.value.code == "pages"
    assert rendered == [1, 1, 2]  # two pages of fifty were enough to refuse
    assert len(transport.posts) == 1
