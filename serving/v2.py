"""The Open Inference Protocol v2 (KServe / Triton REST): health, metadata and inference on named tensors.

Each contract feature is a 1-D input tensor (shape ``[n]`` or ``[n, 1]``) of ``n`` rows: ``BYTES`` for text
categories, an integer type for integer categories, a number type for numeric features. Nullable features may be
left out (all missing) or hold nulls. Outputs are ``probability`` (FP64) and ``label`` (BOOL). Errors follow the
protocol: a 4xx status with ``{"error": "..."}``.

Tensors travel as JSON or with the binary tensor data extension (what ``tritonclient.http`` sends by default): the
``Inference-Header-Content-Length`` header says how many bytes of the body are the JSON request; the rest holds, in
input order, the raw little-endian data of each input that declares ``parameters.binary_data_size`` (BYTES elements
as a 4-byte length and the bytes). Outputs come back the same way when the request asks for it
(``parameters.binary_data_output``, or an output's ``parameters.binary_data``).
"""

import math
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response, params
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import Headers

from serving.deps import ServiceDep
from serving.schemas import JsonObject
from serving.service import Predicted, RequestContext, Service, ServiceError, validation_details
from tabloop import __version__
from tabloop.runtime.contract import FeatureSpec

INTEGER_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
NUMBER_TYPES = INTEGER_TYPES | {"FP16", "FP32", "FP64"}
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"
]


class V2Error(ServiceError):
    """An error answered in the protocol's format."""


BINARY_HEADER = "inference-header-content-length"
NUMPY_TYPES = {
    "BOOL": "?",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


class InputTensor(BaseModel):
    """One named input tensor: its data in JSON, or ``parameters.binary_data_size`` bytes after the JSON."""

    name: str
    shape: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1, max_length=2)]
    datatype: Datatype
    data: list[Any] | None = None
    parameters: JsonObject | None = None  # the protocol's parameters: any JSON object


class RequestedOutput(BaseModel):
    """An output the client wants back."""

    name: str
    parameters: JsonObject | None = None


class InferRequest(BaseModel):
    """An inference request."""

    id: str | None = None
    parameters: JsonObject | None = None
    inputs: Annotated[list[InputTensor], Field(min_length=1)]
    outputs: list[RequestedOutput] | None = None


class OutputTensor(BaseModel):
    """One named output tensor: its data in JSON, or ``parameters.binary_data_size`` bytes after the JSON."""

    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any] | None = None
    parameters: JsonObject | None = None


class InferResponse(BaseModel):
    """The outputs of an inference request."""

    model_name: str
    model_version: str
    id: str
    outputs: list[OutputTensor]


class ServerMetadataResponse(BaseModel):
    """The server's name, version and the protocol extensions it supports."""

    name: str
    version: str
    extensions: list[str]


class MetadataTensor(BaseModel):
    """One input or output tensor of the model: its name, datatype and shape (-1: any size)."""

    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    """The model's versions, platform, and input and output tensors."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


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


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON request and the binary data after it, as ``Inference-Header-Content-Length`` divides the body."""
    if header_length is None:
        return raw, b""
    if not header_length.strip().isdigit():
        raise V2Error(
            400, "invalid_header", f"Inference-Header-Content-Length must be a byte count, not {header_length[:40]!r}"
        )
    length = int(header_length)
    if length > len(raw):
        raise V2Error(
            400, "invalid_header", f"Inference-Header-Content-Length is {length} but the body has only {len(raw)} bytes"
        )
    return raw[:length], raw[length:]


def attach_binary(request: InferRequest, binary: bytes) -> None:
    """Give each input that declares ``binary_data_size`` its values from ``binary``, in input order."""
    offset = 0
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            if tensor.data is None:
                raise V2Error(400, "invalid_input", f"input '{tensor.name}' has neither data nor binary_data_size")
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise V2Error(400, "invalid_input", f"input '{tensor.name}': binary_data_size must be a byte count")
        if tensor.data is not None:
            raise V2Error(400, "invalid_input", f"input '{tensor.name}' has both data and binary_data_size")
        if offset + size > len(binary):
            raise V2Error(
                400,
                "invalid_input",
                f"input '{tensor.name}' declares {size} bytes of binary data but only {len(binary) - offset} remain",
            )
        tensor.data = decode_tensor(tensor, binary[offset : offset + size])
        offset += size
    if offset != len(binary):
        raise V2Error(400, "invalid_input", f"{len(binary) - offset} bytes of binary data belong to no input")


