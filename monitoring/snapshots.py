"""Evidently, and only here: the reports' metrics and datasets, their snapshots read back into a window's numbers,
and the local workspace that stores those snapshots for the Evidently UI.

The rest of monitoring hands polars frames in and gets the types of ``monitoring.gate`` back; it imports no
Evidently module (``monitor`` imports this one only once it needs it: Evidently takes seconds to import).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.core.report import Snapshot

# Evidently's own local storage writes snapshots with these two (uuid7 names, numpy-aware JSON); they are used
# here to write a snapshot the same way, but whole or not at all (MonitoringWorkspace.put). evidently is pinned.
from evidently.legacy.core import new_id
from evidently.legacy.utils import NumpyEncoder
from evidently.metrics import (
    DatasetMissingValueCount,
    DriftedColumnsCount,
    MeanValue,
    Precision,
    Recall,
    RocAuc,
    RowCount,
    ValueDrift,
)
from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
from evidently.sdk.panels import bar_plot_panel, line_plot_panel
from evidently.ui.workspace import Workspace

from monitoring.gate import DriftScore, LabelDrift, WindowQuality, WindowSummary
from tabloop.errors import TabloopError
from tabloop.evaluation.metrics import expected_calibration_error
from tabloop.io import staged
from tabloop.runtime.contract import FeatureContract

__all__ = [
    "PROBABILITY",
    "TARGET",
    "MonitoringWorkspace",
    "RunInfo",
    "Snapshot",
    "WorkspaceError",
    "drift_snapshot",
    "drift_summary",
    "quality_snapshot",
    "quality_summary",
    "quarantine_unreadable",
    "snapshot_html",
    "snapshot_json",
]

logger = logging.getLogger(__name__)

TARGET, PROBABILITY = "actual", "probability"  # the observed class and the predicted probability


class OOVRate(SingleValueMetric):
    """Share of a categorical feature's non-missing values outside the model's training vocabulary."""

    column: str
    vocabulary: list[str]


class OOVRateCalculation(SingleValueCalculation[OOVRate]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:  # noqa: ARG002
        values = current_data.as_dataframe()[self.metric.column].dropna().astype(str)
        share = float((~values.isin(set(self.metric.vocabulary))).mean()) if len(values) else 0.0
        return self.result(share)

    def display_name(self) -> str:
        return f"Out-of-vocabulary rate of {self.metric.column}"


class CalibrationError(SingleValueMetric):
    """Expected calibration error of the predicted probability (10 equal-width bins)."""

    bins: int = 10


class CalibrationErrorCalculation(SingleValueCalculation[CalibrationError]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:  # noqa: ARG002
        frame = current_data.as_dataframe()
        target = frame[TARGET].to_numpy(dtype=np.float64)
        proba = frame[PROBABILITY].to_numpy(dtype=np.float64)
        return self.result(expected_calibration_error(target, proba, self.metric.bins))

    def display_name(self) -> str:
        return "Expected calibration error"


@dataclass(frozen=True)
class RunInfo:
    """How a snapshot is filed in the workspace: its tags, metadata, time and name."""

    tags: list[str]
    metadata: dict[str, str]
    timestamp: dt.datetime  # naive
    name: str


def drift_snapshot(
    current: pl.DataFrame,
    reference: pl.DataFrame,
    *,
    contract: FeatureContract,
    vocabularies: dict[str, list[str]],
    drift_share: float,
    run: RunInfo,
) -> Snapshot:
    """The drift of the features and of the predicted probability, their missing values and the out-of-vocabulary
    rates of the categorical features (``vocabularies``: the training vocabulary of each), ``current`` against
    ``reference``."""
    features = list(contract.features)
    categorical = [n for n, s in contract.features.items() if s.kind == "categorical"]
    numerical = [n for n in features if n not in categorical]
    definition = DataDefinition(
        numerical_columns=[*numerical, PROBABILITY],
        categorical_columns=categorical,
        text_columns=[],
        datetime_columns=[],
    )
    metrics: list[Any] = [
        RowCount(),
        DriftedColumnsCount(columns=features, drift_share=drift_share),
        *[ValueDrift(column=name) for name in features],
        ValueDrift(column=PROBABILITY),
        MeanValue(column=PROBABILITY),
        DatasetMissingValueCount(columns=features),
        *[OOVRate(column=name, vocabulary=vocabularies[name]) for name in categorical if name in vocabularies],
    ]
    columns = [*features, PROBABILITY]
    return _run(metrics, _dataset(current, columns, definition), _dataset(reference, columns, definition), run)


def quality_snapshot(current: pl.DataFrame, reference: pl.DataFrame, *, threshold: float, run: RunInfo) -> Snapshot:
    """ROC AUC, precision and recall at ``threshold``, calibration, label rate and label drift of ``current``'s
    labelled rows, against ``reference``."""
    definition = DataDefinition(
        numerical_columns=[PROBABILITY],
        categorical_columns=[TARGET],
        text_columns=[],
        datetime_columns=[],
        classification=[BinaryClassification(target=TARGET, prediction_probas=PROBABILITY, pos_label=1)],
    )
    metrics = [
        RocAuc(),
        Precision(probas_threshold=threshold),
        Recall(probas_threshold=threshold),
        CalibrationError(),
        MeanValue(column=TARGET),
        ValueDrift(column=TARGET),
    ]
    columns = [TARGET, PROBABILITY]
    return _run(metrics, _dataset(current, columns, definition), _dataset(reference, columns, definition), run)


def _run(metrics: list[Any], current: Dataset, reference: Dataset, run: RunInfo) -> Snapshot:
    report = Report(metrics, include_tests=True, tags=run.tags, metadata=dict(run.metadata))
    return report.run(current_data=current, reference_data=reference, timestamp=run.timestamp, name=run.name)


def _dataset(frame: pl.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    data = frame.select(columns).to_pandas()
    if TARGET in data:
        data[TARGET] = data[TARGET].astype(int)  # Evidently's classification metrics need 0/1
    for name in data.columns:
        if isinstance(data[name].dtype, pd.ArrowDtype | pd.StringDtype):
            data[name] = data[name].astype(object)
    return Dataset.from_pandas(data, data_definition=definition)


def snapshot_json(snapshot: Snapshot) -> str:
    """``snapshot`` as the workspace stores it (what ``Workspace.add_run`` writes), to serialise it in the process
    that ran the report."""
    return json.dumps(snapshot.to_snapshot_model().dict(), cls=NumpyEncoder)


def snapshot_html(snapshot: Snapshot) -> str:
    """``snapshot`` as a self-contained HTML page."""
    return str(snapshot.get_html_str(as_iframe=False))


def _metrics(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """Each metric of a snapshot's ``dict()``: its type, its configuration and its value."""
    return [(m["config"]["type"].split(":")[-1], m["config"], m["value"]) for m in data["metrics"]]


