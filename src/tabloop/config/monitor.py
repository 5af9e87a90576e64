"""The monitoring configuration (``monitor.yaml``): replaying traffic, the windows' reports, the drift gate, retraining.

Where the dataset's files are (its traffic, replay state, prediction log, caches and reports) is not a default of
its own: :func:`load_monitor_config` takes it from the dataset's layout unless the file names another place.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import Field

from tabloop.config.loading import load_yaml, parse_config
from tabloop.layout import Layout
from tabloop.runtime.contract import StrictModel


class ReplayConfig(StrictModel):
    """How ``make replay`` sends the test split to the service."""

    traffic: Path = Field(description="The rows to send (a features table); default: the dataset's test split.")
    speedup: float = Field(3600.0, gt=0, description="Virtual seconds per wall-clock second.")
    rate: float | None = Field(250.0, gt=0, description="Prediction requests per second at most (null: no limit).")
    concurrency: int = Field(8, ge=1, le=256)
    max_requests: int | None = Field(None, ge=1)
    max_seconds: float | None = Field(1800.0, gt=0)
    until: dt.date | None = Field(None, description="Stop once the virtual clock passes the end of this local day.")
    synthetic_start: dt.datetime = Field(
        dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        description="Without an event time: the time of the first row (rows follow in their order).",
    )
    synthetic_interval_s: float = Field(60.0, gt=0, description="Without an event time: seconds between rows.")
    outcome_delay_s: float = Field(
        86400.0, ge=0, description="Without an outcome time: how long after the event its outcome is sent."
    )
    feedback: bool = True
    feedback_batch: int = Field(
        100,
        ge=1,
        description="Outcomes in one POST /feedback, at most the service's max_batch (TABLOOP_SERVE_MAX_BATCH).",
    )
    retry_seconds: float = Field(30.0, ge=0)
    timeout_seconds: float = Field(10.0, gt=0)
    state: Path = Field(description="Where progress is saved; default: the dataset's logs.")


class GateConfig(StrictModel):
    """When the latest window is judged unhealthy (``make monitor`` exits non-zero)."""

    max_drift_share: float = Field(0.5, gt=0, le=1, description="Share of drifted features that raises the alarm.")
    max_roc_auc_drop: float = Field(0.05, ge=0, le=1, description="ROC AUC below the reference's by more: alarm.")
    max_error_increase: float = Field(
        0.25, ge=0, description="Log loss (multiclass) or RMSE (regression) above the reference's by this share: alarm."
    )
    prediction_drift: bool = Field(True, description="Whether drift of the predicted probability raises the alarm.")


class ReportsConfig(StrictModel):
    """How the prediction log is cut into windows and compared with the reference."""

    log_url: str = Field(description="The service's prediction log; default: the dataset's (or the service's).")
    window: Literal["day", "week"] = "week"
    min_rows: int = Field(100, ge=10, description="Windows with fewer predictions are not judged.")
    min_labels: int = Field(100, ge=10, description="Fewer labelled predictions: no quality report for the window.")
    max_rows: int | None = Field(
        10_000, ge=100, description="Rows sampled from each side of an earlier window's comparison at most; null: all."
    )
    judged_max_rows: int | None = Field(
        None,
        ge=100,
        description="The same for the latest window, the one the gate judges; null: every row against the whole "
        "reference, so that the verdict does not depend on sampling.",
    )
    workers: int = Field(1, ge=0, le=64, description="Processes that report windows beside this one (0: none).")
    drift_share: float = Field(0.5, gt=0, le=1, description="Evidently's dataset-drift share (for its own tests).")
    seed: int = 0
    cache_dir: Path = Field(description="Bundles of the versions in the log.")
    reference_dir: Path | None = Field(
        None,
        description="A features directory whose valid.parquet is the reference for every version; "
        "null: each version's own, found in the DVC cache through its lineage.",
    )
    workspace: Path = Field(description="The Evidently workspace the dashboard serves.")
    project: str = Field(description="The workspace's project of this dataset.")
    out_dir: Path = Field(description="verdict.json, summary.md, latest.html")
    dashboard_features: list[str] = Field(
        default_factory=list,
        description="Features whose drift scores the dashboard plots over time.",
    )


class RetrainConfig(StrictModel):
    """How ``make retrain`` moves the pipeline's split to the outcomes that have arrived."""

    evaluation_days: int = Field(28, ge=1, description="The newest labelled days: the held-out set of the gate.")
    validation_days: int = Field(28, ge=1, description="The days before them: early stopping and the threshold.")
    min_label_share: float = Field(0.9, gt=0, le=1, description="A day is labelled when this share has outcomes.")
    min_new_days: int = Field(7, ge=1, description="Retrain only if training would reach this many days further.")
    evaluation_rows: int = Field(
        100, ge=1, description="Without a time split: the newest labelled production rows held out for the gate."
    )
    validation_rows: int = Field(100, ge=1, description="Without a time split: the rows before them, to validate on.")
    min_new_rows: int = Field(50, ge=1, description="Without a time split: retrain only after this many new outcomes.")


class MonitorConfig(StrictModel):
    """Everything ``configs/monitor.yaml`` holds."""

    replay: ReplayConfig
    reports: ReportsConfig
    gate: GateConfig = GateConfig()
    retrain: RetrainConfig = RetrainConfig()


def load_monitor_config(path: Path, where: Layout, log_url: str | None = None) -> MonitorConfig:
    """The monitoring configuration at ``path``, validated; paths it leaves out are ``where``'s (the dataset's), and
    the prediction log it leaves out is ``log_url`` where given (the service's, from the environment)."""
    data = load_yaml(path)
    for section, defaults in dataset_defaults(where).items():
        if section == "reports" and log_url is not None:
            defaults["log_url"] = log_url
        given = data.get(section)
        if given is None or isinstance(given, dict):
            data[section] = {**defaults, **(given or {})}
    return parse_config(MonitorConfig, data, str(path))


def dataset_defaults(where: Layout) -> dict[str, dict[str, Path | str]]:
    """Where a dataset's traffic, replay state, prediction log, bundle cache and reports are, unless configured:
    declared here only."""
    return {
        "replay": {"traffic": where.features / "test.parquet", "state": where.replay_state},
        "reports": {
            "log_url": where.prediction_log_url,
            "cache_dir": where.cache,
            "workspace": where.monitoring / "workspace",
            "out_dir": where.monitoring,
            "project": f"{where.dataset} monitoring",
        },
    }
