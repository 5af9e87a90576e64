"""The API's request and response models. The flight model is generated from the bundle's feature contract."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from tabloop.contract import FeatureContract, FeatureSpec
from tabloop.features.preprocessing import Preprocessor

MAX_TEXT = 64


def _feature_type(spec: FeatureSpec) -> Any:
    """The Python type a request field must have, with the contract's constraints."""
    if spec.kind == "categorical":
        if spec.values is not None:
            return Literal[tuple(spec.values)]
        if spec.dtype == "string":
            return Annotated[str, StringConstraints(pattern=spec.pattern, max_length=MAX_TEXT)]
        return Annotated[int, Field(strict=True)]
    return Annotated[float, Field(ge=spec.min, le=spec.max, allow_inf_nan=False)]


def flight_model(contract: FeatureContract, example: dict[str, Any] | None = None) -> type[BaseModel]:
    """A pydantic model of one flight's features: types, ranges, allowed values, nullability from the contract.

    A category outside the training vocabulary but within the contract (e.g. a new destination code) is valid and
    goes to the out-of-vocabulary bucket; a value outside a declared range, set or pattern is rejected.
    """
    fields: dict[str, Any] = {}
    for name, spec in contract.features.items():
        kind = _feature_type(spec)
        if spec.nullable:
            fields[name] = (kind | None, Field(None, description=spec.description))
        else:
            fields[name] = (kind, Field(..., description=spec.description))
    config = ConfigDict(extra="forbid", json_schema_extra={"examples": [example]} if example else None)
    model: type[BaseModel] = create_model("Flight", __config__=config, **fields)
    return model


def example_flight(preprocessor: Preprocessor) -> dict[str, Any]:
    """A realistic flight from the fitted preprocessing: the most frequent categories and the mean numbers."""
    contract = preprocessor.contract
    example: dict[str, Any] = {}
    for encoding in preprocessor.categorical:
        spec = contract.features[encoding.name]
        example[encoding.name] = encoding.vocabulary[0] if encoding.vocabulary else (spec.values or [None])[0]
    for numeric in preprocessor.numeric:
        value = math.expm1(numeric.mean) if numeric.transform == "log1p" else numeric.mean
        spec = contract.features[numeric.name]
        low = spec.min if spec.min is not None else -math.inf
        high = spec.max if spec.max is not None else math.inf
        value = min(max(value, low), high)
        example[numeric.name] = round(value) if spec.dtype.startswith("int") else round(value, 2)
    for cyclic in preprocessor.cyclic:
        example[cyclic.name] = round(cyclic.period / 2, 2)
    return {name: example[name] for name in contract.features}


class Prediction(BaseModel):
    """One flight's prediction."""

    id: str = Field(description="Identifies this prediction, e.g. for POST /feedback.")
    probability: float = Field(description="Probability that the flight arrives late.")
    late: bool = Field(description="The probability at or above the model's decision threshold.")


class PredictResponse(BaseModel):
    """Predictions for the flights of one request, in request order."""

    request_id: str
    model_name: str
    model_version: str
    threshold: float | None = Field(
        description="The model's decision threshold; null when a retried request's logged answer came from a version "
        "that is no longer served."
    )
    predictions: list[Prediction]


class Feedback(BaseModel):
    """The observed outcome of an earlier prediction."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(min_length=1, max_length=80)] = Field(
        description="The prediction's id (for a one-flight request, its request id)."
    )
    late: bool = Field(description="Whether the flight arrived late.")
    arr_delay: Annotated[float, Field(ge=-1440, le=2880, allow_inf_nan=False)] | None = Field(
        None, description="Observed arrival delay in minutes, if known."
    )


class FeedbackResponse(BaseModel):
    """How many outcomes were recorded."""

    recorded: int


class ErrorDetail(BaseModel):
    """One problem in a request."""

    path: str
    reason: str


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str | None = None


class ErrorResponse(BaseModel):
    """Every error the service returns has this shape."""

    error: ErrorBody
