"""From the adapter's rows to the splits: entity rows, the label, the split, the feature selection and its checks.

The dataset's adapter (or none, for a single table) makes one row per example; the features stage
(:mod:`tabloop.stages.features`) calls these the same way for every dataset, then fits the preprocessing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandera.errors
import polars as pl

from tabloop.config import SPLITS, Arrived, DataConfig, GroupSplit, RandomSplit, TimeSplit
from tabloop.data.dtypes import polars_dtype
from tabloop.data.schemas import feature_schema
from tabloop.errors import FeatureError
from tabloop.records import ID, META_COLUMNS, OUTCOME, OUTCOME_TIME, SPLIT, TIME
from tabloop.runtime.contract import FeatureContract


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
    """Examples with the target column (binary: true or false; multiclass: the class's index in ``label.classes``;
    regression: the number), and how many had no label value."""
    label = config.label
    value = pl.col(label.column)
    unlabelled = frame[label.column].null_count()
    target = config.contract.target.name
    if label.task == "multiclass":
        return frame.filter(value.is_not_null()).with_columns(_class_index(frame, config).alias(target)), unlabelled
    if label.task == "regression":
        return frame.filter(value.is_not_null()).with_columns(_number(frame, config).alias(target)), unlabelled
    if label.threshold is not None:
        positive = value >= label.threshold
    else:
        positive = value.is_in(_positives(frame, config).implode())
    if label.unlabelled == "drop":
        return frame.filter(value.is_not_null()).with_columns(positive.alias(target)), unlabelled
    fill = label.unlabelled == "positive"
    return frame.with_columns(pl.when(value.is_null()).then(fill).otherwise(positive).alias(target)), unlabelled


def _positives(frame: pl.DataFrame, config: DataConfig) -> pl.Series:
    """``label.positive`` as values of the label column's type (``1`` matches ``1.0``); a FeatureError if one cannot
    be."""
    column, dtype = config.label.column, frame.schema[config.label.column]
    given = config.label.positive or []
    try:
        values = pl.Series(given, dtype=pl.String if dtype == pl.String else None, strict=False).cast(dtype)
    except (pl.exceptions.PolarsError, TypeError):
        values = None
    if values is None or values.null_count():
        raise FeatureError(f"label.positive: {given} cannot be values of {column}, which holds {dtype} values")
    return values


def _class_index(frame: pl.DataFrame, config: DataConfig) -> pl.Expr:
    """Each row's class as its index in ``label.classes``; a FeatureError names values that are no class."""
    column, classes = config.label.column, [str(c) for c in config.label.classes or []]
    values = frame[column].drop_nulls().cast(pl.String)
    strays = values.filter(~values.is_in(classes)).value_counts(sort=True).head(5)
    if strays.height:
        found = ", ".join(f"{v!r} ({n} rows)" for v, n in strays.rows())
        raise FeatureError(f"label.classes: {column} holds values that are no class: {found}; add them to the list")
    index = pl.Series(classes).to_frame("class").with_row_index("index")
    mapping = dict(zip(index["class"].to_list(), index["index"].to_list(), strict=True))
    return pl.col(column).cast(pl.String).replace_strict(mapping, return_dtype=pl.Int64)


def _number(frame: pl.DataFrame, config: DataConfig) -> pl.Expr:
    """The label column as a float; a FeatureError when it is no number or not finite, or a log1p transform
    meets a value at or below -1."""
    column, label = config.label.column, config.label
    if not frame.schema[column].is_numeric():
        raise FeatureError(f"label.column: {column} is {frame.schema[column]}; a regression target is a number")
    values = frame[column].drop_nulls().cast(pl.Float64)
    bad = int((~values.is_finite()).sum())
    if bad:
        raise FeatureError(f"label.column: {column} has {bad} values that are not finite numbers")
    smallest = float(values.min()) if values.len() else 0.0  # type: ignore[arg-type]
    if label.transform == "log1p" and smallest <= -1:
        raise FeatureError(f"label.transform: log1p needs {column} above -1; its smallest value is {smallest:g}")
    return pl.col(column).cast(pl.Float64)