def decode_tensor(tensor: InputTensor, data: bytes) -> list[Any]:
    """The values of one tensor's binary data; a V2Error if its size does not fit its shape and datatype."""
    count = math.prod(tensor.shape)
    if tensor.datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(data):
            if offset + 4 > len(data):
                raise V2Error(400, "invalid_input", f"input '{tensor.name}': a BYTES element's length is cut off")
            (length,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if offset + length > len(data):
                raise V2Error(400, "invalid_input", f"input '{tensor.name}': a BYTES element runs past its data")
            try:
                values.append(data[offset : offset + length].decode())
            except UnicodeDecodeError as e:
                raise V2Error(400, "invalid_input", f"input '{tensor.name}': an element is not UTF-8 text") from e
            offset += length
        if len(values) != count:
            raise V2Error(
                400, "invalid_input", f"input '{tensor.name}' has shape {tensor.shape} but {len(values)} BYTES elements"
            )
        return values
    dtype = np.dtype(NUMPY_TYPES[tensor.datatype])
    if len(data) != count * dtype.itemsize:
        raise V2Error(
            400,
            "invalid_input",
            f"input '{tensor.name}' has shape {tensor.shape} of {tensor.datatype} ({count * dtype.itemsize} bytes) "
            f"but {len(data)} bytes of binary data",
        )
    values = np.frombuffer(data, dtype=dtype).tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(_flatten(item))
        else:
            flat.append(item)
    return flat


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
    values = _flatten(tensor.data or [])
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


def parse_infer(raw: bytes, headers: Headers) -> InferRequest:
    """The inference request in a body of JSON, or of JSON and binary tensor data."""
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("", "application/json", "application/octet-stream"):
        raise V2Error(415, "unsupported_media_type", f"send application/json or application/octet-stream, not {media}")
    header, binary = split_body(raw, headers.get(BINARY_HEADER))
    try:
        parsed = InferRequest.model_validate_json(header)
    except ValidationError as e:
        details = validation_details(e)
        kind = "malformed_json" if any("json" in d["reason"].lower() for d in details) else "invalid_request"
        raise V2Error(400, kind, "the body is not a valid inference request", details) from e
    attach_binary(parsed, binary)
    return parsed


def infer_response(name: str, parsed: InferRequest, done: Predicted, wanted: list[str]) -> Response:
    """The outputs, each as JSON data or as binary data after the JSON, as the request asked."""
    all_binary = bool((parsed.parameters or {}).get("binary_data_output", False))
    requested = {o.name: (o.parameters or {}).get("binary_data", all_binary) for o in parsed.outputs or []}
    arrays = {"probability": ("FP64", done.probability.astype("<f8")), "label": ("BOOL", done.label)}
    outputs, blobs = [], []
    for output in wanted:
        datatype, values = arrays[output]
        tensor: dict[str, Any] = {"name": output, "datatype": datatype, "shape": [len(values)]}
        if requested.get(output, all_binary):
            blobs.append(values.tobytes())
            tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            tensor["data"] = values.tolist()
        outputs.append(tensor)
    answer = {"model_name": name, "model_version": done.model_version, "id": parsed.id or done.request_id}
    body = orjson.dumps({**answer, "outputs": outputs})
    if not blobs:
        return Response(body, media_type="application/json")
    return Response(
        body + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(body))},
    )


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
            MetadataTensor(name="probability", datatype="FP64", shape=[-1]),
            MetadataTensor(name="label", datatype="BOOL", shape=[-1]),
        ],
    )


async def run_infer(service: Service, name: str, request: Request) -> Response:
    """The answer to an inference request; every error in the protocol's format."""
    parsed = parse_infer(await request.body(), request.headers)
    wanted = wanted_outputs(parsed)
    try:
        rows = service.validate_rows(tensors_to_rows(parsed, service), prefix="inputs")
        context = RequestContext.from_headers(request.headers)
        done = await service.predict("/v2/models/{name}/infer", service.columns(rows), len(rows), context)
    except V2Error:
        raise
    except ServiceError as e:
        raise V2Error(e.status, e.code, e.message, e.details) from e
    return infer_response(name, parsed, done, wanted)


def wanted_outputs(parsed: InferRequest) -> list[str]:
    """The outputs the request asks for (all of them if it names none); a V2Error for an unknown one."""
    wanted = [o.name for o in parsed.outputs] if parsed.outputs else ["probability", "label"]
    unknown = [o for o in wanted if o not in ("probability", "label")]
    if unknown:
        raise V2Error(400, "invalid_output", f"unknown output(s) {unknown}; outputs are: probability, label")
    return wanted
