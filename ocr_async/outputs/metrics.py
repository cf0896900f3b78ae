"""Prometheus metrics for a long run or a service: records, requests, the rate.

An :class:`OcrMetrics` is an observer with two hooks into the flow:

- :meth:`~OcrMetrics.on_record`, once per record (``run_batch``'s
  ``on_record``): records by outcome and error code, and retries;
- :meth:`~OcrMetrics.request_started` and
  :meth:`~OcrMetrics.request_finished`, around each HTTP request, retries
  included: requests in flight, and the latency histogram by outcome;

plus :meth:`~OcrMetrics.watch`, which reads the rate controller's current
rate and its refusals for the call limit at scrape time (nothing is pushed).

Exposed (with the default namespace ``ocr_async``)::

    ocr_async_records_total{outcome="ok|failed", code=""|"4000003"|"timeout"...}
    ocr_async_retries_total
    ocr_async_requests_in_flight
    ocr_async_request_duration_seconds{outcome="ok|api_error|transport_error|other"}
    ocr_async_rate_calls_per_second        (+Inf while unpaced)
    ocr_async_throttled_total              (answers refused for the call limit)

The metrics live in a registry of their own, or in yours: a web backend
passes its ``registry`` (``prometheus_client.REGISTRY`` for the default one)
and serves it however it serves the rest. :func:`serve_metrics` serves one
on 127.0.0.1 from the event loop, so that the controller, which is not
thread-safe, is read on the loop that changes it.

Needs ``prometheus-client``: ``pip install 'ocr-async[metrics]'``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Final, Protocol, Self

from aiohttp import web

from ocr_async.errors import ApiError, TransportError
from ocr_async.models import Record

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.aiohttp import make_aiohttp_handler
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover (the extra is installed with the tests)
    raise ImportError(
        "ocr_async.outputs.metrics needs prometheus-client: pip install 'ocr-async[metrics]'"
    ) from exc

__all__ = [
    "LATENCY_BUCKETS",
    "MetricsServer",
    "OcrMetrics",
    "RateSource",
    "request_outcome",
    "serve_metrics",
]

#: Request latency buckets, in seconds: an OCR call takes from a tenth of a
#: second to several, and a timeout may come after a minute.
LATENCY_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RateSource(Protocol):
    """What is read of a rate controller: :class:`ocr_async.RateController` is one."""

    @property
    def current_rate(self) -> float:
        """Calls per second the controller paces at now (infinite while unpaced)."""
        ...

    @property
    def throttled(self) -> int:
        """Answers so far that refused a call for the call limit."""
        ...


def request_outcome(error: BaseException | None) -> str:
    """The ``outcome`` label of one request: ``ok``, ``api_error``, ``transport_error``, ``other``.

    An API error is an answer (refusals for the call limit among them: the
    controller's ``throttled`` counts those); a transport error is no usable
    answer; ``other`` is a request abandoned (cancelled) or a bug.
    """
    if error is None:
        return "ok"
    if isinstance(error, ApiError):
        return "api_error"
    return "transport_error" if isinstance(error, TransportError) else "other"


class OcrMetrics:
    """The metrics of one run or service, in ``registry`` (default: a new one of its own).

    ``namespace`` prefixes every name; two instances in one registry need
    two namespaces (the registry refuses a name twice). Safe to call from
    the event loop only, like the rest of the pipeline.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "ocr_async",
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        #: Where the metrics are registered: serve it, or pass yours in.
        self.registry = registry if registry is not None else CollectorRegistry()
        self._records = Counter(
            "records",
            "Records written, by outcome (ok, failed) and error code ('' when ok).",
            ["outcome", "code"],
            namespace=namespace,
            registry=self.registry,
        )
        self._retries = Counter(
            "retries",
            "Requests sent beyond the first for an input.",
            namespace=namespace,
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "requests_in_flight",
            "HTTP requests to the OCR API sent and not yet answered.",
            namespace=namespace,
            registry=self.registry,
        )
        self._latency = Histogram(
            "request_duration_seconds",
            "Seconds from sending a request to its answer or failure, retries counted apart.",
            ["outcome"],
            namespace=namespace,
            buckets=buckets,
            registry=self.registry,
        )
        self._rate = _RateCollector(namespace)
        self.registry.register(self._rate)

    def watch(self, controller: RateSource | None) -> None:
        """Read ``controller`` at each scrape from now on (None: stop)."""
        self._rate.source = controller

    def on_record(self, record: Record) -> None:
        """Count one finished record: the per-record hook."""
        if record.ok:
            self._records.labels("ok", "").inc()
        else:
            code = "" if record.error is None else str(record.error.code)
            self._records.labels("failed", code).inc()
        if record.attempts > 1:
            self._retries.inc(record.attempts - 1)

    def request_started(self) -> None:
        """A request is about to be sent: the first per-request hook."""
        self._in_flight.inc()

    def request_finished(self, elapsed_s: float, error: BaseException | None = None) -> None:
        """The request ``elapsed_s`` ago got its answer, or ``error``: the second hook.

        Call it exactly once per :meth:`request_started`, also on failure
        and cancellation (in a ``finally``).
        """
        self._in_flight.dec()
        self._latency.labels(request_outcome(error)).observe(elapsed_s)


class _RateCollector(Collector):
    """Reads the controller when scraped: its rate is not pushed anywhere."""

    def __init__(self, namespace: str) -> None:
        self._namespace = namespace
        self.source: RateSource | None = None

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        yield GaugeMetricFamily(
            f"{self._namespace}_rate_calls_per_second",
            "The rate the controller paces calls at now (+Inf while unpaced).",
            value=source.current_rate,
        )
        yield CounterMetricFamily(
            f"{self._namespace}_throttled",
            "Answers that refused a call for the API's call limit.",
            value=source.throttled,
        )

    def describe(self) -> Iterator[Metric]:
        # Nothing to check for clashes until a controller is watched; names
        # are fixed, so describe them without reading a controller.
        return iter(())


class MetricsServer:
    """A running metrics endpoint, ``http://127.0.0.1:{port}/metrics``; close it when done."""

    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self._runner = runner
        #: The port it listens on (the one chosen when 0 was asked for).
        self.port = port

    @property
    def url(self) -> str:
        """The address to scrape."""
        return f"http://127.0.0.1:{self.port}/metrics"

    async def close(self) -> None:
        """Stop listening; a scrape in progress is finished first."""
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


async def serve_metrics(metrics: OcrMetrics | CollectorRegistry, port: int = 0) -> MetricsServer:
    """Serve ``metrics`` (or a whole registry) on 127.0.0.1, ``/metrics``, from this event loop.

    Loopback only: put a proxy in front to expose it. ``port`` 0 picks a
    free one (see :attr:`MetricsServer.port`). Raises ``OSError`` when the
    port is taken.
    """
    registry = metrics.registry if isinstance(metrics, OcrMetrics) else metrics
    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    _, bound = runner.addresses[0][:2]
    return MetricsServer(runner, int(bound))
