"""recognize_many: one record per input as they finish, bounded, and clean on an early stop.

Most tests run against the emulator on a loopback port; the ordering and
memory tests use a fake recognizer whose answers take as long as each test
says, so they wait for nothing real.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import APPKEY, TOKEN, emulator_config

import ocr_async.pipeline.record_stream as stream_module
from ocr_async import (
    ConfigurationError,
    Endpoint,
    ImageBytes,
    ImageFile,
    ImageUrl,
    Line,
    OcrClient,
    OcrResult,
    Options,
    Payload,
    Recognition,
    Record,
    RetryPolicy,
    recognize_many,
)
from ocr_async.emulator import (
    EmulatorConfig,
    RunningEmulator,
    make_jpeg,
    make_png,
    running_emulator,
)
from ocr_async.models import SourceItem, Word
from ocr_async.pipeline.record_stream import SourceLike
from ocr_async.pipeline.sources import iter_inputs


@pytest.fixture
async def slow_emulator() -> AsyncIterator[RunningEmulator]:
    async with running_emulator(emulator_config(latency=0.3)) as running:
        yield running


def settings(emulator: RunningEmulator) -> dict[str, Any]:
    return {"appkey": APPKEY, "token": TOKEN, "base_url": emulator.base_url}


class RecordingClient(OcrClient):
    """An OcrClient that remembers every instance and whether it was closed."""

    instances: list[RecordingClient] = []  # noqa: RUF012 (reset per test by the fixture)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.closed = False
        RecordingClient.instances.append(self)

    async def close(self) -> None:
        await super().close()
        self.closed = True


@pytest.fixture
def recording_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[RecordingClient]]:
    RecordingClient.instances = []
    monkeypatch.setattr(stream_module, "OcrClient", RecordingClient)
    yield RecordingClient
    RecordingClient.instances = []


class FakeRecognizer:
    """Answers bytes inputs after ``float(text)`` seconds, with that text."""

    def __init__(self) -> None:
        self.calls = 0
        self.in_flight = 0
        self.peak = 0

    async def send(self, payload: Payload) -> Recognition:
        assert payload.image is not None
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            text = payload.image[len(PNG_START) : -len(PNG_END)].decode()
            await asyncio.sleep(float(text))
        finally:
            self.in_flight -= 1
        result = OcrResult(lines=(Line((Word(text, 1.0, None),)),), raw={"text": text})
        return Recognition(result=result, endpoint=payload.endpoint, attempts=1, elapsed_ms=1.0)


PNG_START = b"\x89PNG\r\n\x1a\n"
PNG_END = b"IEND\xaeB`\x82"


def answers_after(seconds: str) -> bytes:
    """Bytes the pre-check passes as a PNG, telling FakeRecognizer how long to take."""
    return PNG_START + seconds.encode() + PNG_END


async def collect(records: AsyncIterator[Record]) -> list[Record]:
    return [record async for record in records]


def leftover(baseline: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks started since ``baseline``, except the emulator's own request handlers."""
    new = asyncio.all_tasks() - baseline - {asyncio.current_task()}
    return {task for task in new if "RequestHandler" not in repr(task)}


