"""What the tests run on: the configured dataset (``TABLOOP_DATASET``, else the default of configs/datasets.yaml),
its configuration, and source tables for it written on the fly.

The configuration is read from the working copy, but not the state that tools write into it: ``make retrain``
moves a time split and sets a shuffled split's ``arrived`` rows, and the tests' small tables have their own
history. So the tests reason about a split of their own: the one a dataset's profile pins, or the configured
split with nothing arrived.

A dataset with an adapter may register a profile here with a slice of its real tables (the flights do). A dataset
without one gets every n-th row of its real table when the source is on this machine, and rows generated from
its contract otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from synthetic import single_table, write_source
from tabloop.config import DataConfig, Period, ShuffledSplit, SplitConfig, TimeSplit, load_data_config
from tabloop.errors import TabloopError
from tabloop.layout import Layout
from tabloop.stages.ingest import run as ingest

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGURED = Layout.of(os.environ.get("TABLOOP_DATASET") or None, REPO_ROOT)  # the configured dataset's paths

Writer = Callable[[DataConfig, Path, bool], None]  # config, directory, dense: writes the source tables


@dataclass(frozen=True)
class Profile:
    """How the tests get data for one dataset."""

    write: Writer  # a small slice of source tables (about 500 examples), or a denser one (several thousand)
    split: SplitConfig | None = None  # the split the tests reason about; None: the configured one, nothing arrived


def flights_slice(_config: DataConfig, directory: Path, dense: bool) -> None:
    from flights.slices import write_slice

    write_slice(directory, every=40 if dense else 1000)


# The split of the flights tests: the one the flights example ships with (test months November and December, with
# the daylight-saving change of 3 November; a destination first flown to after August).
FLIGHTS_SPLIT = TimeSplit(
    kind="time",
    train=Period(start=dt.date(2013, 1, 1), end=dt.date(2013, 8, 31)),
    valid=Period(start=dt.date(2013, 9, 1), end=dt.date(2013, 10, 31)),
    test=Period(start=dt.date(2013, 11, 1), end=dt.date(2013, 12, 31)),
)

PROFILES = {"flights": Profile(write=flights_slice, split=FLIGHTS_SPLIT)}  # by adapter


def single_table_slice(config: DataConfig, directory: Path, dense: bool) -> None:
    """Every n-th row of the dataset's real table (about 500, or 4,000 when dense), or as many generated rows
    when its source is not on this machine (a git-ignored directory of a fresh clone, say)."""
    rows = 4000 if dense else 500
    table = config.entity.table
    with tempfile.TemporaryDirectory() as scratch:
        try:
            ingest(config, Path(scratch))
        except TabloopError:
            frame = single_table(config, n=rows, seed=7)
        else:
            real = pl.read_parquet(Path(scratch) / f"{table}.parquet")
            frame = real.gather_every(max(1, real.height // rows))
    write_source(frame, directory, table)


def profile(config: DataConfig) -> Profile:
    """The profile of a dataset; a clear error for a dataset with an adapter and none registered."""
    if config.adapter is None:
        return Profile(write=single_table_slice)
    if config.adapter not in PROFILES:
        raise LookupError(
            f"no test profile for the {config.adapter!r} adapter: register one in tests/profiles.py with a slice "
            "of its tables (see flights_slice)"
        )
    return PROFILES[config.adapter]


def fixture_config(config: DataConfig) -> DataConfig:
    """``config`` with the split the tests reason about."""
    pinned = profile(config).split
    if pinned is not None:
        return config.model_copy(update={"split": pinned})
    if isinstance(config.split, ShuffledSplit):
        return config.model_copy(update={"split": config.split.model_copy(update={"arrived": None})})
    return config


def time_split_of(config: DataConfig, source: Path) -> DataConfig:
    """``config`` with a time split cut from the dates in a single table at ``source`` (60/20/20 by row), so that a
    moved or edited split never leaves the tests' rows out."""
    if not isinstance(config.split, TimeSplit) or config.adapter is not None or config.entity.time is None:
        return config
    dates = pl.read_parquet(source / f"{config.entity.table}.parquet")[config.entity.time].dt.date().sort()
    first, train_end, valid_end, last = (dates[int(share * (dates.len() - 1))] for share in (0.0, 0.6, 0.8, 1.0))
    day = dt.timedelta(days=1)
    split = TimeSplit(
        kind="time",
        train=Period(start=first, end=train_end),
        valid=Period(start=train_end + day, end=valid_end),
        test=Period(start=valid_end + day, end=last),
    )
    return config.model_copy(update={"split": split})


def configured_config() -> DataConfig:
    """The configured dataset's data configuration, as the tests use it."""
    return fixture_config(load_data_config(CONFIGURED.data_config))
