"""What every route shares: the model store, the prediction log, the metrics, and the prediction step itself."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, TypeAdapter, ValidationError

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

    async def predict(self, route: str, columns: dict[str, list[Any]], n: int) -> Predicted:
        """Predict, log and count ``n`` flights given as columns; small batches on the event loop."""
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
        request_id = self.next_id()
        ids = [request_id] if n == 1 else [f"{request_id}-{i}" for i in range(n)]
        self.log.record_batch(
            PredictionBatch(
                request_id=request_id,
                ids=ids,
                created_at=now(),
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
