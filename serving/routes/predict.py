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
from tabloop.runtime.contract import FeatureContract


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
