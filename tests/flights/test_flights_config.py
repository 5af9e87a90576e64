"""The flights example's configuration: its tables, its split and its contract."""

from __future__ import annotations

import datetime as dt

import pytest

from tabloop.config import DataConfig, TimeSplit

pytestmark = pytest.mark.adapter("flights")


def test_repository_config_loads_with_expected_contract(real_config: DataConfig) -> None:
    assert set(real_config.tables) == {"flights", "weather", "planes", "airports"}
    assert isinstance(real_config.split, TimeSplit)
    assert real_config.split.train.start == dt.date(2013, 1, 1)
    assert real_config.split.test.end == dt.date(2013, 12, 31)
    assert real_config.label.threshold == 15
    assert real_config.adapter == "flights"
    assert real_config.contract.features["origin"].values == ["EWR", "JFK", "LGA"]
    assert real_config.contract.features["dep_hour"].period == 24
    assert "month" not in real_config.contract.features  # a raw month number would not generalise to Nov-Dec
