"""What a replay sends: the test split's rows with their event and outcome times.

The rows are kept as a snapshot beside the replay's state, so that a resumed replay sends the same rows.
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl

from tabloop.config.monitor import ReplayConfig
from tabloop.errors import TabloopError
from tabloop.records import ID, OUTCOME, OUTCOME_TIME, TIME
from tabloop.runtime.contract import FeatureContract, TargetSpec, TaskKind

SNAPSHOT_NAME = "traffic.parquet"  # beside the state file


@dataclass(frozen=True)
class Traffic:
    """The rows to replay, in time order: bodies, times and outcomes."""

    source: str
    target: str  # the contract's name of the target, as /feedback takes it
    time_zone: str  # of the days named by `until`
    keys: list[str]  # the example's id: unique per row
    event_time: list[dt.datetime]  # when the prediction is wanted, UTC
    outcome_at: list[dt.datetime]  # when the outcome is known, UTC
    bodies: list[bytes]  # the request body: the contract's features as JSON
    labels: list[bool | str | float]  # the observed class (a multiclass target's by name) or number
    outcomes: list[float | None]  # the number a binary target was derived from, where the dataset has one
    task: TaskKind = "binary"

    def feedback(self, prediction_id: str, actual: bool | str | float, value: float | None) -> dict[str, object]:
        """One outcome as /feedback takes it: the number behind the class only for a binary target."""
        item: dict[str, object] = {"id": prediction_id, self.target: actual}
        if self.task == "binary":
            item["outcome"] = value
        return item

    def __len__(self) -> int:
        return len(self.keys)


def load_traffic(
    path: Path,
    contract: FeatureContract,
    config: ReplayConfig,
    *,
    time_zone: str = "UTC",
    source: str | None = None,
) -> Traffic:
    """The rows of ``path`` (a features table) as requests, in time order; ``source`` names where they came from
    (default ``path``).

    Rows with an event time (naive, local to ``time_zone``) are sent at it; a dataset without one is sent in row
    order on a synthetic clock (``config.synthetic_start``, one row every ``config.synthetic_interval_s``). The
    outcome is due at the outcome time where the dataset has one, else ``config.outcome_delay_s`` after the event.
    """
    frame = _read_rows(path, contract)
    frame = (
        frame.with_columns(event_time=_event_time(frame, config, time_zone), key=pl.col(ID).cast(pl.String))
        .drop_nulls("event_time")
        .with_columns(outcome_at=_outcome_time(frame, config, time_zone).fill_null(pl.col("event_time")))
        .sort("event_time", maintain_order=True)
    )
    features = list(contract.features)
    outcomes = frame[OUTCOME].to_list() if OUTCOME in frame.columns else [None] * frame.height
    return Traffic(
        source=source or str(path),
        target=contract.target.name,
        time_zone=time_zone,
        keys=frame["key"].to_list(),
        event_time=frame["event_time"].to_list(),
        outcome_at=frame["outcome_at"].to_list(),
        bodies=[orjson.dumps(row) for row in frame.select(features).iter_rows(named=True)],
        labels=observed(frame, contract.target),
        outcomes=[None if v is None else float(v) for v in outcomes],
        task=contract.target.task,
    )


def observed(frame: pl.DataFrame, target: TargetSpec) -> list[bool | str | float]:
    """The target column as /feedback takes it: a multiclass target's class index as the class's name."""
    values = frame[target.name].to_list()
    if target.classes is not None:
        return [target.classes[int(v)] for v in values]
    return values


def _read_rows(path: Path, contract: FeatureContract) -> pl.DataFrame:
    """The features table at ``path``; a ReplayError if there is none, it lacks a column the requests need, or it
    has no rows."""
    if not path.is_file():
        raise ReplayError(no_traffic(path))
    frame = pl.read_parquet(path)
    missing = [c for c in [ID, contract.target.name, *contract.features] if c not in frame.columns]
    if missing:
        raise ReplayError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.is_empty():
        raise ReplayError(f"{path}: nothing to replay")
    return frame


def _event_time(frame: pl.DataFrame, config: ReplayConfig, time_zone: str) -> pl.Expr:
    """When each row of ``frame`` is sent, in UTC: at its event time (naive, local to ``time_zone``) or, without
    one, on the synthetic clock."""
    if TIME in frame.columns:
        event = pl.col(TIME).dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
        return event.dt.convert_time_zone("UTC")
    start = config.synthetic_start.astimezone(dt.UTC)
    step = pl.int_range(pl.len(), dtype=pl.Int64) * int(config.synthetic_interval_s * 1e6)
    return pl.lit(start) + pl.duration(microseconds=step)


def _outcome_time(frame: pl.DataFrame, config: ReplayConfig, time_zone: str) -> pl.Expr:
    """When the outcome of each row of ``frame`` is due, in UTC: at its outcome time (never before its event
    time, the ``event_time`` column) or, without one, ``config.outcome_delay_s`` after the event."""
    if OUTCOME_TIME in frame.columns:
        due = pl.col(OUTCOME_TIME).dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
        return pl.max_horizontal(due.dt.convert_time_zone("UTC"), pl.col("event_time"))
    return pl.col("event_time") + pl.duration(microseconds=int(config.outcome_delay_s * 1e6))


def no_traffic(path: Path) -> str:
    return f"{path}: nothing to replay; run `make train` first (it builds the features)"


def end_of_day(day: dt.date, time_zone: str) -> dt.datetime:
    """The first instant after the local ``day``, in UTC."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=ZoneInfo(time_zone))
    return local.astimezone(dt.UTC)


def traffic_snapshot(config: ReplayConfig, *, fresh: bool) -> Path:
    """The replay's own copy of ``config.traffic``, taken when a replay starts and kept while it resumes."""
    snapshot = config.state.with_name(SNAPSHOT_NAME)
    if fresh or not snapshot.is_file():
        if not config.traffic.is_file():
            raise ReplayError(no_traffic(config.traffic))
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        temporary = snapshot.with_suffix(".tmp")
        shutil.copyfile(config.traffic, temporary)
        temporary.replace(snapshot)
    return snapshot


class ReplayError(TabloopError):
    """The replay cannot start or go on (no traffic, a state from another replay, the service unreachable)."""
