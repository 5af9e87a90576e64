"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can build many)."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))


class Metrics:
    """What /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to the start of the response, by route and method.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = BatchHistogram(
            "prediction_probability", "Predicted probability of the positive class.", SCORE_BUCKETS, self.registry
        )
        self.predictions = Counter(
            "predictions_total", "Rows predicted, by model version.", ["version"], registry=self.registry
        )
        self.model = Gauge(
            "model_served_info",
            "The model being served (value 1).",
            ["name", "version", "source"],
            registry=self.registry,
        )
        self.queue = Gauge(
            "prediction_log_queue_depth",
            "Records in the prediction log's journal not yet in its database.",
            registry=self.registry,
        )
        self.unrecorded = Counter(
            "predictions_refused_unrecorded_total",
            "Rows refused with 503 because the prediction log could not record them.",
            registry=self.registry,
        )
        self.refused = Gauge("model_versions_refused", "Versions refused by the hot reload.", registry=self.registry)

    def serving(self, name: str, version: str, source: str) -> None:
        """Record which model is served (exactly one series is 1)."""
        self.model.clear()
        self.model.labels(name, version, source).set(1)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Read the prediction log's queue depth at every scrape."""
        self.queue.set_function(depth)


class BatchHistogram(Collector):
    """A Prometheus histogram that takes a whole batch of values in one call (a thousand scores in microseconds)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        self.name, self.documentation = name, documentation
        self.buckets = list(buckets)
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last one is +Inf
        self.total = 0.0
        self.lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        """Add every value of ``values``."""
        if len(values) == 1:  # the common case, a few times cheaper without NumPy's per-call overhead
            value = float(values[0])
            with self.lock:
                self.counts[bisect.bisect_left(self.buckets, value)] += 1
                self.total += value
            return
        where = np.searchsorted(self.bounds, values, side="left")  # Prometheus buckets are upper-inclusive
        added = np.bincount(where, minlength=len(self.counts))
        with self.lock:
            self.counts += added
            self.total += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self.lock:
            cumulative = np.cumsum(self.counts)
            total = self.total
        labels = [*(f"{b:g}" for b in self.bounds), "+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(labels, cumulative.tolist(), strict=True)), sum_value=total
        )


class MetricsMiddleware:
    """Counts and times every request by its route template (not its raw path, to bound the label values).

    The time is to the start of the response, i.e. the server-side processing time, also returned to the
    client in a ``Server-Timing`` header.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        elapsed: float | None = None

        async def timed_send(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - start
                headers: list[Any] = list(message.get("headers", []))
                headers.append((b"server-timing", f"app;dur={elapsed * 1000:.3f}".encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(label, method, str(status)).inc()
            self.metrics.latency.labels(label, method).observe(
                elapsed if elapsed is not None else time.perf_counter() - start
            )
