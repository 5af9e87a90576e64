"""Rows generated from a dataset's contract (every declared column within its rules, for any single-table dataset),
and its features picked by role."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tabloop.config import DataConfig
from tabloop.data.dtypes import polars_dtype
from tabloop.runtime.contract import INTEGER_DTYPES, ColumnSpec, FeatureContract

MISSING_SHARE = 0.05  # of a nullable column's values


def column_values(name: str, rules: ColumnSpec, n: int, rng: np.random.Generator) -> list[Any]:
    """``n`` values that satisfy ``rules`` (a seeded draw; ids count up so that a key stays unique)."""
    if rules.values is not None:
        values: list[Any] = [rules.values[i] for i in rng.integers(0, len(rules.values), n)]
    elif rules.dtype in INTEGER_DTYPES:
        low = int(rules.min if rules.min is not None else 0)
        high = int(rules.max if rules.max is not None else low + 1000)
        values = rng.integers(low, high + 1, n).tolist()
    elif rules.dtype in ("float32", "float64"):
        low = rules.min if rules.min is not None else 0.0
        high = rules.max if rules.max is not None else low + 1000.0
        values = np.round(rng.uniform(low, high, n), 2).tolist()
    elif rules.dtype == "datetime":  # a year of minutes from the first of January 2024
        start = np.datetime64("2024-01-01T00:00")
        values = (start + np.sort(rng.integers(0, 366 * 24 * 60, n)).astype("timedelta64[m]")).tolist()
    elif rules.dtype == "bool":
        values = rng.integers(0, 2, n).astype(bool).tolist()
    elif rules.dtype == "string" and rules.pattern is None:
        values = [f"{name}-{i}" for i in rng.integers(0, 20, n)]
    else:
        raise NotImplementedError(f"{name}: no generator for dtype {rules.dtype} with pattern {rules.pattern!r}")
    if rules.nullable:
        values = [None if missing else v for v, missing in zip(values, rng.random(n) < MISSING_SHARE, strict=True)]
    return values


def single_table(config: DataConfig, n: int, seed: int = 0) -> pl.DataFrame:
    """The entity table of a single-table dataset: ``n`` rows within its contract, ids unique, both classes."""
    rng = np.random.default_rng(seed)
    spec = config.tables[config.entity.table]
    columns: dict[str, pl.Series] = {}
    for name, rules in spec.columns.items():
        if name in spec.key or name == config.entity.id:
            values: list[Any] = (
                list(range(1, n + 1)) if rules.dtype in INTEGER_DTYPES else [f"id-{i}" for i in range(n)]
            )
        else:
            values = column_values(name, rules, n, rng)
        columns[name] = pl.Series(name, values, dtype=polars_dtype(rules.dtype), strict=False)
    frame = pl.DataFrame(columns)
    label = config.label
    if label.positive is not None:  # the first quarter positive, the rest drawn from the other values
        others = [v for v in (spec.columns[label.column].values or []) if v not in label.positive] or ["other"]
        chosen = [label.positive[0] if i % 4 == 0 else others[i % len(others)] for i in range(n)]
        frame = frame.with_columns(pl.Series(label.column, chosen, dtype=frame.schema[label.column]))
    return frame


def write_source(frame: pl.DataFrame, directory: Path, table: str) -> Path:
    """``frame`` as ``<directory>/<table>.parquet``, the way a user's file would be read."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{table}.parquet"
    frame.write_parquet(path)
    return path


@dataclass(frozen=True)
class Probe:
    """Features of a contract picked by role, for the tests that need "a required feature", "a numeric feature with
    a maximum", "a categorical feature", whatever the dataset; a role no feature plays is None."""

    target: str
    required: str  # the first feature that may not be missing
    numeric: str  # the first numeric feature
    bounded: str  # the first numeric feature with a bound (a maximum, else a minimum)
    outside: float  # ... a value beyond that bound
    bound: str  # ... and the bound as pydantic states it: "less than or equal to 100"
    categorical: str | None  # the first categorical feature
    unseen: Any  # a value of its dtype that training never saw
    closed: str | None  # the first categorical feature with a closed set of values
    allowed: list[Any]  # ... and those values
    open: list[str]  # string categories without a closed set or a pattern: any value is accepted
    nullable: list[str]  # the features that may be missing

    @classmethod
    def of(cls, contract: FeatureContract) -> Probe:
        features = contract.features
        required = next((n for n, f in features.items() if not f.nullable), None)
        numbers = [n for n, f in features.items() if f.kind == "numeric"]
        bounded = next((n for n in numbers if features[n].max is not None), None)
        bounded = bounded or next((n for n in numbers if features[n].min is not None), None)
        if required is None or bounded is None:
            raise LookupError(
                "the tests need a feature that may not be missing and a numeric feature with a bound (min or max)"
            )
        top, bottom = features[bounded].max, features[bounded].min
        categorical = next((n for n, f in features.items() if f.kind == "categorical"), None)
        closed = next((n for n, f in features.items() if f.values is not None), None)
        string = categorical is not None and features[categorical].dtype == "string"
        return cls(
            target=contract.target.name,
            required=required,
            numeric=numbers[0],
            bounded=bounded,
            outside=top * 10 + 1 if top is not None else (bottom or 0) - 10 * abs(bottom or 0) - 1,
            bound=f"less than or equal to {top}" if top is not None else f"greater than or equal to {bottom}",
            categorical=categorical,
            unseen="never-seen-before" if string else 987_654,
            closed=closed,
            allowed=list(features[closed].values or []) if closed else [],
            open=[n for n, f in features.items() if f.dtype == "string" and f.values is None and f.pattern is None],
            nullable=[n for n, f in features.items() if f.nullable],
        )

    def allowed_phrase(self) -> str:
        """The allowed values of ``closed`` as pydantic lists them: 'a', 'b' or 'c'."""
        quoted = [repr(v) for v in self.allowed]
        return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
