"""The ``features`` stage: validated tables → ``data/features/{train,valid,test}.parquet`` + preprocessing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandera.errors
import polars as pl

from tabloop.config import SPLITS, DataConfig
from tabloop.contract import FeatureContract
from tabloop.data.dtypes import polars_dtype
from tabloop.data.schemas import feature_schema
from tabloop.data.validate import read_raw_table
from tabloop.errors import FeatureError
from tabloop.features.calendar import days_to_nearest, federal_holidays
from tabloop.features.preprocessing import FIRST_INDEX, PREPROCESSING_FILE, FittedOn, Preprocessor, frame_columns
from tabloop.io import staged, write_json, write_parquet

logger = logging.getLogger(__name__)

# Columns kept beside the features: they identify a flight and time it; never model inputs.
ID_COLUMNS = ("flight_date", "carrier", "flight", "origin")
META_COLUMNS = ("flight_date", "flight", "sched_dep", "time_hour", "arr_delay")
WEATHER_COLUMNS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
PLANE_COLUMNS = {"year": "plane_year", "seats": "seats", "engine": "engine", "manufacturer": "manufacturer"}


@dataclass(frozen=True)
class FeatureReport:
    """What the features stage produced, as DVC metrics."""

    metrics: dict[str, Any]


def build_features(config: DataConfig, validated_dir: Path, out_dir: Path, metrics_path: Path) -> FeatureReport:
    """Join, derive, label and split the validated tables; fit preprocessing on train; write it all."""
    flights = read_raw_table(validated_dir, "flights")
    weather = read_raw_table(validated_dir, "weather")
    planes = read_raw_table(validated_dir, "planes")

    joined = join_tables(flights, weather, planes)
    derived = derive_features(joined)
    labelled, unlabelled = add_label(derived, config)
    frame = assign_split(labelled, config)
    outside = labelled.height - frame.height
    table = select_features(frame, config.contract)
    check_contract(table, config.contract)

    splits = {name: table.filter(pl.col("split") == name).drop("split") for name in SPLITS}
    for name, part in splits.items():
        check_split(name, part, config)
    train = splits["train"]
    period = config.split.train
    preprocessor = Preprocessor.fit(
        frame_columns(train, config.contract),
        config.contract,
        config.preprocessing,
        FittedOn(split="train", rows=train.height, start=str(period.start), end=str(period.end)),
    )

    target = config.contract.target.name
    metrics: dict[str, Any] = {
        "flights": {
            "validated": flights.height,
            "unlabelled": {**unlabelled, "policy": config.label.unlabelled},
            "outside_split_periods": outside,
        },
        "joins": {
            "with_weather": round(share(joined["_has_weather"]), 6),
            "with_plane": round(share(joined["_has_plane"]), 6),
        },
        "splits": {
            name: {
                "rows": part.height,
                "positive_rate": round(share(part[target]), 6),
                "start": str(config.split.periods()[name].start),
                "end": str(config.split.periods()[name].end),
            }
            for name, part in splits.items()
        },
        "vocabulary": {
            name: size - FIRST_INDEX
            for name, size in zip(preprocessor.categorical_names, preprocessor.cardinalities, strict=True)
        },
    }
    with staged(out_dir, metrics_path) as (staging, metrics_staging):
        for name, part in splits.items():
            write_parquet(part, staging / f"{name}.parquet")
        preprocessor.save(staging / PREPROCESSING_FILE)
        write_json(metrics, metrics_staging)
    for name, part in splits.items():
        logger.info("features %-5s %7d rows, %.1f%% positive", name, part.height, 100 * share(part[target]))
    return FeatureReport(metrics=metrics)


def join_tables(flights: pl.DataFrame, weather: pl.DataFrame, planes: pl.DataFrame) -> pl.DataFrame:
    """Each flight with the weather at its origin (in its scheduled hour, the hours before, its day) and its aircraft.

    Every join is many-to-one on a key the validate stage made unique, so no flight is duplicated or lost;
    flights without a weather record or a plane record keep missing values.
    """
    hourly = weather.select("origin", "time_hour", *WEATHER_COLUMNS).with_columns(_has_weather=pl.lit(True))
    plane_part = planes.select("tailnum", *PLANE_COLUMNS).rename(PLANE_COLUMNS).with_columns(_has_plane=pl.lit(True))
    try:
        joined = (
            flights.join(hourly, on=["origin", "time_hour"], how="left", validate="m:1")
            .join(recent_weather(weather), on=["origin", "time_hour"], how="left", validate="m:1")
            .join(daily_weather(weather), on=["origin", "year", "month", "day"], how="left", validate="m:1")
            .join(plane_part, on="tailnum", how="left", validate="m:1")
        )
    except pl.exceptions.ComputeError as e:
        raise FeatureError(f"joining flights with weather and planes: {e}") from e
    if joined.height != flights.height:
        raise FeatureError(f"joins changed the number of flights from {flights.height} to {joined.height}")
    return joined.with_columns(pl.col("_has_weather", "_has_plane").fill_null(False))


def daily_weather(weather: pl.DataFrame) -> pl.DataFrame:
    """Weather over each local day at each origin: how stormy the day is, standing in for the day's forecast."""
    return weather.group_by("origin", "year", "month", "day").agg(
        precip_day=pl.col("precip").sum(),
        visib_day_min=pl.col("visib").min(),
        wind_day_max=pl.col("wind_speed").max(),
        gust_day_max=pl.col("wind_gust").max(),
    )


