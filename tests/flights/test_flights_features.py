"""The flights adapter: joins that lose or duplicate nothing, the weather and aircraft at the right keys, the
calendar and holiday features, and the temporal split's boundaries against later months."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from helpers import read_splits, rebuild
from tabloop.config import DataConfig
from tabloop.datasets.flights.calendar import days_to_nearest, federal_holidays
from tabloop.errors import FeatureError
from tabloop.io import read_json
from tabloop.records import ID, TIME
from tabloop.runtime.contract import FeatureSpec
from tabloop.runtime.preprocessing import load_preprocessor

pytestmark = pytest.mark.adapter("flights")


def flight_ids(flights: pl.DataFrame) -> pl.Series:
    """The flights adapter's ids: departure date, origin, carrier and flight number."""
    return flights.select(
        pl.format(
            "{}-{}-{}{}",
            pl.date("year", "month", "day").dt.strftime("%Y%m%d"),
            "origin",
            "carrier",
            pl.col("flight").cast(pl.String).str.zfill(4),
        )
    ).to_series()


@pytest.fixture
def validated_copy(stage_outputs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(stage_outputs["validated"], tmp_path / "validated"))


def test_join_cardinality_no_flight_lost_or_duplicated(stage_outputs: dict[str, Path]) -> None:
    flights = pl.read_parquet(stage_outputs["validated"] / "flights.parquet")
    labelled = flights.filter(pl.col("arr_delay").is_not_null())
    features = pl.concat(read_splits(stage_outputs["features"]).values())
    assert features.height == labelled.height
    assert features[ID].n_unique() == features.height
    assert set(features[ID]) == set(flight_ids(labelled))
    metrics = read_json(stage_outputs["features_metrics"])
    reasons = metrics["adapter"]["no_arrival_delay"]
    assert (
        reasons["cancelled"] + reasons["diverted"]
        == flights.height - labelled.height
        == metrics["examples"]["unlabelled"]
    )


def test_weather_and_aircraft_joined_at_the_right_keys(stage_outputs: dict[str, Path]) -> None:
    validated = stage_outputs["validated"]
    weather = pl.read_parquet(validated / "weather.parquet")
    planes = pl.read_parquet(validated / "planes.parquet")
    flights = pl.read_parquet(validated / "flights.parquet")
    features = pl.concat(read_splits(stage_outputs["features"]).values())
    keyed = flights.select(flight_ids(flights).alias(ID), "time_hour", "tailnum")

    expected_temp = features.join(keyed, on=ID).join(
        weather.select("origin", "time_hour", "temp"), on=["origin", "time_hour"], how="left"
    )
    assert expected_temp.height == features.height
    assert expected_temp["temp"].equals(expected_temp["temp_right"], check_names=False, null_equal=True)

    with_tail = features.join(keyed, on=ID).join(
        planes.select("tailnum", "seats", "year"), on="tailnum", how="left", suffix="_plane"
    )
    assert with_tail.height == features.height
    assert with_tail["seats"].equals(with_tail["seats_plane"], check_names=False, null_equal=True)
    known = with_tail.filter(pl.col("year").is_not_null())
    assert (known["aircraft_age"] == (2013 - known["year"]).cast(pl.Float32).clip(lower_bound=0)).all()
    # Flights with no plane record keep the flight and leave the aircraft features missing.
    no_plane = with_tail.filter(pl.col("seats_plane").is_null())
    assert no_plane.height > 0
    assert no_plane["aircraft_age"].null_count() == no_plane.height


def test_derived_calendar_and_schedule_features(stage_outputs: dict[str, Path]) -> None:
    features = pl.concat(read_splits(stage_outputs["features"]).values())
    row = features.row(0, named=True)
    assert row[TIME].date() == dt.date(2013, 1, 1)
    assert row[ID].startswith("20130101-")
    assert row["day_of_week"] == 2  # a Tuesday
    assert row["days_to_holiday"] == 0  # New Year's Day
    assert row["dep_hour"] == pytest.approx(row[TIME].hour + row[TIME].minute / 60)
    assert features["dep_hour"].is_between(0, 24, closed="left").all()
    assert features["arr_hour"].is_between(0, 24, closed="left").all()


def test_holiday_distance() -> None:
    holidays = federal_holidays(dt.date(2013, 1, 1), dt.date(2013, 12, 31))
    assert dt.date(2013, 11, 28) in holidays  # Thanksgiving
    assert dt.date(2013, 7, 4) in holidays
    days = days_to_nearest([dt.date(2013, 7, 4), dt.date(2013, 7, 1), dt.date(2013, 12, 31)], holidays)
    assert days == {dt.date(2013, 7, 4): 0, dt.date(2013, 7, 1): 3, dt.date(2013, 12, 31): 1}


