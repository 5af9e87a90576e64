"""Retraining the flights: how the time split moves with the outcomes of the flights' calendar."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from monitoring.retrain import (
    NothingNewError,
    RetrainError,
    moved_split,
    plan,
    source_end,
)
from tabloop.config import RETRAINED_FILE, DataConfig, load_data_config, retrained_yaml
from tabloop.config.monitor import RetrainConfig

pytestmark = pytest.mark.adapter("flights")

NEW_YORK = "America/New_York"


def test_the_split_moves_to_the_horizon(real_config: DataConfig) -> None:
    config = RetrainConfig(evaluation_days=28, validation_days=28, min_new_days=7)
    moved = plan(config, real_config, dt.date(2013, 12, 31), data_end=dt.date(2013, 12, 31))
    split = moved.moved
    assert (split.test.start, split.test.end) == (dt.date(2013, 12, 4), dt.date(2013, 12, 31))
    assert (split.valid.start, split.valid.end) == (dt.date(2013, 11, 6), dt.date(2013, 12, 3))
    assert (split.train.start, split.train.end) == (real_config.split.train.start, dt.date(2013, 11, 5))
    assert moved.new_days == (dt.date(2013, 11, 5) - real_config.split.train.end).days
    assert moved.name == "retrain-20131231"
    assert "test   2013-11-01 .. 2013-12-31  ->  2013-12-04 .. 2013-12-31" in moved.describe()


def test_outcomes_past_the_source_data_stop_at_its_last_day(real_config: DataConfig) -> None:
    moved = plan(RetrainConfig(), real_config, dt.date(2026, 11, 23), data_end=dt.date(2013, 12, 31))
    assert moved.horizon == moved.moved.test.end == dt.date(2013, 12, 31)


def test_too_few_new_days_is_nothing_new(real_config: DataConfig) -> None:
    config = RetrainConfig(evaluation_days=28, validation_days=28, min_new_days=7)
    # the current training ends on 31 August: outcomes up to 30 October move it by 3 days only
    with pytest.raises(NothingNewError, match="fewer than min_new_days"):
        plan(config, real_config, dt.date(2013, 10, 30), data_end=dt.date(2013, 12, 31))
    with pytest.raises(NothingNewError, match="no day in the prediction log has its outcomes"):
        plan(config, real_config, None, data_end=dt.date(2013, 12, 31))


def test_windows_that_leave_no_training_days_are_refused(real_config: DataConfig) -> None:
    config = RetrainConfig(evaluation_days=200, validation_days=200)
    with pytest.raises(RetrainError, match="would leave no training days"):
        plan(config, real_config, dt.date(2013, 12, 31), data_end=dt.date(2013, 12, 31))


def test_the_moved_split_is_laid_over_the_users_own_from_a_file_of_its_own(
    real_config: DataConfig, tmp_path: Path
) -> None:
    moved = plan(RetrainConfig(), real_config, dt.date(2013, 12, 31), data_end=dt.date(2013, 12, 31)).moved
    written = moved_split(moved)
    assert written["train"] == {"start": "2013-01-01", "end": moved.train.end.isoformat()}
    assert written["test"] == {"start": "2013-12-04", "end": "2013-12-31"}
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(real_config.model_dump(mode="json", exclude_none=True)))
    (tmp_path / RETRAINED_FILE).write_text(retrained_yaml(written))
    assert load_data_config(data).split == moved  # what every stage reads
    (tmp_path / RETRAINED_FILE).write_text(retrained_yaml())
    assert load_data_config(data).split == real_config.split  # nothing retrained: data.yaml's own


def test_the_source_end_is_the_last_labelled_day(stage_outputs: dict[str, Path], tmp_path: Path) -> None:
    assert source_end(stage_outputs["features_metrics"]) == dt.date(2013, 12, 31)
    with pytest.raises(RetrainError, match="run `make train` first"):
        source_end(tmp_path / "features.json")
