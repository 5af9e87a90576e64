"""The service's prediction log as tables: predictions with their outcomes, cut into windows per model version."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
import sqlalchemy as sa

from flightdelay.contract import FeatureContract, FeatureSpec
from flightdelay.errors import FlightDelayError
from serving.prediction_log import feedback, predictions

FETCH_ROWS = 200_000


class LogError(FlightDelayError):
    """The prediction log cannot be read."""


@dataclass(frozen=True)
class Window:
    """The predictions of one model version in one period."""

    model_name: str
    model_version: str
    start: dt.datetime
    end: dt.datetime
    rows: pl.DataFrame  # id, event_time, probability, label, late (null until known), features (JSON text)

    @property
    def key(self) -> str:
        return f"{self.model_name}/v{self.model_version}/{self.start:%Y-%m-%d}"

    @property
    def labelled(self) -> int:
        return self.rows.height - self.rows["late"].null_count()


def read_log(url: str) -> pl.DataFrame:
    """Every prediction with its outcome where one has arrived; a LogError if the log cannot be read."""
    location = sa.make_url(url)
    database = location.database or ""
    if location.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).is_file():
        raise LogError(f"{location.database}: no prediction log yet; serve some predictions first (make serve)")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table("predictions"):
                raise LogError(f"{_safe(url)}: no prediction log here (has the service run with this log URL?)")
            columns = {c["name"] for c in inspector.get_columns("predictions")}
    except sa.exc.SQLAlchemyError as e:
        engine.dispose()
        raise LogError(f"{_safe(url)}: cannot read the prediction log: {e}") from e
    # A log written before event times were recorded: the time of the answer is the best there is.
    event_time = predictions.c.event_time if "event_time" in columns else predictions.c.created_at.label("event_time")
    query = (
        sa.select(
            predictions.c.id,
            event_time,
            predictions.c.model_name,
            predictions.c.model_version,
            predictions.c.features,
            predictions.c.probability,
            predictions.c.label,
            feedback.c.late,
        )
        .select_from(predictions.outerjoin(feedback, feedback.c.prediction_id == predictions.c.id))
        .order_by(event_time)
    )
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "id": pl.String,
        "event_time": pl.Datetime("us"),
        "model_name": pl.String,
        "model_version": pl.String,
        "features": pl.String,
        "probability": pl.Float64,
        "label": pl.Boolean,
        "late": pl.Boolean,
    }
    parts = []
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True).execute(query)
            while chunk := result.fetchmany(FETCH_ROWS):
                parts.append(pl.DataFrame(chunk, schema=schema, orient="row"))
    except sa.exc.SQLAlchemyError as e:
        raise LogError(f"{_safe(url)}: cannot read the prediction log: {e}") from e
    finally:
        engine.dispose()
    frame = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return frame.with_columns(pl.col("event_time").dt.replace_time_zone("UTC"))


def windows(log: pl.DataFrame, every: Literal["day", "week"]) -> list[Window]:
    """The log cut into periods (UTC days, or weeks from Monday) per model version, in time order."""
    if log.is_empty():
        return []
    period = "1d" if every == "day" else "1w"
    step = dt.timedelta(days=1 if every == "day" else 7)
    keyed = log.with_columns(start=pl.col("event_time").dt.truncate(period))
    found = []
    for (name, version, start), rows in keyed.group_by(["model_name", "model_version", "start"]):
        begin: dt.datetime = start
        found.append(Window(str(name), str(version), begin, begin + step, rows.drop("start").sort("event_time")))
    return sorted(found, key=lambda w: (w.start, w.model_version))


def decode_features(rows: pl.DataFrame, contract: FeatureContract) -> pl.DataFrame:
    """The features column (JSON) as one column per contract feature; features a request left out are null."""
    struct = pl.Struct([pl.Field(name, feature_dtype(spec)) for name, spec in contract.features.items()])
    decoded = rows.with_columns(pl.col("features").str.json_decode(struct).alias("_features"))
    return decoded.drop("features").unnest("_features")


def feature_dtype(spec: FeatureSpec) -> type[pl.DataType]:
    """How monitoring types a feature: text, whole-number categories, or numbers."""
    if spec.dtype == "string":
        return pl.String
    return pl.Int64 if spec.kind == "categorical" else pl.Float64


def _safe(url: str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)
