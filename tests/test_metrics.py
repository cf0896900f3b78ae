"""Prometheus metrics: the two hooks, the controller read at scrape time, a loopback endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from conftest import Samples, parse_metrics
from prometheus_client import CollectorRegistry, generate_latest

from ocr_async.emulator import make_png
from ocr_async.errors import (
    ConnectionFailedError,
    InvalidRequestError,
    RateLimitedError,
    SourceError,
)
from ocr_async.limits import INITIAL_RATE, RateController
from ocr_async.models import (
    Endpoint,
    ErrorInfo,
    ImageBytes,
    ImageUrl,
    OcrResult,
    Payload,
    Recognition,
    Record,
    SourceItem,
)
from ocr_async.outputs.metrics import (
    LATENCY_BUCKETS,
    OcrMetrics,
    request_outcome,
    serve_metrics,
)
from ocr_async.pipeline.batch import run_batch


def scrape(registry: CollectorRegistry) -> Samples:
    return parse_metrics(generate_latest(registry).decode())


def record(ok: bool, code: int | str = 0, attempts: int = 1) -> Record:
    error = None if ok else ErrorInfo(code, "m", local=False, retryable=False)
    return Record("a.png", ok, Endpoint.GENERAL, attempts, 1.0, "" if ok else None, None, error)


def test_records_are_counted_by_outcome_and_code_and_retries_summed() -> None:
    metrics = OcrMetrics()
    for each in [
        record(True),
        record(True, attempts=3),
        record(False, 4000003),
        record(False, 4000003),
        record(False, "timeout", attempts=4),
    ]:
        metrics.on_record(each)
    samples = scrape(metrics.registry)
    assert samples[("ocr_async_records_total", (("code", ""), ("outcome", "ok")))] == 2
    key = ("ocr_async_records_total", (("code", "4000003"), ("outcome", "failed")))
    assert samples[key] == 2
    key = ("ocr_async_records_total", (("code", "timeout"), ("outcome", "failed")))
    assert samples[key] == 1
    assert samples[("ocr_async_retries_total", ())] == 2 + 3


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        pytest.param(None, "ok", id="ok"),
        pytest.param(InvalidRequestError(4000003, "x"), "api_error", id="api"),
        pytest.param(RateLimitedError(4000006, "x"), "api_error", id="call-limit"),
        pytest.param(ConnectionFailedError("connection", "x"), "transport_error", id="transport"),
        pytest.param(asyncio.CancelledError(), "other", id="cancelled"),
        pytest.param(SourceError("not_found", "x"), "other", id="never-sent-kind"),
    ],
)
def test_request_outcomes(error: BaseException | None, outcome: str) -> None:
    assert request_outcome(error) == outcome


def test_requests_in_flight_and_the_latency_histogram() -> None:
    metrics = OcrMetrics()
    for _ in range(3):
        metrics.request_started()
    assert scrape(metrics.registry)[("ocr_async_requests_in_flight", ())] == 3
    metrics.request_finished(0.3)
    metrics.request_finished(7.0, RateLimitedError(4000006, "x"))
    samples = scrape(metrics.registry)
    assert samples[("ocr_async_requests_in_flight", ())] == 1
    histogram = "ocr_async_request_duration_seconds"
    ok = (("outcome", "ok"),)
    assert samples[(f"{histogram}_count", ok)] == 1
    assert samples[(f"{histogram}_sum", ok)] == pytest.approx(0.3)
    assert samples[(f"{histogram}_bucket", (("le", "0.25"), *ok))] == 0
    assert samples[(f"{histogram}_bucket", (("le", "0.5"), *ok))] == 1
    api = (("outcome", "api_error"),)
    assert samples[(f"{histogram}_bucket", (("le", "5.0"), *api))] == 0
    assert samples[(f"{histogram}_bucket", (("le", "10.0"), *api))] == 1
    buckets = {labels[0][1] for name, labels in samples if name == f"{histogram}_bucket"}
    assert buckets == {str(float(b)) for b in LATENCY_BUCKETS} | {"+Inf"}


def test_the_controller_is_read_at_scrape_time() -> None:
    metrics = OcrMetrics()
    assert not any(name.startswith("ocr_async_rate") for name, _ in scrape(metrics.registry))
    controller = RateController(fixed_rps=5.0)
    metrics.watch(controller)
    samples = scrape(metrics.registry)
    assert samples[("ocr_async_rate_calls_per_second", ())] == 5.0
    assert samples[("ocr_async_throttled_total", ())] == 0

    class Changing:
        current_rate = 2.5
        throttled = 7

    changing = Changing()
    metrics.watch(changing)
    changing.throttled = 9
    samples = scrape(metrics.registry)
    assert samples[("ocr_async_rate_calls_per_second", ())] == 2.5
    assert samples[("ocr_async_throttled_total", ())] == 9


def test_a_new_controller_reads_as_its_starting_rate() -> None:
    metrics = OcrMetrics()
    metrics.watch(RateController())
    assert scrape(metrics.registry)[("ocr_async_rate_calls_per_second", ())] == INITIAL_RATE


def test_a_backend_registers_the_metrics_in_its_own_registry() -> None:
    backend = CollectorRegistry()
    metrics = OcrMetrics(registry=backend)
    assert metrics.registry is backend
    metrics.on_record(record(True))
    assert scrape(backend)[("ocr_async_records_total", (("code", ""), ("outcome", "ok")))] == 1
    # A name twice in one registry is refused; another namespace is fine.
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        OcrMetrics(registry=backend)
    OcrMetrics(registry=backend, namespace="ocr_other").on_record(record(True))
    assert ("ocr_other_records_total", (("code", ""), ("outcome", "ok"))) in scrape(backend)


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def test_the_endpoint_serves_on_loopback_and_closes() -> None:
    metrics = OcrMetrics()
    metrics.on_record(record(False, 4000004))
    server = await serve_metrics(metrics)
    async with server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        assert server.port > 0
        status, text = await get(server.url)
        assert status == 200
        key = ("ocr_async_records_total", (("code", "4000004"), ("outcome", "failed")))
        assert parse_metrics(text)[key] == 1
        assert (await get(f"http://127.0.0.1:{server.port}/"))[0] == 404
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(server.url)


async def test_a_taken_port_raises_oserror() -> None:
    registry = CollectorRegistry()
    async with await serve_metrics(registry) as first:
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            await serve_metrics(registry, first.port)


class _HookedClient:
    """Stands in for the client with the request hooks wired in; waits to be released."""

    def __init__(self, metrics: OcrMetrics) -> None:
        self.metrics = metrics
        self.release = asyncio.Event()
        self.waiting = 0
        self.all_waiting = asyncio.Event()

    async def send(self, payload: Payload) -> Recognition:
        self.metrics.request_started()
        error: BaseException | None = None
        try:
            if payload.url is not None:
                self.waiting += 1
                if self.waiting == 2:
                    self.all_waiting.set()
                await self.release.wait()
            elif "bad" in payload.source:
                error = InvalidRequestError(4000003, "INVALID_FILE_TYPE")
                raise error
            return Recognition(OcrResult((), {}), payload.endpoint, 1, 1.0)
        finally:
            self.metrics.request_finished(0.2, error)


async def test_scraped_during_a_run() -> None:
    metrics = OcrMetrics()
    client = _HookedClient(metrics)

    async def items() -> AsyncIterator[SourceItem]:
        for name in ("a.png", "bad.png"):
            yield SourceItem(name, ImageBytes(make_png(name), name))
        for n in (1, 2):
            yield SourceItem(f"https://h/{n}.png", ImageUrl(f"https://h/{n}.png"))

    class Sink:
        async def write(self, record: Record) -> None:
            pass

    async with await serve_metrics(metrics) as server:
        batch = asyncio.create_task(
            run_batch(client, items(), Sink(), concurrency=2, on_record=metrics.on_record)
        )
        await asyncio.wait_for(client.all_waiting.wait(), timeout=30)
        during = parse_metrics((await get(server.url))[1])
        client.release.set()
        summary = await batch
        after = parse_metrics((await get(server.url))[1])
    ok = ("ocr_async_records_total", (("code", ""), ("outcome", "ok")))
    failed = ("ocr_async_records_total", (("code", "4000003"), ("outcome", "failed")))
    assert during[("ocr_async_requests_in_flight", ())] == 2
    assert (during[ok], during[failed]) == (1, 1)
    assert after[("ocr_async_requests_in_flight", ())] == 0
    assert (after[ok], after[failed]) == (3, 1) == (summary.ok, summary.failed.total())
