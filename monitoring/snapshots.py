"""Evidently's reports: their metrics and datasets per task, and their snapshots read back into a window's numbers.

With ``monitoring.workspace`` (the local storage of the snapshots and the dashboard), the only modules that import
Evidently. The rest of monitoring hands polars frames in and gets the types of ``monitoring.gate`` back
(``monitor`` imports these only once it needs them: Evidently takes seconds to import).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
from evidently import BinaryClassification, DataDefinition, Dataset, MulticlassClassification, Regression, Report
from evidently.core.metric_types import SingleValueCalculation, SingleValueMetric
from evidently.core.report import Snapshot

# Evidently's own local storage writes snapshots with this numpy-aware JSON encoder; snapshot_json writes them the
# same way. evidently is pinned.
from evidently.legacy.utils import NumpyEncoder
from evidently.metrics import (
    MAE,
    RMSE,
    Accuracy,
    DatasetMissingValueCount,
    DriftedColumnsCount,
    F1ByLabel,
    F1Score,
    LogLoss,
    MeanValue,
    Precision,
    R2Score,
    Recall,
    RocAuc,
    RowCount,
    ValueDrift,
)
from sklearn.exceptions import UndefinedMetricWarning

from monitoring.gate import DriftScore, LabelDrift, WindowQuality, WindowSummary
from tabloop.evaluation.metrics import expected_calibration_error
from tabloop.runtime.contract import FeatureContract, TargetSpec, TaskKind

__all__ = [
    "PREDICTION",
    "PROBABILITY",
    "TARGET",
    "RunInfo",
    "Snapshot",
    "drift_snapshot",
    "drift_summary",
    "quality_snapshot",
    "quality_summary",
    "snapshot_html",
    "snapshot_json",
]


TARGET, PROBABILITY = "actual", "probability"  # the observed outcome and the predicted probability
# What each task's prediction drift is measured on, and what its mean prediction is the mean of
PREDICTION: dict[TaskKind, str] = {"binary": PROBABILITY, "multiclass": "predicted_class", "regression": "value"}
MEAN_OF: dict[TaskKind, str] = {"binary": PROBABILITY, "multiclass": PROBABILITY, "regression": "value"}
PREDICTION_WORDS: dict[TaskKind, str] = {
    "binary": "predicted probability",
    "multiclass": "predicted class",
    "regression": "predicted value",
}


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


class OutOfRangeRate(SingleValueMetric):
    """Share of a numeric feature's non-missing values outside ``[low, high]``, the range of the reference data: values
    the model is asked about but never learned from (the contract accepts them; this counts them)."""

    column: str
    low: float
    high: float


class OutOfRangeRateCalculation(SingleValueCalculation[OutOfRangeRate]):
    def calculate(self, context: Any, current_data: Any, reference_data: Any) -> Any:  # noqa: ARG002
        values = current_data.as_dataframe()[self.metric.column].dropna().to_numpy(dtype=np.float64)
        outside = (values < self.metric.low) | (values > self.metric.high)
        return self.result(float(outside.mean()) if len(values) else 0.0)

    def display_name(self) -> str:
        return f"Share of {self.metric.column} outside the reference range"


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
    task = contract.target.task
    prediction, mean = PREDICTION[task], MEAN_OF[task]
    answers = list(dict.fromkeys([prediction, mean]))
    definition = DataDefinition(
        numerical_columns=[*numerical, *(c for c in answers if c != "predicted_class")],
        categorical_columns=[*categorical, *(c for c in answers if c == "predicted_class")],
        text_columns=[],
        datetime_columns=[],
    )
    metrics: list[Any] = [
        RowCount(),
        DriftedColumnsCount(columns=features, drift_share=drift_share),
        *[ValueDrift(column=name) for name in features],
        ValueDrift(column=prediction),
        MeanValue(column=mean),
        DatasetMissingValueCount(columns=features),
        *[OOVRate(column=name, vocabulary=vocabularies[name]) for name in categorical if name in vocabularies],
        *[
            OutOfRangeRate(column=name, low=float(low), high=float(high))  # type: ignore[arg-type]
            for name in numerical
            if (low := reference[name].min()) is not None and (high := reference[name].max()) is not None
        ],
    ]
    columns = [*features, *answers]
    return _run(metrics, _dataset(current, columns, definition), _dataset(reference, columns, definition), run)


def quality_snapshot(
    current: pl.DataFrame, reference: pl.DataFrame, *, target: TargetSpec, threshold: float | None, run: RunInfo
) -> Snapshot:
    """The quality of ``current``'s labelled rows against ``reference``'s, in the terms of ``target``'s task:
    ROC AUC, precision and recall at ``threshold``, calibration and the positive rate (binary); accuracy, F1,
    log loss and F1 per class (multiclass); RMSE, MAE, R² and the mean observed value (regression). Each with the
    drift of the observed outcomes."""
    if target.classes is not None:
        return _multiclass_quality(current, reference, target.classes, run)
    if target.task == "regression":
        return _regression_quality(current, reference, run)
    if threshold is None:
        raise ValueError("a binary model's quality needs its decision threshold")
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


def _multiclass_quality(current: pl.DataFrame, reference: pl.DataFrame, classes: list[str], run: RunInfo) -> Snapshot:
    """Accuracy, F1, log loss, F1 per class and the drift of the observed classes; each class's probability is a
    column named as the class (Evidently reads the labels from the names)."""
    definition = DataDefinition(
        numerical_columns=list(classes),
        categorical_columns=[TARGET, PREDICTION["multiclass"]],
        text_columns=[],
        datetime_columns=[],
        classification=[
            MulticlassClassification(
                target=TARGET, prediction_labels=PREDICTION["multiclass"], prediction_probas=list(classes)
            )
        ],
    )
    metrics = [Accuracy(), F1Score(), LogLoss(), F1ByLabel(), ValueDrift(column=TARGET)]
    columns = [TARGET, PREDICTION["multiclass"], *classes]
    current, reference = class_columns(current, classes), class_columns(reference, classes)
    return _run(metrics, _dataset(current, columns, definition), _dataset(reference, columns, definition), run)


def class_columns(frame: pl.DataFrame, classes: list[str]) -> pl.DataFrame:
    """``frame`` with each class's probability in a column named as the class, from ``probabilities`` (a list, or
    the JSON text of one as the prediction log holds it)."""
    probabilities = pl.col("probabilities")
    if frame.schema["probabilities"] == pl.String:
        probabilities = probabilities.str.json_decode(pl.List(pl.Float64))
    return frame.with_columns(probabilities.list.get(i).alias(name) for i, name in enumerate(classes))


def _regression_quality(current: pl.DataFrame, reference: pl.DataFrame, run: RunInfo) -> Snapshot:
    """RMSE, MAE, R², the mean observed value and its drift."""
    value = PREDICTION["regression"]
    definition = DataDefinition(
        numerical_columns=[TARGET, value],
        categorical_columns=[],
        text_columns=[],
        datetime_columns=[],
        regression=[Regression(target=TARGET, prediction=value)],
    )
    metrics = [RMSE(), MAE(), R2Score(), MeanValue(column=TARGET), ValueDrift(column=TARGET)]
    columns = [TARGET, value]
    return _run(metrics, _dataset(current, columns, definition), _dataset(reference, columns, definition), run)


def _run(metrics: list[Any], current: Dataset, reference: Dataset, run: RunInfo) -> Snapshot:
    """The report of ``metrics``, without the libraries' warnings about a window's own shape (a metric undefined
    on one class, a drift test's division by an empty bin): the summary reports those as undefined values."""
    report = Report(metrics, include_tests=True, tags=run.tags, metadata=dict(run.metadata))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UndefinedMetricWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"(scipy|numpy|sklearn|evidently)\.")
        return report.run(current_data=current, reference_data=reference, timestamp=run.timestamp, name=run.name)