def test_preprocessing_is_fitted_on_train_only(stage_outputs: dict[str, Path], config: DataConfig) -> None:
    pre = load_preprocessor(stage_outputs["features"])
    splits = read_splits(stage_outputs["features"])
    train = splits["train"]
    assert pre.fitted_on.split == "train"
    assert pre.fitted_on.rows == train.height
    temp = next(e for e in pre.numeric if e.name == "temp")
    present = train["temp"].drop_nulls().to_numpy().astype(np.float64)
    assert temp.mean == pytest.approx(present.mean())
    assert temp.std == pytest.approx(present.std())
    # A destination seen only after the training months has no place in the vocabulary.
    dest = next(e for e in pre.categorical if e.name == "dest")
    later_only = set(pl.concat([splits["valid"], splits["test"]])["dest"]) - set(train["dest"])
    assert later_only, "the slice should contain a destination first seen after August"
    assert not later_only & set(dest.vocabulary)


def test_changing_later_months_does_not_change_preprocessing(
    stage_outputs: dict[str, Path], config: DataConfig, validated_copy: Path, tmp_path: Path
) -> None:
    weather = pl.read_parquet(validated_copy / "weather.parquet")
    warmer = pl.col("temp") + pl.when(pl.col("month") >= 9).then(40.0).otherwise(0.0)
    weather.with_columns(warmer.cast(pl.Float32).clip(upper_bound=130).alias("temp")).write_parquet(
        validated_copy / "weather.parquet"
    )
    out = rebuild(config, validated_copy, tmp_path)
    original = stage_outputs["features"]
    assert (out / "preprocessing.json").read_bytes() == (original / "preprocessing.json").read_bytes()
    assert (out / "train.parquet").read_bytes() == (original / "train.parquet").read_bytes()
    assert (out / "test.parquet").read_bytes() != (original / "test.parquet").read_bytes()


def test_duplicated_weather_key_is_caught_by_the_join(config: DataConfig, validated_copy: Path, tmp_path: Path) -> None:
    weather = pl.read_parquet(validated_copy / "weather.parquet")
    pl.concat([weather, weather.head(1)]).write_parquet(validated_copy / "weather.parquet")
    with pytest.raises(FeatureError, match="joining flights with weather and planes"):
        rebuild(config, validated_copy, tmp_path)


def test_feature_missing_from_tables_is_named(config: DataConfig, validated_copy: Path, tmp_path: Path) -> None:
    features = {**config.contract.features, "runway": FeatureSpec(kind="categorical", dtype="string")}
    bad = config.model_copy(update={"contract": config.contract.model_copy(update={"features": features})})
    with pytest.raises(FeatureError, match=r"adapter flights did not return column\(s\) \['runway'\]"):
        rebuild(bad, validated_copy, tmp_path)


def test_contract_that_does_not_match_the_data(config: DataConfig, validated_copy: Path, tmp_path: Path) -> None:
    features = {**config.contract.features, "distance": FeatureSpec(kind="numeric", dtype="float32", max=500)}
    bad = config.model_copy(update={"contract": config.contract.model_copy(update={"features": features})})
    with pytest.raises(FeatureError) as excinfo:
        rebuild(bad, validated_copy, tmp_path)
    message = str(excinfo.value)
    assert message.startswith("the built features do not satisfy the feature contract:")
    assert re.search(r"distance: <= 500 broken by \d+ row\(s\), e\.g\. \[", message), message


def test_empty_and_single_class_splits_are_refused(config: DataConfig, validated_copy: Path, tmp_path: Path) -> None:
    one_day = config.split.valid.model_copy(update={"start": dt.date(2013, 9, 1), "end": dt.date(2013, 9, 1)})
    empty_valid = config.split.model_copy(update={"valid": one_day})
    flights = pl.read_parquet(validated_copy / "flights.parquet")
    flights.filter(pl.col("month") != 9).write_parquet(validated_copy / "flights.parquet")
    with pytest.raises(FeatureError, match=r"split.valid \(2013-09-01 to 2013-09-01\): no labelled examples"):
        rebuild(config.model_copy(update={"split": empty_valid}), validated_copy, tmp_path)

    flights.with_columns(arr_delay=pl.col("arr_delay").clip(upper_bound=0)).write_parquet(
        validated_copy / "flights.parquet"
    )
    with pytest.raises(FeatureError, match=r"split.train .*: all \d+ examples have the same label"):
        rebuild(config, validated_copy, tmp_path)


def test_unlabelled_policy_positive_keeps_cancelled_flights_as_late(
    config: DataConfig, stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    late = config.model_copy(update={"label": config.label.model_copy(update={"unlabelled": "positive"})})
    out = rebuild(late, stage_outputs["validated"], tmp_path)
    features = pl.concat(read_splits(out).values())
    unlabelled = features.filter(pl.col("_outcome").is_null())
    flights = pl.read_parquet(stage_outputs["validated"] / "flights.parquet")
    assert unlabelled.height == flights["arr_delay"].null_count()
    assert unlabelled["late"].all()
