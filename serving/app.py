"""The FastAPI application: ``create_app()`` builds it from settings; ``python -m serving`` runs it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.resources
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.deps import guarded
from serving.log import PredictionLog
from serving.metrics import Metrics, MetricsMiddleware, value_buckets
from serving.model_store import ModelStore
from serving.routes import build_router
from serving.routes.common import without_tags
from serving.routes.operations import build_ops_router, update_gauges
from serving.routes.v2 import build_v2_router
from serving.schemas import JsonObject, api_models, example_row
from serving.service import Service, ServiceError, error_path
from serving.settings import ServeSettings
from serving.v2_protocol import InferRequest, V2Error
from tabloop import __version__
from tabloop.commands.boundary import entry_point
from tabloop.config import load_data_config, load_registry_config
from tabloop.errors import TabloopError
from tabloop.runtime.contract import FeatureContract
from tabloop.settings import Settings, apply_process_defaults, from_environment

logger = logging.getLogger(__name__)
DOCS_ASSETS = "/docs-assets"
REDOC_BADGE = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
GAUGES_INTERVAL_S = 1.0

Lifespan = Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]

HOW_TO = """
Predictions come from the champion model of the registry. Send examples to `POST /predict` (one object or a
list), or use the MLflow scoring protocol (`POST /invocations`) or the Open Inference Protocol v2
(`POST /v2/models/{name}/infer`). Report outcomes to `POST /feedback`. Every error is JSON:
`{"error": {"code", "message", "details": [{"path", "reason"}]}}`.
"""


def create_app(settings: ServeSettings | None = None, process: Settings | None = None) -> FastAPI:
    """The service, with its model loaded (or not yet, in which case prediction routes answer 503)."""
    settings = settings or ServeSettings()
    process = process or Settings()
    apply_process_defaults(process)  # an unreachable registry must fail in seconds, not minutes of retries
    store, contract, example = load_store(settings, process)
    scaling = store.current.predictor.bundle.scaling if store.current is not None else None
    metrics = Metrics(
        target=contract.target,
        value_buckets=value_buckets(scaling),
        multiprocess=settings.workers > 1,
        directory=settings.metrics_dir,
    )
    log = open_log(settings)
    metrics.watch_queue(lambda: log.depth)
    service = Service(settings, store, log, metrics, contract=contract, models=api_models(contract, example))
    app = FastAPI(
        title=contract.title,
        version=__version__,
        description=f"{contract.description}\n{HOW_TO}".strip(),
        lifespan=lifespan_of(settings, store, log, service),
        docs_url=None,  # served below from packaged assets: the default pages load them from a CDN
        redoc_url=None,
    )
    app.state.service = service
    secured = guarded(settings)
    app.include_router(build_router(service, secured))
    app.include_router(build_ops_router(secured))
    app.include_router(build_v2_router(secured))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts every response, 413s included
    add_error_handlers(app)
    add_schemas(app, {contract.entity: service.models.row, "InferRequest": InferRequest})
    add_docs(app)
    return app


def create_worker_app() -> FastAPI:
    """The service of one worker process (``uvicorn.run("serving.app:create_worker_app", factory=True, ...)``),
    from the settings in the environment, with the logging of ``python -m serving``."""
    with entry_point("serve") as process:
        return create_app(from_environment(ServeSettings), process)


def load_store(settings: ServeSettings, process: Settings) -> tuple[ModelStore, FeatureContract, JsonObject | None]:
    """The model store with its first model loaded if it can be, the contract to serve and an example row.

    Without a model the contract comes from the data config and there is no example.
    """
    store = ModelStore(settings, process, load_registry_config(settings.registry_config))
    store.load_initial()
    if store.current is not None:
        contract = store.current.contract
        example = example_row(store.current.predictor.bundle.preprocessor)
    else:
        contract, example = load_data_config(settings.contract_config).contract, None
    store.expected_contract = contract
    return store, contract, example


def open_log(settings: ServeSettings) -> PredictionLog:
    """The prediction log, with the batching, flushing and back-pressure limits of the settings."""
    return PredictionLog(
        settings.prediction_log_url,
        settings.journal_dir(),
        batch_size=settings.log_batch_size,
        flush_interval_s=settings.log_flush_interval_s,
        fsync=settings.log_fsync,
        max_lag_rows=settings.log_max_queue,
        loader_nice=settings.log_loader_nice,
    )


def lifespan_of(settings: ServeSettings, store: ModelStore, log: PredictionLog, service: Service) -> Lifespan:
    """The app's lifespan: the log's writer, the alias watcher if the settings poll, and with workers the gauges'
    refresher, run while the app does."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Long-lived objects (model, app, modules) leave the collector's sight, and the young generation is
        # collected less often: fewer and shorter pauses under load, i.e. a lower tail latency.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        writer = asyncio.create_task(log.run())
        watcher = asyncio.create_task(store.watch()) if settings.poll_interval_s > 0 else None
        # With workers a scrape reads every worker's gauges, so each keeps its own up to date between scrapes.
        gauges = None
        if settings.workers > 1:
            gauges = asyncio.create_task(_every(GAUGES_INTERVAL_S, update_gauges, service))
        try:
            yield
        finally:
            await _cancel(watcher)
            await _cancel(gauges)
            await log.close()  # writes everything still queued
            await writer  # returns within one flush interval once the log is closed
            service.metrics.close()

    return lifespan


