"""The API's request and response models. Those shaped by the domain (one example's features, a prediction, an
outcome) are generated from the bundle's feature contract; the rest are fixed."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
    create_model,
)
from pydantic.json_schema import SkipJsonSchema

from tabloop.runtime.contract import INTEGER_DTYPES, FeatureContract, FeatureSpec
from tabloop.runtime.lineage import GitState, LineageMetrics
from tabloop.runtime.preprocessing import Preprocessor

MAX_TEXT = 64

# A JSON object whose keys the code does not fix: one example's features (keyed by the names the contract declares
# at start-up), an OpenAPI fragment, or a V2 ``parameters`` object (any JSON object, by the protocol).
JsonObject = dict[str, JsonValue]


def _feature_type(spec: FeatureSpec) -> Any:
    """The Python type a request field must have, with the contract's constraints."""
    if spec.kind == "categorical":
        if spec.values is not None:
            return Literal[tuple(spec.values)]
        if spec.dtype == "string":
            return Annotated[str, StringConstraints(pattern=spec.pattern, max_length=MAX_TEXT)]
        return Annotated[int, Field(strict=True)]
    # strict: a number must be sent as a JSON number; "15654" and true are refused, not read as 15654.0 and 1.0
    bounds = Field(ge=spec.min, le=spec.max, allow_inf_nan=False, strict=True)
    if spec.dtype in INTEGER_DTYPES:  # 15654 or 15654.0 (one value in JSON Schema's terms), never 15654.5
        return Annotated[float, bounds, AfterValidator(_whole), WithJsonSchema({"type": "integer"} | _range(spec))]
    return Annotated[float, bounds]


def _whole(value: float) -> float:
    if not value.is_integer():
        raise ValueError(f"Input should be a whole number, not {value!r}")
    return value


def _range(spec: FeatureSpec) -> dict[str, float]:
    return {k: v for k, v in (("minimum", spec.min), ("maximum", spec.max)) if v is not None}


@dataclass(frozen=True)
class ApiModels:
    """The domain-shaped models of one contract."""

    row: type[BaseModel]  # one example's features, named by the contract's entity
    response: type[BaseModel]  # the answer of POST /predict
    feedback: type[BaseModel]  # one observed outcome, for POST /feedback


def api_models(contract: FeatureContract, example: JsonObject | None = None) -> ApiModels:
    """The request, response and feedback models of ``contract``; ``example`` shows in the OpenAPI document."""
    return ApiModels(row_model(contract, example), response_model(contract), feedback_model(contract))


def row_model(contract: FeatureContract, example: JsonObject | None = None) -> type[BaseModel]:
    """A pydantic model of one example's features: types, ranges, allowed values, nullability from the contract.

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
    model: type[BaseModel] = create_model(contract.entity, __config__=config, **fields)
    return model


def example_row(preprocessor: Preprocessor) -> JsonObject:
    """A realistic example from the fitted preprocessing: the most frequent categories and the mean numbers."""
    contract = preprocessor.contract
    example: JsonObject = {}
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


def response_model(contract: FeatureContract) -> type[BaseModel]:
    """The answer of POST /predict: one prediction per example, its answer named as the contract's target."""
    target = contract.target
    meaning = f" ({target.description})" if target.description else ""
    fields: dict[str, Any] = {
        "id": (str, Field(description="Identifies this prediction, e.g. for POST /feedback.")),
    }
    if target.task == "binary":
        fields["probability"] = (float, Field(description=f"Probability that {target.name} is true{meaning}."))
        fields[target.name] = (bool, Field(description="The probability at or above the model's decision threshold."))
    elif target.classes is not None:
        fields[target.name] = (
            Literal[tuple(target.classes)],
            Field(description=f"The most probable class of {target.name}{meaning}."),
        )
        fields["probability"] = (float, Field(description="The probability of that class."))
        fields["probabilities"] = (
            dict[str, float],
            Field(description=f"Each class's probability, by class: {', '.join(target.classes)}."),
        )
    else:
        fields[target.name] = (float, Field(description=f"The predicted {target.name}{meaning}."))
    prediction = create_model("Prediction", __doc__="One example's prediction.", **fields)
    top: dict[str, Any] = {"request_id": (str, ...), "model_name": (str, ...), "model_version": (str, ...)}
    if target.task == "binary":
        top["threshold"] = (
            float | None,
            Field(
                description="The model's decision threshold; null when a retried request's logged answer came from "
                "a version that is no longer served."
            ),
        )
    model: type[BaseModel] = create_model(
        "PredictResponse",
        __doc__="Predictions for the examples of one request, in request order.",
        predictions=(list[prediction], ...),
        **top,
    )
    return model


