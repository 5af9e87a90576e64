"""``POST /invocations``: MLflow's scoring protocol, answered as ``mlflow models serve`` answers it."""

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response, params

from serving.deps import ServiceDep
from serving.routes.common import ERRORS, json_body_openapi, row_example
from serving.schemas import ApiModels, JsonObject
from serving.service import Predicted, RequestContext, Service, ServiceError, require_json
from tabloop.runtime.contract import TargetSpec

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


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
        answer = {"predictions": mlflow_predictions(done, service.contract.target)}
        return Response(orjson.dumps(answer), media_type="application/json")


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


def mlflow_predictions(done: Predicted, target: TargetSpec) -> list[JsonObject]:
    """The predictions in the /invocations answer, one record per row as the registered pyfunc's frame has them:
    ``probability`` and ``label`` (binary); ``label`` and ``probability_<class>`` for each class (multiclass); the
    value under the target's name (regression)."""
    answers = done.answers.lists
    if target.task == "binary":
        pairs = zip(answers["probability"], answers["label"], strict=True)
        return [{"probability": p, "label": label} for p, label in pairs]
    if target.classes is not None:
        keys = [f"probability_{name}" for name in target.classes]
        return [
            {"label": c, **dict(zip(keys, each, strict=True))}
            for c, each in zip(answers["predicted_class"], answers["probabilities"], strict=True)
        ]
    return [{target.name: v} for v in answers["value"]]


def invocations_openapi(row: type) -> JsonObject:
    """The OpenAPI request body of /invocations: any object, with the example row as records and as a split."""
    example = row_example(row)
    examples: JsonObject = {
        "dataframe_records": {"value": {"dataframe_records": [example]}},
        "dataframe_split": {"value": {"dataframe_split": {"columns": list(example), "data": [list(example.values())]}}},
    }
    return json_body_openapi({"type": "object", "additionalProperties": True}, examples)
