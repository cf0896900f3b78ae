from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from fakes import ListSink

from ocr_async.errors import (
    AuthError,
    ConfigurationError,
    InvalidTokenError,
    LocalCheckError,
    RateLimitedError,
    RequestTimeoutError,
)
from ocr_async.models import (
    Endpoint,
    ErrorInfo,
    FinishedPage,
    ImageBytes,
    ImageFile,
    Line,
    OcrResult,
    Payload,
    Recognition,
    Record,
    SourceItem,
    Word,
)
from ocr_async.options import Options
from ocr_async.pipeline.batch import BatchSummary, StopRequest, run_batch
from ocr_async.pipeline.sourceset import SourceSet


def result_for(name: str) -> OcrResult:
    words = tuple(Word(w, 0.9, None) for w in name.split("."))
    return OcrResult(lines=(Line(words),), raw={"fileType": "png", "name": name})


class FakeRecognizer:
    """Answers by file name: 'bad*' fails locally, 'auth*' is refused, 'slow*' yields."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.calls: list[str] = []

    async def send(self, payload: Payload) -> Recognition:
        name = payload.source
        self.calls.append(name)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0)
            if name.startswith("bad"):
                raise LocalCheckError(4000003, "INVALID_FILE_TYPE (not sent)")
            if name.startswith("busy"):
                raise RateLimitedError(4000006, "limit").with_attempts(5)
            if name.startswith("auth"):
                raise InvalidTokenError(4010006, "INVALID_TOKEN")
            if name.startswith("boom"):
                raise ZeroDivisionError("bug")
            return Recognition(result_for(name), payload.endpoint, attempts=2, elapsed_ms=5.0)
        finally:
            self.in_flight -= 1


#: The smallest bytes the pre-check stage passes as a PNG: the fakes answer by name.
PNG = b"\x89PNG\r\n\x1a\n" + b"IEND\xaeB`\x82"


def item(name: str) -> SourceItem:
    return SourceItem(name, ImageBytes(PNG, name))


async def items_of(names: Iterable[str]) -> AsyncIterator[SourceItem]:
    for name in names:
        yield item(name)


async def test_a_success_record_carries_the_parsed_result_and_writes_the_same_line() -> None:
    sink = ListSink()
    await run_batch(FakeRecognizer(), items_of(["page.one.png"]), sink)
    [record] = sink.records
    assert record.parsed == result_for("page.one.png")  # as the client parsed it
    assert record.result == record.parsed.raw
    assert record.text == record.parsed.text
    assert "parsed" not in record.to_json()


async def test_every_input_ends_as_exactly_one_record() -> None:
    names = [f"{n}.png" for n in range(100)] + ["bad.png", "busy.png", "boom.png"]
    sink = ListSink()
    summary = await run_batch(FakeRecognizer(), items_of(names), sink, concurrency=8)
    assert sorted(r.source for r in sink.records) == sorted(names)
    assert summary.ok == 100
    assert summary.failed == {"4000003": 1, "4000006": 1, "internal_error": 1}
    assert summary.records == 103
    # 100 successes at 2 attempts each, plus the rate-limited one's 5 attempts.
    assert summary.retries == 100 + 4


async def test_records_carry_result_or_error() -> None:
    sink = ListSink()
    await run_batch(
        FakeRecognizer(), items_of(["ok.png", "bad.png"]), sink, endpoint=Endpoint.CROPPING
    )
    by_source = {r.source: r for r in sink.records}
    good, bad = by_source["ok.png"], by_source["bad.png"]
    assert (good.ok, good.text, good.attempts, good.endpoint) == (
        True,
        "ok png",
        2,
        Endpoint.CROPPING,
    )
    assert good.result == {"fileType": "png", "name": "ok.png"}
    assert good.error is None
    assert (bad.ok, bad.text, bad.result, bad.attempts) == (False, None, None, 0)
    assert bad.error == ErrorInfo(4000003, "INVALID_FILE_TYPE (not sent)", True, False)


@pytest.mark.parametrize("concurrency", [1, 4, 32])
async def test_concurrency_is_bounded(concurrency: int) -> None:
    fake = FakeRecognizer()
    await run_batch(
        fake, items_of(f"{n}.png" for n in range(200)), ListSink(), concurrency=concurrency
    )
    assert fake.peak == concurrency


async def test_producer_never_runs_far_ahead() -> None:
    # Memory stays flat: the source is pulled only as workers free up.
    pulled = 0
    done = 0

    async def counting() -> AsyncIterator[SourceItem]:
        nonlocal pulled
        for n in range(1000):
            pulled += 1
            # at most: the queue (4) + one per worker (4) + the one being put
            assert pulled - done <= 4 + 4 + 1
            yield item(f"{n}.png")

    def on_record(_: Record) -> None:
        nonlocal done
        done += 1

    await run_batch(FakeRecognizer(), counting(), ListSink(), concurrency=4, on_record=on_record)
    assert done == 1000


async def test_auth_refusal_stops_taking_inputs() -> None:
    names = ["auth.png"] + [f"{n}.png" for n in range(500)]
    fake = FakeRecognizer()
    sink = ListSink()
    summary = await run_batch(fake, items_of(names), sink, concurrency=2)
    assert summary.aborted is not None
    assert "4010006" in summary.aborted
    assert len(fake.calls) < 10  # stopped right away, not after 500 refusals
    assert len(sink.records) == len(fake.calls)  # whatever was sent has its record


async def test_source_failure_is_raised_after_taken_items_are_recorded() -> None:
    async def failing() -> AsyncIterator[SourceItem]:
        for n in range(5):
            yield item(f"{n}.png")
        raise OSError("URL list vanished")

    sink = ListSink()
    with pytest.raises(OSError, match="vanished"):
        await run_batch(FakeRecognizer(), failing(), sink, concurrency=3)
    assert sorted(r.source for r in sink.records) == [f"{n}.png" for n in range(5)]


async def test_sink_failure_ends_the_run_with_that_error() -> None:
    class FullDisk:
        async def write(self, record: Record) -> None:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        await run_batch(
            FakeRecognizer(), items_of(f"{n}.png" for n in range(50)), FullDisk(), concurrency=4
        )


async def test_elapsed_uses_the_injected_clock() -> None:
    ticks = iter([100.0, 100.0, 103.5, 103.5, 103.5])
    summary = await run_batch(
        FakeRecognizer(), items_of(["timeout.png"]), ListSink(), clock=lambda: next(ticks)
    )
    assert summary.elapsed_s == pytest.approx(3.5)


def test_summary_describe_lists_failures_by_code() -> None:
    summary = BatchSummary(ok=7, retries=3, skipped=2, elapsed_s=2.0)
    summary.failed.update({"4000003": 2, "timeout": 1})
    text = summary.describe()
    assert text.splitlines() == [
        "10 records: 7 ok, 3 failed; 3 retries; 5.0 images/s over 2.0 s",
        "failed by code: 4000003 x2, timeout x1",
        "skipped 2 non-image files found in folders",
    ]


def test_summary_describe_says_one_record_not_one_records() -> None:
    summary = BatchSummary(ok=1, retries=1, skipped=1, duplicates=1, already_done=1)
    summary.elapsed_s = 1.0
    assert summary.describe().splitlines() == [
        "1 record: 1 ok, 0 failed; 1 retry; 1.0 images/s over 1.0 s",
        "skipped 1 non-image file found in folders",
        "skipped 1 duplicate input (sent once)",
        "skipped 1 input already done by an earlier run",
    ]


def test_summary_add_counts_codes_as_text() -> None:
    summary = BatchSummary()
    error = RequestTimeoutError("timeout", "slow")
    summary.add(
        Record(
            "a",
            False,
            Endpoint.GENERAL,
            3,
            1.0,
            None,
            None,
            ErrorInfo(error.code, error.message, error.local, error.retryable),
        )
    )
    assert summary.failed == {"timeout": 1}
    assert summary.retries == 2
    assert isinstance(AuthError(4010001, "x"), AuthError)


async def test_zero_concurrency_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        await run_batch(FakeRecognizer(), items_of([]), ListSink(), concurrency=0)


# --- duplicates, resumed runs, stop requests ---------------------------------------


async def test_duplicates_are_sent_once_and_reported() -> None:
    names = ["a.png", "b.png", "a.png", "c.png", "b.png"]
    skipped: list[tuple[str, str]] = []
    fake = FakeRecognizer()
    sink = ListSink()
    summary = await run_batch(
        fake, items_of(names), sink, on_skip=lambda p, r: skipped.append((p, r))
    )
    assert sorted(fake.calls) == ["a.png", "b.png", "c.png"]
    assert sorted(r.source for r in sink.records) == ["a.png", "b.png", "c.png"]
    assert summary.duplicates == 2
    assert [p for p, _ in skipped] == ["a.png", "b.png"]


async def test_already_done_sources_are_skipped() -> None:
    done = SourceSet()
    done.add("a.png")
    done.add("c.png")
    fake = FakeRecognizer()
    summary = await run_batch(
        fake, items_of(["a.png", "b.png", "c.png"]), ListSink(), already_done=done
    )
    assert fake.calls == ["b.png"]
    assert summary.already_done == 2


async def test_inputs_with_an_id_are_known_by_it_and_their_records_carry_it() -> None:
    done = SourceSet()
    done.add("\0done")
    done.add("c.png")  # a path called like an id is another input
    given = [
        SourceItem("a.png", ImageBytes(PNG, "a.png"), id="x", metadata={"n": 1}),
        SourceItem("b.png", ImageBytes(PNG, "b.png"), id="x"),  # the same id: a duplicate
        SourceItem("c.png", ImageBytes(PNG, "c.png"), id="done"),
        SourceItem("d.png", ImageBytes(PNG, "d.png"), id="c.png"),
    ]

    async def items() -> AsyncIterator[SourceItem]:
        for one in given:
            yield one

    fake = FakeRecognizer()
    sink = ListSink()
    summary = await run_batch(fake, items(), sink, already_done=done)
    assert sorted(fake.calls) == ["a.png", "d.png"]
    assert (summary.duplicates, summary.already_done) == (1, 1)
    by_source = {record.source: record for record in sink.records}
    assert (by_source["a.png"].id, by_source["a.png"].metadata) == ("x", {"n": 1})
    assert by_source["a.png"].sha256 == hashlib.sha256(PNG).hexdigest()
    assert by_source["a.png"].to_json()["sha256"] == by_source["a.png"].sha256


async def test_pages_of_an_input_with_an_id_are_known_by_the_id(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image", reason="Pillow is the optional 'image' extra")
    pages = [image.new("L", (60, 40), 255) for _ in range(3)]
    path = tmp_path / "scan.tiff"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    done = SourceSet()
    done.add("\0doc#page=2")
    done.add(f"{path}#page=3")  # by its source: not this input's key

    async def items() -> AsyncIterator[SourceItem]:
        yield SourceItem(str(path), ImageFile(path), id="doc")

    fake = FakeRecognizer()
    sink = ListSink()
    summary = await run_batch(fake, items(), sink, already_done=done, options=Options(convert=True))
    assert sorted(fake.calls) == [f"{path}#page=1", f"{path}#page=3"]
    assert summary.already_done == 1
    assert {record.id for record in sink.records} == {"doc"}


async def test_auth_failure_records_are_retryable_later() -> None:
    sink = ListSink()
    await run_batch(FakeRecognizer(), items_of(["auth.png"]), sink)
    (record,) = sink.records
    assert record.error is not None
    assert record.error.retryable is True  # fixed credentials may well succeed


class GatedRecognizer:
    """Holds every request until released, to stop a run mid-flight."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0
        self._changed = asyncio.Condition()

    async def wait_started(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: self.started >= count)

    async def send(self, payload: Payload) -> Recognition:
        async with self._changed:
            self.started += 1
            self._changed.notify_all()
        await self.release.wait()
        return Recognition(result_for(payload.source), payload.endpoint, 1, elapsed_ms=1.0)


