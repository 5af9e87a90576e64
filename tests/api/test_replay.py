"""Traffic replay against a running service: every example once, outcomes after, resumable, clear failures."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import OUTCOME_COLUMN, TASK, log_rows, running_service
from monitoring.__main__ import app as monitoring_cli
from monitoring.replay import replay
from monitoring.replay_state import ReplayState
from monitoring.traffic import ReplayError, load_traffic
from serving.settings import ServeSettings
from tabloop.commands.boundary import entry_point
from tabloop.config import DataConfig
from tabloop.config.monitor import ReplayConfig, load_monitor_config
from tabloop.layout import Layout


def test_every_example_is_predicted_once_at_its_time_and_its_outcome_follows(
    serve_settings: ServeSettings, registry_store: tuple, replay_config: ReplayConfig, config: DataConfig
) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, replay_config, time_zone=config.entity.time_zone)
    assert traffic.event_time == sorted(traffic.event_time)
    assert all(land > dep for dep, land in zip(traffic.event_time, traffic.outcome_at, strict=True))
    with running_service(serve_settings, registry_store[0]) as url:
        summary = asyncio.run(
            replay(replay_config, config.contract, url, time_zone=config.entity.time_zone, show_progress=False)
        )
    assert summary.finished
    assert (summary.sent, summary.answered, summary.rejected, summary.feedback) == (len(traffic),) * 2 + (
        0,
        len(traffic),
    )
    predictions = {row["id"]: row for row in log_rows(serve_settings, "predictions")}
    assert len(predictions) == len(traffic)
    run = summary.state.run
    first = predictions[f"r{run}-{traffic.keys[0]}"]
    # the examples' own calendar (in UTC), not the replay's
    assert str(first["event_time"]).startswith(traffic.event_time[0].strftime("%Y-%m-%d %H:%M:%S"))
    outcomes = {row["prediction_id"]: row for row in log_rows(serve_settings, "feedback")}
    assert set(outcomes) == set(predictions)
    actual = dict(zip(traffic.keys, traffic.labels, strict=True))
    stored = {key: outcomes[f"r{run}-{key}"][OUTCOME_COLUMN] for key in traffic.keys}
    assert stored == {key: bool(v) if TASK == "binary" else v for key, v in actual.items()}


def test_an_interrupted_replay_resumes_and_counts_nothing_twice(
    serve_settings: ServeSettings, registry_store: tuple, replay_config: ReplayConfig, config: DataConfig
) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, replay_config, time_zone=config.entity.time_zone)
    with running_service(serve_settings, registry_store[0]) as url:
        first = asyncio.run(
            replay(
                replay_config.model_copy(update={"max_requests": 30}),
                config.contract,
                url,
                time_zone=config.entity.time_zone,
                show_progress=False,
            )
        )
        assert not first.finished
        assert first.stopped_by.startswith("max_requests")
        # A crash after sending but before saving: the state is behind what the service has seen.
        state = ReplayState.load(replay_config.state, traffic)
        state.next -= 10
        state.save(replay_config.state)
        second = asyncio.run(
            replay(replay_config, config.contract, url, time_zone=config.entity.time_zone, show_progress=False)
        )
    assert second.finished
    assert second.state.run == first.state.run
    assert second.sent == len(traffic) - 20
    predictions = log_rows(serve_settings, "predictions")
    assert len(predictions) == len(traffic)  # the ten examples sent twice are logged once
    assert len(log_rows(serve_settings, "feedback")) == len(traffic)


def test_a_replay_with_no_rate_limit_sends_every_example(
    serve_settings: ServeSettings,
    registry_store: tuple,
    replay_config: ReplayConfig,
    config: DataConfig,
    tmp_path: Path,
) -> None:
    written = tmp_path / "monitor.yaml"
    written.write_text("replay:\n  rate: null\n")
    assert load_monitor_config(written, Layout.of(None)).replay.rate is None
    traffic = load_traffic(replay_config.traffic, config.contract, replay_config, time_zone=config.entity.time_zone)
    unlimited = replay_config.model_copy(update={"rate": None})
    with running_service(serve_settings, registry_store[0]) as url:
        summary = asyncio.run(
            replay(unlimited, config.contract, url, time_zone=config.entity.time_zone, show_progress=False)
        )
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
        asyncio.run(replay(replay_config, config.contract, url, time_zone=config.entity.time_zone, show_progress=False))
    traffic = load_traffic(replay_config.traffic, config.contract, replay_config, time_zone=config.entity.time_zone)
    state = ReplayState.load(replay_config.state, traffic)
    assert (state.next, state.answered, state.pending) == (0, 0, [])


def test_a_state_from_another_replay_is_not_used(replay_config: ReplayConfig, config: DataConfig) -> None:
    traffic = load_traffic(replay_config.traffic, config.contract, replay_config, time_zone=config.entity.time_zone)
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


def test_commands_do_not_log_a_line_per_http_request() -> None:
    with entry_point("replay"):
        assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
        assert logging.getLogger("monitoring.replay").getEffectiveLevel() <= logging.INFO
