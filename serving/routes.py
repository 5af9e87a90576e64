"""Prediction, MLflow scoring, feedback, health, model and metrics routes.

No ``from __future__ import annotations`` here: route signatures use the models generated from the contract at
start-up, which FastAPI must see as types, not as strings.
"""

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Request, Response, params
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import Discriminator, Field, JsonValue, Tag, TypeAdapter, ValidationError

from serving.deps import ServiceDep
from serving.model_store import ServedModel
from serving.prediction_log import LogUnavailableError, now
from serving.schemas import (
    ApiModels,
    ErrorResponse,
    FeedbackResponse,
    JsonObject,
    LogReadiness,
    MlflowPrediction,
    ModelInfo,
    PredictAnswer,
    Readiness,
    ReloadResult,
    ServedLineage,
    ServedModelRef,
    Unregistered,
)
from serving.service import Predicted, RequestContext, Service, ServiceError, error_path, require_json
from tabloop.errors import redact
from tabloop.runtime.contract import FeatureContract

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
LOADER_ROUNDS = 10  # flush intervals a feedback waits, with workers, for ids another worker answered
ONE, MANY = "one", "many"  # tags of the two shapes of a body (not part of error paths)


def one_or_many(value: Any) -> str:
    """Which shape a body has: a list of items or a single one."""
    return MANY if isinstance(value, list) else ONE


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "The body is not valid JSON or breaks the contract."},
    401: {"model": ErrorResponse, "description": "A valid API key is required."},
    413: {"model": ErrorResponse, "description": "The body is larger than the limit."},
    415: {"model": ErrorResponse, "description": "The body is not declared as application/json."},
    422: {"model": ErrorResponse, "description": "The body breaks the feature contract."},
    409: {"model": ErrorResponse, "description": "The X-Request-Id was already used with another body."},
    503: {"model": ErrorResponse, "description": "No model is loaded yet, or the prediction cannot be recorded."},
    504: {"model": ErrorResponse, "description": "The prediction took longer than the limit."},
}