def class_name(value: object) -> object:
    """A class sent as a number (``3``) as the class's name (``"3"``): classes are names, whatever they look like."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def feedback_model(contract: FeatureContract) -> type[BaseModel]:
    """One observed outcome of an earlier prediction: the target's value (a class or a number) and, for a binary
    target, optionally the number behind it."""
    target = contract.target
    observed = f"The observed value of {target.name}. {target.description}".strip()
    fields: dict[str, Any] = {
        "id": (
            Annotated[str, StringConstraints(min_length=1, max_length=80)],
            Field(description="The prediction's id (for a one-example request, its request id)."),
        ),
    }
    if target.task == "binary":
        fields[target.name] = (bool, Field(description=observed))
        fields["outcome"] = (
            Annotated[float, Field(allow_inf_nan=False)] | None,
            Field(None, description="The observed number the target was derived from, if any."),
        )
    elif target.classes is not None:
        fields[target.name] = (
            Annotated[Literal[tuple(target.classes)], BeforeValidator(class_name)],
            Field(description=f"{observed} One of the model's classes.".strip()),
        )
    else:  # a number, strictly (not true, not "3"); a log1p target is never negative
        low = 0.0 if target.transform == "log1p" else None
        number = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=low)]
        fields[target.name] = (number, Field(description=observed))
    model: type[BaseModel] = create_model(
        "Feedback",
        __doc__="The observed outcome of an earlier prediction.",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


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


class PredictAnswer(TypedDict):
    """The /predict answer as the hot path builds it for orjson; the generated ``PredictResponse`` documents it."""

    request_id: str
    model_name: str
    model_version: str
    threshold: NotRequired[float | None]  # a binary model's
    predictions: list[JsonObject]  # "id", the contract's target name and the task's probabilities


def absent(value: object) -> bool:
    """Whether an optional field has no value: such a field is left out of the answer rather than null."""
    return value is None


class ServedModelRef(BaseModel):
    """The model being served: its registered name, version and alias, and where it was loaded from."""

    name: str
    version: str
    alias: str
    source: Literal["registry", "cache"] = Field(
        description="registry, or cache when the registry could not be reached"
    )


class LogReadiness(BaseModel):
    """Whether the prediction log records: ok, degraded (the database is failing) or refusing, and why."""

    status: Literal["ok", "degraded", "refusing"]
    queue: int = Field(description="Records in the journal that are not in the database yet.")
    max_queue: int = Field(description="The queue at which predictions are refused.")
    reason: str | SkipJsonSchema[None] = Field(None, exclude_if=absent, description="Why not ok (absent when ok).")


class Readiness(BaseModel):
    """Whether the service can predict (a model is loaded and the prediction log records), and the details."""

    status: Literal["ready", "not ready"]
    model: ServedModelRef | None
    registry: str = Field(description="reachable, unreachable (and why) or not checked yet")
    last_check: str | None
    refused_versions: dict[str, str] = Field(description="Why each refused version was not served, by version.")
    prediction_log: LogReadiness
    note: str | SkipJsonSchema[None] = Field(None, exclude_if=absent, description="Present when serving from cache.")


class Unregistered(BaseModel):
    """An empty object: the model's bundle records no lineage, as it was never registered."""

    model_config = ConfigDict(extra="forbid")


class ServedLineage(BaseModel):
    """Where the served model came from: its ``lineage.json`` without the metrics, which /model shows apart."""

    bundle_sha256: str
    git: GitState
    data: dict[str, str] = Field(description="The DVC hash of each data directory, by its role.")
    params: JsonObject = Field(description="The pipeline's parameters as DVC recorded them.")
    dvc_experiment: str | None = None
    mlflow_run_id: str | None = None


class ModelInfo(ServedModelRef):
    """The served model: where it came from, its decision threshold, lineage, metrics and feature contract."""

    loaded_at: str
    threshold: float | None = Field(description="A binary model's decision threshold; null for other tasks.")
    lineage: ServedLineage | Unregistered
    metrics: LineageMetrics | Unregistered
    contract: FeatureContract


class ReloadResult(BaseModel):
    """Whether checking the registry alias changed the served model, and the version served now."""

    changed: bool
    version: str | None
