"""Prediction, MLflow scoring, feedback, health, model and metrics routes.

No ``from __future__ import annotations`` here: route signatures use the models generated from the contract at
start-up, which FastAPI must see as types, not as strings.
"""

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError

from serving.prediction_log import LogUnavailableError, now
from serving.schemas import ErrorResponse, FeedbackResponse
from serving.service import RequestContext, Service, ServiceError, error_path, require_json
from tabloop.errors import redact

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
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


CONTEXT_HEADERS = [
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


def build_router(service: Service, guard: Any) -> APIRouter:
    """The routes, bound to the service's contract-shaped models and limits."""
    row, feedback_item = service.models.row, service.models.feedback
    target, entity = service.contract.target.name, service.contract.entity
    things = f"{entity.lower()}s"
    limit = Field(min_length=1, max_length=service.settings.max_batch)
    # /predict picks the adapter from the body's first byte: a callable discriminator would make pydantic build
    # Python objects from the whole JSON first, which more than doubles the validation time of a batch.
    one_adapter: TypeAdapter[Any] = TypeAdapter(row)
    many_adapter: TypeAdapter[Any] = TypeAdapter(Annotated[list[row], limit])  # type: ignore[valid-type,arg-type]
    feedback_body = Annotated[
        Annotated[feedback_item, Tag(ONE)] | Annotated[Annotated[list[feedback_item], limit], Tag(MANY)],  # type: ignore[valid-type]
        Discriminator(one_or_many),
    ]
    router = APIRouter()
    secured = [guard] if guard is not None else []

    @router.post(
        "/predict",
        response_model=service.models.response,
        dependencies=secured,
        responses=ERRORS,
        tags=["predictions"],
        summary=f"Predict {target} for one {entity.lower()} or a list of {things}",
        openapi_extra={
            "parameters": CONTEXT_HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"$ref": f"#/components/schemas/{entity}"},
                                {
                                    "type": "array",
                                    "items": {"$ref": f"#/components/schemas/{entity}"},
                                    "minItems": 1,
                                    "maxItems": service.settings.max_batch,
                                },
                            ]
                        },
                        "examples": {
                            f"one {entity.lower()}": {"value": row_example(row)},
                            f"two {things}": {"value": [row_example(row)] * 2},
                        },
                    }
                },
            },
        },
    )
    async def predict(request: Request) -> Response:
        # The hot path: pydantic validates the raw bytes (in Rust) and orjson writes the answer; FastAPI's
        # generic body handling would cost more than the prediction itself.
        require_json(request.headers)
        raw = await request.body()
        many = raw.lstrip(b" \t\r\n")[:1] == b"["
        try:
            rows = many_adapter.validate_json(raw) if many else [one_adapter.validate_json(raw)]
        except ValidationError as e:
            raise ServiceError(*body_error(e)) from e
        context = RequestContext.from_headers(request.headers)
        done = await service.predict("/predict", service.columns(rows), len(rows), context)
        answer = {
            "request_id": done.request_id,
            "model_name": done.model_name,
            "model_version": done.model_version,
            "threshold": done.threshold,
            "predictions": [
                {"id": i, "probability": p, target: label}
                for i, p, label in zip(done.ids, done.probability.tolist(), done.label.tolist(), strict=True)
            ],
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    @router.post(
        "/invocations",
        dependencies=secured,
        responses=ERRORS,
        tags=["MLflow scoring protocol"],
        summary="Score like `mlflow models serve`: dataframe_split, dataframe_records, instances or inputs",
        openapi_extra={
            "parameters": CONTEXT_HEADERS,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object", "additionalProperties": True},
                        "examples": {
                            "dataframe_records": {"value": {"dataframe_records": [row_example(row)]}},
                            "dataframe_split": {
                                "value": {
                                    "dataframe_split": {
                                        "columns": list(row_example(row)),
                                        "data": [list(row_example(row).values())],
                                    }
                                }
                            },
                        },
                    }
                },
            },
        },
    )
    async def invocations(request: Request) -> Response:
        require_json(request.headers)
        try:
            payload = orjson.loads(await request.body())
        except orjson.JSONDecodeError as e:
            raise ServiceError(400, "malformed_json", f"the body is not valid JSON: {e}") from e
        rows = service.validate_rows(mlflow_records(payload), prefix="records")
        if not rows:
            raise ServiceError(400, "invalid_input", "no records to score")
        context = RequestContext.from_headers(request.headers)
        done = await service.predict("/invocations", service.columns(rows), len(rows), context)
        predictions = [
            {"probability": float(p), "label": bool(label)}
            for p, label in zip(done.probability, done.label, strict=True)
        ]
        return Response(orjson.dumps({"predictions": predictions}), media_type="application/json")

    @router.post(
        "/feedback",
        response_model=FeedbackResponse,
        dependencies=[*secured, Depends(json_body)],
        responses={404: {"model": ErrorResponse, "description": "No such prediction."}, **ERRORS},
        tags=["predictions"],
        summary="Record the observed outcome of earlier predictions (recording it again replaces it)",
    )
    async def feedback(body: Annotated[feedback_body, Body()]) -> FeedbackResponse:
        items = body if isinstance(body, list) else [body]
        ids = [item.id for item in items]
        known = await asyncio.to_thread(service.log.known, ids)
        unknown = [(k, i) for k, i in enumerate(ids) if i not in known]
        if unknown:
            raise ServiceError(
                404,
                "unknown_prediction",
                f"{len(unknown)} of {len(ids)} ids name no prediction; nothing was recorded",
                [
                    {"path": f"body[{k}].id" if isinstance(body, list) else "body.id", "reason": f"no prediction {i!r}"}
                    for k, i in unknown
                ],
            )
        received = now()
        service.check_log()
        try:
            service.log.record_feedback(
                {"prediction_id": i.id, "actual": getattr(i, target), "outcome": i.outcome, "received_at": received}
                for i in items
            )
        except LogUnavailableError as e:
            raise ServiceError(503, "log_unavailable", f"the outcomes cannot be recorded: {e}") from e
        return FeedbackResponse(recorded=len(items))

    return router