def mlflow_records(payload: Any) -> list[Any]:
    """Rows from any of MLflow's scoring formats; a 400 naming the problem otherwise."""
    if not isinstance(payload, dict):
        raise ServiceError(
            400, "invalid_format", "the body must be a JSON object with one of: " + ", ".join(MLFLOW_FORMATS)
        )
    present = [key for key in MLFLOW_FORMATS if key in payload]
    unknown = sorted(set(payload) - set(MLFLOW_FORMATS) - {"params"})
    if len(present) != 1 or unknown:
        raise ServiceError(
            400,
            "invalid_format",
            f"the body must hold exactly one of {', '.join(MLFLOW_FORMATS)} (and optionally params); "
            f"found {sorted(payload)}",
        )
    key = present[0]
    data = payload[key]
    if key == "dataframe_split":
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("columns"), list)
            or not isinstance(data.get("data"), list)
        ):
            raise ServiceError(
                400, "invalid_format", "dataframe_split needs 'columns' (a list) and 'data' (a list of rows)"
            )
        columns = data["columns"]
        rows = data["data"]
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise ServiceError(
                    400, "invalid_format", f"dataframe_split.data[{i}] must be a list of {len(columns)} values"
                )
        return [dict(zip(columns, row, strict=True)) for row in rows]
    if isinstance(data, dict) and key in ("instances", "inputs"):
        lengths = {len(v) if isinstance(v, list) else -1 for v in data.values()}
        if len(lengths) != 1 or -1 in lengths:
            raise ServiceError(400, "invalid_format", f"{key} as columns needs lists of equal length for every column")
        return [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    if not isinstance(data, list):
        raise ServiceError(400, "invalid_format", f"{key} must be a list of records")
    return data


def body_error(error: ValidationError) -> tuple[int, str, str, list[dict[str, str]]]:
    """Status, code, message and details for a body that failed validation: 400 if not JSON, else 422."""
    problems = error.errors(include_url=False)
    if any(p["type"] == "json_invalid" for p in problems):
        reason = next(p["msg"] for p in problems if p["type"] == "json_invalid")
        return 400, "malformed_json", f"the body is not valid JSON: {reason}", []
    details = [{"path": error_path(without_tags(p["loc"])), "reason": p["msg"]} for p in problems]
    return 422, "invalid_request", f"{len(details)} problem(s) in the request", details


def without_tags(location: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error location without the union tag that says which shape of body it was."""
    return location[1:] if location and location[0] in (ONE, MANY) else location


CONTEXT_HEADERS: list[JsonValue] = [
    {
        "name": "X-Request-Id",
        "in": "header",
        "required": False,
        "description": "The request's id, used instead of a generated one: a retry with the same id is logged once.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"},
    },
    {
        "name": "X-Event-Time",
        "in": "header",
        "required": False,
        "description": "When the prediction was wanted (ISO 8601, UTC without an offset); monitoring windows use it.",
        "schema": {"type": "string", "format": "date-time"},
    },
]


def build_router(service: Service, secured: Sequence[params.Depends]) -> APIRouter:
    """The prediction and feedback routes, typed by the service's contract-shaped models and limits.

    The handlers get the service itself from ``current_service`` on each request, so a test can replace it.
    """
    router = APIRouter()
    add_predict_route(router, service.contract, service.models, service.settings.max_batch, secured)
    add_invocations_route(router, service.models, secured)
    add_feedback_route(router, service.models, service.settings.max_batch, secured)
    return router


def add_predict_route(
    router: APIRouter, contract: FeatureContract, models: ApiModels, max_batch: int, secured: Sequence[params.Depends]
) -> None:
    """``POST /predict``: one row or a list of rows in the contract's shape."""
    target, entity = contract.target.name, contract.entity
    body = PredictBody(models.row, max_batch)

    @router.post(
        "/predict",
        response_model=models.response,
        dependencies=secured,
        responses=ERRORS,
        tags=["predictions"],
        summary=f"Predict {target} for one {entity.lower()} or a list of {entity.lower()}s",
        openapi_extra=predict_openapi(models.row, entity, max_batch),
    )
    async def predict(request: Request, service: ServiceDep) -> Response:
        # The hot path: pydantic validates the raw bytes (in Rust) and orjson writes the answer; FastAPI's
        # generic body handling would cost more than the prediction itself.
        require_json(request.headers)
        rows = body.rows(await request.body())
        context = RequestContext.from_headers(request.headers)
        done = await service.predict("/predict", service.columns(rows), len(rows), context)
        return Response(orjson.dumps(predictions(done, target)), media_type="application/json")


def add_invocations_route(router: APIRouter, models: ApiModels, secured: Sequence[params.Depends]) -> None:
    """``POST /invocations``: MLflow's scoring protocol."""

    @router.post(
        "/invocations",
        dependencies=secured,
        responses=ERRORS,
        tags=["MLflow scoring protocol"],
        summary="Score like `mlflow models serve`: dataframe_split, dataframe_records, instances or inputs",
        openapi_extra=invocations_openapi(models.row),
    )
    async def invocations(request: Request, service: ServiceDep) -> Response:
        require_json(request.headers)
        rows = invocation_rows(service, await request.body())
        context = RequestContext.from_headers(request.headers)
        done = await service.predict("/invocations", service.columns(rows), len(rows), context)
        return Response(orjson.dumps({"predictions": mlflow_predictions(done)}), media_type="application/json")


def add_feedback_route(router: APIRouter, models: ApiModels, max_batch: int, secured: Sequence[params.Depends]) -> None:
    """``POST /feedback``: the observed outcome of one earlier prediction or of a list of them."""
    item = models.feedback
    limit = Field(min_length=1, max_length=max_batch)
    feedback_body = Annotated[
        Annotated[item, Tag(ONE)] | Annotated[Annotated[list[item], limit], Tag(MANY)],  # type: ignore[valid-type]
        Discriminator(one_or_many),
    ]

    @router.post(
        "/feedback",
        response_model=FeedbackResponse,
        dependencies=[*secured, Depends(json_body)],
        responses={404: {"model": ErrorResponse, "description": "No such prediction."}, **ERRORS},
        tags=["predictions"],
        summary="Record the observed outcome of earlier predictions (recording it again replaces it)",
    )
    async def feedback(body: Annotated[feedback_body, Body()], service: ServiceDep) -> FeedbackResponse:
        return await record_feedback(service, body)


class PredictBody:
    """Validates a /predict body, one row or a list of rows, straight from its bytes.

    The adapter is picked from the body's first byte: a callable discriminator would make pydantic build Python
    objects from the whole JSON first, which more than doubles the validation time of a batch.
    """

    def __init__(self, row: type, max_batch: int) -> None:
        limit = Field(min_length=1, max_length=max_batch)
        self.one: TypeAdapter[Any] = TypeAdapter(row)
        self.many: TypeAdapter[list[Any]] = TypeAdapter(Annotated[list[row], limit])  # type: ignore[valid-type,arg-type]

    def rows(self, raw: bytes) -> list[Any]:
        """The validated rows of the body; a 400 if it is not JSON, a 422 listing every problem otherwise."""
        many = raw.lstrip(b" \t\r\n")[:1] == b"["
        try:
            return self.many.validate_json(raw) if many else [self.one.validate_json(raw)]
        except ValidationError as e:
            raise ServiceError(*body_error(e)) from e


def predictions(done: Predicted, target: str) -> PredictAnswer:
    """The /predict answer: the model that gave it, its threshold and one prediction per row."""
    return {
        "request_id": done.request_id,
        "model_name": done.model_name,
        "model_version": done.model_version,
        "threshold": done.threshold,
        "predictions": [
            {"id": i, "probability": p, target: label}
            for i, p, label in zip(done.ids, done.probability.tolist(), done.label.tolist(), strict=True)
        ],
    }


def invocation_rows(service: Service, raw: bytes) -> list[Any]:
    """The validated rows of an MLflow scoring body; a 400 if it is not JSON, breaks the contract or has none."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ServiceError(400, "malformed_json", f"the body is not valid JSON: {e}") from e
    rows = service.validate_rows(mlflow_records(payload), prefix="records")
    if not rows:
        raise ServiceError(400, "invalid_input", "no records to score")
    return rows


def mlflow_predictions(done: Predicted) -> list[MlflowPrediction]:
    """The predictions in the /invocations answer: a probability and a label per row."""
    return [
        {"probability": float(p), "label": bool(label)} for p, label in zip(done.probability, done.label, strict=True)
    ]


async def record_feedback(service: Service, body: Any) -> FeedbackResponse:
    """How many outcomes were recorded; a 404 (and nothing recorded) if any id names no prediction."""
    items = body if isinstance(body, list) else [body]
    await require_known(service, [item.id for item in items], listed=isinstance(body, list))
    received = now()
    service.check_log()
    target = service.contract.target.name
    try:
        service.log.record_feedback(
            {"prediction_id": i.id, "actual": getattr(i, target), "outcome": i.outcome, "received_at": received}
            for i in items
        )
    except LogUnavailableError as e:
        raise ServiceError(503, "log_unavailable", f"the outcomes cannot be recorded: {e}") from e
    return FeedbackResponse(recorded=len(items))


async def require_known(service: Service, ids: list[str], listed: bool) -> None:
    """Nothing if every id names a logged prediction; a 404 naming each one that does not otherwise."""
    try:
        known = await asyncio.to_thread(service.log.known, ids)
        # With workers, a prediction answered by another one reaches the database within its loader's next rounds.
        for _ in range(LOADER_ROUNDS if service.settings.workers > 1 else 0):
            if known.issuperset(ids):
                break
            await asyncio.sleep(service.settings.log_flush_interval_s)
            known = await asyncio.to_thread(service.log.known, ids)
    except LogUnavailableError as e:
        raise ServiceError(503, "log_unavailable", f"the outcomes cannot be recorded now: {e}") from e
    unknown = [(k, i) for k, i in enumerate(ids) if i not in known]
    if unknown:
        raise ServiceError(
            404,
            "unknown_prediction",
            f"{len(unknown)} of {len(ids)} ids name no prediction; nothing was recorded",
            [{"path": f"body[{k}].id" if listed else "body.id", "reason": f"no prediction {i!r}"} for k, i in unknown],
        )


def predict_openapi(row: type, entity: str, max_batch: int) -> JsonObject:
    """The OpenAPI request body of /predict: one row or a list of rows, with an example of each."""
    example = row_example(row)
    ref = f"#/components/schemas/{entity}"
    schema: JsonObject = {
        "oneOf": [{"$ref": ref}, {"type": "array", "items": {"$ref": ref}, "minItems": 1, "maxItems": max_batch}]
    }
    examples: JsonObject = {
        f"one {entity.lower()}": {"value": example},
        f"two {entity.lower()}s": {"value": [example] * 2},
    }
    return json_body_openapi(schema, examples)


def invocations_openapi(row: type) -> JsonObject:
    """The OpenAPI request body of /invocations: any object, with the example row as records and as a split."""
    example = row_example(row)
    examples: JsonObject = {
        "dataframe_records": {"value": {"dataframe_records": [example]}},
        "dataframe_split": {"value": {"dataframe_split": {"columns": list(example), "data": [list(example.values())]}}},
    }
    return json_body_openapi({"type": "object", "additionalProperties": True}, examples)


def json_body_openapi(schema: JsonObject, examples: JsonObject) -> JsonObject:
    """The ``openapi_extra`` of a route that reads its JSON body itself: the context headers and the body."""
    return {
        "parameters": CONTEXT_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "examples": examples}},
        },
    }


def build_ops_router(secured: Sequence[params.Depends]) -> APIRouter:
    """Health, model information, reload and metrics."""
    router = APIRouter()

    @router.get("/health/live", tags=["health"], summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get(
        "/health/ready",
        responses={503: {"model": Readiness, "description": "No model is loaded, or the prediction log refuses."}},
        tags=["health"],
        summary="A model is loaded and the service can predict",
    )
    async def ready(service: ServiceDep, response: Response) -> Readiness:
        details = readiness(service)
        response.status_code = 200 if details.status == "ready" else 503
        return details

    @router.get("/model", dependencies=secured, responses=ERRORS, tags=["model"], summary="The model being served")
    async def model(service: ServiceDep) -> ModelInfo:
        return model_info(service.served())

    @router.post("/admin/reload", dependencies=secured, responses=ERRORS, tags=["model"], summary="Check the alias now")
    async def reload(service: ServiceDep) -> ReloadResult:
        return await reload_model(service)

    @router.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(service: ServiceDep) -> Response:
        return Response(metrics_text(service), media_type=CONTENT_TYPE_LATEST)

    return router


def readiness(service: Service) -> Readiness:
    """Whether the service can predict (a model is loaded and the log records), and the details of why."""
    served = service.store.current
    status = service.store.status
    log = service.log.status()
    ok = served is not None and log["status"] != "refusing"
    return Readiness(
        status="ready" if ok else "not ready",
        model=None
        if served is None
        else ServedModelRef(name=served.name, version=served.version, alias=served.alias, source=served.source),
        registry=status.registry,
        last_check=status.last_check,
        refused_versions=status.refused,
        prediction_log=LogReadiness(**log),
        note="serving the cached model: the registry could not be reached"
        if served is not None and served.source == "cache"
        else None,
    )


def model_info(served: ServedModel) -> ModelInfo:
    """What /model says about the served model: where it came from, its threshold, lineage, metrics and contract."""
    lineage = served.lineage
    return ModelInfo(
        name=served.name,
        version=served.version,
        alias=served.alias,
        source=served.source,
        loaded_at=served.loaded_at,
        threshold=served.predictor.threshold,
        lineage=ServedLineage.model_validate(lineage, from_attributes=True) if lineage else Unregistered(),
        metrics=lineage.metrics if lineage else Unregistered(),
        contract=served.contract,
    )


async def reload_model(service: Service) -> ReloadResult:
    """Whether checking the registry alias changed the served model, and the version served now."""
    try:
        changed = await asyncio.to_thread(service.store.check)
    except Exception as e:  # any failure of the registry client is a 503 for the caller, not a 500
        raise ServiceError(503, "registry_unavailable", f"the registry cannot be reached: {redact(str(e))}") from e
    served = service.store.current
    return ReloadResult(changed=changed, version=served.version if served else None)


def metrics_text(service: Service) -> bytes:
    """The Prometheus metrics, with the served model and the count of refused versions brought up to date."""
    update_gauges(service)
    return service.metrics.exposition()


def update_gauges(service: Service) -> None:
    """Set the gauges read from the service's state: the served model, the refused versions, the log's queue."""
    served = service.store.current
    if served is not None:
        service.metrics.serving(served.name, served.version, served.source)
    service.metrics.refused.set(len(service.store.status.refused))
    service.metrics.sample()


async def json_body(request: Request) -> None:
    """A 415 unless the request declares a JSON body."""
    require_json(request.headers)


def row_example(row: type) -> JsonObject:
    """The example of the generated row model's JSON schema, if any."""
    extra = row.model_config.get("json_schema_extra") or {}  # type: ignore[attr-defined]
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return dict(examples[0]) if examples else {}