async def test_graceful_stop_finishes_in_flight_and_takes_nothing_new() -> None:
    gated = GatedRecognizer()
    stop = StopRequest()
    sink = ListSink()
    run = asyncio.create_task(
        run_batch(gated, items_of(f"{n}.png" for n in range(100)), sink, concurrency=4, stop=stop)
    )
    await gated.wait_started(4)
    stop.request()
    gated.release.set()
    summary = await asyncio.wait_for(run, 5)
    assert summary.interrupted is True
    assert gated.started == 4  # nothing new was taken after the request
    assert len(sink.records) == 4  # the in-flight ones got their records


async def test_grace_period_bounds_the_wait_then_abandons() -> None:
    gated = GatedRecognizer()  # never released
    stop = StopRequest()
    sink = ListSink()
    run = asyncio.create_task(
        run_batch(gated, items_of(f"{n}.png" for n in range(10)), sink,
                  options=Options(concurrency=3, grace=0.05), stop=stop)
    )  # fmt: skip
    await gated.wait_started(3)
    stop.request()
    summary = await asyncio.wait_for(run, 5)
    assert summary.interrupted is True
    assert sink.records == []  # abandoned: no record, a resumed run sends them


async def test_second_stop_request_is_immediate() -> None:
    gated = GatedRecognizer()
    stop = StopRequest()
    run = asyncio.create_task(
        run_batch(gated, items_of(f"{n}.png" for n in range(10)), ListSink(),
                  options=Options(concurrency=2, grace=3600), stop=stop)
    )  # fmt: skip
    await gated.wait_started(2)
    stop.request()
    stop.request()
    summary = await asyncio.wait_for(run, 5)  # not an hour
    assert summary.interrupted is True


