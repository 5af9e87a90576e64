"""A drift window's numbers that the contract no longer enforces: categories never trained on, numbers outside
the range the model learned from. Accepted by the service, they are counted here and named in the verdict."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from monitoring.gate import GateConfig, describe, judge
from monitoring.snapshots import RunInfo, drift_snapshot, drift_summary
from tabloop.runtime.contract import FeatureContract

CONTRACT = FeatureContract.model_validate(
    {
        "features": {
            "amount": {"kind": "numeric", "dtype": "float64", "min": 0},
            "state": {"kind": "categorical", "dtype": "string"},
        }
    }
)
RUN = RunInfo(tags=[], metadata={}, timestamp=dt.datetime(2026, 1, 1), name="window")


def frame(amounts: list[float], states: list[str]) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    return pl.DataFrame({"amount": amounts, "state": states, "probability": rng.uniform(size=len(amounts))})


def test_values_outside_the_reference_range_and_vocabulary_are_counted_and_named() -> None:
    reference = frame([1000.0 + 10 * i for i in range(100)], ["CA", "NY"] * 50)  # amounts 1000 to 1990
    current = frame(
        [1500.0] * 16 + [5.0, 2500.0, 40000.0, None],  # type: ignore[list-item]
        ["CA"] * 15 + ["IA"] * 5,
    )
    snapshot = drift_snapshot(
        current, reference, contract=CONTRACT, vocabularies={"state": ["CA", "NY"]}, drift_share=0.5, run=RUN
    )
    summary = drift_summary(
        snapshot, ["amount", "state"], task="binary", rows=20, labelled=0, compared=20, quality=None
    )
    assert summary.out_of_range == {"amount": 3 / 19}  # of the values present; the missing one is not outside
    assert summary.oov_rate == {"state": 0.25}
    text = describe(judge("window", summary, GateConfig()))
    assert "Outside the reference range (accepted, never learned from): amount 15.8%." in text
    assert "Out-of-vocabulary rates: state 25.0%." in text


def test_a_window_inside_the_range_writes_no_empty_count() -> None:
    reference = frame([float(i) for i in range(50)], ["CA"] * 50)
    snapshot = drift_snapshot(
        reference, reference, contract=CONTRACT, vocabularies={"state": ["CA"]}, drift_share=0.5, run=RUN
    )
    summary = drift_summary(
        snapshot, ["amount", "state"], task="binary", rows=50, labelled=0, compared=50, quality=None
    )
    assert summary.out_of_range == {"amount": 0.0}
    assert "out_of_range" in summary.model_dump()  # measured, and zero
    assert "Outside the reference range" not in describe(judge("window", summary, GateConfig()))
