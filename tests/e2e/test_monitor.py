"""Monitoring on a replayed slice: windows reported into the workspace, the dashboard, the gate and its exit codes."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from helpers import monitor_config
from monitoring.gate import ALARM, HEALTHY, UNJUDGED, WindowSummary, judge
from monitoring.log_reader import read_log, windows
from monitoring.monitor import run_monitor
from monitoring.workspace import MonitoringWorkspace
from serving.log import PredictionLog
from tabloop.config import DataConfig, RegistryConfig, load_registry_config
from tabloop.settings import Settings


def replayed_log_args(replayed: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    return replayed[0], tmp_path, replayed[1]


def registry_config(registry_store: tuple[Settings, Path]) -> RegistryConfig:
    return load_registry_config(registry_store[1])


def test_every_window_is_reported_and_the_latest_judged(
    replayed_log: tuple[Path, Path], registry_store: tuple, tmp_path: Path, config: DataConfig
) -> None:
    settings = monitor_config(*replayed_log_args(replayed_log, tmp_path))
    result = run_monitor(settings, registry_store[0], registry_config(registry_store))
    log = read_log(settings.reports.log_url)
    found = windows(log, "week")
    assert [w.window for w in result.windows] == [w.key for w in found]
    assert sum(w.rows for w in result.windows) == log.height
    judged = [w for w in result.windows if w.rows >= 50]
    assert judged
    assert all(w.status == "reported" for w in judged)
    verdict = result.verdict
    assert verdict.window == judged[-1].window
    assert verdict == judge(verdict.window, verdict.summary, settings.gate)  # the gate's decision on that window
    assert verdict.exit_code in (HEALTHY, ALARM)  # which one depends on the data: tests/unit/test_drift_gate.py
    summary = verdict.summary
    assert summary is not None
    assert set(summary.columns) == set(config.contract.features)
    assert 0 <= summary.drift_share <= 1
    assert summary.quality is not None
    assert summary.quality.roc_auc is not None  # every outcome has arrived
    saved = json.loads((tmp_path / "out" / "verdict.json").read_text())
    assert saved["status"] == verdict.status
    assert {k: v for k, v in saved.items() if k != "windows"} == json.loads(json.dumps(verdict.model_dump()))
    assert saved["windows"] == [w.model_dump() for w in result.windows]
    written = tmp_path / "out" / "windows" / f"{verdict.window.replace('/', '_')}.json"
    assert WindowSummary.model_validate_json(written.read_text()) == summary  # the window's numbers read back
    assert "# Monitoring verdict" in (tmp_path / "out" / "summary.md").read_text()
    html = (tmp_path / "out" / "latest.html").read_text()
    assert "<script src=" not in html  # self-contained, for sharing

    workspace = MonitoringWorkspace(tmp_path / "workspace", settings.reports.project)
    kinds = sorted(kind for (_, kind) in workspace.existing)
    assert kinds == sorted(["drift", "quality"] * len(judged))
    dashboard = workspace.workspace.get_project(workspace.project_id).dashboard.model()
    titles = [panel.title for panel in dashboard.panels]
    keyed = bool(settings.reports.dashboard_features)  # the configured dataset's choice, perhaps none
    assert ("Drift score of key features" in titles) == keyed
    assert len(titles) == 5 + keyed

    again = run_monitor(settings, registry_store[0], registry_config(registry_store))
    statuses = [w.status for w in again.windows if w.rows >= 50]
    assert statuses == ["up to date"] * (len(judged) - 1) + ["reported"]  # only the latest is reported again
    assert again.verdict.status == verdict.status


def test_windows_without_outcomes_get_no_quality_report(
    replayed_log: tuple[Path, Path], registry_store: tuple, tmp_path: Path
) -> None:
    log = tmp_path / "no-feedback.db"
    shutil.copy(replayed_log[0], log)
    with sqlite3.connect(log) as conn:
        conn.execute("DELETE FROM feedback")
    config = monitor_config(log, tmp_path, replayed_log[1])
    result = run_monitor(config, registry_store[0], registry_config(registry_store))
    assert result.verdict.summary is not None
    assert result.verdict.summary.quality is None
    assert "No quality report yet" in (tmp_path / "out" / "summary.md").read_text()
    workspace = MonitoringWorkspace(tmp_path / "workspace", config.reports.project)
    assert {kind for (_, kind) in workspace.existing} == {"drift"}


def test_an_empty_log_is_not_judged(registry_store: tuple, tmp_path: Path, stage_outputs: dict[str, Path]) -> None:
    log = tmp_path / "empty.db"
    PredictionLog(f"sqlite:///{log}").engine.dispose()  # the tables, no rows
    config = monitor_config(log, tmp_path, stage_outputs["features"])
    result = run_monitor(config, registry_store[0], registry_config(registry_store))
    assert (result.verdict.status, result.verdict.exit_code) == ("not judged", UNJUDGED)
    assert json.loads((tmp_path / "out" / "verdict.json").read_text())["exit_code"] == UNJUDGED


def test_an_unreadable_snapshot_is_removed_and_reporting_goes_on(
    replayed_log: tuple[Path, Path], registry_store: tuple, tmp_path: Path
) -> None:
    config = monitor_config(*replayed_log_args(replayed_log, tmp_path))
    run_monitor(config, registry_store[0], registry_config(registry_store))
    snapshots = sorted((tmp_path / "workspace").glob("*/snapshots/*.json"))
    snapshots[0].write_text('{"truncated": ')
    workspace = MonitoringWorkspace(tmp_path / "workspace", config.reports.project)
    assert not snapshots[0].exists()
    assert [p.name for p in workspace.quarantined] == [snapshots[0].name]  # kept beside the workspace
    assert len(workspace.existing) == len(snapshots) - 1
    result = run_monitor(config, registry_store[0], registry_config(registry_store))
    assert result.verdict.window is not None
