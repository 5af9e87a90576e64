"""The ``features`` stage: validated tables → ``data/<dataset>/features/{train,valid,test}.parquet`` + preprocessing.

The dataset's adapter (or none, for a single table) makes one row per example; this module does the rest the same
way for every dataset: checks the adapter's columns against the configuration, adds the label, splits, checks the
feature contract and fits the preprocessing on the training split.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandera.errors
import polars as pl
from pydantic import BaseModel, ConfigDict, JsonValue, SerializerFunctionWrapHandler, model_serializer

from tabloop.config import SPLITS, Arrived, DataConfig, GroupSplit, RandomSplit, TimeSplit
from tabloop.contract import FeatureContract
from tabloop.data.dtypes import polars_dtype
from tabloop.data.schemas import feature_schema
from tabloop.data.validate import read_raw_table
from tabloop.datasets import load_adapter
from tabloop.errors import FeatureError
from tabloop.features.preprocessing import FIRST_INDEX, PREPROCESSING_FILE, FittedOn, Preprocessor, frame_columns
from tabloop.io import StageRecord, staged, write_parquet

logger = logging.getLogger(__name__)

# Columns kept beside the features, never model inputs: the example's id, its event time (naive, local to
# entity.time_zone), when its outcome is known, and the label column's raw value where it is a number.
ID, TIME, OUTCOME_TIME, OUTCOME = "_id", "_time", "_outcome_time", "_outcome"
META_COLUMNS = (ID, TIME, OUTCOME_TIME, OUTCOME)


class _Dated(BaseModel):
    """Counts over an event time, ending with its first and last day (``start``, ``end``): those are left out of
    the JSON where there is no event time."""

    model_config = ConfigDict(frozen=True)

    @model_serializer(mode="wrap")
    def _leave_out_absent_days(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k not in ("start", "end") or v is not None}


class ExampleCounts(_Dated):
    """The examples the adapter built, and those left out of the splits."""

    built: int
    unlabelled: int
    unlabelled_policy: str
    outside_split: int  # labelled, but in none of the splits (after a time split's test end)
    start: str | None = None
    end: str | None = None


class SplitCounts(_Dated):
    """One split's rows and positive rate."""

    rows: int
    positive_rate: float
    start: str | None = None
    end: str | None = None


class FeatureMetrics(StageRecord):
    """What the features stage produced (``reports/features.json``, DVC metrics), read back by retraining."""

    stage: ClassVar[str] = "features"

    examples: ExampleCounts
    adapter: dict[str, JsonValue]  # whatever the dataset's adapter chose to report
    splits: dict[str, SplitCounts]
    vocabulary: dict[str, int]  # categorical feature: the number of values it learnt


def build_features(config: DataConfig, validated_dir: Path, out_dir: Path, metrics_path: Path) -> FeatureMetrics:
    """Make the examples, label and split them; fit preprocessing on train; write it all."""
    tables = {name: read_raw_table(validated_dir, name) for name in config.tables}
    built = load_adapter(config.adapter).build(tables, config)
    examples = entity_rows(built.frame, config)
    labelled, unlabelled = add_label(examples, config)
    frame = assign_split(labelled, config)
    outside = labelled.height - frame.height
    table = select_features(frame, config)
    check_contract(table, config.contract)

    splits = {name: table.filter(pl.col("split") == name).drop("split") for name in SPLITS}
    for name, part in splits.items():
        check_split(name, part, config)
    train = splits["train"]
    times = train[TIME] if TIME in train.columns else None
    preprocessor = Preprocessor.fit(
        frame_columns(train, config.contract),
        config.contract,
        config.preprocessing,
        FittedOn(
            split="train",
            rows=train.height,
            start=None if times is None else str(times.min().date()),  # type: ignore[union-attr]
            end=None if times is None else str(times.max().date()),  # type: ignore[union-attr]
        ),
    )

    target = config.contract.target.name
    metrics = FeatureMetrics(
        examples=ExampleCounts(
            built=examples.height,
            unlabelled=unlabelled,
            unlabelled_policy=config.label.unlabelled,
            outside_split=outside,
            **time_range(labelled),
        ),
        adapter=built.metrics,
        splits={
            name: SplitCounts(rows=part.height, positive_rate=round(share(part[target]), 6), **time_range(part))
            for name, part in splits.items()
        },
        vocabulary={
            name: size - FIRST_INDEX
            for name, size in zip(preprocessor.categorical_names, preprocessor.cardinalities, strict=True)
        },
    )
    with staged(out_dir, metrics_path) as (staging, metrics_staging):
        for name, part in splits.items():
            write_parquet(part, staging / f"{name}.parquet")
        preprocessor.save(staging / PREPROCESSING_FILE)
        metrics.write(metrics_staging)
    for name, part in splits.items():
        logger.info("features %-5s %7d rows, %.1f%% positive", name, part.height, 100 * share(part[target]))
    return metrics


