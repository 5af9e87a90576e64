"""The routes get the service and the API-key check as dependencies, which a test replaces with
``app.dependency_overrides``; those on the prediction routes never cost a thread-pool hop."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import SecretStr

from helpers import MODEL_NAME as MODEL
from serving.app import create_app
from serving.deps import current_service, guarded, require_api_key
from serving.routes import build_router
from serving.routes.operations import build_ops_router
from serving.routes.v2 import build_v2_router
from serving.service import Service
from serving.settings import ServeSettings

Rows = list[dict[str, Any]]
KEY = "Zq4tV9xLr2Wm8KpB3nYc6HsJ1dGf7TaE"
OTHER_KEY = "Hb7Lq2Zx9Wc4Nv6Rt1Ys8Kd3Mf5Pg0Ja"
HOT_ROUTES = ("/predict", "/invocations", "/v2/models/{name}/infer")


@pytest.fixture
def keyed_app(serve_settings: ServeSettings, registry_store: tuple) -> FastAPI:
    return create_app(serve_settings.model_copy(update={"api_key": SecretStr(KEY)}), registry_store[0])


@pytest.fixture
def keyed(keyed_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(keyed_app) as c:
        yield c


def the_service(app: FastAPI) -> Service:
    service: Service = app.state.service
    return service


async def allow_everyone() -> None:
    return None


def test_overriding_the_api_key_check_opens_the_guarded_routes(keyed: TestClient, test_rows: Rows) -> None:
    app: Any = keyed.app
    assert keyed.post("/predict", json=test_rows[0]).status_code == 401
    app.dependency_overrides[require_api_key] = allow_everyone
    assert keyed.post("/predict", json=test_rows[0]).status_code == 200
    assert keyed.post("/invocations", json={"dataframe_records": [test_rows[0]]}).status_code == 200
    assert keyed.get("/model").json()["name"] == MODEL
    app.dependency_overrides.clear()
    assert keyed.post("/predict", json=test_rows[0]).status_code == 401
    assert keyed.get("/model").status_code == 401


def test_the_key_checked_is_the_one_of_the_service_the_dependency_gives(keyed: TestClient, test_rows: Rows) -> None:
    app: Any = keyed.app
    rekeyed = copy.copy(the_service(app))
    rekeyed.settings = rekeyed.settings.model_copy(update={"api_key": SecretStr(OTHER_KEY)})

    async def rekeyed_service() -> Service:
        return rekeyed

    assert keyed.post("/predict", json=test_rows[0], headers={"X-API-Key": KEY}).status_code == 200
    app.dependency_overrides[current_service] = rekeyed_service
    assert keyed.post("/predict", json=test_rows[0], headers={"X-API-Key": KEY}).status_code == 401
    assert keyed.post("/predict", json=test_rows[0], headers={"X-API-Key": OTHER_KEY}).status_code == 200
    assert keyed.get("/model", headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 200
    answer = keyed.post("/admin/reload", headers={"X-API-Key": KEY})
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_every_route_answers_with_the_service_the_dependency_gives(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows
) -> None:
    app = create_app(serve_settings, registry_store[0])
    without_model = copy.copy(the_service(app))
    without_model.store = copy.copy(without_model.store)
    without_model.store.current = None

    async def service_without_model() -> Service:
        return without_model

    with TestClient(app) as c:
        assert c.post("/predict", json=test_rows[0]).status_code == 200
        app.dependency_overrides[current_service] = service_without_model
        refused = c.post("/predict", json=test_rows[0])
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "no_model"
        assert c.post("/invocations", json={"dataframe_records": [test_rows[0]]}).status_code == 503
        assert c.get("/model").status_code == 503
        assert c.get("/health/ready").json()["model"] is None
        assert c.get("/v2/health/ready").status_code == 503
        assert c.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": False}
        assert c.get("/health/live").status_code == 200
        app.dependency_overrides.clear()
        assert c.post("/predict", json=test_rows[0]).status_code == 200
        assert c.get("/v2/health/ready").status_code == 200


def dependencies_of(dependant: Dependant) -> list[Any]:
    """Every dependency below ``dependant``, depth first."""
    return [call for sub in dependant.dependencies for call in (sub.call, *dependencies_of(sub))]


def runs_on_the_loop(call: Any) -> bool:
    """Whether FastAPI awaits ``call`` (a coroutine function, or an object with one as ``__call__``)."""
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_no_route_depends_on_anything_that_runs_in_a_thread(keyed_app: FastAPI) -> None:
    service = the_service(keyed_app)
    secured = guarded(service.settings)  # the routers as create_app builds them
    routers = [build_router(service, secured), build_ops_router(secured), build_v2_router(secured)]
    routes = {route.path: route for router in routers for route in router.routes if isinstance(route, APIRoute)}
    for path in HOT_ROUTES:
        calls = dependencies_of(routes[path].dependant)
        assert current_service in calls, path
        assert require_api_key in calls, path
    in_threads = {
        path: [getattr(call, "__name__", repr(call)) for call in dependencies_of(route.dependant)]
        for path, route in routes.items()
        if not all(runs_on_the_loop(call) for call in dependencies_of(route.dependant))
    }
    assert in_threads == {}
