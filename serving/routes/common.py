"""What the route families share: the error answers, the two shapes of a body, the context headers, examples."""

from typing import Any

from fastapi import Request
from pydantic import JsonValue, ValidationError

from serving.schemas import (
    ErrorResponse,
    JsonObject,
)
from serving.service import error_path, require_json

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


CONTEXT_HEADERS: list[JsonValue] = [
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


def json_body_openapi(schema: JsonObject, examples: JsonObject) -> JsonObject:
    """The ``openapi_extra`` of a route that reads its JSON body itself: the context headers and the body."""
    return {
        "parameters": CONTEXT_HEADERS,
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "examples": examples}},
        },
    }


async def json_body(request: Request) -> None:
    """A 415 unless the request declares a JSON body."""
    require_json(request.headers)


def row_example(row: type) -> JsonObject:
    """The example of the generated row model's JSON schema, if any."""
    extra = row.model_config.get("json_schema_extra") or {}  # type: ignore[attr-defined]
    examples = extra.get("examples") if isinstance(extra, dict) else None
    return dict(examples[0]) if examples else {}
