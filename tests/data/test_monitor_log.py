"""Reading the prediction log for monitoring: a missing log, features logged under an older contract, a log from
before event times."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
from typer.testing import CliRunner

from monitoring.__main__ import app as monitoring_cli
from monitoring.log_reader import LogError, decode_features, read_log
from tabloop.config import DataConfig


def test_a_missing_log_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LogError, match="no prediction log yet"):
        read_log(f"sqlite:///{tmp_path}/nothing.db")
    assert not (tmp_path / "nothing.db").exists()
    config = tmp_path / "monitor.yaml"
    config.write_text(f"reports:\n  log_url: sqlite:///{tmp_path}/nothing.db\n")
    result = CliRunner().invoke(monitoring_cli, ["monitor", "--config", str(config)])
    assert result.exit_code == 1
    assert "no prediction log yet" in result.output


def test_features_logged_under_an_older_contract_are_read(config: DataConfig, test_rows: list[dict[str, Any]]) -> None:
    contract = config.contract
    kept, dropped = list(contract.features)[:2], list(contract.features)[2]
    older = {name: test_rows[0][name] for name in kept}  # logged before the third feature was added
    rows = pl.DataFrame(
        {
            "id": ["a", "b"],
            "features": [
                orjson.dumps({**older, "retired_feature": 3}).decode(),  # older: fewer
                orjson.dumps(dict.fromkeys(contract.features)).decode(),
            ],
        }
    )
    decoded = decode_features(rows, contract)
    assert decoded.columns == ["id", *contract.features]
    assert [decoded.row(0, named=True)[name] for name in kept] == [older[name] for name in kept]
    assert decoded.row(0, named=True)[dropped] is None


def test_a_log_from_before_event_times_is_read_on_the_time_of_the_answer(tmp_path: Path) -> None:
    log = tmp_path / "old.db"
    with sqlite3.connect(log) as conn:
        conn.execute(
            "CREATE TABLE predictions (id VARCHAR(96) PRIMARY KEY, request_id VARCHAR(64) NOT NULL, "
            "created_at DATETIME NOT NULL, route VARCHAR(64) NOT NULL, model_name VARCHAR(128) NOT NULL, "
            "model_version VARCHAR(32) NOT NULL, features TEXT NOT NULL, probability FLOAT NOT NULL, "
            "label BOOLEAN NOT NULL)"
        )
        conn.execute("CREATE TABLE feedback (prediction_id VARCHAR(96) PRIMARY KEY, actual BOOLEAN NOT NULL)")
        conn.execute(
            "INSERT INTO predictions VALUES ('p1', 'p1', '2026-11-02 10:00:00.000000', '/predict', 'flight-delay', "
            "'1', '{}', 0.3, 0)"
        )
    frame = read_log(f"sqlite:///{log}")
    assert frame["event_time"].to_list() == [dt.datetime(2026, 11, 2, 10, tzinfo=dt.UTC)]


def test_monitoring_reads_the_log_the_service_writes_unless_its_config_names_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.settings import ServeSettings
    from tabloop.config.monitor import load_monitor_config
    from tabloop.layout import Layout
    from tabloop.settings import Settings

    where = Layout.of("credit")
    elsewhere = f"sqlite:///{tmp_path}/served.db"
    monkeypatch.setenv("TABLOOP_SERVE_PREDICTION_LOG_URL", elsewhere)
    settings = Settings()
    assert settings.prediction_log_url == ServeSettings(dataset="credit").prediction_log_url == elsewhere
    loaded = load_monitor_config(where.monitor_config, where, settings.prediction_log_url)
    assert loaded.reports.log_url == elsewhere
    assert loaded.reports.cache_dir == where.cache  # the other defaults stay the dataset's

    monkeypatch.delenv("TABLOOP_SERVE_PREDICTION_LOG_URL")
    assert load_monitor_config(where.monitor_config, where, Settings().prediction_log_url).reports.log_url == (
        where.prediction_log_url
    )
    configured = tmp_path / "monitor.yaml"
    configured.write_text(f"reports:\n  log_url: sqlite:///{tmp_path}/configured.db\n")
    assert load_monitor_config(configured, where, elsewhere).reports.log_url == f"sqlite:///{tmp_path}/configured.db"
