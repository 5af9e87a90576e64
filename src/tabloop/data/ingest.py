"""The ``ingest`` stage: source tables → ``data/raw/<table>.parquet`` with the contract's explicit dtypes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from tabloop.config import DataConfig
from tabloop.contract import INTEGER_DTYPES, ColumnSpec, TableSpec
from tabloop.data.dtypes import polars_dtype
from tabloop.data.sources import describe_source, file_digest, locate_tables
from tabloop.errors import ContractError
from tabloop.io import staged, write_json, write_parquet

logger = logging.getLogger(__name__)

_TRUE = ("true", "t", "yes", "1")
_FALSE = ("false", "f", "no", "0")


@dataclass(frozen=True)
class IngestResult:
    """What the ingest stage wrote: rows per table."""

    rows: dict[str, int]


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


def ingest(config: DataConfig, out_dir: Path) -> IngestResult:
    """Read every declared table, type it by the contract and write it as Parquet with a manifest."""
    files = locate_tables(config.source, list(config.tables))
    frames: dict[str, pl.DataFrame] = {}
    problems: list[str] = []
    for table, located in files.items():
        raw = located.read()
        try:
            frames[table] = cast_to_contract(raw, config.tables[table], located.path.name)
        except ContractError as e:
            problems.append(str(e))
    if problems:
        raise ContractError("\n".join(problems))

    manifest = {
        "source": describe_source(config.source),
        "tables": {
            table: {
                "file": files[table].path.name,
                "sha256": file_digest(files[table].path),
                "rows": frame.height,
                "columns": {name: spec.dtype for name, spec in config.tables[table].columns.items()},
            }
            for table, frame in frames.items()
        },
    }
    with staged(out_dir) as (staging,):
        for table, frame in frames.items():
            write_parquet(frame, staging / f"{table}.parquet")
        write_json(manifest, staging / "manifest.json")
    for table, frame in frames.items():
        logger.info("ingested %-8s %9d rows from %s", table, frame.height, files[table].path.name)
    return IngestResult(rows={table: frame.height for table, frame in frames.items()})


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
