"""Replaying flights: outcomes after landing, and a replay that stops at a day of the flights' calendar."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
from pathlib import Path

import pytest

from helpers import log_rows, running_service
from monitoring.replay import replay
from monitoring.traffic import end_of_day, load_traffic
from serving.settings import ServeSettings
from tabloop.config import DataConfig
from tabloop.config.monitor import ReplayConfig

pytestmark = pytest.mark.adapter("flights")

ZONE = "America/New_York"  # the flights' scheduled times are local to the New York airports


def test_landing_is_after_departure_by_the_flight_and_its_delay(
    config: DataConfig, replay_config: ReplayConfig
) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, replay_config, time_zone=ZONE)
    minutes = [
        (land - dep) / dt.timedelta(minutes=1) for dep, land in zip(traffic.event_time, traffic.outcome_at, strict=True)
    ]
    assert min(minutes) >= 20
    delayed = [m for m, delay in zip(minutes, traffic.outcomes, strict=True) if delay is not None and delay > 120]
    assert all(m > 150 for m in delayed)


def test_a_replay_until_a_day_stops_there_and_resumes_from_its_own_copy(
    serve_settings: ServeSettings,
    registry_store: tuple,
    replay_config: ReplayConfig,
    config: DataConfig,
    tmp_path: Path,
) -> None:
    flights = tmp_path / "test.parquet"
    shutil.copyfile(replay_config.traffic, flights)
    moving = replay_config.model_copy(update={"traffic": flights})
    traffic = load_traffic(flights, config.contract, replay_config, time_zone=ZONE)
    november = end_of_day(dt.date(2013, 11, 30), ZONE)
    in_november = sum(t < november for t in traffic.event_time)
    assert 0 < in_november < len(traffic)
    with running_service(serve_settings, registry_store[0]) as url:
        first = asyncio.run(
            replay(
                moving.model_copy(update={"until": dt.date(2013, 11, 30)}),
                config.contract,
                url,
                time_zone=ZONE,
                show_progress=False,
            )
        )
        assert first.stopped_by == "until (2013-11-30)"
        assert first.state.next == in_november
        assert 0 < first.feedback < in_november
        assert all(outcome[0] > november.timestamp() for outcome in first.state.pending)  # still in the air
        flights.unlink()  # retraining rewrites the feature tables: the replay goes on with its copy
        second = asyncio.run(replay(moving, config.contract, url, time_zone=ZONE, show_progress=False))
    assert second.finished
    assert second.state.run == first.state.run
    assert len(log_rows(serve_settings, "predictions")) == len(traffic)
    assert len(log_rows(serve_settings, "feedback")) == len(traffic)
