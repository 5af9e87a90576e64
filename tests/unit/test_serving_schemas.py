"""The models of the service's answers stay in step with the records they are built from."""

from __future__ import annotations

from serving.log import LogStatus
from serving.schemas import LogReadiness, Readiness, ServedLineage
from tabloop.runtime.lineage import Lineage


def test_served_lineage_is_the_registered_lineage_without_its_metrics() -> None:
    """/model shows the metrics apart: a field added to the lineage must show in its answer too."""
    assert list(ServedLineage.model_fields) == [name for name in Lineage.model_fields if name != "metrics"]
    for name, field in ServedLineage.model_fields.items():
        assert field.annotation == Lineage.model_fields[name].annotation, name


def test_readiness_shows_every_key_of_the_log_status() -> None:
    assert set(LogReadiness.model_fields) == set(LogStatus.__annotations__)


def test_readiness_leaves_out_what_does_not_apply_rather_than_answering_null() -> None:
    log = LogReadiness(status="ok", queue=0, max_queue=10)
    ready = Readiness(
        status="not ready", model=None, registry="reachable", last_check=None, refused_versions={}, prediction_log=log
    )
    assert ready.model_dump(mode="json") == {
        "status": "not ready",
        "model": None,
        "registry": "reachable",
        "last_check": None,
        "refused_versions": {},
        "prediction_log": {"status": "ok", "queue": 0, "max_queue": 10},
    }
    refusing = LogReadiness(status="refusing", queue=10, max_queue=10, reason="the disk is full")
    assert refusing.model_dump(mode="json")["reason"] == "the disk is full"
