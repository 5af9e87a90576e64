"""Metrics of probabilistic binary predictions, overall and per slice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from tabloop.evaluation.task_metrics import ClassScores, RegressionScores
from tabloop.io import StageRecord, write_json

Array = npt.NDArray[Any]
EPS = 1e-7


def _r(value: float | np.floating[Any]) -> float:
    return round(float(value), 6)


def expected_calibration_error(target: Array, proba: Array, bins: int = 10) -> float:
    """Mean gap between predicted probability and observed rate over equal-width bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(proba[inside].mean() - target[inside].mean())
    return float(gap)


def probability_metrics(target: Array, proba: Array, bins: int = 10) -> dict[str, float]:
    """Ranking, probability and calibration quality of ``proba`` against a binary ``target``."""
    p = np.clip(proba, EPS, 1 - EPS)
    y = target.astype(np.float64)
    both_classes = 0 < y.sum() < len(y)
    return {
        "rows": len(y),
        "positive_rate": _r(y.mean()),
        "mean_prediction": _r(p.mean()),
        "roc_auc": _r(roc_auc_score(y, p)) if both_classes else float("nan"),
        "pr_auc": _r(average_precision_score(y, p)) if both_classes else float("nan"),
        "log_loss": _r(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "brier": _r(np.mean((p - y) ** 2)),
        "ece": _r(expected_calibration_error(y, p, bins)),
    }


def confusion(target: Array, proba: Array, threshold: float) -> dict[str, float]:
    """Counts and rates of the decisions at ``threshold``."""
    y = target.astype(bool)
    predicted = proba >= threshold
    tp, fp = int((predicted & y).sum()), int((predicted & ~y).sum())
    fn, tn = int((~predicted & y).sum()), int((~predicted & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": _r(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": _r(precision),
        "recall": _r(recall),
        "f1": _r(f1),
        "accuracy": _r((tp + tn) / len(y)),
    }


class ModelScores(BaseModel):
    """:func:`probability_metrics` of one model on one split."""

    model_config = ConfigDict(frozen=True)

    rows: int
    positive_rate: float
    mean_prediction: float
    roc_auc: float  # NaN where the rows hold one class only
    pr_auc: float
    log_loss: float
    brier: float
    ece: float


class Decisions(BaseModel):
    """:func:`confusion` at the model's threshold."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    precision: float
    recall: float
    f1: float
    accuracy: float


class Primary(BaseModel):
    """The metric that decides for the task, and its direction."""

    model_config = ConfigDict(frozen=True)

    name: str
    higher_is_better: bool


class EvaluationResult(StageRecord):
    """What the evaluate stage found: ``metrics.json``, read back by the register stage and ``tabloop summary``.
    Another task's figures are left out (a binary model's decision at its threshold, a multiclass one's classes)."""

    stage = "evaluate"

    test: dict[str, ModelScores | ClassScores | RegressionScores]  # pytorch, lightgbm, logistic (ridge)
    pytorch_minus_lightgbm_roc_auc: float | None = None
    decision: Decisions | None = None
    baselines: dict[str, dict[str, int]]  # what each baseline chose: LightGBM its rounds, logistic its iterations
    primary: Primary
    per_class: dict[str, dict[str, float]] | None = None  # the network's share, precision, recall, F1 by class

    def write(self, path: Path) -> None:
        """The record as indented JSON, without what the task does not have."""
        write_json(self.model_dump(mode="python", exclude_none=True), path)

    @property
    def network(self) -> ModelScores | ClassScores | RegressionScores:
        """The network's test scores."""
        return self.test["pytorch"]

    @property
    def task(self) -> str:
        """The task the scores are of."""
        scores = self.network
        return (
            "binary"
            if isinstance(scores, ModelScores)
            else "multiclass"
            if isinstance(scores, ClassScores)
            else "regression"
        )

    def score(self, model: str) -> float:
        """A model's test score of the primary metric."""
        value: float = getattr(self.test[model], self.primary.name)
        return value


MISSING = "(missing)"  # the slice of rows without a value


Measure = Callable[[Array, Array], dict[str, float]]


def slice_metrics(
    frame: pl.DataFrame,
    target: Array,
    proba: Array,
    columns: Sequence[str],
    bins: int = 10,
    *,
    measure: Measure | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """``measure`` (by default :func:`probability_metrics`) for every value of every column in ``columns``, largest
    slice first."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for column in columns:
        counts = frame.group_by(column).len().sort(["len", column], descending=[True, False])
        result[column] = {}
        for value in counts[column].to_list():
            values = frame[column]
            mask = (values.is_null() if value is None else (values == value).fill_null(False)).to_numpy()
            name = MISSING if value is None else str(value)
            found = (
                measure(target[mask], proba[mask]) if measure else probability_metrics(target[mask], proba[mask], bins)
            )
            result[column][name] = found
    return result


def downsample(frame: pl.DataFrame, points: int) -> pl.DataFrame:
    """At most ``points`` rows, evenly spaced, always keeping the first and the last."""
    if frame.height <= points:
        return frame
    keep = np.unique(np.linspace(0, frame.height - 1, points).round().astype(np.int64))
    return frame[keep]


def curves(target: Array, proba: Array, points: int = 200, bins: int = 10) -> dict[str, pl.DataFrame]:
    """ROC, precision-recall and calibration curves as tables (for DVC plots)."""
    fpr, tpr, _ = roc_curve(target, proba)
    precision, recall, _ = precision_recall_curve(target, proba)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    calibration = [
        {
            "predicted": _r(proba[which == b].mean()),
            "observed": _r(target[which == b].mean()),
            "rows": int((which == b).sum()),
        }
        for b in range(bins)
        if (which == b).any()
    ]
    return {
        "roc": downsample(pl.DataFrame({"fpr": fpr, "tpr": tpr}).with_columns(pl.all().round(6)), points),
        "pr": downsample(
            pl.DataFrame({"recall": recall[::-1], "precision": precision[::-1]}).with_columns(pl.all().round(6)),
            points,
        ),
        "calibration": pl.DataFrame(calibration),
    }
