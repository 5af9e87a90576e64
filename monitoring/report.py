"""Evidently reports of one window against its model's reference: drift, data quality and, with labels, quality.

Each window gives up to two snapshots: ``drift`` on the predictions of the window (features, predicted
probability, missing values, out-of-vocabulary rate, volume) and ``quality`` on the predictions whose outcome has
arrived (ROC AUC, precision, recall, calibration, label drift), each side of a comparison on every row or on a
seeded sample of ``max_rows``. Column definitions come from the bundle's contract.

A window's rows may come without their features (the bulk of the log): only the rows the drift report compares
are then fetched from the log and decoded. Everything a report needs is picklable (a ``Baseline`` rather than the
model), so that windows can be reported in worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

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

from monitoring.gate import DriftScore, LabelDrift, WindowQuality, WindowSummary
from monitoring.log import Window, decode_features, read_features
from monitoring.workspace import snapshot_json
from tabloop.contract import FeatureContract
from tabloop.evaluation.metrics import expected_calibration_error

if TYPE_CHECKING:  # the model (and PyTorch) stays out of worker processes
    from monitoring.reference import Reference

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


def window_metadata(window: Window) -> dict[str, str]:
    """What identifies a window's snapshots in the workspace (and tells whether they are up to date)."""
    return {"window_key": window.key, "rows": str(window.rows.height), "labelled": str(window.labelled)}


@dataclass(frozen=True)
class Baseline:
    """The reference side of a comparison without the model: light enough to send to a worker process."""

    version: str
    contract: FeatureContract
    vocabularies: dict[str, list[str]]  # categorical feature: the model's training vocabulary
    threshold: float
    roc_auc: float | None
    rows: pl.DataFrame  # contract features, probability, label, actual

    @classmethod
    def of(cls, reference: Reference) -> Baseline:
        """A model version's reference without its model."""
        bundle = reference.bundle
        vocabularies = {e.name: [str(v) for v in e.vocabulary] for e in bundle.preprocessor.categorical}
        return cls(
            reference.version, bundle.contract, vocabularies, bundle.threshold, reference.roc_auc, reference.rows
        )

    def sampled(self, rows: int | None, seed: int) -> Baseline:
        """The same baseline with at most ``rows`` reference rows (all of them for None)."""
        return replace(self, rows=sample(self.rows, rows, seed))


@dataclass(frozen=True)
class WindowReport:
    """The snapshots of one window, and the numbers the gate needs."""

    window: Window
    drift: Snapshot | None
    quality: Snapshot | None
    summary: WindowSummary


@dataclass(frozen=True)
class WindowJob:
    """One window to report, with everything a worker process needs for it."""

    window: Window
    baseline: Baseline
    max_rows: int | None
    min_labels: int
    drift_share: float
    seed: int
    log_url: str | None = None  # where to fetch the features from, if the window's rows come without them
    html: bool = False  # whether to render the snapshots as self-contained HTML too


@dataclass(frozen=True)
class ReportedJob:
    """A job's outcome in picklable form, made where the report ran (a snapshot cannot be pickled): the window's
    numbers, its snapshots as the workspace stores them, and their self-contained HTML if the job asked for it."""

    summary: WindowSummary
    snapshots: dict[str, str]  # kind (drift, quality): JSON
    html: dict[str, str]  # kind: HTML


def run_job(job: WindowJob) -> ReportedJob:
    """Report one window (in this process or in a worker)."""
    result = report_window(
        job.window,
        job.baseline,
        max_rows=job.max_rows,
        min_labels=job.min_labels,
        drift_share=job.drift_share,
        seed=job.seed,
        log_url=job.log_url,
    )
    made = {kind: s for kind, s in (("drift", result.drift), ("quality", result.quality)) if s is not None}
    return ReportedJob(
        result.summary,
        {kind: snapshot_json(snapshot) for kind, snapshot in made.items()},
        {kind: snapshot.get_html_str(as_iframe=False) for kind, snapshot in made.items()} if job.html else {},
    )


def sample(frame: pl.DataFrame, rows: int | None, seed: int) -> pl.DataFrame:
    return frame if rows is None or frame.height <= rows else frame.sample(n=rows, seed=seed)


def report_window(
    window: Window,
    reference: Baseline,
    *,
    max_rows: int | None,
    min_labels: int,
    drift_share: float,
    seed: int,
    log_url: str | None = None,
) -> WindowReport:
    """Run the window's reports; ``quality`` only once ``min_labels`` outcomes have arrived. Each side is sampled
    down to ``max_rows`` (None: every row); rows without features have them fetched from ``log_url``. The
    reference's rows are used as given: ``Baseline.sampled`` samples them once for every window."""
    features = list(reference.contract.features)
    current = current_rows(window, reference.contract, max_rows, seed, log_url)
    drift = _drift_report(window, current, reference, drift_share)
    quality = _quality_report(window, reference, max_rows=max_rows, min_labels=min_labels, seed=seed)
    summary = drift_summary(
        drift,
        features,
        window=window,
        compared=current.height,
        quality=None if quality is None else quality_summary(quality, reference.roc_auc),
    )
    return WindowReport(window, drift, quality, summary)


