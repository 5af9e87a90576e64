"""The Open Inference Protocol v2's messages and its binary tensor data extension (the codec), apart from the routes.

Tensors travel as JSON or with the binary tensor data extension (what ``tritonclient.http`` sends by default): the
``Inference-Header-Content-Length`` header says how many bytes of the body are the JSON request; the rest holds, in
input order, the raw little-endian data of each input that declares ``parameters.binary_data_size`` (BYTES elements
as a 4-byte length and the bytes). Outputs come back the same way when the request asks for it
(``parameters.binary_data_output``, or an output's ``parameters.binary_data``).
"""

import math
import struct
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import Response
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import Headers

from serving.schemas import JsonObject
from serving.service import Predicted, ServiceError, validation_details

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


def flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    for item in data:
        if isinstance(item, list):
            flat.extend(flatten(item))
        else:
            flat.append(item)
    return flat


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


@dataclass(frozen=True)
class OutputValues:
    """One output of an answer: its datatype and shape, and its values flat in row order."""

    datatype: Datatype
    shape: list[int]
    values: npt.NDArray[Any] | list[str]

    def data(self) -> list[Any]:
        """The values as JSON data."""
        return self.values if isinstance(self.values, list) else self.values.tolist()

    def raw(self) -> bytes:
        """The values as binary tensor data: little-endian numbers, or BYTES elements each after its length."""
        if isinstance(self.values, list):
            encoded = [v.encode() for v in self.values]
            return b"".join(struct.pack("<I", len(e)) + e for e in encoded)
        return self.values.tobytes()


def infer_response(name: str, parsed: InferRequest, done: Predicted, outputs: dict[str, OutputValues]) -> Response:
    """The ``outputs`` asked for, each as JSON data or as binary data after the JSON, as the request asked."""
    all_binary = bool((parsed.parameters or {}).get("binary_data_output", False))
    requested = {o.name: (o.parameters or {}).get("binary_data", all_binary) for o in parsed.outputs or []}
    tensors, blobs = [], []
    for output, values in outputs.items():
        tensor: dict[str, Any] = {"name": output, "datatype": values.datatype, "shape": values.shape}
        if requested.get(output, all_binary):
            blobs.append(values.raw())
            tensor["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            tensor["data"] = values.data()
        tensors.append(tensor)
    answer = {"model_name": name, "model_version": done.model_version, "id": parsed.id or done.request_id}
    body = orjson.dumps({**answer, "outputs": tensors})
    if not blobs:
        return Response(body, media_type="application/json")
    return Response(
        body + b"".join(blobs),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(body))},
    )
