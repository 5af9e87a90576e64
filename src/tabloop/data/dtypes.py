"""The contract's dtype names and their Polars types."""

from __future__ import annotations

import polars as pl

from tabloop.runtime.contract import DType

POLARS_DTYPES: dict[DType, pl.DataType] = {
    "int8": pl.Int8(),
    "int16": pl.Int16(),
    "int32": pl.Int32(),
    "int64": pl.Int64(),
    "float32": pl.Float32(),
    "float64": pl.Float64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "datetime": pl.Datetime("us", "UTC"),
}


def polars_dtype(dtype: DType) -> pl.DataType:
    """The Polars type a contract dtype is stored as."""
    return POLARS_DTYPES[dtype]
