"""What every route shares: the model store, the prediction log, the metrics, and the prediction step itself."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import Headers

from serving.log import LogUnavailableError, PredictionLog
from serving.log.lines import Logged, PredictionBatch, features_digest, now
from serving.metrics import Metrics
from serving.model_store import ModelStore, ServedModel
from serving.schemas import ApiModels
from serving.settings import ServeSettings
from tabloop.errors import TabloopError
from tabloop.runtime.contract import FeatureContract
from tabloop.runtime.task import Answers


class ServiceError(TabloopError):
    """A request the service answers with an error: an HTTP status, a code, a message and details."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []


REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
EARLIEST_EVENT = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST_EVENT = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)


def require_json(headers: Headers) -> None:
    """A 415 unless the body is declared as JSON (``application/json`` or an ``application/*+json`` type)."""
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise ServiceError(
            415,
            "unsupported_media_type",
            f"send the body as application/json, not {media or 'without a Content-Type'}",
            [{"path": "headers.content-type", "reason": "must be application/json"}],
        )


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
        return cls(request_id, None if event_time is None else _event_time(event_time))


NO_CONTEXT = RequestContext()


def _event_time(text: str) -> dt.datetime:
    """``X-Event-Time`` in UTC; a 400 if it is not an ISO 8601 time from 1970 up to 2100."""
    try:
        when = dt.datetime.fromisoformat(text)
        when = when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)
    except (ValueError, OverflowError) as e:  # OverflowError: a valid time whose UTC falls outside the calendar
        raise ServiceError(
            400,
            "invalid_header",
            "X-Event-Time must be an ISO 8601 date and time, e.g. 2013-11-05T14:30:00Z",
            [{"path": "headers.x-event-time", "reason": f"not an ISO 8601 time in range: {text[:80]!r}"}],
        ) from e
    if not EARLIEST_EVENT <= when < LATEST_EVENT:
        raise ServiceError(
            400,
            "invalid_header",
            "X-Event-Time must be from 1970 up to 2100",
            [{"path": "headers.x-event-time", "reason": f"out of range: {text[:80]!r}"}],
        )
    return when


@dataclass(frozen=True)
class Predicted:
    """The answer to one request: the model that gave it, the predictions' ids and their task's answers."""

    model_name: str
    model_version: str
    threshold: float | None  # a binary model's; None too for an earlier answer by a version no longer served
    request_id: str
    ids: list[str]
    answers: Answers


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
        *,
        contract: FeatureContract,
        models: ApiModels,
    ) -> None:
        self.settings, self.store, self.log, self.metrics = settings, store, log, metrics
        self.contract, self.models = contract, models
        self.names = list(models.row.model_fields)
        self.rows = TypeAdapter(list[models.row])  # type: ignore[name-defined]
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
            raise ServiceError(400, "batch_too_large", f"{len(rows)} rows; at most {self.settings.max_batch}")
        try:
            return self.rows.validate_python(rows)
        except ValidationError as e:
            raise ServiceError(
                400, "invalid_input", "the input does not satisfy the feature contract", validation_details(e, prefix)
            ) from e

    def columns(self, rows: list[BaseModel]) -> dict[str, list[Any]]:
        """Validated rows as columns of feature values."""
        values = [r.__dict__ for r in rows]
        return {name: [v[name] for v in values] for name in self.names}

    async def predict(
        self, route: str, columns: dict[str, list[Any]], n: int, context: RequestContext = NO_CONTEXT
    ) -> Predicted:
        """Predict, log and count ``n`` rows given as columns; small batches on the event loop.

        The answer is returned only once it is in the prediction log's journal; if it cannot be recorded, a 503.
        With a client's request id, the predictions' ids derive from it: the same id with the same rows gets
        the logged answer again, with other rows a 409.
        """
        served = self.served()
        self.check_log()
        digest = None
        if context.request_id is not None:
            digest = features_digest(columns)
            earlier = self.log.pending(context.request_id) or await asyncio.to_thread(
                self.log.lookup, context.request_id
            )
            if earlier is not None:
                return self.again(earlier, digest, served)
        if n <= self.settings.inline_rows:
            answers = served.predictor.answer(columns)
        else:
            try:
                async with asyncio.timeout(self.settings.request_timeout_s):
                    answers = await asyncio.to_thread(served.predictor.answer, columns)
            except TimeoutError as e:
                raise ServiceError(
                    504, "timeout", f"the prediction took longer than {self.settings.request_timeout_s:g} s"
                ) from e
        request_id = context.request_id or self.next_id()
        ids = [request_id] if n == 1 else [f"{request_id}-{i}" for i in range(n)]
        batch = PredictionBatch(
            request_id=request_id,
            ids=ids,
            created_at=now(),
            event_time=context.event_time,
            route=route,
            model_name=served.name,
            model_version=served.version,
            features=columns,
            answers=answers.lists,
        )
        try:
            earlier = self.log.record_batch(batch, digest)
        except LogUnavailableError as e:
            self.metrics.unrecorded.inc(n)
            raise ServiceError(
                503, "log_unavailable", f"the prediction cannot be recorded, so it is not answered: {e}"
            ) from e
        if earlier is not None:  # the same id arrived while this request was being predicted
            return self.again(earlier, digest, served)
        self.metrics.observe(answers, served.version, n)
        threshold = served.predictor.bundle.threshold
        return Predicted(served.name, served.version, threshold, request_id, ids, answers)

    def check_log(self) -> None:
        """A 503 if the prediction log cannot record now (a full disk, or the database too far behind)."""
        reason = self.log.accepting()
        if reason is not None:
            raise ServiceError(
                503, "log_unavailable", f"predictions cannot be recorded, so none are answered: {reason}"
            )

    def again(self, earlier: Logged, digest: str | None, served: ServedModel) -> Predicted:
        """The logged answer to a request sent again; a 409 if the same id came with other rows."""
        if digest != earlier.digest:
            raise ServiceError(
                409,
                "request_id_conflict",
                f"request id {earlier.request_id!r} was already used for other rows; the log keeps the first "
                "answer. Use a new X-Request-Id for a new request.",
                [{"path": "headers.x-request-id", "reason": "already used with a different body"}],
            )
        same = earlier.model_version == served.version and earlier.model_name == served.name
        return Predicted(
            earlier.model_name,
            earlier.model_version,
            served.predictor.bundle.threshold if same else None,
            earlier.request_id,
            earlier.ids,
            Answers.from_lists(earlier.answers),
        )