# --- multi-page inputs: resumed and stopped page by page -----------------------------


def pdf_item(name: str, pages: int) -> SourceItem:
    from pdfs import text_pdf

    return SourceItem(name, ImageBytes(text_pdf([("P", str(n)) for n in range(pages)]), name))


async def one_pdf(name: str, pages: int) -> AsyncIterator[SourceItem]:
    yield pdf_item(name, pages)


async def test_a_resumed_pdf_sends_only_the_pages_not_done() -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    done = SourceSet()
    for n in (1, 2, 3):
        done.add(f"book.pdf#page={n}")
    fake = FakeRecognizer()
    sink = ListSink()
    summary = await run_batch(
        fake, one_pdf("book.pdf", 5), sink, options=Options(pdf_dpi=72), already_done=done
    )
    assert fake.calls == ["book.pdf#page=4", "book.pdf#page=5"]
    assert [r.source for r in sink.records] == fake.calls
    assert summary.already_done == 3


async def test_a_stop_mid_pdf_leaves_its_other_pages_for_a_resumed_run() -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    gated = GatedRecognizer()
    stop = StopRequest()
    sink = ListSink()
    run = asyncio.create_task(
        run_batch(gated, one_pdf("long.pdf", 6), sink,
                  options=Options(concurrency=2, pdf_dpi=72), stop=stop)
    )  # fmt: skip
    await gated.wait_started(1)
    stop.request()
    gated.release.set()
    summary = await asyncio.wait_for(run, 10)
    assert summary.interrupted is True
    assert gated.started == 1  # the page in flight, and no page after it
    assert [r.source for r in sink.records] == ["long.pdf#page=1"]


