"""A model and its baselines scored on the held-out splits: metrics, slices and curves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from tabloop.config import EvaluateConfig
from tabloop.errors import ConfigError, FeatureError
from tabloop.evaluation.baselines import Labelled, Task, lightgbm_baseline, logistic_baseline
from tabloop.evaluation.metrics import (
    Measure,
    curves,
    probability_metrics,
    slice_metrics,
)
from tabloop.evaluation.task_metrics import class_metrics, confusion_table, regression_metrics, regression_tables
from tabloop.features.fitting import frame_columns
from tabloop.runtime.bundle import BundleError, Predictor
from tabloop.runtime.contract import FeatureContract, TargetSpec

LINEAR_BASELINE = {"binary": "logistic", "multiclass": "logistic", "regression": "ridge"}
TUNED_LIGHTGBM = "lightgbm_tuned"  # LightGBM with make tune's parameters, reported when there are some


@dataclass(frozen=True)
class Scored:
    """A model's metrics on one feature table, overall and per slice, with its predictions (probabilities of the
    positive class or of each class, or values)."""

    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    proba: npt.NDArray[np.float64]


def measure_of(target: TargetSpec, bins: int) -> Measure:
    """The task's metrics of predictions against the target."""
    if target.task == "multiclass":
        return class_metrics
    if target.task == "regression":
        return regression_metrics
    return lambda y, p: probability_metrics(y, p, bins)


def read_split(features_dir: Path, split: str) -> pl.DataFrame:
    """One feature table, or a FeatureError saying to build it."""
    path = features_dir / f"{split}.parquet"
    if not path.is_file():
        raise FeatureError(f"{path}: not found; run the features stage first (dvc repro features)")
    return pl.read_parquet(path)


def check_slices(slices: list[str], contract: FeatureContract) -> None:
    """Slices must be categorical features of the contract."""
    for name in slices:
        spec = contract.features.get(name)
        if spec is None or spec.kind != "categorical":
            raise ConfigError(f"slices: {name!r} is not a categorical feature of the model's contract")


def score(predictor: Predictor, frame: pl.DataFrame, slices: list[str], bins: int) -> Scored:
    """``predictor`` on ``frame``: overall and per-slice metrics (the gate scores champions with this too)."""
    contract = predictor.bundle.contract
    check_slices(slices, contract)
    target = frame[contract.target.name].to_numpy().astype(np.float64)
    proba = predictor.outputs(frame_columns(frame, contract))
    bad = int((~np.isfinite(proba)).reshape(len(proba), -1).any(axis=1).sum())
    if bad:
        raise BundleError(
            f"the model's predictions are not finite for {bad} of {len(proba)} rows; it cannot be scored or registered"
        )
    measure = measure_of(contract.target, bins)
    return Scored(measure(target, proba), slice_metrics(frame, target, proba, slices, measure=measure), proba)


def baselines(
    predictor: Predictor,
    frames: dict[str, pl.DataFrame],
    targets: dict[str, npt.NDArray[np.float64]],
    config: EvaluateConfig,
    tuned: Mapping[str, bool | int | float | str] | None = None,
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, dict[str, int]]]:
    """LightGBM (and LightGBM with ``tuned`` parameters, when there are some) and the linear model (logistic, or
    ridge for a number) trained on the model's own encoded inputs: their test predictions, and what each chose."""
    contract, preprocessor = predictor.bundle.contract, predictor.bundle.preprocessor
    encoded = {s: preprocessor.transform(frame_columns(f, contract)) for s, f in frames.items()}
    train = Labelled(encoded["train"], targets["train"])
    valid = Labelled(encoded["valid"], targets["valid"])
    task = Task.fit(contract.target, targets["train"])
    lightgbm = lightgbm_baseline(train, valid, encoded["test"], config.lightgbm, config.seed, task=task)
    linear = logistic_baseline(train, encoded["test"], config.logistic, task=task)
    name = LINEAR_BASELINE[contract.target.task]
    fitted = {"lightgbm": lightgbm, name: linear}
    if tuned:
        fitted[TUNED_LIGHTGBM] = lightgbm_baseline(
            train, valid, encoded["test"], config.lightgbm, config.seed, task=task, tuned=tuned
        )
    return {n: r.proba for n, r in fitted.items()}, {n: r.details for n, r in fitted.items()}


def curve_tables(
    target: npt.NDArray[np.float64],
    probabilities: dict[str, npt.NDArray[np.float64]],
    config: EvaluateConfig,
    spec: TargetSpec | None = None,
) -> dict[str, pl.DataFrame]:
    """Each model's plots by their path under the plots directory: ROC, precision-recall and calibration curves
    (binary), a confusion matrix (multiclass), predicted against actual and the residuals (regression)."""
    if spec is not None and spec.classes is not None:
        classes = spec.classes
        return {f"confusion/{name}.csv": confusion_table(target, p, classes) for name, p in probabilities.items()}
    if spec is not None and spec.task == "regression":
        return {
            f"{kind}/{name}.csv": table
            for name, p in probabilities.items()
            for kind, table in regression_tables(target, p, config.curve_points, 2 * config.calibration_bins).items()
        }
    return {
        f"{kind}/{name}.csv": table
        for name, p in probabilities.items()
        for kind, table in curves(target, p, config.curve_points, config.calibration_bins).items()
    }
