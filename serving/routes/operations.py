"""Health, the model being served, reloading it, and Prometheus metrics."""

import asyncio
from collections.abc import Sequence

from fastapi import APIRouter, Response, params
from prometheus_client import CONTENT_TYPE_LATEST

from serving.deps import ServiceDep
from serving.model_store import ServedModel
from serving.routes.common import ERRORS
from serving.schemas import (
    LogReadiness,
    ModelInfo,
    Readiness,
    ReloadResult,
    ServedLineage,
    ServedModelRef,
    Unregistered,
)
from serving.service import Service, ServiceError
from tabloop.errors import redact


def build_ops_router(secured: Sequence[params.Depends]) -> APIRouter:
    """Health, model information, reload and metrics."""
    router = APIRouter()

    @router.get("/health/live", tags=["health"], summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @router.get(
        "/health/ready",
        responses={503: {"model": Readiness, "description": "No model is loaded, or the prediction log refuses."}},
        tags=["health"],
        summary="A model is loaded and the service can predict",
    )
    async def ready(service: ServiceDep, response: Response) -> Readiness:
        details = readiness(service)
        response.status_code = 200 if details.status == "ready" else 503
        return details

    @router.get("/model", dependencies=secured, responses=ERRORS, tags=["model"], summary="The model being served")
    async def model(service: ServiceDep) -> ModelInfo:
        return model_info(service.served())

    @router.post("/admin/reload", dependencies=secured, responses=ERRORS, tags=["model"], summary="Check the alias now")
    async def reload(service: ServiceDep) -> ReloadResult:
        return await reload_model(service)

    @router.get("/metrics", tags=["health"], summary="Prometheus metrics")
    async def metrics(service: ServiceDep) -> Response:
        return Response(metrics_text(service), media_type=CONTENT_TYPE_LATEST)

    return router


def readiness(service: Service) -> Readiness:
    """Whether the service can predict (a model is loaded and the log records), and the details of why."""
    served = service.store.current
    status = service.store.status
    log = service.log.status()
    ok = served is not None and log["status"] != "refusing"
    return Readiness(
        status="ready" if ok else "not ready",
        model=None
        if served is None
        else ServedModelRef(name=served.name, version=served.version, alias=served.alias, source=served.source),
        registry=status.registry,
        last_check=status.last_check,
        refused_versions=status.refused,
        prediction_log=LogReadiness(**log),
        note="serving the cached model: the registry could not be reached"
        if served is not None and served.source == "cache"
        else None,
    )


def model_info(served: ServedModel) -> ModelInfo:
    """What /model says about the served model: where it came from, its threshold, lineage, metrics and contract."""
    lineage = served.lineage
    return ModelInfo(
        name=served.name,
        version=served.version,
        alias=served.alias,
        source=served.source,
        loaded_at=served.loaded_at,
        threshold=served.predictor.bundle.threshold,
        lineage=ServedLineage.model_validate(lineage, from_attributes=True) if lineage else Unregistered(),
        metrics=lineage.metrics if lineage else Unregistered(),
        contract=served.contract,
    )


async def reload_model(service: Service) -> ReloadResult:
    """Whether checking the registry alias changed the served model, and the version served now."""
    try:
        changed = await asyncio.to_thread(service.store.check)
    except Exception as e:  # any failure of the registry client is a 503 for the caller, not a 500
        raise ServiceError(503, "registry_unavailable", f"the registry cannot be reached: {redact(str(e))}") from e
    served = service.store.current
    return ReloadResult(changed=changed, version=served.version if served else None)


def metrics_text(service: Service) -> bytes:
    """The Prometheus metrics, with the served model and the count of refused versions brought up to date."""
    update_gauges(service)
    return service.metrics.exposition()


def update_gauges(service: Service) -> None:
    """Set the gauges read from the service's state: the served model, the refused versions, the log's queue."""
    served = service.store.current
    if served is not None:
        service.metrics.serving(served.name, served.version, served.source)
    service.metrics.refused.set(len(service.store.status.refused))
    service.metrics.sample()
