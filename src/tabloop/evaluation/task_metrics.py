"""Metrics of multiclass and regression predictions, their scores records, and each metric's direction.

Binary metrics stay in :mod:`tabloop.evaluation.metrics`; these are the other two tasks':

- **multiclass** (class probabilities ``[rows, classes]`` against class indices): log loss (primary), accuracy,
  macro-F1, one-vs-rest ROC AUC (macro; undefined where a class is absent);
- **regression** (values against the target): RMSE (primary), MAE, R², and MAPE where every target is positive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import f1_score, roc_auc_score

Array = npt.NDArray[Any]
EPS = 1e-15

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "log_loss": False,
    "accuracy": True,
    "macro_f1": True,
    "roc_auc_ovr": True,
    "rmse": False,
    "mae": False,
    "r2": True,
    "mape": False,
}
# The metrics reports show for each task, with their titles (the first is the primary metric).
TASK_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "binary": [("ROC AUC", "roc_auc"), ("PR AUC", "pr_auc"), ("log loss", "log_loss"), ("Brier", "brier"),
               ("calibration error", "ece")],
    "multiclass": [("log loss", "log_loss"), ("accuracy", "accuracy"), ("macro-F1", "macro_f1"),
                   ("ROC AUC (one vs rest)", "roc_auc_ovr")],
    "regression": [("RMSE", "rmse"), ("MAE", "mae"), ("R²", "r2"), ("MAPE", "mape")],
}  # fmt: skip
GATE_METRICS = {
    "binary": ("roc_auc", "pr_auc"),
    "multiclass": ("log_loss", "accuracy", "macro_f1", "roc_auc_ovr"),
    "regression": ("rmse", "mae", "r2"),
}


def _r(value: float | np.floating[Any]) -> float:
    return round(float(value), 6)


def class_metrics(target: Array, proba: Array) -> dict[str, float]:
    """Quality of class probabilities ``proba`` (``[rows, classes]``) against class indices ``target``."""
    y = np.asarray(target, dtype=np.int64)
    classes = proba.shape[1]
    chosen = proba[np.arange(len(y)), y]
    predicted = proba.argmax(axis=1)
    every_class = len(np.unique(y)) == classes
    return {
        "rows": len(y),
        "log_loss": _r(-np.mean(np.log(np.clip(chosen, EPS, 1.0)))),
        "accuracy": _r(np.mean(predicted == y)),
        "macro_f1": _r(f1_score(y, predicted, labels=list(range(classes)), average="macro", zero_division=0)),
        "roc_auc_ovr": _r(roc_auc_score(y, proba, multi_class="ovr", labels=list(range(classes))))
        if every_class
        else float("nan"),
    }


def per_class(target: Array, proba: Array, classes: list[str]) -> dict[str, dict[str, float]]:
    """Each class's share, precision, recall and F1 at the most probable class."""
    y, predicted = np.asarray(target, dtype=np.int64), proba.argmax(axis=1)
    found = {}
    for i, name in enumerate(classes):
        tp = int(((predicted == i) & (y == i)).sum())
        precision = tp / max(int((predicted == i).sum()), 1)
        recall = tp / max(int((y == i).sum()), 1)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        found[name] = {
            "share": _r(np.mean(y == i)),
            "precision": _r(precision),
            "recall": _r(recall),
            "f1": _r(f1),
        }
    return found


def regression_metrics(target: Array, prediction: Array) -> dict[str, float]:
    """Errors of ``prediction`` against the numbers ``target``."""
    y, p = np.asarray(target, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    error = p - y
    spread = float(np.sum((y - y.mean()) ** 2))
    return {
        "rows": len(y),
        "mean_target": _r(y.mean()),
        "mean_prediction": _r(p.mean()),
        "rmse": _r(np.sqrt(np.mean(error**2))),
        "mae": _r(np.mean(np.abs(error))),
        "r2": _r(1 - np.sum(error**2) / spread) if spread > 0 else float("nan"),
        "mape": _r(np.mean(np.abs(error) / y)) if len(y) and bool(np.all(y > 0)) else float("nan"),
    }


class ClassScores(BaseModel):
    """:func:`class_metrics` of one model on one split."""

    model_config = ConfigDict(frozen=True)

    rows: int
    log_loss: float
    accuracy: float
    macro_f1: float
    roc_auc_ovr: float  # NaN where a class is absent from the rows


class RegressionScores(BaseModel):
    """:func:`regression_metrics` of one model on one split."""

    model_config = ConfigDict(frozen=True)

    rows: int
    mean_target: float
    mean_prediction: float
    rmse: float
    mae: float
    r2: float
    mape: float  # NaN unless every target is positive


def confusion_table(target: Array, proba: Array, classes: list[str]) -> pl.DataFrame:
    """Rows of each (actual, predicted) pair of classes, every pair listed (a DVC confusion plot)."""
    y, predicted = np.asarray(target, dtype=np.int64), proba.argmax(axis=1)
    return pl.DataFrame(
        [
            {"actual": a, "predicted": p, "rows": int(((y == i) & (predicted == j)).sum())}
            for i, a in enumerate(classes)
            for j, p in enumerate(classes)
        ]
    )


def regression_tables(target: Array, prediction: Array, points: int, bins: int) -> dict[str, pl.DataFrame]:
    """Predicted against actual (at most ``points`` rows, evenly spaced in the target's order) and a histogram of
    the residuals (DVC plots)."""
    y, p = np.asarray(target, dtype=np.float64), np.asarray(prediction, dtype=np.float64)
    order = np.argsort(y, kind="stable")
    keep = np.unique(np.linspace(0, len(y) - 1, min(points, len(y))).round().astype(np.int64))
    scatter = pl.DataFrame({"actual": y[order][keep], "predicted": p[order][keep]}).with_columns(pl.all().round(6))
    counts, edges = np.histogram(p - y, bins=bins)
    residuals = pl.DataFrame({"residual": np.round((edges[:-1] + edges[1:]) / 2, 6), "rows": counts})
    return {"predicted_vs_actual": scatter, "residuals": residuals}
