"""Source columns read as the dtypes the contract declares, with the rows that cannot be named."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from tabloop.data.dtypes import polars_dtype
from tabloop.errors import ContractError
from tabloop.runtime.contract import INTEGER_DTYPES, ColumnSpec, TableSpec

_TRUE = ("true", "t", "yes", "1")


_FALSE = ("false", "f", "no", "0")


@dataclass(frozen=True)
class TypeProblem:
    """Values of one column that cannot be read as the declared dtype."""

    column: str
    dtype: str
    count: int
    examples: list[tuple[int, str]]

    def describe(self) -> str:
        shown = ", ".join(f"row {row}: {value!r}" for row, value in self.examples)
        return f"column {self.column!r} must hold {self.dtype} values; {self.count} row(s) do not (e.g. {shown})"


def cast_to_contract(frame: pl.DataFrame, spec: TableSpec, file_name: str, max_examples: int = 3) -> pl.DataFrame:
    """``frame`` reduced to the declared columns, each cast to its dtype; a ContractError lists every problem."""
    missing = [column for column in spec.columns if column not in frame.columns]
    if missing:
        raise ContractError(f"{file_name}: missing column(s) {', '.join(map(repr, missing))}")
    typed: list[pl.Series] = []
    problems: list[TypeProblem] = []
    for column, column_spec in spec.columns.items():
        series, bad = _cast(frame[column], column_spec)
        if bad.any():
            rows = bad.arg_true()
            examples = [(int(r), str(frame[column][int(r)])) for r in rows[:max_examples]]
            problems.append(TypeProblem(column, column_spec.dtype, len(rows), examples))
        typed.append(series)
    if problems:
        raise ContractError("\n".join(f"{file_name}: {p.describe()}" for p in problems))
    return pl.DataFrame(typed)


def _cast(column: pl.Series, spec: ColumnSpec) -> tuple[pl.Series, pl.Series]:
    """The column as ``spec.dtype`` and a mask of the values that could not be converted."""
    target = polars_dtype(spec.dtype)
    if column.dtype != pl.String:
        typed = column.cast(target, strict=False)
        return typed, column.is_not_null() & typed.is_null()
    text = column.str.strip_chars()
    present = text.is_not_null() & (text != "")
    if spec.dtype == "string":
        return column, pl.Series(column.name, [False] * column.len())
    if spec.dtype == "datetime":
        typed = text.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
    elif spec.dtype == "bool":
        lowered = text.str.to_lowercase()
        typed = pl.select(
            pl.when(lowered.is_in(_TRUE)).then(True).when(lowered.is_in(_FALSE)).then(False).otherwise(None)
        ).to_series()
    else:
        number = text.cast(pl.Float64, strict=False)
        if spec.dtype in INTEGER_DTYPES:
            typed = number.cast(target, strict=False)
            fractional = (number != number.floor()).fill_null(False)
            return typed.rename(column.name), present & (typed.is_null() | fractional)
        typed = number.fill_nan(None).cast(target)
        bad = present & number.is_null()
        return typed.rename(column.name), bad
    return typed.rename(column.name), present & typed.is_null()
