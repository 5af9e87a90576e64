"""The service's routes, one module per protocol: ``predict`` (``POST /predict``), ``mlflow_scoring``
(``POST /invocations``), ``v2`` (the Open Inference Protocol), ``feedback`` (``POST /feedback``) and ``operations``
(health, model, reload, metrics); ``common`` holds what they share.

No ``from __future__ import annotations`` in these modules: route signatures use the models generated from the
contract at start-up, which FastAPI must see as types, not as strings.
"""

from collections.abc import Sequence

from fastapi import APIRouter, params

from serving.routes.feedback import add_feedback_route
from serving.routes.mlflow_scoring import add_invocations_route
from serving.routes.predict import add_predict_route
from serving.service import Service


def build_router(service: Service, secured: Sequence[params.Depends]) -> APIRouter:
    """The prediction and feedback routes, typed by the service's contract-shaped models and limits.

    The handlers get the service itself from ``current_service`` on each request, so a test can replace it.
    """
    router = APIRouter()
    add_predict_route(router, service.contract, service.models, service.settings.max_batch, secured)
    add_invocations_route(router, service.models, secured)
    add_feedback_route(router, service.models, service.settings.max_batch, secured)
    return router
