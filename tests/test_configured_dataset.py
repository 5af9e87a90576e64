"""The suite follows the configured dataset: its fixtures come from the configuration of whichever dataset
``TABLOOP_DATASET`` names, never from state that tools write into the working copy, and the fast suite passes with
each dataset of the repository configured."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.workspace import environment
from conftest import REPO_ROOT, WHERE
from profiles import FLIGHTS_SPLIT, fixture_config
from tabloop.config import Arrived, Period, TimeSplit, load_data_config
from tabloop.layout import Layout, load_datasets

OTHERS = [name for name in load_datasets(REPO_ROOT).datasets if name != WHERE.dataset]


def test_a_retrained_split_is_not_what_the_tests_reason_about() -> None:
    flights = load_data_config(Layout("flights", REPO_ROOT).data_config)
    periods = [(dt.date(2013, 1, 1), dt.date(2013, 11, 5)), (dt.date(2013, 11, 6), dt.date(2013, 12, 3))]
    train, valid, test = (Period(start=a, end=b) for a, b in [*periods, (dt.date(2013, 12, 4), dt.date(2013, 12, 31))])
    moved = flights.model_copy(update={"split": TimeSplit(kind="time", train=train, valid=valid, test=test)})
    assert fixture_config(moved).split == FLIGHTS_SPLIT  # as `make retrain` leaves it after a promotion

    credit = load_data_config(Layout("credit", REPO_ROOT).data_config)
    arrived = credit.split.model_copy(update={"arrived": Arrived(rows=668, valid=100, test=100)})
    assert fixture_config(credit.model_copy(update={"split": arrived})).split.arrived is None  # type: ignore[union-attr]


@pytest.mark.e2e
@pytest.mark.parametrize("dataset", OTHERS)
def test_the_fast_suite_passes_with_another_dataset_configured(dataset: str, tmp_path: Path) -> None:
    fast = ["-m", "not e2e and not ui", "-q", "-rs", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run")]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *fast],
        cwd=REPO_ROOT,
        env={**environment(), "TABLOOP_DATASET": dataset},
        capture_output=True,
        text=True,
        check=False,
        timeout=1500,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert " passed" in output.splitlines()[-1]
    if load_data_config(Layout(dataset, REPO_ROOT).data_config).adapter != "flights":  # listed as skipped
        assert f"flights adapter tests; the configured dataset is {dataset!r}" in output
