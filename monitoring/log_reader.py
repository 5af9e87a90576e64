"""The service's prediction log as tables: predictions with their outcomes, cut into windows per model version."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import polars as pl
import sqlalchemy as sa

from tabloop.errors import TabloopError
from tabloop.prediction_tables import feedback, predictions
from tabloop.runtime.contract import FeatureContract, FeatureSpec, TaskKind

FETCH_ROWS = 200_000
ID_BATCH = 5000  # ids per query: within every database's limit on bound parameters


class LogError(TabloopError):
    """The prediction log cannot be read."""


@dataclass(frozen=True)
class Window:
    """The predictions of one model version in one period."""

    model_name: str
    model_version: str
    start: dt.datetime
    end: dt.datetime
    rows: pl.DataFrame  # id, event_time, probability, label, actual (null until known), features (JSON) if read

    @property
    def key(self) -> str:
        return f"{self.model_name}/v{self.model_version}/{self.start:%Y-%m-%d}"

    @property
    def labelled(self) -> int:
        return self.rows.height - self.rows["actual"].null_count()


Schema = dict[str, pl.DataType | type[pl.DataType]]
# Each task's answer columns and their types, and the outcome column read as ``actual`` (prediction_tables.py)
ANSWERS: dict[TaskKind, Schema] = {
    "binary": {"probability": pl.Float64, "label": pl.Boolean},
    "multiclass": {"predicted_class": pl.String, "probability": pl.Float64, "probabilities": pl.String},
    "regression": {"value": pl.Float64},
}
OBSERVED: dict[TaskKind, tuple[str, type[pl.DataType]]] = {
    "binary": ("actual", pl.Boolean),
    "multiclass": ("actual_class", pl.String),
    "regression": ("outcome", pl.Float64),
}


def read_log(url: str, *, features: bool = True, task: TaskKind = "binary") -> pl.DataFrame:
    """Every prediction with its outcome (``actual``) where one has arrived, in time order; a LogError if the log
    cannot be read. The answer columns are ``task``'s: ``probability`` and ``label`` (binary); ``predicted_class``,
    ``probability`` and ``probabilities`` (multiclass, JSON); ``value`` (regression).

    ``features=False`` leaves the features out (their JSON is most of the log's bytes): ``read_features`` fetches
    them for the rows that need them.
    """
    engine, columns = _open(url)
    # A log written before event times were recorded: the time of the answer is the best there is.
    event_time = predictions.c.event_time if "event_time" in columns else predictions.c.created_at.label("event_time")
    selected = [
        predictions.c.id,
        event_time,
        predictions.c.model_name,
        predictions.c.model_version,
        *([predictions.c.features] if features else []),
        *(predictions.c[name] for name in ANSWERS[task]),
    ]
    schema: Schema = {
        "id": pl.String,
        "event_time": pl.Datetime("us"),
        "model_name": pl.String,
        "model_version": pl.String,
        **({"features": pl.String} if features else {}),
        **ANSWERS[task],
    }
    observed, kind = OBSERVED[task]
    outcome_schema: Schema = {"id": pl.String, "actual": kind}
    try:
        with engine.connect() as conn:
            # Outcomes are joined here rather than in SQL: a hash join instead of a lookup per prediction.
            frame = _scan(conn, sa.select(*selected), schema)
            query = sa.select(feedback.c.prediction_id, feedback.c[observed]).where(feedback.c[observed].is_not(None))
            outcomes = _scan(conn, query, outcome_schema)
    except sa.exc.SQLAlchemyError as e:
        raise LogError(f"{_safe(url)}: cannot read the prediction log: {e}") from e
    finally:
        engine.dispose()
    return (
        frame.join(outcomes, on="id", how="left")
        .sort("event_time", "id")
        .with_columns(pl.col("event_time").dt.replace_time_zone("UTC"))
    )


def check_log(url: str) -> None:
    """A LogError if there is no prediction log at ``url``, as ``read_log`` would raise it; nothing is read."""
    engine, _ = _open(url)
    engine.dispose()


def read_features(url: str, ids: list[str]) -> pl.DataFrame:
    """The features (JSON text) of the predictions ``ids``: columns id and features, in no particular order."""
    engine, _ = _open(url)
    schema: dict[str, pl.DataType | type[pl.DataType]] = {"id": pl.String, "features": pl.String}
    parts = []
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), ID_BATCH):
                query = sa.select(predictions.c.id, predictions.c.features).where(
                    predictions.c.id.in_(ids[start : start + ID_BATCH])
                )
                parts.append(_fetch(conn, query, schema))
    except sa.exc.SQLAlchemyError as e:
        raise LogError(f"{_safe(url)}: cannot read the prediction log: {e}") from e
    finally:
        engine.dispose()
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _open(url: str) -> tuple[sa.Engine, set[str]]:
    """An engine on the log and the columns of its predictions table; a LogError if there is no log there."""
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
    except LogError:
        engine.dispose()
        raise
    except sa.exc.SQLAlchemyError as e:
        engine.dispose()
        raise LogError(f"{_safe(url)}: cannot read the prediction log: {e}") from e
    return engine, columns


def _fetch(
    conn: sa.Connection, query: sa.Select[Any], schema: dict[str, pl.DataType | type[pl.DataType]]
) -> pl.DataFrame:
    """A query's rows as a frame, built column by column a chunk at a time."""
    parts = []
    result = conn.execution_options(stream_results=True).execute(query)
    while chunk := result.fetchmany(FETCH_ROWS):
        parts.append(pl.DataFrame(dict(zip(schema, zip(*chunk, strict=True), strict=True)), schema=schema))
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _scan(
    conn: sa.Connection, query: sa.Select[Any], schema: dict[str, pl.DataType | type[pl.DataType]]
) -> pl.DataFrame:
    """Every row of a query without parameters as a frame: the driver's own rows, typed by each column's result
    processor applied once per distinct value (processing every row in SQLAlchemy would cost more than the read)."""
    dialect = conn.dialect
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(query.compile(dialect=dialect)))
        # The driver's type of each column (PostgreSQL's type OID; None from SQLite), which some processors need.
        coltypes = [column[1] for column in cursor.description]
        parts = []
        while chunk := cursor.fetchmany(FETCH_ROWS):
            columns = zip(schema, zip(*chunk, strict=True), strict=True)
            parts.append(pl.DataFrame([pl.Series(name, values, strict=False) for name, values in columns]))
    finally:
        cursor.close()
    if not parts:
        return pl.DataFrame(schema=schema)
    raw = pl.concat(parts, how="vertical_relaxed")
    typed = []
    for (name, dtype), column, coltype in zip(schema.items(), query.selected_columns, coltypes, strict=True):
        processor = column.type.dialect_impl(dialect).result_processor(dialect, coltype)
        values = raw[name]
        if processor is not None and values.dtype != pl.Null:
            distinct = values.drop_nulls().unique()
            processed = pl.Series([processor(v) for v in distinct.to_list()], dtype=dtype)
            values = values.replace_strict(distinct, processed, default=None, return_dtype=dtype)
        typed.append(values.cast(dtype))
    return pl.DataFrame(typed)


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
        in_order = rows.drop("start").sort("event_time", maintain_order=True)  # ties as read: samples are repeatable
        found.append(Window(str(name), str(version), begin, begin + step, in_order))
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
