"""A model and its baselines scored on the held-out splits: metrics, slices and curves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from tabloop.config import EvaluateConfig
from tabloop.errors import ConfigError, FeatureError
from tabloop.evaluation.baselines import Labelled, lightgbm_baseline, logistic_baseline
from tabloop.evaluation.metrics import (
    curves,
    probability_metrics,
    slice_metrics,
)
from tabloop.features.fitting import frame_columns
from tabloop.runtime.bundle import BundleError, Predictor
from tabloop.runtime.contract import FeatureContract


@dataclass(frozen=True)
class Scored:
    """A model's metrics on one feature table, overall and per slice, with its probabilities."""

    metrics: dict[str, float]
    slices: dict[str, dict[str, dict[str, float]]]
    proba: npt.NDArray[np.float64]


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
    proba = predictor.predict_proba(frame_columns(frame, contract))
    bad = int((~np.isfinite(proba)).sum())
    if bad:
        raise BundleError(
            f"the model's probabilities are not finite for {bad} of {len(proba)} rows; "
            "it cannot be scored or registered"
        )
    metrics = probability_metrics(target, proba, bins)
    return Scored(metrics, slice_metrics(frame, target, proba, slices, bins), proba)


def baselines(
    predictor: Predictor,
    frames: dict[str, pl.DataFrame],
    targets: dict[str, npt.NDArray[np.float64]],
    config: EvaluateConfig,
) -> tuple[dict[str, npt.NDArray[np.float64]], dict[str, dict[str, int]]]:
    """LightGBM and logistic regression trained on the model's own encoded inputs: their test probabilities, and
    what each one chose."""
    contract, preprocessor = predictor.bundle.contract, predictor.bundle.preprocessor
    encoded = {s: preprocessor.transform(frame_columns(f, contract)) for s, f in frames.items()}
    train = Labelled(encoded["train"], targets["train"])
    valid = Labelled(encoded["valid"], targets["valid"])
    lightgbm = lightgbm_baseline(train, valid, encoded["test"], config.lightgbm, config.seed)
    logistic = logistic_baseline(train, encoded["test"], config.logistic)
    return (
        {"lightgbm": lightgbm.proba, "logistic": logistic.proba},
        {"lightgbm": lightgbm.details, "logistic": logistic.details},
    )


def curve_tables(
    target: npt.NDArray[np.float64], probabilities: dict[str, npt.NDArray[np.float64]], config: EvaluateConfig
) -> dict[str, pl.DataFrame]:
    """Each model's curves (ROC, precision-recall, calibration) by their path under the plots directory."""
    return {
        f"{kind}/{name}.csv": table
        for name, p in probabilities.items()
        for kind, table in curves(target, p, config.curve_points, config.calibration_bins).items()
    }