async def _every(seconds: float, function: Callable[[Service], None], service: Service) -> None:
    """Call ``function(service)`` every ``seconds`` until cancelled."""
    while True:
        function(service)
        await asyncio.sleep(seconds)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their scripts and styles served by the service, so the API
    console works on a machine without internet (the assets come with the ``fastapi-offline`` package)."""
    assets = Path(str(importlib.resources.files("fastapi_offline") / "static"))
    # ReDoc's "API docs by Redocly" badge loads its logo from Redocly's CDN, with no option to turn it off: the
    # script is served with the logo pointing at the local favicon, so nothing on these pages leaves the machine.
    redoc_script = (
        (assets / "redoc.standalone.js").read_bytes().replace(REDOC_BADGE, f"{DOCS_ASSETS}/favicon.png".encode())
    )

    @app.get(f"{DOCS_ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_js() -> Response:
        return Response(redoc_script, media_type="text/javascript")

    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


def add_schemas(app: FastAPI, models: dict[str, type[BaseModel]]) -> None:
    """Put models that routes reference by hand (one example, the V2 request) into the OpenAPI document's
    components, with the models they nest (pydantic's ``$defs``, which ReDoc cannot resolve in place)."""

    def openapi() -> JsonObject:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in models.items():
                schema_of = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema_of.pop("$defs", {}))  # nested models become components too
                components[name] = schema_of
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def error_response(status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> JSONResponse:
    """The service's error shape."""
    return JSONResponse({"error": {"code": code, "message": message, "details": details or []}}, status_code=status)


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON with what was wrong and where; never a traceback."""

    @app.exception_handler(V2Error)
    async def v2_error(_: Request, e: V2Error) -> JSONResponse:
        return JSONResponse({"error": e.message, "code": e.code, "details": e.details}, status_code=e.status)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, e: ServiceError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, e.details)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, e: RequestValidationError) -> JSONResponse:
        problems = e.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            reason = next(
                str(p.get("ctx", {}).get("error", p["msg"])) for p in problems if p.get("type") == "json_invalid"
            )
            return error_response(400, "malformed_json", f"the body is not valid JSON: {reason}")
        details = [
            {"path": error_path(without_tags(p["loc"][1:]), str(p["loc"][0])), "reason": p["msg"]} for p in problems
        ]
        return error_response(422, "invalid_request", f"{len(details)} problem(s) in the request", details)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, e: HTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return error_response(e.status_code, codes.get(e.status_code, "http_error"), str(e.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, _error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "the service failed to answer; the error was logged")


class BodyLimitMiddleware:
    """Answers 413 for bodies larger than ``max_bytes``, from the declared length or while reading the stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLargeError:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = orjson.dumps(
            {"error": {"code": "body_too_large", "message": f"the body exceeds {self.max_bytes} bytes", "details": []}}
        )
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _BodyTooLargeError(TabloopError):
    """The body passed the size limit while it was read."""
