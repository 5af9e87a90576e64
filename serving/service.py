"""What every route shares: the model store, the prediction log, the metrics, and the prediction step itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import Headers

from serving.metrics import Metrics
from serving.model_store import ModelStore, ServedModel
from serving.prediction_log import PredictionBatch, PredictionLog, now
from serving.settings import ServeSettings


class ServiceError(Exception):
    """A request the service answers with an error: an HTTP status, a code, a message and details."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []


REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


@dataclass(frozen=True)
class RequestContext:
    """What a client may say about its request in headers: its id (an idempotency key) and when it happened."""

    request_id: str | None = None
    event_time: dt.datetime | None = None

    @classmethod
    def from_headers(cls, headers: Headers) -> RequestContext:
        """``X-Request-Id`` and ``X-Event-Time`` (ISO 8601; UTC when no offset is given); a 400 if malformed."""
        request_id = headers.get("x-request-id")
        event_time = headers.get("x-event-time")
        if request_id is None and event_time is None:
            return NO_CONTEXT
        if request_id is not None and not REQUEST_ID.fullmatch(request_id):
            raise ServiceError(
                400,
                "invalid_header",
                "X-Request-Id must be 1 to 64 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
                [{"path": "headers.x-request-id", "reason": f"not a valid request id: {request_id[:80]!r}"}],
            )
        when = None
        if event_time is not None:
            try:
                when = dt.datetime.fromisoformat(event_time)
            except ValueError as e:
                raise ServiceError(
                    400,
                    "invalid_header",
                    "X-Event-Time must be an ISO 8601 date and time, e.g. 2013-11-05T14:30:00Z",
                    [{"path": "headers.x-event-time", "reason": f"not an ISO 8601 time: {event_time[:80]!r}"}],
                ) from e
            when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
        return cls(request_id, when)


NO_CONTEXT = RequestContext()


@dataclass(frozen=True)
class Predicted:
    """The outcome of predicting one request's flights."""

    served: ServedModel
    request_id: str
    ids: list[str]
    probability: npt.NDArray[np.float64]
    label: npt.NDArray[np.bool_]


def error_path(location: tuple[int | str, ...], prefix: str = "body") -> str:
    """A readable path for a pydantic error location, e.g. ``body[3].temp``."""
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def validation_details(error: ValidationError, prefix: str = "body") -> list[dict[str, str]]:
    """One entry per problem: where it is and what is wrong."""
    return [{"path": error_path(e["loc"], prefix), "reason": e["msg"]} for e in error.errors(include_url=False)]


class Service:
    """The shared state of one running service."""

    def __init__(
        self,
        settings: ServeSettings,
        store: ModelStore,
        log: PredictionLog,
        metrics: Metrics,
        flight: type[BaseModel],
    ) -> None:
        self.settings, self.store, self.log, self.metrics, self.flight = settings, store, log, metrics, flight
        self.names = list(flight.model_fields)
        self.rows = TypeAdapter(list[flight])  # type: ignore[valid-type]
        # Request ids: a random prefix per process and a counter; unique and ordered, without a syscall each.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._id_counter = itertools.count(1)

    def next_id(self) -> str:
        """A new request id."""
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    def served(self) -> ServedModel:
        """The model to answer with, or a 503 saying why there is none."""
        served = self.store.current
        if served is None:
            raise ServiceError(
                503,
                "no_model",
                f"no model is loaded yet: @{self.store.alias} of {self.store.name!r} is not in the registry or the "
                f"cache (registry: {self.store.status.registry}); train and register one with 'make train'",
            )
        return served

    def validate_rows(self, rows: Any, prefix: str = "body") -> list[BaseModel]:
        """Records validated against the contract; a 400 listing every problem otherwise."""
        if isinstance(rows, list) and len(rows) > self.settings.max_batch:
            raise ServiceError(400, "batch_too_large", f"{len(rows)} flights; at most {self.settings.max_batch}")
        try:
            return self.rows.validate_python(rows)
        except ValidationError as e:
            raise ServiceError(
                400, "invalid_input", "the input does not satisfy the feature contract", validation_details(e, prefix)
            ) from e

    def columns(self, flights: list[BaseModel]) -> dict[str, list[Any]]:
        """Validated flights as columns of feature values."""
        values = [f.__dict__ for f in flights]
        return {name: [v[name] for v in values] for name in self.names}

    async def predict(
        self, route: str, columns: dict[str, list[Any]], n: int, context: RequestContext = NO_CONTEXT
    ) -> Predicted:
        """Predict, log and count ``n`` flights given as columns; small batches on the event loop.

        With a client's request id, the predictions' ids derive from it, so a retried request is logged once.
        """
        served = self.served()
        if n <= self.settings.inline_rows:
            probability, label = served.predictor.predict(columns)
        else:
            try:
                async with asyncio.timeout(self.settings.request_timeout_s):
                    probability, label = await asyncio.to_thread(served.predictor.predict, columns)
            except TimeoutError as e:
                raise ServiceError(
                    504, "timeout", f"the prediction took longer than {self.settings.request_timeout_s:g} s"
                ) from e
        request_id = context.request_id or self.next_id()
        ids = [request_id] if n == 1 else [f"{request_id}-{i}" for i in range(n)]
        self.log.record_batch(
            PredictionBatch(
                request_id=request_id,
                ids=ids,
                created_at=now(),
                event_time=context.event_time,
                route=route,
                model_name=served.name,
                model_version=served.version,
                features=columns,
                probability=probability.tolist(),
                label=label.tolist(),
            )
        )
        self.metrics.scores.observe_many(probability)
        self.metrics.predictions.labels(served.version).inc(n)
        return Predicted(served, request_id, ids, probability, label)