def recent_weather(weather: pl.DataFrame) -> pl.DataFrame:
    """Precipitation at each origin in each hour and the two hours before it."""
    return (
        weather.sort("origin", "time_hour")
        .rolling(index_column="time_hour", period="3h", group_by="origin")
        .agg(precip_3h=pl.col("precip").cast(pl.Float64).sum())
        # A rolling sum adds and subtracts as the window moves: round away the float error (data has 2 decimals).
        .with_columns(pl.col("precip_3h").round(6).clip(lower_bound=0))
    )


def derive_features(joined: pl.DataFrame) -> pl.DataFrame:
    """The joined flights with every derivable feature added (calendar, schedule, aircraft)."""
    frame = joined.with_columns(flight_date=pl.date("year", "month", "day"))
    holidays = federal_holidays(frame["flight_date"].min(), frame["flight_date"].max())  # type: ignore[arg-type]
    distances = days_to_nearest(frame["flight_date"].unique().to_list(), holidays)
    holiday_frame = pl.DataFrame(
        {"flight_date": list(distances), "days_to_holiday": list(distances.values())},
        schema={"flight_date": pl.Date(), "days_to_holiday": pl.Int16()},
    )
    sched_arr = pl.col("sched_arr_time")
    return frame.join(holiday_frame, on="flight_date", how="left").with_columns(
        sched_dep=pl.col("flight_date").cast(pl.Datetime("us")) + pl.duration(hours="hour", minutes="minute"),
        day_of_week=pl.col("flight_date").dt.weekday().cast(pl.Int8),
        dep_hour=(pl.col("hour") + pl.col("minute") / 60).cast(pl.Float32),
        arr_hour=(((sched_arr // 100) + (sched_arr % 100) / 60) % 24).cast(pl.Float32),
        origin_hour_flights=pl.len().over("origin", "flight_date", "hour").cast(pl.Int16),
        aircraft_age=(pl.col("year") - pl.col("plane_year")).clip(lower_bound=0).cast(pl.Float32),
        maker=pl.col("manufacturer").str.split(" ").list.first(),
    )


def add_label(frame: pl.DataFrame, config: DataConfig) -> tuple[pl.DataFrame, dict[str, int]]:
    """Flights with the target column, and how many flights had no arrival delay (by reason)."""
    delay = pl.col(config.label.delay_column)
    cancelled = int(frame.select((delay.is_null() & pl.col("dep_time").is_null()).sum()).item())
    diverted = int(frame.select((delay.is_null() & pl.col("dep_time").is_not_null()).sum()).item())
    late = delay >= config.label.threshold_minutes
    target = config.contract.target.name
    if config.label.unlabelled == "drop":
        labelled = frame.filter(delay.is_not_null()).with_columns(late.alias(target))
    else:
        labelled = frame.with_columns(late.fill_null(True).alias(target))
    return labelled, {"cancelled": cancelled, "diverted": diverted}


def assign_split(frame: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """Flights inside one of the split periods, with a ``split`` column; the rest are dropped."""
    split = pl.lit(None, pl.String())
    for name, period in reversed(config.split.periods().items()):
        inside = pl.col("flight_date").is_between(period.start, period.end, closed="both")
        split = pl.when(inside).then(pl.lit(name)).otherwise(split)
    return frame.with_columns(split=split).filter(pl.col("split").is_not_null())


def select_features(frame: pl.DataFrame, contract: FeatureContract) -> pl.DataFrame:
    """Identifiers, the contract's features in its dtypes, the target and the split, in a fixed order."""
    missing = [name for name in contract.features if name not in frame.columns]
    if missing:
        available = sorted(c for c in frame.columns if not c.startswith("_"))
        raise FeatureError(
            f"contract.features: {missing} cannot be built from the tables (available: {', '.join(available)})"
        )
    return frame.sort("sched_dep", "origin", "carrier", "flight").select(
        *META_COLUMNS,
        *(pl.col(name).cast(polars_dtype(spec.dtype)) for name, spec in contract.features.items()),
        contract.target.name,
        "split",
    )


def check_contract(table: pl.DataFrame, contract: FeatureContract) -> None:
    """Raise a FeatureError if the built features break the feature contract."""
    try:
        feature_schema(contract, key=ID_COLUMNS).validate(table, lazy=True)
    except pandera.errors.SchemaErrors as e:
        cases = e.failure_cases
        summary = cases.group_by("column", "check").agg(pl.len().alias("rows"), pl.col("failure_case").head(3))
        lines = [
            f"  {row['column']}: {row['check']} broken by {row['rows']} row(s), e.g. {row['failure_case']}"
            for row in summary.sort("column", "check").rows(named=True)
        ]
        raise FeatureError("the built features do not satisfy the feature contract:\n" + "\n".join(lines)) from e


def check_split(name: str, part: pl.DataFrame, config: DataConfig) -> None:
    """Raise a FeatureError for an empty split or a split with a single class."""
    period = config.split.periods()[name]
    where = f"split.{name} ({period.start} to {period.end})"
    if part.height == 0:
        raise FeatureError(f"{where}: no labelled flights in this period")
    classes = part[config.contract.target.name].n_unique()
    if classes < 2:
        raise FeatureError(f"{where}: all {part.height} flights have the same label; a model cannot learn or be scored")


def share(mask: pl.Series) -> float:
    """Share of true values in a boolean column (0 for an empty one)."""
    return float(mask.cast(pl.Float64).to_numpy().mean()) if mask.len() else 0.0
