"""Prometheus metrics of the service, in a registry of its own (one per app, so tests can build many).

With several worker processes (``multiprocess``), prometheus_client's multiprocess mode: every worker writes its
values to files in ``PROMETHEUS_MULTIPROC_DIR`` (set by ``python -m serving`` before the workers start), and
whichever worker answers a scrape reads all of them, so counters and histograms are the totals of every worker.
Gauges say how workers combine: the queue depth is the sum over live workers, the model served is 1 for each
version some live worker serves.
"""

from __future__ import annotations

import bisect
import collections
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tabloop.runtime.contract import TargetSpec
from tabloop.runtime.task import Answers, TargetScaling

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(i / 20 for i in range(1, 21))
# A regression's values without a model to size them by: 0 and 1-2-5 steps up to a million, each way.
LADDER = tuple(m * 10.0**e for e in range(0, 6) for m in (1, 2, 5))
VALUE_BUCKETS = (*(-v for v in reversed(LADDER)), 0.0, *LADDER)
LIVE_FILE = re.compile(r"_(\d+)\.db$")


class Metrics:
    """What /metrics exposes."""

    def __init__(
        self,
        *,
        target: TargetSpec | None = None,
        value_buckets: tuple[float, ...] = VALUE_BUCKETS,
        multiprocess: bool = False,
        directory: Path | None = None,
    ) -> None:
        """``target``: what the model predicts (binary when not given), which decides the prediction metrics;
        ``value_buckets``: a regression's histogram buckets (:func:`value_buckets`)."""
        target = target or TargetSpec()
        self.multiprocess = multiprocess
        if multiprocess and directory is not None:
            forget_dead_workers(directory)
        self.registry = CollectorRegistry()
        self._served: tuple[str, str, str] | None = None
        self._depth: Callable[[], float] | None = None
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
        self.scores, self.values, self.classes = self._answer_metrics(target, value_buckets)
        self.predictions = Counter(
            "predictions_total", "Rows predicted, by model version.", ["version"], registry=self.registry
        )
        self.model = Gauge(
            "model_served_info",
            "The model being served (value 1).",
            ["name", "version", "source"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.queue = Gauge(
            "prediction_log_queue_depth",
            "Records in the prediction log's journal not yet in its database.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.unrecorded = Counter(
            "predictions_refused_unrecorded_total",
            "Rows refused with 503 because the prediction log could not record them.",
            registry=self.registry,
        )
        self.refused = Gauge(
            "model_versions_refused",
            "Versions refused by the hot reload.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )

    def _answer_metrics(
        self, target: TargetSpec, value_buckets: tuple[float, ...]
    ) -> tuple[AnyHistogram | None, AnyHistogram | None, Counter | None]:
        """The distribution of the task's answers: the probability (binary: of the positive class; multiclass: of
        the predicted one) or the value (regression), and a multiclass model's count by predicted class."""
        histogram = SharedBatchHistogram if self.multiprocess else BatchHistogram
        if target.task == "regression":
            values = histogram("prediction_value", f"Predicted {target.name}.", value_buckets, self.registry)
            return None, values, None
        which = "the positive class" if target.task == "binary" else "the predicted class"
        scores = histogram("prediction_probability", f"Predicted probability of {which}.", SCORE_BUCKETS, self.registry)
        if target.classes is None:
            return scores, None, None
        documentation = f"Rows predicted, by predicted {target.name}."
        classes = Counter("predictions_by_class_total", documentation, ["class"], registry=self.registry)
        return scores, None, classes

    def observe(self, answers: Answers, version: str, rows: int) -> None:
        """Count ``rows`` predictions of ``version`` and add their answers to the distributions."""
        if self.values is not None and answers.value is not None:
            self.values.observe_many(answers.value)
        elif self.scores is not None and answers.probability is not None:
            self.scores.observe_many(answers.probability)
        if self.classes is not None and answers.predicted_class is not None:
            for name, count in collections.Counter(answers.predicted_class).items():
                self.classes.labels(name).inc(count)
        self.predictions.labels(version).inc(rows)

    def serving(self, name: str, version: str, source: str) -> None:
        """Record which model is served (exactly one series of this process is 1)."""
        if (name, version, source) == self._served:
            return
        if self.multiprocess:  # clear() would leave the old series at 1 in this worker's file: set it to 0
            if self._served is not None:
                self.model.labels(*self._served).set(0)
        else:
            self.model.clear()
        self.model.labels(name, version, source).set(1)
        self._served = (name, version, source)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Read the prediction log's queue depth at every scrape (with workers: at every :meth:`sample`)."""
        self._depth = depth
        if not self.multiprocess:
            self.queue.set_function(depth)

    def sample(self) -> None:
        """Write the values read by function into this worker's file (multiprocess mode has no set_function)."""
        if self.multiprocess and self._depth is not None:
            self.queue.set(self._depth())

    def exposition(self) -> bytes:
        """The text /metrics answers: this registry's, or with workers every worker's values combined."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return generate_latest(combined)

    def close(self) -> None:
        """With workers, drop this worker's live gauges: a worker that stopped serves nothing and queues nothing."""
        if self.multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that are gone (killed: they could not drop their own); their counters stay."""
    pids = {int(m.group(1)) for f in directory.glob("gauge_live*.db") if (m := LIVE_FILE.search(f.name))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # gone, or its pid reused by another user's process
            multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def value_buckets(scaling: TargetScaling | None) -> tuple[float, ...]:
    """Histogram buckets for a regression's values: from three standard deviations below the training mean to
    three above, in half steps on the scale the model learned (so a log1p target gets geometric buckets), at
    three significant digits (none below 0 for a log1p target, a positive one); the fixed ladder without a scaling.

    A histogram with a bucket below 0 has no ``_sum`` and ``_count`` (OpenMetrics leaves them out)."""
    if scaling is None:
        return VALUE_BUCKETS
    edges = scaling.unscaled(np.arange(-3.0, 3.01, 0.5))
    low = 0.0 if scaling.transform == "log1p" else -math.inf
    rounded = {float(f"{v:.3g}") for v in edges.tolist() if math.isfinite(v) and v >= low}
    return tuple(sorted(rounded)) or VALUE_BUCKETS


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


class SharedBatchHistogram:
    """:class:`BatchHistogram` for multiprocess mode: a Prometheus histogram whose buckets take a batch's counts in
    one addition each (its values live in the worker's file, where a custom collector's would not be seen)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        self.histogram = Histogram(name, documentation, buckets=buckets, registry=registry)
        self.buckets = list(buckets)
        self.bounds = np.asarray(buckets, dtype=np.float64)

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        """Add every value of ``values``."""
        if len(values) == 1:
            self.histogram.observe(float(values[0]))
            return
        added = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.buckets) + 1)
        cells = self.histogram._buckets  # per-bucket (not cumulative) values, the last one +Inf
        for cell, count in zip(cells, added.tolist(), strict=True):
            if count:
                cell.inc(count)
        self.histogram._sum.inc(float(values.sum()))


AnyHistogram = BatchHistogram | SharedBatchHistogram


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
