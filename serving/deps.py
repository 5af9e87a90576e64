"""What the routes get through FastAPI's dependencies: the running service, and the API-key check.

A test replaces either with ``app.dependency_overrides[current_service]`` (or ``[require_api_key]``). Both are
``async def``: FastAPI runs a plain ``def`` dependency in a thread pool, a cost on every prediction.

No ``from __future__ import annotations`` here: FastAPI reads the ``Annotated`` dependencies from the signatures.
"""

import hmac
from typing import Annotated

from fastapi import Depends, Request, params
from fastapi.security import APIKeyHeader

from serving.service import Service, ServiceError
from serving.settings import ServeSettings

API_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The service's API key.")


async def current_service(request: Request) -> Service:
    """The service of the app answering the request (``create_app`` puts it in the app's state)."""
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(current_service)]


async def require_api_key(
    request: Request, service: ServiceDep, supplied: Annotated[str | None, Depends(API_KEY_HEADER)]
) -> None:
    """Nothing if the request carries the service's API key (in X-API-Key, or as a bearer token); a 401 otherwise."""
    key = service.settings.api_key
    if key is None:
        return
    if supplied is None:
        authorization = request.headers.get("authorization", "")
        supplied = authorization[7:] if authorization.lower().startswith("bearer ") else None
    if supplied is None or not hmac.compare_digest(supplied.encode(), key.get_secret_value().encode()):
        raise ServiceError(401, "unauthorized", "a valid API key is required in the X-API-Key header")


def guarded(settings: ServeSettings) -> list[params.Depends]:
    """The dependencies of a route that needs the API key: its check if the settings set a key, else none (so the
    OpenAPI document asks for a key only when one is needed)."""
    return [Depends(require_api_key)] if settings.api_key is not None else []