async def test_page_files_get_each_page_with_its_image_before_its_record() -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    sink = ListSink()
    seen: list[tuple[str, str, bool, int]] = []

    class Pages:
        async def write_page(self, page: FinishedPage) -> None:
            written = len(sink.records)  # records written before this page's
            image = page.payload.image or b""
            seen.append((page.input, page.record.source, image.startswith(PNG[:8]), written))

    async def inputs() -> AsyncIterator[SourceItem]:
        yield item("a.png")
        yield pdf_item("book.pdf", 2)

    await run_batch(FakeRecognizer(), inputs(), sink, options=Options(concurrency=1, pdf_dpi=72),
                    pages=Pages())  # fmt: skip
    assert seen == [
        ("a.png", "a.png", True, 0),
        ("book.pdf", "book.pdf#page=1", True, 1),
        ("book.pdf", "book.pdf#page=2", True, 2),
    ]


class Gathering:
    """Answers the first request at once, then holds each until ``wanted`` are in flight."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.in_flight = 0
        self.peak = 0
        self.calls = 0
        self._enough = asyncio.Event()

    async def send(self, payload: Payload) -> Recognition:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.calls > 1:
                if self.in_flight >= self.wanted:
                    self._enough.set()
                await self._enough.wait()
            return Recognition(result_for(payload.source), payload.endpoint, 1, elapsed_ms=1.0)
        finally:
            self.in_flight -= 1


async def test_the_pages_of_one_pdf_are_sent_side_by_side_within_the_pool() -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    gathering = Gathering(wanted=3)
    sink = ListSink()
    summary = await asyncio.wait_for(
        run_batch(gathering, one_pdf("long.pdf", 8), sink,
                  options=Options(concurrency=3, pdf_dpi=72)),
        30,
    )  # fmt: skip
    assert summary.ok == 8
    assert sorted(r.source for r in sink.records) == [f"long.pdf#page={n}" for n in range(1, 9)]
    assert gathering.peak == 3  # one worker's pages filled the pool, and no more


async def test_pages_and_images_together_never_exceed_the_pool() -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    fake = FakeRecognizer()

    async def inputs() -> AsyncIterator[SourceItem]:
        yield pdf_item("a.pdf", 6)
        for n in range(10):
            yield item(f"{n}.png")
        yield pdf_item("b.pdf", 5)

    sink = ListSink()
    await run_batch(fake, inputs(), sink, options=Options(concurrency=4, pdf_dpi=72))
    assert len(sink.records) == 21
    assert fake.peak <= 4


async def test_pages_of_a_pdf_with_an_id_are_known_by_the_id_before_rendering(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("pypdfium2", reason="PDF input needs the 'pdf' extra")
    from pdfs import count_renders, text_pdf

    rendered = count_renders(monkeypatch)
    done = SourceSet()
    done.add("\0doc#page=1")
    done.add("\0doc#page=3")

    async def items() -> AsyncIterator[SourceItem]:
        data = text_pdf([("P", str(n)) for n in range(3)])
        yield SourceItem("book.pdf", ImageBytes(data, "book.pdf"), id="doc")

    fake = FakeRecognizer()
    sink = ListSink()
    options = Options(pdf_dpi=72)
    summary = await run_batch(fake, items(), sink, already_done=done, options=options)
    assert fake.calls == ["book.pdf#page=2"]
    assert rendered == [2]
    assert summary.already_done == 2
    (record,) = sink.records
    assert record.id == "doc"
    assert record.transform is not None
    assert record.transform.to_json()["page"] == 2
