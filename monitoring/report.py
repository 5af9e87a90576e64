"""Evidently reports of one window against its model's reference: drift, data quality and, with labels, quality.

Each window gives up to two snapshots: ``drift`` on every prediction of the window (features, predicted
probability, missing values, out-of-vocabulary rate, volume) and ``quality`` on the predictions whose outcome has
arrived (ROC AUC, precision, recall, calibration, label drift). Column definitions come from the bundle's contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from evidently import BinaryClassification, DataDefinition, Dataset, Report
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.core.report import Snapshot
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

from flightdelay.evaluation.metrics import expected_calibration_error
from monitoring.log import Window, decode_features
from monitoring.reference import Reference

TARGET, PROBABILITY = "late", "probability"


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


def window_metadata(window: Window) -> dict[str, str]:
    """What identifies a window's snapshots in the workspace (and tells whether they are up to date)."""
    return {"window_key": window.key, "rows": str(window.rows.height), "labelled": str(window.labelled)}


@dataclass(frozen=True)
class WindowReport:
    """The snapshots of one window, and the numbers the gate needs."""

    window: Window
    drift: Snapshot | None
    quality: Snapshot | None
    summary: dict[str, Any]


def sample(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    return frame if frame.height <= rows else frame.sample(n=rows, seed=seed)


def report_window(
    window: Window, reference: Reference, *, max_rows: int, min_labels: int, drift_share: float, seed: int
) -> WindowReport:
    """Run the window's reports; ``quality`` only once ``min_labels`` outcomes have arrived."""
    contract = reference.bundle.contract
    features = list(contract.features)
    categorical = [n for n, s in contract.features.items() if s.kind == "categorical"]
    numerical = [n for n in features if n not in categorical]
    current = decode_features(window.rows, contract)
    tags = [f"model:{window.model_name}", f"version:{window.model_version}"]
    metadata = {**window_metadata(window), "model_version": window.model_version, "window": f"{window.start:%Y-%m-%d}"}
    definition = DataDefinition(
        numerical_columns=[*numerical, PROBABILITY],
        categorical_columns=categorical,
        text_columns=[],
        datetime_columns=[],
    )
    ref = _dataset(sample(reference.rows, max_rows, seed), [*features, PROBABILITY], definition)
    cur = _dataset(sample(current, max_rows, seed), [*features, PROBABILITY], definition)
    vocabularies = {e.name: [str(v) for v in e.vocabulary] for e in reference.bundle.preprocessor.categorical}
    drift_metrics: list[Any] = [
        RowCount(),
        DriftedColumnsCount(columns=features, drift_share=drift_share),
        *[ValueDrift(column=name) for name in features],
        ValueDrift(column=PROBABILITY),
        MeanValue(column=PROBABILITY),
        DatasetMissingValueCount(columns=features),
        *[OOVRate(column=name, vocabulary=vocabularies[name]) for name in categorical if name in vocabularies],
    ]
    drift = Report(drift_metrics, include_tests=True, tags=[*tags, "kind:drift"], metadata=metadata).run(
        current_data=cur, reference_data=ref, timestamp=window.start.replace(tzinfo=None), name=f"drift {window.key}"
    )
    summary = drift_summary(drift, features)
    summary["rows"], summary["labelled"] = window.rows.height, window.labelled
    summary["missing_share"] = summary.pop("missing_values", 0) / max(1, min(max_rows, current.height) * len(features))
    quality = None
    labelled = current.filter(pl.col(TARGET).is_not_null())
    if labelled.height >= min_labels and labelled[TARGET].n_unique() == 2:
        classified = DataDefinition(
            numerical_columns=[PROBABILITY],
            categorical_columns=[TARGET],
            text_columns=[],
            datetime_columns=[],
            classification=[BinaryClassification(target=TARGET, prediction_probas=PROBABILITY, pos_label=1)],
        )
        columns = [TARGET, PROBABILITY]
        threshold = reference.predictor.threshold
        quality = Report(
            [
                RocAuc(),
                Precision(probas_threshold=threshold),
                Recall(probas_threshold=threshold),
                CalibrationError(),
                MeanValue(column=TARGET),
                ValueDrift(column=TARGET),
            ],
            include_tests=True,
            tags=[*tags, "kind:quality"],
            metadata=metadata,
        ).run(
            current_data=_dataset(sample(labelled, max_rows, seed), columns, classified),
            reference_data=_dataset(sample(reference.rows, max_rows, seed), columns, classified),
            timestamp=window.start.replace(tzinfo=None),
            name=f"quality {window.key}",
        )
        summary["quality"] = quality_summary(quality)
        summary["quality"]["reference_roc_auc"] = reference.roc_auc
    return WindowReport(window, drift, quality, summary)


def _dataset(frame: pl.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    data = frame.select(columns).to_pandas()
    if TARGET in data:
        data[TARGET] = data[TARGET].astype(int)  # Evidently's classification metrics need 0/1
    for name in data.columns:
        if isinstance(data[name].dtype, pd.ArrowDtype | pd.StringDtype):
            data[name] = data[name].astype(object)
    return Dataset.from_pandas(data, data_definition=definition)


def _metrics(snapshot: Snapshot) -> list[tuple[str, dict[str, Any], Any]]:
    return [(m["config"]["type"].split(":")[-1], m["config"], m["value"]) for m in snapshot.dict()["metrics"]]


def drift_summary(snapshot: Snapshot, features: list[str]) -> dict[str, Any]:
    """The drift snapshot's numbers: per-column scores and flags, the drifted share of features, the rest."""
    data = snapshot.dict()
    drifted = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL" for t in data["tests"] if t["id"] == "drift"
    }
    summary: dict[str, Any] = {"columns": {}}
    for kind, config, value in _metrics(snapshot):
        if kind == "ValueDrift":
            column = config["column"]
            entry = {"score": float(value), "method": config["method"], "threshold": config["threshold"]}
            entry["drifted"] = bool(drifted.get(column))
            if column == PROBABILITY:
                summary["prediction_drift"] = entry
            else:
                summary["columns"][column] = entry
        elif kind == "MeanValue":
            summary["mean_prediction"] = float(value)
        elif kind == "DatasetMissingValueCount":
            summary["missing_values"] = int(value["count"])
        elif kind == "OOVRate":
            summary.setdefault("oov_rate", {})[config["column"]] = float(value)
    flags = [summary["columns"][c]["drifted"] for c in features if c in summary["columns"]]
    summary["drifted_features"] = [c for c in features if summary["columns"].get(c, {}).get("drifted")]
    summary["drift_share"] = sum(flags) / len(flags) if flags else 0.0
    return summary


def quality_summary(snapshot: Snapshot) -> dict[str, Any]:
    """ROC AUC, precision, recall, calibration error, observed label rate and label drift of a quality snapshot."""
    out: dict[str, Any] = {}
    names = {"RocAuc": "roc_auc", "Precision": "precision", "Recall": "recall", "CalibrationError": "calibration_error"}
    for kind, config, value in _metrics(snapshot):
        if kind in names:
            out[names[kind]] = None if value is None or np.isnan(float(value)) else float(value)
        elif kind == "MeanValue" and config.get("column") == TARGET:
            out["label_rate"] = float(value)
        elif kind == "ValueDrift" and config.get("column") == TARGET:
            out["label_drift"] = {"score": float(value), "method": config["method"]}
    return out
