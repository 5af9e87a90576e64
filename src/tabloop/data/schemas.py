"""Pandera schemas derived from the contract: one per source table, one for the feature tables."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import pandera.polars as pa
import polars as pl

from tabloop.data.dtypes import polars_dtype
from tabloop.runtime.contract import FeatureContract, TableSpec, TargetSpec, ValueRules

NOT_NULL = "not null"


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def value_checks(rules: ValueRules) -> list[pa.Check]:
    """Checks for a column's range, allowed values and pattern, each named as users will read it."""
    checks: list[pa.Check] = []
    if rules.min is not None and rules.max is not None:
        checks.append(pa.Check.in_range(rules.min, rules.max, error=f"range [{_fmt(rules.min)}, {_fmt(rules.max)}]"))
    elif rules.min is not None:
        checks.append(pa.Check.ge(rules.min, error=f">= {_fmt(rules.min)}"))
    elif rules.max is not None:
        checks.append(pa.Check.le(rules.max, error=f"<= {_fmt(rules.max)}"))
    if rules.values is not None:
        shown = ", ".join(str(v) for v in rules.values)
        checks.append(pa.Check.isin(list(rules.values), error=f"one of [{shown}]"))
    if rules.pattern is not None:
        checks.append(pa.Check.str_matches(rules.pattern, error=f"matches {rules.pattern}"))
    return checks


def clock_check(column: str) -> pa.Check:
    """HHMM times of day: hours 0-24, minutes 0-59, at most 2400."""
    c = pl.col(column)
    return pa.Check(
        lambda data: data.lazyframe.select(((c // 100 <= 24) & (c % 100 < 60) & (c <= 2400)).alias(column)),
        error="HHMM time of day",
    )


def references_check(table: str, column: str, allowed: Collection[str], also: Sequence[str]) -> pa.Check:
    """Values must exist in ``table.column`` (given as ``allowed``) or in the ``also`` list."""
    name = f"exists in {table}.{column}" + (f" or [{', '.join(also)}]" if also else "")
    return pa.Check.isin(sorted({*allowed, *also}), error=name)


def unique_key_check(key: Sequence[str]) -> pa.Check:
    """Rows whose key already appeared in an earlier row fail; the first occurrence is kept."""
    return pa.Check(
        lambda data: data.lazyframe.select(pl.struct(list(key)).is_first_distinct().alias("key")),
        error=f"unique key ({', '.join(key)})",
    )


def table_schema(
    name: str,
    spec: TableSpec,
    referenced: Mapping[tuple[str, str], Collection[str]],
) -> pa.DataFrameSchema:
    """The schema of source table ``name``; ``referenced`` holds the accepted values of each referenced column."""
    columns: dict[str, pa.Column] = {}
    for column, rules in spec.columns.items():
        checks = value_checks(rules)
        if rules.clock:
            checks.append(clock_check(column))
        if rules.references is not None:
            ref = rules.references
            allowed = referenced[(ref.table, ref.column)]
            checks.append(references_check(ref.table, ref.column, allowed, ref.also))
        columns[column] = pa.Column(polars_dtype(rules.dtype), checks, nullable=rules.nullable)
    return pa.DataFrameSchema(columns, checks=[unique_key_check(spec.key)] if spec.key else [], name=name)


def feature_schema(contract: FeatureContract, key: Sequence[str] = ()) -> pa.DataFrameSchema:
    """The schema every feature table (and every request batch) must satisfy."""
    columns = {
        feature: pa.Column(polars_dtype(spec.dtype), value_checks(spec), nullable=spec.nullable)
        for feature, spec in contract.features.items()
    }
    columns[contract.target.name] = target_column(contract.target)
    checks = [unique_key_check(key)] if key else []
    return pa.DataFrameSchema(columns, checks=checks, name="features")


def target_column(target: TargetSpec) -> pa.Column:
    """The target as the features stage writes it: true or false (binary), the class's index (multiclass), a finite
    number (regression)."""
    if target.classes is not None:
        index = pa.Check.in_range(
            0, len(target.classes) - 1, error=f"a class index from 0 to {len(target.classes) - 1}"
        )
        return pa.Column(pl.Int64(), index, nullable=False)
    if target.task == "regression":
        name = target.name
        finite = pa.Check(lambda data: data.lazyframe.select(pl.col(name).is_finite()), error="a finite number")
        return pa.Column(pl.Float64(), finite, nullable=False)
    return pa.Column(pl.Boolean(), nullable=False)
