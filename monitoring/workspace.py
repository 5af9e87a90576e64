"""The monitoring workspace: Evidently's local storage of the snapshots, and the dashboard the Evidently UI shows.

Snapshot files are written whole or not at all, and unreadable ones are moved aside (Evidently cannot open a
workspace holding one); the dashboard's panels speak of the dataset's task.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

# Evidently's own local storage writes snapshots with this (uuid7 names); it is used here to write a snapshot the
# same way, but whole or not at all (MonitoringWorkspace.put). evidently is pinned.
from evidently.legacy.core import new_id
from evidently.sdk.models import DashboardModel, DashboardTabModel, PanelMetric
from evidently.sdk.panels import bar_plot_panel, line_plot_panel
from evidently.ui.workspace import Workspace

from monitoring.snapshots import PREDICTION, PREDICTION_WORDS, PROBABILITY, TARGET, Snapshot, snapshot_json
from tabloop.errors import TabloopError
from tabloop.io import staged
from tabloop.runtime.contract import TaskKind

logger = logging.getLogger(__name__)


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

    def save_dashboard(self, versions: list[str], features: list[str], task: TaskKind = "binary") -> None:
        """The dashboard, rebuilt every time (idempotent): drift, predictions against outcomes, quality in the
        task's terms, volume."""
        drift = [
            PanelMetric(
                legend="share of features drifted", metric="DriftedColumnsCount", metric_labels={"value_type": "share"}
            )
        ]
        scores = [PanelMetric(legend=name, metric="ValueDrift", metric_labels={"column": name}) for name in features]
        prediction = [
            PanelMetric(legend=PREDICTION_WORDS[task], metric="ValueDrift", metric_labels={"column": PREDICTION[task]})
        ]
        means, quality = _task_panels(task)
        panels = [
            line_plot_panel("Share of drifted features", drift, size="half"),
            line_plot_panel("Prediction drift score", prediction, size="half"),
            *([line_plot_panel("Drift score of key features", scores)] if scores else []),
            line_plot_panel(*means, size="half"),
            line_plot_panel(*quality, size="half"),
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


def _task_panels(task: TaskKind) -> tuple[tuple[str, list[PanelMetric]], tuple[str, list[PanelMetric]]]:
    """The titles and metrics of the panels that speak of the task: the mean prediction beside what was observed,
    and the quality as outcomes arrive."""
    if task == "regression":
        return (
            "Mean prediction and mean observed value",
            [
                PanelMetric(legend="mean prediction", metric="MeanValue", metric_labels={"column": "value"}),
                PanelMetric(legend="mean observed", metric="MeanValue", metric_labels={"column": TARGET}),
            ],
        ), ("RMSE as outcomes arrive", [PanelMetric(legend="RMSE", metric="RMSE")])
    if task == "multiclass":
        return (
            "Mean probability of the predicted class",
            [PanelMetric(legend="mean probability", metric="MeanValue", metric_labels={"column": PROBABILITY})],
        ), (
            "Log loss and accuracy as outcomes arrive",
            [PanelMetric(legend="log loss", metric="LogLoss"), PanelMetric(legend="accuracy", metric="Accuracy")],
        )
    return (
        "Mean prediction and observed positive rate",
        [
            PanelMetric(legend="mean prediction", metric="MeanValue", metric_labels={"column": PROBABILITY}),
            PanelMetric(legend="observed positive rate", metric="MeanValue", metric_labels={"column": TARGET}),
        ],
    ), ("ROC AUC as outcomes arrive", [PanelMetric(legend="ROC AUC", metric="RocAuc")])