def drift_summary(
    snapshot: Snapshot,
    features: list[str],
    *,
    rows: int,
    labelled: int,
    compared: int,
    quality: WindowQuality | None,
) -> WindowSummary:
    """A window's numbers from its drift snapshot (per-column scores and flags, the drifted share of features,
    the rest) on ``compared`` of its ``rows``, ``labelled`` of which have their outcome, with its ``quality`` if it
    has one."""
    data = snapshot.dict()
    metrics = _metrics(data)
    scores = _drift_scores(data, metrics)
    columns = {c: score for c, score in scores.items() if c != PROBABILITY}
    drifted = [c for c in features if c in columns and columns[c].drifted]
    flags = [c for c in features if c in columns]
    missing = next((int(v["count"]) for kind, _, v in metrics if kind == "DatasetMissingValueCount"), 0)
    return WindowSummary(
        columns=columns,
        prediction_drift=scores.get(PROBABILITY),
        mean_prediction=next((float(v) for kind, _, v in metrics if kind == "MeanValue"), float("nan")),
        oov_rate={config["column"]: float(v) for kind, config, v in metrics if kind == "OOVRate"},
        drifted_features=drifted,
        drift_share=len(drifted) / len(flags) if flags else 0.0,
        rows=rows,
        labelled=labelled,
        missing_share=missing / max(1, compared * len(features)),
        quality=quality,
    )


def _drift_scores(data: dict[str, Any], metrics: list[tuple[str, dict[str, Any], Any]]) -> dict[str, DriftScore]:
    """The drift of each column a ``ValueDrift`` metric tested, in the snapshot's order."""
    drifted = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in data["tests"] if t["id"] == "drift"
    }
    return {
        config["column"]: DriftScore(
            score=float(value),
            method=config["method"],
            threshold=config["threshold"],
            drifted=bool(drifted.get(config["column"])),
        )
        for kind, config, value in metrics
        if kind == "ValueDrift"
    }


def quality_summary(snapshot: Snapshot, reference_roc_auc: float | None) -> WindowQuality:
    """ROC AUC, precision, recall, calibration error, observed label rate and label drift of a quality snapshot,
    beside the reference's ROC AUC."""
    found: dict[str, Any] = {"reference_roc_auc": reference_roc_auc}
    names = {"RocAuc": "roc_auc", "Precision": "precision", "Recall": "recall", "CalibrationError": "calibration_error"}
    for kind, config, value in _metrics(snapshot.dict()):
        if kind in names:
            found[names[kind]] = None if value is None or np.isnan(float(value)) else float(value)
        elif kind == "MeanValue" and config.get("column") == TARGET:
            found["label_rate"] = float(value)
        elif kind == "ValueDrift" and config.get("column") == TARGET:
            found["label_drift"] = LabelDrift(score=float(value), method=config["method"])
    return WindowQuality.model_validate(found)


class WorkspaceError(TabloopError):
    """The workspace cannot be opened or written."""


