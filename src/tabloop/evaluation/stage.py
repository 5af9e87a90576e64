"""The ``evaluate`` stage: the model and two baselines on the test split, overall and per slice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from tabloop.config import SPLITS, DataConfig, EvaluateConfig
from tabloop.contract import FeatureContract
from tabloop.errors import ConfigError, FeatureError
from tabloop.evaluation.baselines import Labelled, lightgbm_baseline, logistic_baseline
from tabloop.evaluation.card import CardInputs, model_card
from tabloop.evaluation.metrics import (
    Decisions,
    EvaluationResult,
    ModelScores,
    confusion,
    curves,
    probability_metrics,
    slice_metrics,
)
from tabloop.features.preprocessing import frame_columns
from tabloop.io import staged, write_json
from tabloop.model.bundle import BundleError, Predictor
from tabloop.training import TrainMetrics

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SLICES_FILE = "slices.json"
PLOTS_DIR = "plots"
CARD_FILE = "model_card.md"


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


def evaluate(
    data: DataConfig,
    config: EvaluateConfig,
    features_dir: Path,
    bundle_dir: Path,
    out_dir: Path,
    *,
    training_metrics: Path | None = None,
) -> EvaluationResult:
    """Score the model and the baselines on the test split; write metrics, curves and the model card."""
    frames = {split: read_split(features_dir, split) for split in SPLITS}
    predictor = Predictor.from_directory(bundle_dir)
    target_name = predictor.bundle.contract.target.name
    targets = {s: f[target_name].to_numpy().astype(np.float64) for s, f in frames.items()}
    if len(np.unique(targets["test"])) < 2:
        raise FeatureError("the test split has a single class; ROC AUC and the gate need both")

    model = score(predictor, frames["test"], config.slices, config.calibration_bins)
    baseline_proba, baseline_details = baselines(predictor, frames, targets, config)
    probabilities = {"pytorch": model.proba, **baseline_proba}
    test = {
        name: ModelScores(**probability_metrics(targets["test"], p, config.calibration_bins))
        for name, p in probabilities.items()
    }
    metrics = EvaluationResult(
        test=test,
        pytorch_minus_lightgbm_roc_auc=round(test["pytorch"].roc_auc - test["lightgbm"].roc_auc, 6),
        decision=Decisions(**confusion(targets["test"], model.proba, predictor.threshold)),
        baselines=baseline_details,
    )
    card = model_card(
        CardInputs(
            frames=frames,
            target=target_name,
            label=data.label,
            split=data.split.summary(),
            card=data.card,
            bundle=predictor.bundle,
            metrics=metrics,
            slices=model.slices,
            min_slice_rows=config.min_slice_rows,
            training=TrainMetrics.read(training_metrics) if training_metrics and training_metrics.is_file() else None,
        )
    )
    _write(out_dir, metrics, model.slices, card, plots=curve_tables(targets["test"], probabilities, config))
    for name, m in test.items():
        logger.info("test %-8s ROC AUC %.4f  PR AUC %.4f  log loss %.4f", name, m.roc_auc, m.pr_auc, m.log_loss)
    return metrics


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


def _write(
    out_dir: Path,
    metrics: EvaluationResult,
    slices: dict[str, dict[str, dict[str, float]]],
    card: str,
    *,
    plots: dict[str, pl.DataFrame],
) -> None:
    """The stage's outputs, each replaced whole or not at all."""
    outputs = (out_dir / METRICS_FILE, out_dir / SLICES_FILE, out_dir / PLOTS_DIR, out_dir / CARD_FILE)
    with staged(*outputs) as (metrics_path, slices_path, plots_dir, card_path):
        metrics.write(metrics_path)
        write_json(slices, slices_path)
        for name, table in plots.items():
            path = plots_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            table.write_csv(path)
        card_path.write_text(card, encoding="utf-8")