def build_ops_router(service: Service, guard: Any) -> APIRouter:
    """Health, model information, reload and metrics."""
    router = APIRouter()
    secured = [guard] if guard is not None else []

    @router.get("/health/live", tags=["health"], summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get("/health/ready", tags=["health"], summary="A model is loaded and the service can predict")
    async def ready() -> JSONResponse:
        served = service.store.current
        status = service.store.status
        log = service.log.status()
        ok = served is not None and log["status"] != "refusing"
        details = {
            "status": "ready" if ok else "not ready",
            "model": None
            if served is None
            else {"name": served.name, "version": served.version, "alias": served.alias, "source": served.source},
            "registry": status.registry,
            "last_check": status.last_check,
            "refused_versions": status.refused,
            "prediction_log": log,
        }
        if served is not None and served.source == "cache":
            details["note"] = "serving the cached model: the registry could not be reached"
        return JSONResponse(details, status_code=200 if ok else 503)

    @router.get("/model", dependencies=secured, responses=ERRORS, tags=["model"], summary="The model being served")
    async def model() -> dict[str, Any]:
        served = service.served()
        lineage = served.lineage
        return {
            "name": served.name,
            "version": served.version,
            "alias": served.alias,
            "source": served.source,
            "loaded_at": served.loaded_at,
            "threshold": served.predictor.threshold,
            "lineage": {k: v for k, v in lineage.items() if k != "metrics"},
            "metrics": lineage.get("metrics", {}),
            "contract": served.contract.model_dump(mode="json"),
        }

    @router.post("/admin/reload", dependencies=secured, responses=ERRORS, tags=["model"], summary="Check the alias now")
    async def reload() -> dict[str, Any]:
        try:
            changed = await asyncio.to_thread(service.store.check)
        except Exception as e:
            raise ServiceError(503, "registry_unavailable", f"the registry cannot be reached: {redact(str(e))}") from e
        served = service.store.current
        return {"changed": changed, "version": served.version if served else None}

    @router.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics() -> Response:
        served = service.store.current
        if served is not None:
            service.metrics.serving(served.name, served.version, served.source)
        service.metrics.refused.set(len(service.store.status.refused))
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def json_body(request: Request) -> None:
    """A 415 unless the request declares a JSON body."""
    require_json(request.headers)


def row_example(row: type) -> dict[str, Any]:
    """The example of the generated row model's JSON schema, if any."""
    extra = row.model_config.get("json_schema_extra") or {}  # type: ignore[attr-defined]
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return dict(examples[0]) if examples else {}


def api_key_guard(key: str) -> Any:
    """A dependency that requires ``key`` in the X-API-Key header (or as a bearer token)."""
    import hmac

    from fastapi.security import APIKeyHeader

    header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The service's API key.")

    async def check(request: Request, supplied: Annotated[str | None, Depends(header)]) -> None:
        if supplied is None:
            authorization = request.headers.get("authorization", "")
            supplied = authorization[7:] if authorization.lower().startswith("bearer ") else None
        if supplied is None or not hmac.compare_digest(supplied.encode(), key.encode()):
            raise ServiceError(401, "unauthorized", "a valid API key is required in the X-API-Key header")

    return Depends(check)