def _dataset(frame: pl.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    data = frame.select(columns).to_pandas()
    if TARGET in data and frame.schema[TARGET] == pl.Boolean:
        data[TARGET] = data[TARGET].astype(int)  # Evidently's binary classification metrics need 0/1
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
    task: TaskKind,
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
    columns = {c: score for c, score in scores.items() if c != PREDICTION[task]}
    drifted = [c for c in features if c in columns and columns[c].drifted]
    flags = [c for c in features if c in columns]
    missing = next((int(v["count"]) for kind, _, v in metrics if kind == "DatasetMissingValueCount"), 0)
    return WindowSummary(
        columns=columns,
        prediction_drift=scores.get(PREDICTION[task]),
        prediction=PREDICTION_WORDS[task],
        mean_prediction=next((float(v) for kind, _, v in metrics if kind == "MeanValue"), float("nan")),
        oov_rate={config["column"]: float(v) for kind, config, v in metrics if kind == "OOVRate"},
        out_of_range={config["column"]: float(v) for kind, config, v in metrics if kind == "OutOfRangeRate"},
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


QUALITY_NAMES: dict[TaskKind, dict[str, str]] = {
    "binary": {
        "RocAuc": "roc_auc",
        "Precision": "precision",
        "Recall": "recall",
        "CalibrationError": "calibration_error",
    },
    "multiclass": {"Accuracy": "accuracy", "F1Score": "f1", "LogLoss": "log_loss"},
    "regression": {"RMSE": "rmse", "MAE": "mae", "R2Score": "r2"},
}
MEAN_OF_TARGET: dict[TaskKind, str] = {"binary": "label_rate", "multiclass": "", "regression": "mean_actual"}
GATE_METRIC: dict[TaskKind, str | None] = {"binary": None, "multiclass": "log_loss", "regression": "rmse"}


def quality_summary(snapshot: Snapshot, reference_score: float | None, task: TaskKind = "binary") -> WindowQuality:
    """The numbers of a quality snapshot in its task's terms (``QUALITY_NAMES``), the observed outcomes' mean and
    drift, beside the reference's primary metric (binary: its ROC AUC)."""
    metric = GATE_METRIC[task]
    found: dict[str, Any] = (
        {"reference_roc_auc": reference_score}
        if metric is None
        else {"metric": metric, "reference_score": reference_score}
    )
    names = QUALITY_NAMES[task]
    for kind, config, value in _metrics(snapshot.dict()):
        if kind in names:
            found[names[kind]] = _number(value)
        elif kind == "F1ByLabel":
            found["f1_by_class"] = {str(k): v for k, v in _by_label(value).items() if v is not None}
        elif kind == "MeanValue" and config.get("column") == TARGET:
            found[MEAN_OF_TARGET[task]] = float(value)
        elif kind == "ValueDrift" and config.get("column") == TARGET:
            found["label_drift"] = LabelDrift(score=float(value), method=config["method"])
    return WindowQuality.model_validate(found)


def _number(value: Any) -> float | None:
    """A metric's value as a number: a mean-and-deviation metric's mean (MAE); None where it is NaN."""
    if isinstance(value, dict):
        value = value.get("mean")
    return None if value is None or np.isnan(float(value)) else float(value)


def _by_label(value: Any) -> dict[str, float | None]:
    """A by-label metric's values (a mapping of label to value, or to ``{"value": ...}``)."""
    found = value.get("values", value) if isinstance(value, dict) else {}
    return {str(k): _number(v["value"] if isinstance(v, dict) and "value" in v else v) for k, v in found.items()}