def quarantine_unreadable(path: Path) -> list[Path]:
    """Move snapshot files that are not JSON (truncated by a crash, edited by hand) out of the workspace, beside
    it: Evidently cannot open a workspace holding one, and its UI answers 500. They are kept, not deleted."""
    moved = []
    for file in sorted(path.glob("*/snapshots/*.json")):
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            target = path.with_name(f"{path.name}-quarantine") / file.parent.parent.name / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            file.replace(target)
            logger.warning("moved the unreadable snapshot %s to %s", file, target)
            moved.append(target)
    return moved


class MonitoringWorkspace:
    """The project named ``project`` in the workspace at ``path`` (both created if missing)."""

    def __init__(self, path: Path, project: str) -> None:
        self.path = path
        self.quarantined = quarantine_unreadable(path)
        try:
            self.workspace = Workspace(str(path))
            found = self.workspace.search_project(project)
            self.project = found[0] if found else self.workspace.create_project(project)
        except Exception as e:  # Evidently raises assorted types for a damaged workspace
            raise WorkspaceError(
                f"{path}: the Evidently workspace cannot be opened ({e}); it is rebuilt from the prediction log "
                f"if you move it away"
            ) from e
        self.project_id = self.project.id
        self.existing = self._index()

    def _index(self) -> dict[tuple[str, str], tuple[Any, dict[str, str]]]:
        """Snapshots by (window, kind); unreadable ones are deleted (they would break the UI) and reported."""
        index: dict[tuple[str, str], tuple[Any, dict[str, str]]] = {}
        for snapshot_id in self.workspace.list_runs(self.project_id):
            try:
                model = self.workspace.get_run(self.project_id, snapshot_id)
            except Exception as e:  # a truncated or hand-edited file
                logger.warning("removing unreadable snapshot %s from the workspace: %s", snapshot_id, e)
                self.workspace.delete_run(self.project_id, snapshot_id)
                continue
            if model is None:
                continue
            kind = next((t.removeprefix("kind:") for t in model.tags if t.startswith("kind:")), "")
            key = (str(model.metadata.get("window_key", "")), kind)
            index[key] = (snapshot_id, {k: str(v) for k, v in model.metadata.items()})
        return index

    def is_current(self, window_key: str, kind: str, metadata: dict[str, str]) -> bool:
        """Whether the workspace already holds this window's snapshot of ``kind`` for the same rows."""
        found = self.existing.get((window_key, kind))
        return found is not None and all(found[1].get(k) == metadata[k] for k in ("rows", "labelled"))

    def put(self, window_key: str, kind: str, snapshot: Snapshot | str) -> None:
        """Add ``snapshot`` (or its ``snapshot_json``), replacing an older one of the same window and kind.

        The file is written where ``Workspace.add_run`` writes it, but whole or not at all (staged, then renamed),
        so that a crash leaves no truncated snapshot behind.
        """
        old = self.existing.pop((window_key, kind), None)
        if old is not None:
            self.workspace.delete_run(self.project_id, old[0])
        text = snapshot if isinstance(snapshot, str) else snapshot_json(snapshot)
        with staged(self.path / str(self.project_id) / "snapshots" / f"{new_id()}.json") as (staging,):
            staging.write_text(text, encoding="utf-8")

    def save_dashboard(self, versions: list[str], features: list[str]) -> None:
        """The dashboard, rebuilt every time (idempotent): drift, predictions against outcomes, quality, volume."""
        drift = [
            PanelMetric(
                legend="share of features drifted", metric="DriftedColumnsCount", metric_labels={"value_type": "share"}
            )
        ]
        scores = [PanelMetric(legend=name, metric="ValueDrift", metric_labels={"column": name}) for name in features]
        means = [
            PanelMetric(legend="mean prediction", metric="MeanValue", metric_labels={"column": "probability"}),
            PanelMetric(legend="observed positive rate", metric="MeanValue", metric_labels={"column": "actual"}),
        ]
        panels = [
            line_plot_panel("Share of drifted features", drift, size="half"),
            line_plot_panel(
                "Prediction drift score",
                [
                    PanelMetric(
                        legend="predicted probability", metric="ValueDrift", metric_labels={"column": "probability"}
                    )
                ],
                size="half",
            ),
            *([line_plot_panel("Drift score of key features", scores)] if scores else []),
            line_plot_panel("Mean prediction and observed positive rate", means, size="half"),
            line_plot_panel(
                "ROC AUC as outcomes arrive", [PanelMetric(legend="ROC AUC", metric="RocAuc")], size="half"
            ),
            bar_plot_panel(
                "Requests per window, by model version",
                [
                    PanelMetric(legend=f"version {v}", metric="RowCount", metadata={"model_version": v})
                    for v in versions
                ],
                stacked=True,
            ),
        ]
        tab = DashboardTabModel(title="Monitoring", panels=[p.id for p in panels])
        self.workspace.save_dashboard(self.project_id, DashboardModel(tabs=[tab], panels=panels))
