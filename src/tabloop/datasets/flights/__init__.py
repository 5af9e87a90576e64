"""The flights adapter: NYC departures of 2013 with the weather at their origin and their aircraft.

Each flight is joined with the weather at its origin (in its scheduled hour, the hours before, its day) and with
its aircraft, and gets the features a scheduler knows in advance: calendar, schedule, congestion. Two quirks are
handled on purpose: weather is keyed on the UTC hour (``time_hour``), because at the end of daylight saving time a
local hour occurs twice; and 52,606 flights fly an aircraft missing from the planes table, so their aircraft
features stay missing (the model gets missing-value indicators) instead of the flights being dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from pydantic import JsonValue

from tabloop.config import DataConfig
from tabloop.datasets import Built
from tabloop.datasets.flights.calendar import days_to_nearest, federal_holidays
from tabloop.errors import FeatureError

WEATHER_COLUMNS = ("temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib")
PLANE_COLUMNS = {"year": "plane_year", "seats": "seats", "engine": "engine", "manufacturer": "manufacturer"}


def build(tables: Mapping[str, pl.DataFrame], config: DataConfig) -> Built:
    """Every flight with its id, departure, estimated landing, arrival delay and the contract's features."""
    flights = tables["flights"]
    joined = join_tables(flights, tables["weather"], tables["planes"])
    derived = derive_features(joined)
    delay = pl.col(config.label.column)
    metrics: dict[str, JsonValue] = {
        "flights": flights.height,
        "no_arrival_delay": {
            "cancelled": int(flights.select((delay.is_null() & pl.col("dep_time").is_null()).sum()).item()),
            "diverted": int(flights.select((delay.is_null() & pl.col("dep_time").is_not_null()).sum()).item()),
        },
        "joins": {"with_weather": share(joined["_has_weather"]), "with_plane": share(joined["_has_plane"])},
    }
    entity = config.entity
    columns = [entity.id, entity.time, entity.outcome_time, config.label.column, *config.contract.features]
    # What the configuration names and the tables can give: the features stage names whatever is missing.
    return Built(derived.select(c for c in columns if c in derived.columns), metrics)


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
    """The joined flights with every derivable feature added (calendar, schedule, aircraft), an id and times."""
    frame = joined.with_columns(flight_date=pl.date("year", "month", "day"))
    holidays = federal_holidays(frame["flight_date"].min(), frame["flight_date"].max())  # type: ignore[arg-type]
    distances = days_to_nearest(frame["flight_date"].unique().to_list(), holidays)
    holiday_frame = pl.DataFrame(
        {"flight_date": list(distances), "days_to_holiday": list(distances.values())},
        schema={"flight_date": pl.Date(), "days_to_holiday": pl.Int16()},
    )
    sched_arr = pl.col("sched_arr_time")
    # The outcome is known at landing: about 30 minutes of taxiing and climbing plus 8 miles a minute in the air,
    # later by the arrival delay (an estimate; the scheduled arrival's time zone is the destination's).
    block_minutes = (30 + pl.col("distance").cast(pl.Float64) / 8 + pl.col("arr_delay").fill_null(0)).clip(20)
    return (
        frame.join(holiday_frame, on="flight_date", how="left")
        .with_columns(
            sched_dep=pl.col("flight_date").cast(pl.Datetime("us")) + pl.duration(hours="hour", minutes="minute"),
            # Sorts like (date, origin, carrier, flight number): the order the features tables keep.
            flight_id=pl.format(
                "{}-{}-{}{}",
                pl.col("flight_date").dt.strftime("%Y%m%d"),
                "origin",
                "carrier",
                pl.col("flight").cast(pl.String).str.zfill(4),
            ),
            day_of_week=pl.col("flight_date").dt.weekday().cast(pl.Int8),
            dep_hour=(pl.col("hour") + pl.col("minute") / 60).cast(pl.Float32),
            arr_hour=(((sched_arr // 100) + (sched_arr % 100) / 60) % 24).cast(pl.Float32),
            origin_hour_flights=pl.len().over("origin", "flight_date", "hour").cast(pl.Int16),
            aircraft_age=(pl.col("year") - pl.col("plane_year")).clip(lower_bound=0).cast(pl.Float32),
            maker=pl.col("manufacturer").str.split(" ").list.first(),
        )
        .with_columns(landing=pl.col("sched_dep") + pl.duration(minutes=block_minutes))
    )


def share(mask: pl.Series) -> float:
    """Share of true values in a boolean column (0 for an empty one), rounded for the metrics file."""
    return round(float(mask.cast(pl.Float64).to_numpy().mean()), 6) if mask.len() else 0.0
