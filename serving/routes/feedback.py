"""``POST /feedback``: the observed outcomes of earlier predictions, joined to them by prediction id."""

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, params
from pydantic import Discriminator, Field, Tag

from serving.deps import ServiceDep
from serving.log import LogUnavailableError
from serving.log.lines import FeedbackRecord, now
from serving.routes.common import ERRORS, MANY, ONE, json_body, one_or_many
from serving.schemas import (
    ApiModels,
    ErrorResponse,
    FeedbackResponse,
)
from serving.service import Service, ServiceError
from tabloop.runtime.contract import TargetSpec

LOADER_ROUNDS = 10  # flush intervals a feedback waits, with workers, for ids another worker answered


def add_feedback_route(router: APIRouter, models: ApiModels, max_batch: int, secured: Sequence[params.Depends]) -> None:
    """``POST /feedback``: the observed outcome of one earlier prediction or of a list of them."""
    item = models.feedback
    limit = Field(min_length=1, max_length=max_batch)
    feedback_body = Annotated[
        Annotated[item, Tag(ONE)] | Annotated[Annotated[list[item], limit], Tag(MANY)],  # type: ignore[valid-type]
        Discriminator(one_or_many),
    ]

    @router.post(
        "/feedback",
        response_model=FeedbackResponse,
        dependencies=[*secured, Depends(json_body)],
        responses={404: {"model": ErrorResponse, "description": "No such prediction."}, **ERRORS},
        tags=["predictions"],
        summary="Record the observed outcome of earlier predictions (recording it again replaces it)",
    )
    async def feedback(body: Annotated[feedback_body, Body()], service: ServiceDep) -> FeedbackResponse:
        return await record_feedback(service, body)


async def record_feedback(service: Service, body: Any) -> FeedbackResponse:
    """How many outcomes were recorded; a 404 (and nothing recorded) if any id names no prediction."""
    items = body if isinstance(body, list) else [body]
    await require_known(service, [item.id for item in items], listed=isinstance(body, list))
    received = now()
    service.check_log()
    try:
        service.log.record_feedback(observed(service.contract.target, i, received) for i in items)
    except LogUnavailableError as e:
        raise ServiceError(503, "log_unavailable", f"the outcomes cannot be recorded: {e}") from e
    return FeedbackResponse(recorded=len(items))


def observed(target: TargetSpec, item: Any, received: dt.datetime) -> FeedbackRecord:
    """One feedback item as the log records it: the class in ``actual`` (binary) or ``actual_class``
    (multiclass), the number in ``outcome`` (a regression's value, or the number behind a binary target)."""
    value = getattr(item, target.name)
    record: FeedbackRecord = {
        "prediction_id": item.id,
        "actual": None,
        "actual_class": None,
        "outcome": None,
        "received_at": received,
    }
    if target.task == "binary":
        record["actual"], record["outcome"] = value, item.outcome
    elif target.task == "multiclass":
        record["actual_class"] = value
    else:
        record["outcome"] = value
    return record


async def require_known(service: Service, ids: list[str], listed: bool) -> None:
    """Nothing if every id names a logged prediction; a 404 naming each one that does not otherwise."""
    try:
        known = await asyncio.to_thread(service.log.known, ids)
        # With workers, a prediction answered by another one reaches the database within its loader's next rounds.
        for _ in range(LOADER_ROUNDS if service.settings.workers > 1 else 0):
            if known.issuperset(ids):
                break
            await asyncio.sleep(service.settings.log_flush_interval_s)
            known = await asyncio.to_thread(service.log.known, ids)
    except LogUnavailableError as e:
        raise ServiceError(503, "log_unavailable", f"the outcomes cannot be recorded now: {e}") from e
    unknown = [(k, i) for k, i in enumerate(ids) if i not in known]
    if unknown:
        raise ServiceError(
            404,
            "unknown_prediction",
            f"{len(unknown)} of {len(ids)} ids name no prediction; nothing was recorded",
            [{"path": f"body[{k}].id" if listed else "body.id", "reason": f"no prediction {i!r}"} for k, i in unknown],
        )
