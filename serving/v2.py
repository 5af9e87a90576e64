"""The Open Inference Protocol v2 (KServe / Triton REST): health, metadata and inference on named tensors.

Each contract feature is a 1-D input tensor (shape ``[n]`` or ``[n, 1]``) of ``n`` flights: ``BYTES`` for text
categories, an integer type for integer categories, a number type for numeric features. Nullable features may be
left out (all missing) or hold nulls. Outputs are ``probability`` (FP64) and ``label`` (BOOL). Errors follow the
protocol: a 4xx status with ``{"error": "..."}``.
"""

import math
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, ValidationError

from flightdelay import __version__
from flightdelay.contract import FeatureSpec
from serving.service import RequestContext, Service, ServiceError, validation_details

INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
NUMBER_TYPES = INTEGER_TYPES | {"FP16", "FP32", "FP64"}
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]


class V2Error(ServiceError):
    """An error answered in the protocol's format."""


class InputTensor(BaseModel):
    """One named input tensor."""

    name: str
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)]
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    """An output the client wants back."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """An inference request."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: Annotated[list[InputTensor], Field(min_length=1)]
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    """One named output tensor."""

    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any]


class InferResponse(BaseModel):
    """The outputs of an inference request."""

    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


def datatype_of(spec: FeatureSpec) -> str:
    """The tensor datatype a feature is sent as."""
    if spec.kind == "categorical":
        return "BYTES" if spec.dtype == "string" else "INT64"
    return "FP64"


def accepts(spec: FeatureSpec, datatype: str) -> bool:
    """Whether a tensor of ``datatype`` can carry the feature."""
    if spec.kind == "categorical":
        return datatype == "BYTES" if spec.dtype == "string" else datatype in INTEGER_TYPES
    return datatype in NUMBER_TYPES


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


def tensors_to_rows(request: InferRequest, service: Service) -> list[dict[str, Any]]:
    """One record per flight from the request's tensors; a V2Error naming the first problem otherwise."""
    features = service.store.expected_contract.features if service.store.expected_contract else {}
    tensors: dict[str, InputTensor] = {}
    for tensor in request.inputs:
        if tensor.name in tensors:
            raise V2Error(400, "invalid_input", f"input '{tensor.name}' is given twice")
        if tensor.name not in features:
            raise V2Error(400, "invalid_input", f"unknown input '{tensor.name}'; inputs are: {', '.join(features)}")
        tensors[tensor.name] = tensor
    missing = [name for name, spec in features.items() if name not in tensors and not spec.nullable]
    if missing:
        raise V2Error(400, "invalid_input", f"missing input(s): {', '.join(missing)}")
    columns: dict[str, list[Any]] = {}
    sizes: dict[str, int] = {}
    for name, tensor in tensors.items():
        spec = features[name]
        if not accepts(spec, tensor.datatype):
            raise V2Error(
                400, "invalid_input", f"input '{name}' has datatype {tensor.datatype}; send {datatype_of(spec)}"
            )
        if len(tensor.shape) == 2 and tensor.shape[1] != 1:
            raise V2Error(400, "invalid_input", f"input '{name}' must have shape [n] or [n, 1], not {tensor.shape}")
        values = _flatten(tensor.data)
        if len(values) != math.prod(tensor.shape):
            raise V2Error(
                400,
                "invalid_input",
                f"input '{name}' has shape {tensor.shape} ({math.prod(tensor.shape)} values) but {len(values)} data",
            )
        columns[name] = values
        sizes[name] = tensor.shape[0]
    batch = set(sizes.values())
    if len(batch) != 1:
        raise V2Error(400, "invalid_input", f"inputs disagree on the batch size: {sizes}")
    n = batch.pop()
    if n == 0:
        raise V2Error(400, "invalid_input", "the batch is empty")
    if n > service.settings.max_batch:
        raise V2Error(400, "batch_too_large", f"{n} flights; at most {service.settings.max_batch}")
    for name in features:
        columns.setdefault(name, [None] * n)
    return [{name: columns[name][i] for name in features} for i in range(n)]


def build_v2_router(service: Service, guard: Any) -> APIRouter:
    """The protocol's routes for the served model."""
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
    secured = [guard] if guard is not None else []

    def check_name(name: str) -> None:
        if name != service.store.name:
            raise V2Error(404, "unknown_model", f"unknown model '{name}'; this server serves '{service.store.name}'")

    @router.get("", summary="Server metadata")
    async def server() -> dict[str, Any]:
        return {"name": "flightdelay", "version": __version__, "extensions": []}

    @router.get("/health/live", summary="Server liveness")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready", summary="Server readiness")
    async def ready() -> Response:
        ok = service.store.current is not None
        return Response(orjson.dumps({"ready": ok}), status_code=200 if ok else 503, media_type="application/json")

    @router.get("/models/{name}", summary="Model metadata")
    async def metadata(name: str) -> dict[str, Any]:
        check_name(name)
        served = service.store.current
        features = service.store.expected_contract.features if service.store.expected_contract else {}
        return {
            "name": name,
            "versions": [served.version] if served else [],
            "platform": "flightdelay",
            "inputs": [{"name": f, "datatype": datatype_of(s), "shape": [-1]} for f, s in features.items()],
            "outputs": [
                {"name": "probability", "datatype": "FP64", "shape": [-1]},
                {"name": "label", "datatype": "BOOL", "shape": [-1]},
            ],
        }

    @router.get("/models/{name}/ready", summary="Model readiness")
    async def model_ready(name: str) -> Response:
        check_name(name)
        ok = service.store.current is not None
        body = orjson.dumps({"name": name, "ready": ok})
        return Response(body, status_code=200 if ok else 503, media_type="application/json")

    @router.post(
        "/models/{name}/infer",
        dependencies=secured,
        response_model=InferResponse,
        summary="Inference on named tensors",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": InferRequest.model_json_schema()}},
            }
        },
    )
    async def infer(name: str, request: Request) -> Response:
        check_name(name)
        try:
            parsed = InferRequest.model_validate_json(await request.body())
        except ValidationError as e:
            details = validation_details(e)
            kind = "malformed_json" if any("json" in d["reason"].lower() for d in details) else "invalid_request"
            raise V2Error(400, kind, "the body is not a valid inference request", details) from e
        wanted = [o.name for o in parsed.outputs] if parsed.outputs else ["probability", "label"]
        unknown = [o for o in wanted if o not in ("probability", "label")]
        if unknown:
            raise V2Error(400, "invalid_output", f"unknown output(s) {unknown}; outputs are: probability, label")
        try:
            flights = service.validate_rows(tensors_to_rows(parsed, service), prefix="inputs")
            context = RequestContext.from_headers(request.headers)
        except ServiceError as e:
            raise V2Error(e.status, e.code, e.message, e.details) from e
        done = await service.predict("/v2/models/{name}/infer", service.columns(flights), len(flights), context)
        n = len(flights)
        data = {"probability": ("FP64", done.probability.tolist()), "label": ("BOOL", done.label.tolist())}
        body = {
            "model_name": name,
            "model_version": done.served.version,
            "id": parsed.id or done.request_id,
            "outputs": [{"name": o, "datatype": data[o][0], "shape": [n], "data": data[o][1]} for o in wanted],
        }
        return Response(orjson.dumps(body), media_type="application/json")

    return router
