"""The models of the service's answers stay in step with the records they are built from."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from serving.log import LogStatus
from serving.schemas import LogReadiness, Readiness, ServedLineage, row_model
from tabloop.runtime.contract import FeatureContract, entity_words
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


def test_numbers_are_taken_as_json_numbers_and_whole_ones_as_whole() -> None:
    contract = FeatureContract.model_validate(
        {
            "entity": "LoanApplication",
            "features": {
                "funded_amnt": {"kind": "numeric", "dtype": "int64", "min": 0},
                "rate": {"kind": "numeric", "dtype": "float32", "nullable": True},
            },
        }
    )
    row = TypeAdapter(row_model(contract))
    assert row.validate_json('{"funded_amnt": 15654, "rate": 0.1}').funded_amnt == 15654
    assert row.validate_json('{"funded_amnt": 15654.0, "rate": 3}').rate == 3.0  # JSON Schema's integer; a number
    for bad, problem in (
        ('{"funded_amnt": 15654.5, "rate": 0.1}', "whole number"),
        ('{"funded_amnt": true, "rate": 0.1}', "valid number"),
        ('{"funded_amnt": "15654", "rate": 0.1}', "valid number"),
        ('{"funded_amnt": -1, "rate": 0.1}', "greater than or equal to 0"),
        ('{"funded_amnt": 1, "rate": "0.1"}', "valid number"),
    ):
        with pytest.raises(ValidationError, match=problem):
            row.validate_json(bad)
    schema = row.json_schema()["properties"]
    assert (schema["funded_amnt"]["type"], schema["funded_amnt"]["minimum"]) == ("integer", 0)
    assert schema["rate"]["anyOf"][0]["type"] == "number"


def test_the_entity_reads_as_words_in_the_singular_and_the_plural() -> None:
    assert [entity_words(e) for e in ("Loan", "LoanApplication", "Row")] == ["loan", "loan application", "row"]
    plural = [entity_words(e, many=True) for e in ("Loan", "Company", "Box", "Status", "Day", "CreditCard")]
    assert plural == ["loans", "companies", "boxes", "statuses", "days", "credit cards"]