async def settle(baseline: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Wait (3 s at most) until no task of ours is left beyond ``baseline``; return the rest."""
    for _ in range(300):
        if not (left := leftover(baseline)):
            return left
        await asyncio.sleep(0.01)
    return left


async def until(condition: Callable[[], bool]) -> None:
    """Wait (3 s at most) until ``condition()`` holds."""
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in 3 s")


async def drain(records: AsyncIterator[Record], seen: list[Record]) -> None:
    """Append every record to ``seen`` until the stream ends or raises."""
    async for record in records:
        seen.append(record)


# --- one record per input ----------------------------------------------------------


async def test_every_kind_of_input_gives_its_own_record(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("from a path"))
    (tmp_path / "b.jpg").write_bytes(make_jpeg("from a pathlib path"))
    (tmp_path / "c.png").write_bytes(make_png("from an image file"))
    (tmp_path / "d.png").write_bytes(make_png("from a source item"))
    url = emulator.sample_url("hello.png")
    inputs: list[Any] = [
        str(tmp_path / "a.png"),
        tmp_path / "b.jpg",
        make_png("raw bytes"),
        bytearray(make_png("a bytearray")),
        ImageBytes(make_png("named bytes"), "invoice-17"),
        ImageBytes(make_png("unnamed bytes")),
        ImageFile(tmp_path / "c.png"),
        url,
        ImageUrl(url + "?again"),
        SourceItem("my-own-name", ImageFile(tmp_path / "d.png")),
    ]

    records = await collect(recognize_many(inputs, **settings(emulator), concurrency=3))

    by_source = {record.source: record for record in records}
    assert len(records) == len(inputs) == len(by_source)
    assert all(record.ok for record in records), [r.error for r in records if not r.ok]
    assert by_source[str(tmp_path / "a.png")].text == "from a path"
    assert by_source[str(tmp_path / "b.jpg")].text == "from a pathlib path"
    assert by_source["bytes:2"].text == "raw bytes"
    assert by_source["bytes:3"].text == "a bytearray"
    assert by_source["invoice-17"].text == "named bytes"
    assert by_source["bytes:5"].text == "unnamed bytes"
    assert by_source[str(tmp_path / "c.png")].text == "from an image file"
    assert by_source[url].ok
    assert by_source[url + "?again"].ok
    assert by_source["my-own-name"].text == "from a source item"


async def test_an_async_iterable_and_a_folder_walk_are_taken(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "scans" / "deep").mkdir(parents=True)
    (tmp_path / "scans" / "p1.png").write_bytes(make_png("one"))
    (tmp_path / "scans" / "deep" / "p2.png").write_bytes(make_png("two"))
    (tmp_path / "scans" / "notes.txt").write_text("not an image")

    async def generated() -> AsyncIterator[bytes]:
        for word in ("three", "four"):
            yield make_png(word)

    walked = await collect(
        recognize_many(iter_inputs([str(tmp_path / "scans")]), **settings(emulator))
    )
    streamed = await collect(recognize_many(generated(), **settings(emulator)))

    assert sorted(record.text or "" for record in walked) == ["one", "two"]
    assert sorted(record.text or "" for record in streamed) == ["four", "three"]


async def test_bad_inputs_become_error_records_and_never_raise(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("just text, named like an image")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "good.png").write_bytes(make_png("fine"))
    inputs: list[SourceLike] = [
        str(tmp_path / "missing.png"),
        str(tmp_path / "empty.png"),
        str(tmp_path / "text.png"),
        str(tmp_path / "folder.png"),
        "http://127.0.0.1:9/scan.png",  # a port the API refuses
        b"",
        str(tmp_path / "good.png"),
    ]

    records = await collect(recognize_many(inputs, **settings(emulator)))

    codes = {record.source: record.error.code if record.error else None for record in records}
    assert codes == {
        str(tmp_path / "missing.png"): "not_found",
        str(tmp_path / "empty.png"): 4000004,
        str(tmp_path / "text.png"): 4000003,
        str(tmp_path / "folder.png"): "not_a_file",
        "http://127.0.0.1:9/scan.png": 4000001,
        "bytes:5": 4000004,
        str(tmp_path / "good.png"): None,
    }
    assert all(record.error.local for record in records if record.error is not None)
    assert emulator.stats.requests == 1  # only the good one was sent


async def test_a_source_given_twice_is_sent_once_and_the_summary_says_so(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(make_png("once"))

    records = recognize_many([str(image), str(image)], **settings(emulator))
    assert records.summary is None
    collected = await collect(records)

    assert [record.text for record in collected] == ["once"]
    assert records.summary is not None
    assert records.summary.duplicates == 1
    assert records.summary.ok == 1
    assert emulator.stats.requests == 1


async def test_manifest_rows_as_mappings_carry_their_id_and_metadata(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(make_png("row a"))
    url = emulator.sample_url("hello.png")
    rows: list[SourceLike] = [
        {"id": "a", "path": str(tmp_path / "a.png"), "customer": "acme", "n": [1, 2.5]},
        {"id": 7, "url": url},
        {"id": "a", "url": url + "?other"},  # the id again: sent once
        {"path": str(tmp_path / "a.png")},  # no id
        {"id": "nan", "url": url, "score": float("nan")},  # not strict JSON
        {"id": "set", "url": url, "tags": {1, 2}},  # not JSON at all
        make_png("plain bytes, beside the rows"),
    ]

    stream = recognize_many(rows, **settings(emulator))
    records = await collect(stream)

    got = {r.source: (r.id, r.metadata, r.error.code if r.error else None) for r in records}
    assert got == {
        str(tmp_path / "a.png"): ("a", {"customer": "acme", "n": [1, 2.5]}, None),
        url: ("7", {}, None),
        "row 3": (None, {}, "bad_manifest_row"),
        "row 4": ("nan", None, "bad_manifest_row"),
        "row 5": ("set", None, "bad_manifest_row"),
        "bytes:6": (None, None, None),
    }
    assert stream.summary is not None
    assert stream.summary.duplicates == 1
    assert emulator.stats.requests == 3
    bad = {r.source: r.error.message for r in records if r.error is not None}
    assert bad["row 3"] == "row 3: the row has no id"
    assert bad["row 4"].startswith("row 4: the row's other fields are not JSON (")
    for record in records:
        json.dumps(record.to_json(), allow_nan=False)  # every record can be written


async def test_the_endpoint_is_used_for_every_input(emulator: RunningEmulator) -> None:
    images = [make_png(f"long {n}", width=40, height=200) for n in range(3)]

    records = await collect(
        recognize_many(images, **settings(emulator), endpoint=Endpoint.CROPPING)
    )

    assert {record.endpoint for record in records} == {Endpoint.CROPPING}
    assert all(record.result is not None and "slicesImages" in record.result for record in records)


# --- order, concurrency and memory --------------------------------------------------


async def test_records_come_as_they_finish_not_in_input_order() -> None:
    fake = FakeRecognizer()
    inputs = [answers_after("0.3"), answers_after("0.0"), answers_after("0.1")]

    records = await collect(recognize_many(inputs, client=fake, concurrency=3))

    assert [record.source for record in records] == ["bytes:1", "bytes:2", "bytes:0"]


async def test_requests_in_flight_never_exceed_the_concurrency() -> None:
    config = EmulatorConfig(latency=0.02)
    async with running_emulator(config) as emulator:
        images = [make_png(f"page {n}") for n in range(30)]
        # Unpaced: the rate controller's start-up climb would decide how many
        # overlap (one or two at 10 calls/s and 20 ms), not the concurrency.
        options = Options(concurrency=3, adapt_rate=False)
        records = await collect(
            recognize_many(
                images, appkey="k", token="t", base_url=emulator.base_url, options=options
            )
        )
    assert len(records) == 30
    assert all(record.ok for record in records)
    assert emulator.stats.peak_in_flight == 3


async def test_a_slow_consumer_holds_the_inputs_back() -> None:
    fake = FakeRecognizer()
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield answers_after("0")

    concurrency = 4
    taken = 0
    async with recognize_many(endless(), client=fake, concurrency=concurrency) as records:
        async for _ in records:
            taken += 1
            await asyncio.sleep(0.001)  # a consumer slower than the recognizer
            if taken == 50:
                break

    # Workers, the batch's queue and the hand-over queue: a few times the
    # concurrency ahead of the consumer, never the whole (endless) input.
    assert pulled <= taken + 4 * concurrency
    assert fake.peak <= concurrency


# --- stopping early -------------------------------------------------------------------


async def test_break_cancels_the_requests_in_flight_and_closes_the_client(
    slow_emulator: RunningEmulator, recording_client: type[RecordingClient]
) -> None:
    baseline = asyncio.all_tasks()
    images = [make_png(f"page {n}") for n in range(40)]

    async for _ in recognize_many(images, **settings(slow_emulator), concurrency=4):
        break  # the stream is abandoned: the event loop finalizes it

    assert await settle(baseline) == set()
    (client,) = recording_client.instances
    assert client.closed
    sent = slow_emulator.stats.requests
    assert sent <= 8  # the first four, then at most the next four; never all 40
    await until(lambda: slow_emulator.stats.in_flight == 0)
    # The emulator could not answer the cancelled calls: their connections were closed.
    assert slow_emulator.stats.disconnected >= 1
    assert slow_emulator.stats.requests == sent  # nothing more was sent after the break


async def test_aclose_stops_everything_before_it_returns(
    slow_emulator: RunningEmulator, recording_client: type[RecordingClient]
) -> None:
    baseline = asyncio.all_tasks()
    records = recognize_many([make_png(f"p{n}") for n in range(20)], **settings(slow_emulator))

    first = await anext(records)
    await records.aclose()

    assert first.ok
    assert leftover(baseline) == set()  # no waiting: aclose() returned after the cleanup
    assert recording_client.instances[0].closed
    assert records.summary is None
    with pytest.raises(StopAsyncIteration):
        await anext(records)
    await records.aclose()  # twice is fine


async def test_leaving_async_with_stops_everything(
    slow_emulator: RunningEmulator, recording_client: type[RecordingClient]
) -> None:
    baseline = asyncio.all_tasks()
    async with recognize_many(
        [make_png(f"p{n}") for n in range(20)], **settings(slow_emulator)
    ) as records:
        async for _ in records:
            break

    assert leftover(baseline) == set()
    assert recording_client.instances[0].closed


async def test_cancelling_the_consumer_cleans_up(
    slow_emulator: RunningEmulator, recording_client: type[RecordingClient]
) -> None:
    baseline = asyncio.all_tasks()

    async def consume() -> None:
        async with recognize_many(
            [make_png(f"p{n}") for n in range(20)], **settings(slow_emulator)
        ) as records:
            async for _ in records:
                pass

    consumer = asyncio.create_task(consume())
    await until(lambda: slow_emulator.stats.in_flight > 0)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer

    assert await settle(baseline) == set()
    assert recording_client.instances[0].closed
    await until(lambda: slow_emulator.stats.in_flight == 0)
    assert slow_emulator.stats.answered_ok == 0  # every call was abandoned mid-way


async def test_no_unclosed_session_is_reported(slow_emulator: RunningEmulator) -> None:
    reports: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        baseline = asyncio.all_tasks()
        async for _ in recognize_many([make_png("x"), make_png("y")], **settings(slow_emulator)):
            break
        await settle(baseline)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert reports == []


async def test_a_caller_client_is_left_open(emulator: RunningEmulator) -> None:
    async with OcrClient(appkey=APPKEY, token=TOKEN, base_url=emulator.base_url) as client:
        async for _ in recognize_many([make_png("a"), make_png("b")], client=client):
            break
        records = await collect(recognize_many([make_png("c")], client=client))
        assert [record.text for record in records] == ["c"]
        assert (await client.recognize(make_png("still open"))).text == "still open"


# --- settings and failures of the run -----------------------------------------------------


async def test_settings_come_from_the_environment(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, no_credentials_in_env: None
) -> None:
    monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
    monkeypatch.setenv("NHN_OCR_TOKEN", TOKEN)
    monkeypatch.setenv("NHN_OCR_BASE_URL", emulator.base_url)

    records = await collect(recognize_many([make_png("from the environment")]))

    assert [record.text for record in records] == ["from the environment"]


async def test_a_user_access_key_from_the_environment_issues_one_token(
    monkeypatch: pytest.MonkeyPatch, no_credentials_in_env: None
) -> None:
    config = EmulatorConfig(uak={"uak-id": "uak-secret"})  # only OAuth tokens accepted
    async with running_emulator(config) as emulator:
        monkeypatch.setenv("NHN_OCR_APPKEY", APPKEY)
        monkeypatch.setenv("NHN_OCR_BASE_URL", emulator.base_url)
        monkeypatch.setenv("NHN_UAK_ID", "uak-id")
        monkeypatch.setenv("NHN_UAK_SECRET", "uak-secret")
        monkeypatch.setenv("NHN_OAUTH_URL", emulator.base_url)

        records = await collect(recognize_many([make_png(f"p{n}") for n in range(10)]))

    assert len(records) == 10
    assert all(record.ok for record in records)
    assert emulator.stats.tokens_issued == 1


def test_missing_settings_raise_at_once(no_credentials_in_env: None) -> None:
    with pytest.raises(ConfigurationError, match="NHN_OCR_APPKEY"):
        recognize_many(["a.png"])
    with pytest.raises(ConfigurationError, match="NHN_OCR_TOKEN"):
        recognize_many(["a.png"], appkey="k")
    with pytest.raises(ConfigurationError, match="concurrency"):
        recognize_many(["a.png"], appkey="k", token="t", concurrency=0)


async def test_a_client_and_client_settings_together_are_refused(
    emulator: RunningEmulator,
) -> None:
    async with OcrClient(appkey=APPKEY, token=TOKEN, base_url=emulator.base_url) as client:
        with pytest.raises(TypeError, match="not both"):
            recognize_many(["a.png"], client=client, timeout=5.0)


async def test_refused_credentials_end_the_stream_with_an_error(
    emulator: RunningEmulator,
) -> None:
    seen: list[Record] = []
    records = recognize_many(
        [make_png(f"p{n}") for n in range(50)],
        appkey=APPKEY,
        token="not-the-right-token",
        base_url=emulator.base_url,
        concurrency=2,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(ConfigurationError, match="refused the credentials"):
        await drain(records, seen)

    assert 1 <= len(seen) < 50  # what was in flight, then it stopped
    assert {record.error.code for record in seen if record.error} == {4010006}
    assert emulator.stats.requests < 50


async def test_a_failing_source_raises_after_the_records_of_what_it_gave(
    emulator: RunningEmulator,
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for n in range(3):
            yield make_png(f"p{n}")
        raise OSError("the URL list went away")

    seen: list[Record] = []
    with pytest.raises(OSError, match="went away"):
        await drain(recognize_many(broken(), **settings(emulator)), seen)

    assert sorted(record.text or "" for record in seen) == ["p0", "p1", "p2"]


async def test_an_input_of_the_wrong_type_raises_type_error(emulator: RunningEmulator) -> None:
    inputs: list[Any] = [make_png("fine"), 42]
    with pytest.raises(TypeError, match="cannot recognize a int"):
        await collect(recognize_many(inputs, **settings(emulator)))


async def test_records_serialize_to_json(emulator: RunningEmulator) -> None:
    records = await collect(recognize_many([make_png("a b\nc"), b"nope"], **settings(emulator)))
    documents = {record.source: record.to_json() for record in records}
    assert documents["bytes:0"]["text"] == "a b\nc"
    assert documents["bytes:1"]["error"]["code"] == 4000003