def current_rows(
    window: Window, contract: FeatureContract, max_rows: int | None, seed: int, log_url: str | None
) -> pl.DataFrame:
    """The window's rows, sampled down to ``max_rows``, with their features decoded: fetched from ``log_url`` if
    the rows come without them."""
    current = sample(window.rows, max_rows, seed)
    if "features" not in current.columns:
        if log_url is None:
            raise ValueError(f"window {window.key}: its rows have no features and no log to fetch them from")
        fetched = read_features(log_url, current["id"].to_list())
        current = current.join(fetched, on="id", how="left", maintain_order="left")
    return decode_features(current, contract)


def _drift_report(window: Window, current: pl.DataFrame, reference: Baseline, drift_share: float) -> Snapshot:
    """The drift of the features and of the predicted probability, their missing values and the out-of-vocabulary
    rates of the categorical features, ``current`` against the reference."""
    contract = reference.contract
    features = list(contract.features)
    categorical = [n for n, s in contract.features.items() if s.kind == "categorical"]
    numerical = [n for n in features if n not in categorical]
    definition = DataDefinition(
        numerical_columns=[*numerical, PROBABILITY],
        categorical_columns=categorical,
        text_columns=[],
        datetime_columns=[],
    )
    vocabularies = reference.vocabularies
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
    ref = _dataset(reference.rows, columns, definition)
    return _run("drift", metrics, window, _dataset(current, columns, definition), ref)


def _quality_report(
    window: Window, reference: Baseline, *, max_rows: int | None, min_labels: int, seed: int
) -> Snapshot | None:
    """The quality of the predictions whose outcome has arrived, against the reference's; None with fewer than
    ``min_labels`` outcomes or outcomes of one class only."""
    labelled = window.rows.filter(pl.col(TARGET).is_not_null())
    if labelled.height < min_labels or labelled[TARGET].n_unique() != 2:
        return None
    definition = DataDefinition(
        numerical_columns=[PROBABILITY],
        categorical_columns=[TARGET],
        text_columns=[],
        datetime_columns=[],
        classification=[BinaryClassification(target=TARGET, prediction_probas=PROBABILITY, pos_label=1)],
    )
    metrics = [
        RocAuc(),
        Precision(probas_threshold=reference.threshold),
        Recall(probas_threshold=reference.threshold),
        CalibrationError(),
        MeanValue(column=TARGET),
        ValueDrift(column=TARGET),
    ]
    columns = [TARGET, PROBABILITY]
    current = _dataset(sample(labelled, max_rows, seed), columns, definition)
    return _run("quality", metrics, window, current, _dataset(reference.rows, columns, definition))


def _run(kind: str, metrics: list[Any], window: Window, current: Dataset, reference: Dataset) -> Snapshot:
    """The snapshot of the ``kind`` report of ``metrics`` on ``window``, tagged and dated for the workspace."""
    tags = [f"model:{window.model_name}", f"version:{window.model_version}", f"kind:{kind}"]
    metadata = {**window_metadata(window), "model_version": window.model_version, "window": f"{window.start:%Y-%m-%d}"}
    report = Report(metrics, include_tests=True, tags=tags, metadata=metadata)
    return report.run(
        current_data=current,
        reference_data=reference,
        timestamp=window.start.replace(tzinfo=None),
        name=f"{kind} {window.key}",
    )


def _dataset(frame: pl.DataFrame, columns: list[str], definition: DataDefinition) -> Dataset:
    data = frame.select(columns).to_pandas()
    if TARGET in data:
        data[TARGET] = data[TARGET].astype(int)  # Evidently's classification metrics need 0/1
    for name in data.columns:
        if isinstance(data[name].dtype, pd.ArrowDtype | pd.StringDtype):
            data[name] = data[name].astype(object)
    return Dataset.from_pandas(data, data_definition=definition)


def _metrics(data: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    """Each metric of a snapshot's ``dict()``: its type, its configuration and its value."""
    return [(m["config"]["type"].split(":")[-1], m["config"], m["value"]) for m in data["metrics"]]


def drift_summary(
    snapshot: Snapshot, features: list[str], *, window: Window, compared: int, quality: WindowQuality | None
) -> WindowSummary:
    """The window's numbers from its drift snapshot (per-column scores and flags, the drifted share of features,
    the rest) on ``compared`` of its rows, with its ``quality`` if it has one."""
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
        rows=window.rows.height,
        labelled=window.labelled,
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
