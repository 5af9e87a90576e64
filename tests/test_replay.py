"""Traffic replay against a running service: every flight once, outcomes after landing, resumable, clear failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from conftest import running_service
from monitoring.__main__ import app as monitoring_cli
from monitoring.config import ReplayConfig, load_monitor_config
from monitoring.replay import ReplayError, ReplayState, end_of_day, load_traffic, replay
from serving.settings import ServeSettings
from tabloop.cli import entry_point
from tabloop.config import DataConfig

ZONE = "America/New_York"  # the flights' scheduled times are local to the New York airports


def log_rows(settings: ServeSettings, table: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(settings.prediction_log_url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(f"select * from {table}"))]
    engine.dispose()
    return rows


@pytest.fixture
def replay_config(stage_outputs: dict[str, Path], tmp_path: Path) -> ReplayConfig:
    """The slice's test months, two months in well under a second."""
    return ReplayConfig(
        traffic=stage_outputs["features"] / "test.parquet",
        speedup=2e7,
        rate=5000,
        concurrency=8,
        max_seconds=120,
        retry_seconds=1,
        state=tmp_path / "replay" / "state.json",
    )


def test_every_flight_is_predicted_once_at_its_time_and_its_outcome_follows(
    serve_settings: ServeSettings, registry_store: tuple, replay_config: ReplayConfig, config: DataConfig
) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, time_zone=ZONE)
    assert traffic.event_time == sorted(traffic.event_time)
    assert all(land > dep for dep, land in zip(traffic.event_time, traffic.outcome_at, strict=True))
    with running_service(serve_settings, registry_store[0]) as url:
        summary = asyncio.run(replay(replay_config, config.contract, url, time_zone=ZONE, show_progress=False))
    assert summary.finished
    assert (summary.sent, summary.answered, summary.rejected, summary.feedback) == (len(traffic),) * 2 + (
        0,
        len(traffic),
    )
    predictions = {row["id"]: row for row in log_rows(serve_settings, "predictions")}
    assert len(predictions) == len(traffic)
    run = summary.state.run
    first = predictions[f"r{run}-{traffic.keys[0]}"]
    # the flights' calendar (in UTC), not the replay's
    assert str(first["event_time"]).startswith(traffic.event_time[0].strftime("%Y-%m-%d %H:%M:%S"))
    assert traffic.event_time[0].month == 11
    outcomes = {row["prediction_id"]: row for row in log_rows(serve_settings, "feedback")}
    assert set(outcomes) == set(predictions)
    late = dict(zip(traffic.keys, traffic.labels, strict=True))
    assert all(bool(outcomes[f"r{run}-{key}"]["actual"]) == late[key] for key in traffic.keys)


def test_an_interrupted_replay_resumes_and_counts_nothing_twice(
    serve_settings: ServeSettings, registry_store: tuple, replay_config: ReplayConfig, config: DataConfig
) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, time_zone=ZONE)
    with running_service(serve_settings, registry_store[0]) as url:
        first = asyncio.run(
            replay(
                replay_config.model_copy(update={"max_requests": 30}),
                config.contract,
                url,
                time_zone=ZONE,
                show_progress=False,
            )
        )
        assert not first.finished
        assert first.stopped_by.startswith("max_requests")
        # A crash after sending but before saving: the state is behind what the service has seen.
        state = ReplayState.load(replay_config.state, traffic)
        state.next -= 10
        state.save(replay_config.state)
        second = asyncio.run(replay(replay_config, config.contract, url, time_zone=ZONE, show_progress=False))
    assert second.finished
    assert second.state.run == first.state.run
    assert second.sent == len(traffic) - 20
    predictions = log_rows(serve_settings, "predictions")
    assert len(predictions) == len(traffic)  # the ten flights sent twice are logged once
    assert len(log_rows(serve_settings, "feedback")) == len(traffic)


def test_a_replay_with_no_rate_limit_sends_every_flight(
    serve_settings: ServeSettings,
    registry_store: tuple,
    replay_config: ReplayConfig,
    config: DataConfig,
    tmp_path: Path,
) -> None:
    written = tmp_path / "monitor.yaml"
    written.write_text("replay:\n  rate: null\n")
    assert load_monitor_config(written).replay.rate is None
    traffic = load_traffic(replay_config.traffic, config.contract, time_zone=ZONE)
    unlimited = replay_config.model_copy(update={"rate": None})
    with running_service(serve_settings, registry_store[0]) as url:
        summary = asyncio.run(replay(unlimited, config.contract, url, time_zone=ZONE, show_progress=False))
    assert summary.finished
    assert (summary.answered, summary.rejected, summary.feedback) == (len(traffic), 0, len(traffic))
    assert len(log_rows(serve_settings, "predictions")) == len(traffic)


def test_a_service_that_is_down_stops_the_replay_with_its_progress_kept(
    replay_config: ReplayConfig, config: DataConfig
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(ReplayError, match=r"did not answer for 1 s.*run the replay again to resume"):
        asyncio.run(replay(replay_config, config.contract, url, time_zone=ZONE, show_progress=False))
    traffic = load_traffic(replay_config.traffic, config.contract, time_zone=ZONE)
    state = ReplayState.load(replay_config.state, traffic)
    assert (state.next, state.answered, state.pending) == (0, 0, [])


def test_a_state_from_another_replay_is_not_used(replay_config: ReplayConfig, config: DataConfig) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, time_zone=ZONE)
    other = ReplayState(run="abc", source="elsewhere.parquet", rows=5)
    other.save(replay_config.state)
    with pytest.raises(ReplayError, match="pass --restart"):
        ReplayState.load(replay_config.state, traffic)
    replay_config.state.write_text("{not json")
    with pytest.raises(ReplayError, match="not a replay state"):
        ReplayState.load(replay_config.state, traffic)


def test_the_command_names_a_bad_configuration_key(tmp_path: Path) -> None:
    bad = tmp_path / "monitor.yaml"
    bad.write_text("replay:\n  speedup: -1\n  sppedup: 3\n")
    result = CliRunner().invoke(monitoring_cli, ["replay", "--config", str(bad)])
    assert result.exit_code == 1
    assert "replay.speedup" in result.output
    assert "replay.sppedup: unknown key" in result.output


def test_landing_is_after_departure_by_the_flight_and_its_delay(
    config: DataConfig, replay_config: ReplayConfig
) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, time_zone=ZONE)
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
    traffic = load_traffic(flights, config.contract, time_zone=ZONE)
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


def test_commands_do_not_log_a_line_per_http_request() -> None:
    with entry_point("replay"):
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
        assert logging.getLogger("monitoring.replay").getEffectiveLevel() <= logging.INFO
