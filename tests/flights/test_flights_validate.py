"""Validation on the flights' tables: broken rows excluded and reported, the data's known quirks (daylight
saving, missing aircraft) kept, structural errors fatal."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from tabloop.config import DataConfig
from tabloop.data.validate import validation_order
from tabloop.errors import ConfigError, ContractError, RejectionLimitError
from tabloop.io import read_json
from tabloop.runtime.contract import ColumnSpec, Reference, TableSpec
from tabloop.stages.validate import run as validate

pytestmark = pytest.mark.adapter("flights")

TERRITORIES = ["BQN", "PSE", "SJU", "STT"]


@pytest.fixture
def raw_copy(stage_outputs: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(stage_outputs["raw"], tmp_path / "raw"))


def lenient(config: DataConfig, share: float = 0.5) -> DataConfig:
    return config.model_copy(update={"validation": config.validation.model_copy(update={"max_rejected_share": share})})


Change = tuple[int, str, object]


def edit(raw: Path, table: str, changes: list[Change] = (), append: pl.DataFrame | None = None) -> pl.DataFrame:  # type: ignore[assignment]
    """Rewrite one raw table with values set at (row, column) and ``append`` rows added; return the original."""
    path = raw / f"{table}.parquet"
    original = pl.read_parquet(path)
    frame = original.with_row_index("_i")
    for row, column, value in changes:
        new = pl.lit(value, frame.schema[column])
        frame = frame.with_columns(pl.when(pl.col("_i") == row).then(new).otherwise(pl.col(column)).alias(column))
    frame = frame.drop("_i")
    if append is not None:
        frame = pl.concat([frame, append])
    frame.write_parquet(path)
    return original


def run(config: DataConfig, raw: Path, tmp_path: Path) -> tuple[dict, pl.DataFrame, dict[str, pl.DataFrame]]:
    out, reports = tmp_path / "validated", tmp_path / "reports"
    validate(config, raw, out, reports)
    rejected = pl.read_csv(reports / "rejected.csv", schema_overrides={"rules": pl.String()})
    accepted = {t: pl.read_parquet(out / f"{t}.parquet") for t in config.tables}
    return read_json(reports / "summary.json"), rejected, accepted


def test_real_slice_keeps_known_quirks(stage_outputs: dict[str, Path], slice_tables: tuple[Path, dict]) -> None:
    summary = read_json(stage_outputs["reports"] / "summary.json")
    assert {t: s["rejected"] for t, s in summary["tables"].items()} == {
        "flights": 0,
        "weather": 0,
        "planes": 0,
        "airports": 0,
    }
    validated = stage_outputs["validated"]
    flights = pl.read_parquet(validated / "flights.parquet")
    weather = pl.read_parquet(validated / "weather.parquet")
    planes = pl.read_parquet(validated / "planes.parquet")
    # Cancelled and diverted flights (no arrival delay) are valid rows: the label policy handles them later.
    assert flights["arr_delay"].null_count() == slice_tables[1]["flights"]["arr_delay"].null_count() > 0
    # Flights to territories missing from the airports table are kept on purpose.
    assert flights.filter(pl.col("dest").is_in(TERRITORIES)).height > 0
    # Flights whose aircraft is not in the planes table are kept.
    assert flights.filter(~pl.col("tailnum").is_in(planes["tailnum"].implode())).height > 0
    # The local hour repeated at the end of daylight saving time keeps both readings (distinct UTC hours).
    repeated = weather.filter((pl.col("month") == 11) & (pl.col("day") == 3) & (pl.col("hour") == 1))
    assert repeated.height == 6
    assert repeated.select("origin", "time_hour").n_unique() == 6


def test_injected_bad_rows_are_reported_with_index_and_rule(config: DataConfig, raw_copy: Path, tmp_path: Path) -> None:
    original = edit(
        raw_copy,
        "flights",
        [
            (3, "distance", -120),
            (10, "dest", "ZZZ"),
            (20, "carrier", None),
            (30, "sched_dep_time", 1275),
            (40, "dest", "ZZZ"),
            (40, "distance", 0),
        ],
    )
    duplicate = original.slice(50, 1)
    edit(raw_copy, "flights", append=duplicate)  # appended as row 337, a copy of row 50
    summary, rejected, accepted = run(lenient(config), raw_copy, tmp_path)

    flights = rejected.filter(pl.col("table") == "flights")
    rules = dict(zip(flights["row"].to_list(), flights["rules"].to_list(), strict=True))
    assert rules == {
        3: "distance: range [1, 6000]",
        10: "dest: exists in airports.faa or [BQN, PSE, SJU, STT]",
        20: "carrier: not null",
        30: "sched_dep_time: HHMM time of day",
        40: "dest: exists in airports.faa or [BQN, PSE, SJU, STT]; distance: range [1, 6000]",
        original.height: "unique key (year, month, day, carrier, flight, origin)",
    }
    assert summary["tables"]["flights"]["rejected"] == 6
    assert summary["tables"]["flights"]["rules"]["distance: range [1, 6000]"] == 2
    # The record of each rejected row travels with it.
    record = flights.filter(pl.col("row") == 3)["record"][0]
    assert '"distance":-120' in record
    # Exactly the broken rows are gone; the first copy of the duplicated flight stays.
    assert accepted["flights"].height == original.height + 1 - 6
    assert accepted["flights"].filter(pl.col("flight") == duplicate["flight"][0]).height >= 1


def test_rejected_reference_cascades(config: DataConfig, raw_copy: Path, tmp_path: Path) -> None:
    airports = pl.read_parquet(raw_copy / "airports.parquet")
    jfk = airports.with_row_index().filter(pl.col("faa") == "JFK")["index"][0]
    edit(raw_copy, "airports", [(jfk, "lat", 123.0)])
    summary, rejected, accepted = run(lenient(config, 1.0), raw_copy, tmp_path)
    assert rejected.filter(pl.col("table") == "airports")["rules"].to_list() == ["lat: range [-90, 90]"]
    assert "JFK" not in accepted["flights"]["origin"].to_list()
    assert "JFK" not in accepted["weather"]["origin"].to_list()
    assert summary["tables"]["flights"]["rules"]["origin: exists in airports.faa"] > 0


def test_weather_sensor_error_is_rejected(config: DataConfig, raw_copy: Path, tmp_path: Path) -> None:
    edit(raw_copy, "weather", [(5, "wind_speed", 1048.36)])
    _, rejected, _ = run(config, raw_copy, tmp_path)
    assert rejected.select("table", "row", "rules").rows() == [("weather", 5, "wind_speed: range [0, 150]")]


def test_over_limit_fails_and_keeps_previous_outputs(
    config: DataConfig, raw_copy: Path, stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    out, reports = tmp_path / "validated", tmp_path / "reports"
    shutil.copytree(stage_outputs["validated"], out)
    shutil.copytree(stage_outputs["reports"], reports)
    before = {p.name: p.read_bytes() for p in [*out.iterdir(), *reports.iterdir()]}
    edit(raw_copy, "flights", [(row, "distance", -1) for row in range(10)])

    with pytest.raises(RejectionLimitError) as excinfo:
        validate(config, raw_copy, out, reports)
    message = str(excinfo.value)
    assert "flights: 10 of 337 rows (2.97%); distance: range [1, 6000] (10)" in message
    assert "max_rejected_share = 1.00%" in message
    assert {p.name: p.read_bytes() for p in [*out.iterdir(), *reports.iterdir()] if p.is_file()} == before
    failed = pl.read_csv(reports / "failed" / "rejected.csv")
    assert failed["row"].to_list() == list(range(10))
    assert "distance: range [1, 6000]" in (reports / "failed" / "summary.md").read_text()

    # Once the data is fixed, a successful run replaces the outputs and clears the failure report.
    shutil.copy(stage_outputs["raw"] / "flights.parquet", raw_copy / "flights.parquet")
    validate(config, raw_copy, out, reports)
    assert not (reports / "failed").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("distance"), "flights: missing column 'distance'"),
        (
            lambda f: f.with_columns(pl.col("distance").cast(pl.Float64)),
            "flights: column 'distance' has type Float64, the contract says int16",
        ),
    ],
)
def test_structural_error_fails_the_stage(
    config: DataConfig, raw_copy: Path, tmp_path: Path, change: object, message: str
) -> None:
    path = raw_copy / "flights.parquet"
    change(pl.read_parquet(path)).write_parquet(path)  # type: ignore[operator]
    with pytest.raises(ContractError, match=message):
        validate(config, raw_copy, tmp_path / "validated", tmp_path / "reports")
    assert not (tmp_path / "validated").exists()


def test_validation_order_follows_references(config: DataConfig) -> None:
    order = validation_order(config.tables)
    assert order.index("airports") < order.index("flights")
    assert order.index("airports") < order.index("weather")
    spec = TableSpec(key=["a"], columns={"a": ColumnSpec(dtype="string", references=Reference(table="t2", column="b"))})
    spec2 = TableSpec(
        key=["b"], columns={"b": ColumnSpec(dtype="string", references=Reference(table="t1", column="a"))}
    )
    with pytest.raises(ConfigError, match="cycle"):
        validation_order({"t1": spec, "t2": spec2})