def assign_split(frame: pl.DataFrame, config: DataConfig) -> pl.DataFrame:
    """Examples with a ``SPLIT`` column; a time split drops the examples outside its periods.

    Without event times, the test split of a shuffled (random, stratified or group) split comes last, in a seeded
    order of its own: the order the replay sends it in ("production order"). A file sorted by the target or by a
    feature would otherwise reach production sorted, and look like drift.
    """
    split = config.split
    if isinstance(split, TimeSplit):
        return time_split(frame, split)
    if isinstance(split, GroupSplit):
        names = group_split(frame[split.column], split)
    else:
        target = frame[config.contract.target.name] if split.kind == "stratified" else None
        names = shuffled_split(frame.height, split, target)
    production = production_order(names, split.seed, shuffled=TIME not in frame.columns)
    if split.arrived is not None:
        names = arrived_split(names, split.arrived, production)
    order = np.concatenate([_others(names, production), production])
    return frame.with_columns(names.alias(SPLIT))[order].filter(pl.col(SPLIT).is_not_null())


def production_order(names: pl.Series, seed: int, *, shuffled: bool) -> np.ndarray[Any, Any]:
    """The positions of the test split's rows in the order production sees them: a seeded shuffle (``shuffled``),
    or the rows' own order (their times decide it later)."""
    production = np.flatnonzero(names.to_numpy() == "test")
    if shuffled:
        production = production[np.random.Generator(np.random.PCG64([seed, 1])).permutation(len(production))]
    return production


def _others(names: pl.Series, production: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The positions of the rows outside ``production``, in their order."""
    outside = np.ones(names.len(), dtype=bool)
    outside[production] = False
    return np.flatnonzero(outside)


def arrived_split(names: pl.Series, arrived: Arrived, production: np.ndarray[Any, Any] | None = None) -> pl.Series:
    """The split once ``arrived.rows`` of the test split's outcomes are known, in production order (the row order
    the replay sends them in; the test rows' own order unless ``production`` gives it): the newest of them held
    out, the older ones and the rest trained on."""
    if production is None:
        production = np.flatnonzero(names.to_numpy() == "test")
    if arrived.rows > len(production):
        raise FeatureError(f"split.arrived.rows: {arrived.rows} rows arrived, but the test split has {len(production)}")
    moved = np.full(names.len(), "train", dtype=object)
    moved[production] = None
    first_valid = arrived.rows - arrived.test - arrived.valid
    moved[production[:first_valid]] = "train"
    moved[production[first_valid : arrived.rows - arrived.test]] = "valid"
    moved[production[arrived.rows - arrived.test : arrived.rows]] = "test"
    return pl.Series(SPLIT, moved.tolist(), dtype=pl.String)


def time_split(frame: pl.DataFrame, split: TimeSplit) -> pl.DataFrame:
    names = pl.lit(None, pl.String())
    for name, period in reversed(split.periods().items()):
        inside = pl.col(TIME).dt.date().is_between(period.start, period.end, closed="both")
        names = pl.when(inside).then(pl.lit(name)).otherwise(names)
    return frame.with_columns(names.alias(SPLIT)).filter(pl.col(SPLIT).is_not_null())


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
    groups = [np.arange(n)]
    if target is not None:  # one group per class, in sorted order: False, True for a binary target
        values = target.to_numpy()
        groups = [np.flatnonzero(values == c) for c in np.unique(values)]
    for rows in groups:
        order = rows[rng.permutation(len(rows))]
        names[order] = _labels(np.arange(len(rows)), _cut(len(rows), split.fractions), len(rows))
    return pl.Series(SPLIT, names.tolist(), dtype=pl.String)


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
    return pl.Series(SPLIT, [SPLITS[i] for i in assigned[codes]], dtype=pl.String)


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
        SPLIT,
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
    target = part[config.contract.target.name]
    if target.n_unique() < 2:
        raise FeatureError(
            f"{where}: all {part.height} examples have the same label; a model cannot learn or be scored"
        )
    classes = config.contract.target.classes
    if classes is not None:
        absent = [c for i, c in enumerate(classes) if not (target == i).any()]
        if absent:
            raise FeatureError(
                f"{where}: no example of class {', '.join(absent)}; a model cannot learn or be scored on it. Gather "
                "more of them, or merge the class into another in label.classes"
            )


def time_range(frame: pl.DataFrame) -> dict[str, str]:
    """The first and last day of the event time, where there is one."""
    if TIME not in frame.columns or frame.is_empty():
        return {}
    return {"start": str(frame[TIME].min().date()), "end": str(frame[TIME].max().date())}  # type: ignore[union-attr]


def share(mask: pl.Series) -> float:
    """Share of true values in a boolean column (0 for an empty one)."""
    return float(mask.cast(pl.Float64).to_numpy().mean()) if mask.len() else 0.0
