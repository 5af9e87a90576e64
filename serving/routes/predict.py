"""``POST /predict``: one row or a list of rows in the contract's shape."""

from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Request, Response, params
from pydantic import Field, TypeAdapter, ValidationError

from serving.deps import ServiceDep
from serving.routes.common import ERRORS, body_error, json_body_openapi, row_example
from serving.schemas import (
    ApiModels,
    JsonObject,
    PredictAnswer,
)
from serving.service import Predicted, RequestContext, ServiceError, require_json
from tabloop.runtime.contract import FeatureContract, TargetSpec, entity_words


def add_predict_route(
    router: APIRouter, contract: FeatureContract, models: ApiModels, max_batch: int, secured: Sequence[params.Depends]
) -> None:
    """``POST /predict``: one row or a list of rows in the contract's shape."""
    target, entity = contract.target, contract.entity
    body = PredictBody(models.row, max_batch)

    @router.post(
        "/predict",
        response_model=models.response,
        dependencies=secured,
        responses=ERRORS,
        tags=["predictions"],
        summary=f"Predict {target.name} for one {entity_words(entity)} or a list of {entity_words(entity, many=True)}",
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


def predictions(done: Predicted, target: TargetSpec) -> PredictAnswer:
    """The /predict answer: the model that gave it, a binary model's threshold and one prediction per row."""
    rows = prediction_rows(done, target)
    if target.task == "binary":
        return {
            "request_id": done.request_id,
            "model_name": done.model_name,
            "model_version": done.model_version,
            "threshold": done.threshold,
            "predictions": rows,
        }
    return {
        "request_id": done.request_id,
        "model_name": done.model_name,
        "model_version": done.model_version,
        "predictions": rows,
    }


def prediction_rows(done: Predicted, target: TargetSpec) -> list[JsonObject]:
    """One prediction per row: its id and what the task answers, named as the contract's target."""
    answers, name, ids = done.answers.lists, target.name, done.ids
    if target.task == "binary":
        return [
            {"id": i, "probability": p, name: label}
            for i, p, label in zip(ids, answers["probability"], answers["label"], strict=True)
        ]
    if target.classes is not None:
        classes = target.classes
        return [
            {"id": i, name: c, "probability": p, "probabilities": dict(zip(classes, each, strict=True))}
            for i, c, p, each in zip(
                ids, answers["predicted_class"], answers["probability"], answers["probabilities"], strict=True
            )
        ]
    return [{"id": i, name: v} for i, v in zip(ids, answers["value"], strict=True)]


def predict_openapi(row: type, entity: str, max_batch: int) -> JsonObject:
    """The OpenAPI request body of /predict: one row or a list of rows, with an example of each."""
    example = row_example(row)
    ref = f"#/components/schemas/{entity}"
    schema: JsonObject = {
        "oneOf": [{"$ref": ref}, {"type": "array", "items": {"$ref": ref}, "minItems": 1, "maxItems": max_batch}]
    }
    examples: JsonObject = {
        f"one {entity_words(entity)}": {"value": example},
        f"two {entity_words(entity, many=True)}": {"value": [example] * 2},
    }
    return json_body_openapi(schema, examples)