def entity_rows(frame: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """The adapter's rows with the meta columns added; a FeatureError naming any column the configuration expects
    and the rows lack (or, from an adapter, any column it did not ask for)."""
    entity = config.entity
    expected = {
        name
        for name in (entity.id, entity.time, entity.outcome_time, config.label.column, split_column(config))
        if name is not None
    } | set(config.contract.features)
    origin = f"adapter {config.adapter}" if config.adapter else f"table {entity.table}"
    missing = sorted(expected - set(frame.columns))
    if missing:
        raise FeatureError(f"{origin} did not return column(s) {missing} that the configuration names")
    extra = sorted(set(frame.columns) - expected)
    if config.adapter is not None and extra:
        raise FeatureError(
            f"adapter {config.adapter} returned column(s) {extra} that the configuration does not declare: "
            "add them to contract.features or drop them in the adapter"
        )
    ids = pl.col(entity.id) if entity.id is not None else pl.int_range(pl.len(), dtype=pl.Int64)
    meta = [ids.alias(ID)]
    if entity.time is not None:
        meta.append(local_naive(frame, entity.time, entity.time_zone).alias(TIME))
    if entity.outcome_time is not None:
        meta.append(local_naive(frame, entity.outcome_time, entity.time_zone).alias(OUTCOME_TIME))
    if frame.schema[config.label.column].is_numeric():
        meta.append(pl.col(config.label.column).cast(pl.Float64).alias(OUTCOME))
    with_meta = frame.with_columns(meta)
    duplicated = with_meta[ID].is_duplicated()
    if duplicated.any():
        examples = with_meta.filter(duplicated)[ID].unique().head(3).to_list()
        raise FeatureError(f"entity.id: {int(duplicated.sum())} rows share an id with another (e.g. {examples})")
    if entity.time is not None and with_meta[TIME].null_count():
        raise FeatureError(f"entity.time: {with_meta[TIME].null_count()} rows have no {entity.time}")
    return with_meta


def local_naive(frame: pl.DataFrame, column: str, zone: str) -> pl.Expr:
    """``column`` as a naive datetime in ``zone``: dates at midnight, aware times converted, naive ones kept."""
    dtype = frame.schema[column]
    if dtype == pl.Date:
        return pl.col(column).cast(pl.Datetime("us"))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            return pl.col(column).dt.convert_time_zone(zone).dt.replace_time_zone(None).cast(pl.Datetime("us"))
        return pl.col(column).cast(pl.Datetime("us"))
    raise FeatureError(f"entity: {column} must be a date or datetime column, not {dtype}")


def split_column(config: DataConfig) -> str | None:
    return config.split.column if isinstance(config.split, GroupSplit) else None


def add_label(frame: pl.DataFrame, config: DataConfig) -> tuple[pl.DataFrame, int]:
    """Examples with the target column, and how many had no label value."""
    label = config.label
    value = pl.col(label.column)
    positive = value >= label.threshold if label.threshold is not None else value.is_in(label.positive or [])
    unlabelled = frame[label.column].null_count()
    target = config.contract.target.name
    if label.unlabelled == "drop":
        return frame.filter(value.is_not_null()).with_columns(positive.alias(target)), unlabelled
    fill = label.unlabelled == "positive"
    return frame.with_columns(pl.when(value.is_null()).then(fill).otherwise(positive).alias(target)), unlabelled


def assign_split(frame: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """Examples with a ``split`` column; a time split drops the examples outside its periods."""
    split = config.split
    if isinstance(split, TimeSplit):
        return time_split(frame, split)
    if isinstance(split, GroupSplit):
        names = group_split(frame[split.column], split)
    else:
        target = frame[config.contract.target.name] if split.kind == "stratified" else None
        names = shuffled_split(frame.height, split, target)
    if split.arrived is not None:
        names = arrived_split(names, split.arrived)
    return frame.with_columns(split=names).filter(pl.col("split").is_not_null())


def arrived_split(names: pl.Series, arrived: Arrived) -> pl.Series:
    """The split once ``arrived.rows`` of the test split's outcomes are known, in production order (the row order
    the replay sends them in): the newest of them held out, the older ones and the rest trained on."""
    production = np.flatnonzero(names.to_numpy() == "test")
    if arrived.rows > len(production):
        raise FeatureError(f"split.arrived.rows: {arrived.rows} rows arrived, but the test split has {len(production)}")
    moved = np.full(names.len(), "train", dtype=object)
    moved[production] = None
    first_valid = arrived.rows - arrived.test - arrived.valid
    moved[production[:first_valid]] = "train"
    moved[production[first_valid : arrived.rows - arrived.test]] = "valid"
    moved[production[arrived.rows - arrived.test : arrived.rows]] = "test"
    return pl.Series("split", moved.tolist(), dtype=pl.String)


def time_split(frame: pl.DataFrame, split: TimeSplit) -> pl.DataFrame:
    names = pl.lit(None, pl.String())
    for name, period in reversed(split.periods().items()):
        inside = pl.col(TIME).dt.date().is_between(period.start, period.end, closed="both")
        names = pl.when(inside).then(pl.lit(name)).otherwise(names)
    return frame.with_columns(split=names).filter(pl.col("split").is_not_null())


def _cut(n: int, fractions: Any) -> list[int]:
    """Sizes of train, valid and test for ``n`` items (test takes the rounding)."""
    train = round(n * fractions.train)
    valid = round(n * fractions.valid)
    return [train, valid, n - train - valid]


def _labels(order: np.ndarray[Any, Any], sizes: list[int], n: int) -> np.ndarray[Any, Any]:
    names = np.empty(n, dtype=object)
    start = 0
    for name, size in zip(SPLITS, sizes, strict=True):
        names[order[start : start + size]] = name
        start += size
    return names


def shuffled_split(n: int, split: RandomSplit, target: pl.Series | None) -> pl.Series:
    """A seeded shuffle of the rows cut by the fractions; per class when ``target`` is given (stratified).

    numpy's PCG64 gives the same permutation on every platform, so the split (and DVC's hash of it) does too.
    """
    rng = np.random.Generator(np.random.PCG64(split.seed))
    names = np.empty(n, dtype=object)
    groups = [np.arange(n)] if target is None else [np.flatnonzero(target.to_numpy() == c) for c in (False, True)]
    for rows in groups:
        order = rows[rng.permutation(len(rows))]
        names[order] = _labels(np.arange(len(rows)), _cut(len(rows), split.fractions), len(rows))
    return pl.Series("split", names.tolist(), dtype=pl.String)


def group_split(groups: pl.Series, split: GroupSplit) -> pl.Series:
    """Whole groups to each split, in a seeded order, until each split holds its fraction of the rows."""
    if groups.null_count():
        raise FeatureError(f"split.column: {groups.null_count()} rows have no {split.column}")
    uniques = groups.unique().sort()
    codes = groups.replace_strict(uniques, range(len(uniques)), return_dtype=pl.Int64).to_numpy()
    n_groups = len(uniques)
    rng = np.random.Generator(np.random.PCG64(split.seed))
    order = rng.permutation(n_groups)
    sizes = np.bincount(codes, minlength=n_groups)[order]
    ends = np.cumsum(sizes) / max(len(codes), 1)
    bounds = (split.fractions.train, split.fractions.train + split.fractions.valid)
    assigned = np.empty(n_groups, dtype=np.int64)
    assigned[order] = np.searchsorted(np.asarray(bounds), ends, side="left")  # a group across a bound goes later
    return pl.Series("split", [SPLITS[i] for i in assigned[codes]], dtype=pl.String)


def select_features(frame: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """Meta columns, the contract's features in its dtypes, the target and the split, in a fixed order."""
    contract = config.contract
    meta = [c for c in META_COLUMNS if c in frame.columns]
    order = [TIME, ID] if TIME in frame.columns else []
    ordered = frame.sort(order, maintain_order=True) if order else frame
    return ordered.select(
        *meta,
        *(pl.col(name).cast(polars_dtype(spec.dtype)) for name, spec in contract.features.items()),
        contract.target.name,
        "split",
    )


def check_contract(table: pl.DataFrame, contract: FeatureContract) -> None:
    """Raise a FeatureError if the built features break the feature contract."""
    try:
        feature_schema(contract, key=[ID]).validate(table, lazy=True)
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
    where = f"split.{name} ({config.split.describe(name)})"
    if part.height == 0:
        raise FeatureError(f"{where}: no labelled examples in this split")
    classes = part[config.contract.target.name].n_unique()
    if classes < 2:
        raise FeatureError(
            f"{where}: all {part.height} examples have the same label; a model cannot learn or be scored"
        )


def time_range(frame: pl.DataFrame) -> dict[str, str]:
    """The first and last day of the event time, where there is one."""
    if TIME not in frame.columns or frame.is_empty():
        return {}
    return {"start": str(frame[TIME].min().date()), "end": str(frame[TIME].max().date())}  # type: ignore[union-attr]


def share(mask: pl.Series) -> float:
    """Share of true values in a boolean column (0 for an empty one)."""
    return float(mask.cast(pl.Float64).to_numpy().mean()) if mask.len() else 0.0
