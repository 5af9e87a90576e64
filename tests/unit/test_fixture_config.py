"""The fixtures reason about the configured split, not about what `make retrain` writes into it."""

from __future__ import annotations

import datetime as dt

from helpers import REPO_ROOT
from profiles import FLIGHTS_SPLIT, fixture_config
from tabloop.config import Arrived, Period, TimeSplit, load_data_config
from tabloop.layout import Layout


def test_a_retrained_split_is_not_what_the_tests_reason_about() -> None:
    flights = load_data_config(Layout("flights", REPO_ROOT).data_config)
    periods = [(dt.date(2013, 1, 1), dt.date(2013, 11, 5)), (dt.date(2013, 11, 6), dt.date(2013, 12, 3))]
    train, valid, test = (Period(start=a, end=b) for a, b in [*periods, (dt.date(2013, 12, 4), dt.date(2013, 12, 31))])
    moved = flights.model_copy(update={"split": TimeSplit(kind="time", train=train, valid=valid, test=test)})
    assert fixture_config(moved).split == FLIGHTS_SPLIT  # as `make retrain` leaves it after a promotion

    credit = load_data_config(Layout("credit", REPO_ROOT).data_config)
    arrived = credit.split.model_copy(update={"arrived": Arrived(rows=668, valid=100, test=100)})
    assert fixture_config(credit.model_copy(update={"split": arrived})).split.arrived is None  # type: ignore[union-attr]
