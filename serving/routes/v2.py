"""The Open Inference Protocol v2 (KServe / Triton REST): health, metadata and inference on named tensors.

Each contract feature is a 1-D input tensor (shape ``[n]`` or ``[n, 1]``) of ``n`` rows: ``BYTES`` for text
categories, an integer type for integer categories, a number type for numeric features. Nullable features may be
left out (all missing) or hold nulls. Outputs are the task's (:func:`output_tensors`): ``probability`` (FP64) and
``label`` (BOOL) for a binary model; ``label`` (BYTES, the most probable class) and ``probabilities`` (FP64,
``[n, classes]``) for a multiclass one; one FP64 tensor named as the target for a regression. Errors follow the
protocol: a 4xx status with ``{"error": "..."}``. The messages and the binary tensor data extension are
:mod:`serving.v2_protocol`.
"""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response, params

from serving.deps import ServiceDep
from serving.schemas import JsonObject
from serving.service import Predicted, RequestContext, Service, ServiceError
from serving.v2_protocol import (
    INTEGER_TYPES,
    NUMBER_TYPES,
    Datatype,
    InferRequest,
    InferResponse,
    InputTensor,
    MetadataTensor,
    ModelMetadataResponse,
    OutputValues,
    ServerMetadataResponse,
    V2Error,
    flatten,
    infer_response,
    parse_infer,
)
from tabloop import __version__
from tabloop.runtime.contract import FeatureSpec, TargetSpec


def datatype_of(spec: FeatureSpec) -> Datatype:
    """The tensor datatype a feature is sent as."""
    if spec.kind == "categorical":
        return "BYTES" if spec.dtype == "string" else "INT64"
    return "FP64"


def accepts(spec: FeatureSpec, datatype: str) -> bool:
    """Whether a tensor of ``datatype`` can carry the feature."""
    if spec.kind == "categorical":
        return datatype == "BYTES" if spec.dtype == "string" else datatype in INTEGER_TYPES
    return datatype in NUMBER_TYPES


def tensors_to_rows(request: InferRequest, service: Service) -> list[JsonObject]:
    """One record per row from the request's tensors; a V2Error naming the first problem otherwise."""
    features = service.store.expected_contract.features if service.store.expected_contract else {}
    tensors = named_tensors(request, features)
    columns = {name: tensor_values(name, tensor, features[name]) for name, tensor in tensors.items()}
    n = batch_size({name: tensor.shape[0] for name, tensor in tensors.items()}, service.settings.max_batch)
    for name in features:
        columns.setdefault(name, [None] * n)
    return [{name: columns[name][i] for name in features} for i in range(n)]


def named_tensors(request: InferRequest, features: dict[str, FeatureSpec]) -> dict[str, InputTensor]:
    """The request's inputs by name; a V2Error for an input given twice or unknown, or a required one missing."""
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
    return tensors


def tensor_values(name: str, tensor: InputTensor, spec: FeatureSpec) -> list[Any]:
    """The flat values of one input; a V2Error if its datatype cannot carry the feature or its shape is wrong."""
    if not accepts(spec, tensor.datatype):
        raise V2Error(400, "invalid_input", f"input '{name}' has datatype {tensor.datatype}; send {datatype_of(spec)}")
    if len(tensor.shape) == 2 and tensor.shape[1] != 1:
        raise V2Error(400, "invalid_input", f"input '{name}' must have shape [n] or [n, 1], not {tensor.shape}")
    values = flatten(tensor.data or [])
    if len(values) != math.prod(tensor.shape):
        raise V2Error(
            400,
            "invalid_input",
            f"input '{name}' has shape {tensor.shape} ({math.prod(tensor.shape)} values) but {len(values)} data",
        )
    return values


def batch_size(sizes: dict[str, int], max_batch: int) -> int:
    """The one batch size all inputs agree on; a V2Error if they disagree, or it is empty or over ``max_batch``."""
    batch = set(sizes.values())
    if len(batch) != 1:
        raise V2Error(400, "invalid_input", f"inputs disagree on the batch size: {sizes}")
    n = batch.pop()
    if n == 0:
        raise V2Error(400, "invalid_input", "the batch is empty")
    if n > max_batch:
        raise V2Error(400, "batch_too_large", f"{n} rows; at most {max_batch}")
    return n


