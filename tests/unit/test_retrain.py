"""Retraining's plan: how far the outcomes reach, where the split moves, and when there is nothing new to train on.

The whole loop, with the pipeline run as a DVC experiment and the service reloading, is
tests/e2e/test_flights_loop.py.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from helpers import WHERE
from monitoring.__main__ import app as monitoring_cli
from monitoring.log_reader import LogError
from monitoring.retrain import (
    NOTHING_NEW,
    NothingNewError,
    RetrainError,
    announce,
    arrived_rows,
    labelled_horizon,
    moved_split,
    plan_rows,
    retrain,
    run_pipeline,
)
from serving.log import PredictionLog
from tabloop.config import Arrived, RandomSplit, retrained_yaml
from tabloop.config.loading import load_yaml
from tabloop.config.monitor import RetrainConfig, load_monitor_config
from tabloop.errors import FeatureError
from tabloop.features.build import arrived_split
from tabloop.registry.dvc_repo import check_out, restore
from tabloop.settings import Settings

NEW_YORK = "America/New_York"


def log_of(days: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """A prediction log with, per local day, (predictions, of which labelled), at noon New York time."""
    rows = []
    for day, (total, labelled) in days.items():
        noon = dt.datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=dt.timezone(dt.timedelta(hours=-5)))
        rows += [{"event_time": noon, "actual": (i % 3 == 0) if i < labelled else None} for i in range(total)]
    return pl.DataFrame(rows, schema={"event_time": pl.Datetime("us", "UTC"), "actual": pl.Boolean})


def test_the_horizon_is_the_newest_day_with_its_outcomes() -> None:
    log = log_of({"2013-11-01": (10, 10), "2013-11-02": (10, 9), "2013-11-03": (10, 8), "2013-11-04": (10, 0)})
    assert labelled_horizon(log, min_share=0.9, time_zone="America/New_York") == dt.date(2013, 11, 2)
    assert labelled_horizon(log, min_share=0.8, time_zone="America/New_York") == dt.date(2013, 11, 3)


def test_the_horizon_is_the_local_day_not_the_utc_one() -> None:
    late_evening = dt.datetime(2013, 11, 30, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))  # 04:30 UTC on 1 Dec
    log = pl.DataFrame({"event_time": [late_evening], "actual": [True]}).with_columns(
        pl.col("event_time").dt.convert_time_zone("UTC")
    )
    assert labelled_horizon(log, min_share=1.0, time_zone="America/New_York") == dt.date(2013, 11, 30)


def test_no_outcomes_no_horizon() -> None:
    assert labelled_horizon(log_of({"2013-11-01": (5, 0)}), min_share=0.9, time_zone="UTC") is None
    assert labelled_horizon(log_of({}), min_share=0.9, time_zone="UTC") is None


def test_a_repository_without_a_commit_is_a_clear_error(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    with pytest.raises(RetrainError, match="commit your work first"):
        run_pipeline(tmp_path, "retrain-x", "register@flights", (tmp_path / "retrained.yaml", retrained_yaml()))
    assert not (tmp_path / "retrained.yaml").exists()


def test_a_service_that_is_not_running_is_told_nothing() -> None:
    assert "it loads the new champion when it starts" in announce("http://127.0.0.1:9", None, timeout=2)


def test_a_log_without_outcomes_exits_nothing_new(tmp_path: Path, stage_outputs: dict[str, Path]) -> None:
    log = tmp_path / "empty.db"
    PredictionLog(f"sqlite:///{log}").engine.dispose()
    config = tmp_path / "monitor.yaml"
    config.write_text(f"reports:\n  log_url: sqlite:///{log}\n")
    arguments = [
        "retrain",
        "--config",
        str(config),
        "--features-metrics",
        str(stage_outputs["features_metrics"]),
        "--dry-run",
    ]
    result = CliRunner().invoke(monitoring_cli, arguments)
    assert result.exit_code == NOTHING_NEW, result.output
    assert "nothing to retrain" in result.output


def test_a_missing_log_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(f"reports:\n  log_url: sqlite:///{tmp_path}/nothing.db\n")
    result = CliRunner().invoke(monitoring_cli, ["retrain", "--config", str(config), "--dry-run"])
    assert result.exit_code == 1
    assert "no prediction log yet" in result.output


def test_retraining_on_a_log_without_outcomes_finds_nothing_new(tmp_path: Path, stage_outputs: dict[str, Path]) -> None:
    log = tmp_path / "empty.db"
    PredictionLog(f"sqlite:///{log}").engine.dispose()
    config = tmp_path / "monitor.yaml"
    config.write_text(f"reports:\n  log_url: sqlite:///{log}\n")
    said: list[str] = []
    result = retrain(
        Settings(),
        WHERE,
        load_monitor_config(config, WHERE),
        features_metrics=stage_outputs["features_metrics"],
        report=said.append,
    )  # not a dry run: with nothing new, the pipeline does not run
    assert (result.exit_code, result.planned, result.outcome) == (NOTHING_NEW, None, None)
    assert result.nothing_new
    assert said == [f"nothing to retrain: {result.nothing_new}"]


def test_retraining_without_a_log_fails_before_planning(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(f"reports:\n  log_url: sqlite:///{tmp_path}/nothing.db\n")
    said: list[str] = []
    with pytest.raises(LogError, match="no prediction log yet"):
        retrain(Settings(), WHERE, load_monitor_config(config, WHERE), dry_run=True, report=said.append)
    assert said == []


def dvc_workspace(root: Path, check: str) -> Path:
    """A git and DVC repository whose one stage writes ``out.txt`` from ``configs/retrained.yaml`` (``check``: a
    Python condition on its text, failing the stage when false), run once and committed."""
    configs = root / "configs"
    configs.mkdir()
    (configs / "data.yaml").write_text('x: 1\ncategories: ["Yes", "No"]\n')
    (configs / "retrained.yaml").write_text(retrained_yaml())
    (root / "stage.py").write_text(
        "import sys, pathlib\ntext = pathlib.Path('configs/retrained.yaml').read_text()\n"
        f"sys.exit(0 if {check} else 1)\n"
    )
    (root / "dvc.yaml").write_text(
        f"stages:\n  s:\n    cmd: {sys.executable} stage.py && cp configs/retrained.yaml out.txt\n"
        "    params:\n      - configs/retrained.yaml:\n    outs: [out.txt]\n"
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    dvc = str(Path(sys.executable).parent / "dvc")
    for command in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "repro", "-q"], [*git, "add", "-A"]):
        subprocess.run(command, cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=root, check=True)
    return configs


def test_a_failed_experiment_leaves_the_configuration_and_the_lock_as_they_were(tmp_path: Path) -> None:
    configs = dvc_workspace(tmp_path, "'rows:' not in text")  # the moved split makes the stage fail
    before = {p: p.read_bytes() for p in (*configs.iterdir(), tmp_path / "dvc.lock")}
    moved = retrained_yaml(moved_split(Arrived(rows=300, valid=100, test=100)))
    with pytest.raises(RetrainError, match="configuration, the registry and the served model are unchanged"):
        run_pipeline(tmp_path, "retrain-x", "s", (configs / "retrained.yaml", moved))
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in configs.iterdir()) == ["data.yaml", "retrained.yaml"]


def test_a_kept_experiment_writes_only_its_own_file_and_a_rejected_one_is_undone(tmp_path: Path) -> None:
    configs = dvc_workspace(tmp_path, "True")
    data, lock, out = (configs / "data.yaml").read_bytes(), (tmp_path / "dvc.lock").read_bytes(), tmp_path / "out.txt"
    champion_out = out.read_bytes()
    moved = retrained_yaml(moved_split(Arrived(rows=300, valid=100, test=100)))
    kept = run_pipeline(tmp_path, "retrain-rows-300", "s", (configs / "retrained.yaml", moved))
    assert (configs / "data.yaml").read_bytes() == data  # the user's file, byte for byte
    assert load_yaml(configs / "retrained.yaml")["split"] == {"arrived": {"rows": 300, "valid": 100, "test": 100}}
    assert out.read_text() == moved  # the challenger's outputs
    assert (tmp_path / "dvc.lock").read_bytes() != lock
    restore(kept, configs)  # the gate rejected it: what make retrain then does
    check_out(tmp_path, "s")
    assert (tmp_path / "dvc.lock").read_bytes() == lock
    assert out.read_bytes() == champion_out
    assert (configs / "retrained.yaml").read_text() == retrained_yaml()
    dvc = str(Path(sys.executable).parent / "dvc")
    status = subprocess.run([dvc, "status", "-q"], cwd=tmp_path, check=False)
    assert status.returncode == 0  # make train has nothing to do
    listed = subprocess.run(
        [dvc, "exp", "list", "--name-only"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert "retrain-rows-300" in listed.stdout.split()  # the rejected run, still there to inspect


def test_without_a_time_split_the_arrived_rows_are_the_longest_labelled_prefix() -> None:
    production = [f"k{i}" for i in range(10)]
    labelled = ["k0", "k1", "k2", "k4", "k5", "k7"]  # k3 and k6 still in flight
    log = pl.DataFrame(
        {
            "id": [f"r1a2b3c4d-{k}" for k in production],
            "actual": [True if k in labelled else None for k in production],
        }
    )
    assert arrived_rows(log, production, min_share=1.0) == 3
    assert arrived_rows(log, production, min_share=0.8) == 6  # 5 of the first 6 have their outcome
    assert arrived_rows(log, production, min_share=0.5) == 8
    assert arrived_rows(log.with_columns(actual=pl.lit(None, pl.Boolean)), production, min_share=0.5) == 0


def test_without_a_time_split_retraining_holds_out_the_newest_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    split = RandomSplit(kind="stratified")
    config = RetrainConfig(evaluation_rows=100, validation_rows=100, min_new_rows=50)
    moved = plan_rows(config, split, arrived=668)
    assert (moved.arrived.rows, moved.arrived.valid, moved.arrived.test) == (668, 100, 100)
    assert "the 468 older ones join training" in moved.describe()
    with pytest.raises(NothingNewError, match="more than 200"):
        plan_rows(config, split, arrived=150)
    again = split.model_copy(update={"arrived": moved.arrived})
    with pytest.raises(NothingNewError, match="30 since the last retraining"):
        plan_rows(config, again, arrived=698)
    assert moved_split(moved.arrived) == {"arrived": {"rows": 668, "valid": 100, "test": 100}}


def test_the_arrived_rows_move_into_training_and_the_newest_are_held_out() -> None:
    names = pl.Series(["train", "test", "valid", "test", "test", "train", "test", "test", "test", "test"])
    moved = arrived_split(names, Arrived(rows=5, valid=1, test=2)).to_list()
    # The test rows are at 1, 3, 4, 6, 7, 8 and 9: the first five arrived (the newest two held out for the test,
    # the one before them for validation), the last two have not; the other rows all train.
    assert moved == ["train", "train", "train", "train", "valid", "train", "test", "test", None, None]
    with pytest.raises(FeatureError, match="the test split has 7"):
        arrived_split(names, Arrived(rows=8, valid=1, test=1))