def build_v2_router(secured: Sequence[params.Depends]) -> APIRouter:
    """The protocol's routes for the served model."""
    router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])

    @router.get("", summary="Server metadata")
    async def server() -> ServerMetadataResponse:
        return ServerMetadataResponse(name="tabloop", version=__version__, extensions=["binary_tensor_data"])

    @router.get("/health/live", summary="Server liveness")
    async def live() -> dict[str, bool]:
        return {"live": True}

    @router.get("/health/ready", summary="Server readiness")
    async def ready(service: ServiceDep) -> Response:
        ok = service.store.current is not None
        return Response(orjson.dumps({"ready": ok}), status_code=200 if ok else 503, media_type="application/json")

    @router.get("/models/{name}", summary="Model metadata")
    async def metadata(name: str, service: ServiceDep) -> ModelMetadataResponse:
        check_name(service, name)
        return model_metadata(service, name)

    @router.get("/models/{name}/ready", summary="Model readiness")
    async def model_ready(name: str, service: ServiceDep) -> Response:
        check_name(service, name)
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
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}}},
            }
        },
    )
    async def infer(name: str, request: Request, service: ServiceDep) -> Response:
        check_name(service, name)
        return await run_infer(service, name, request)

    return router


def check_name(service: Service, name: str) -> None:
    """Nothing if ``name`` is the served model's; a 404 naming the model served otherwise."""
    if name != service.store.name:
        raise V2Error(404, "unknown_model", f"unknown model '{name}'; this server serves '{service.store.name}'")


def model_metadata(service: Service, name: str) -> ModelMetadataResponse:
    """The model's metadata: its versions and its input and output tensors."""
    served = service.store.current
    features = service.store.expected_contract.features if service.store.expected_contract else {}
    return ModelMetadataResponse(
        name=name,
        versions=[served.version] if served else [],
        platform="tabloop",
        inputs=[MetadataTensor(name=f, datatype=datatype_of(s), shape=[-1]) for f, s in features.items()],
        outputs=[
            MetadataTensor(name=name, datatype=datatype, shape=shape)
            for name, (datatype, shape) in output_tensors(service.contract.target).items()
        ],
    )


def output_tensors(target: TargetSpec) -> dict[str, tuple[Datatype, list[int]]]:
    """The task's outputs, by name: datatype and shape (-1: the batch)."""
    if target.task == "binary":
        return {"probability": ("FP64", [-1]), "label": ("BOOL", [-1])}
    if target.classes is not None:
        return {"label": ("BYTES", [-1]), "probabilities": ("FP64", [-1, len(target.classes)])}
    return {target.name: ("FP64", [-1])}


def output_values(done: Predicted, target: TargetSpec, wanted: list[str]) -> dict[str, OutputValues]:
    """The ``wanted`` outputs of an answer, in the order asked."""
    answers, n = done.answers, len(done.ids)
    arrays: dict[str, Any] = {
        "probability": answers.probability,
        "label": answers.label if target.task == "binary" else answers.predicted_class,
        "probabilities": answers.probabilities,
        target.name: answers.value,
    }
    found = {}
    for name in wanted:
        datatype, shape = output_tensors(target)[name]
        values = arrays[name]
        if isinstance(values, np.ndarray) and datatype == "FP64":
            values = values.astype("<f8", copy=False)
        found[name] = OutputValues(datatype, [n, *shape[1:]], values)
    return found


async def run_infer(service: Service, name: str, request: Request) -> Response:
    """The answer to an inference request; every error in the protocol's format."""
    parsed = parse_infer(await request.body(), request.headers)
    target = service.contract.target
    wanted = wanted_outputs(parsed, target)
    try:
        rows = service.validate_rows(tensors_to_rows(parsed, service), prefix="inputs")
        context = RequestContext.from_headers(request.headers)
        done = await service.predict("/v2/models/{name}/infer", service.columns(rows), len(rows), context)
    except V2Error:
        raise
    except ServiceError as e:
        raise V2Error(e.status, e.code, e.message, e.details) from e
    return infer_response(name, parsed, done, output_values(done, target, wanted))


def wanted_outputs(parsed: InferRequest, target: TargetSpec) -> list[str]:
    """The outputs the request asks for (all of them if it names none); a V2Error for an unknown one."""
    known = list(output_tensors(target))
    wanted = [o.name for o in parsed.outputs] if parsed.outputs else known
    unknown = [o for o in wanted if o not in known]
    if unknown:
        raise V2Error(400, "invalid_output", f"unknown output(s) {unknown}; outputs are: {', '.join(known)}")
    return wanted
