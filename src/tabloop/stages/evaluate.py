"""The ``evaluate`` stage: the model and two baselines on the test split, overall and per slice."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from tabloop.config import SPLITS, DataConfig, EvaluateConfig
from tabloop.errors import ConfigError, FeatureError
from tabloop.evaluation.card import CardInputs, model_card
from tabloop.evaluation.metrics import (
    Decisions,
    EvaluationResult,
    ModelScores,
    confusion,
    probability_metrics,
)
from tabloop.evaluation.scoring import baselines, curve_tables, read_split, score
from tabloop.io import staged, write_json
from tabloop.records import CARD_FILE, EVALUATION_METRICS_FILE, PLOTS_DIR, SLICES_FILE, TrainMetrics
from tabloop.runtime.bundle import Predictor

logger = logging.getLogger(__name__)


def run(
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
    task = predictor.bundle.contract.target.task
    if task != "binary":
        raise ConfigError(f"label.task: {task}: the evaluate stage scores binary models only so far")
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


def _write(
    out_dir: Path,
    metrics: EvaluationResult,
    slices: dict[str, dict[str, dict[str, float]]],
    card: str,
    *,
    plots: dict[str, pl.DataFrame],
) -> None:
    """The stage's outputs, each replaced whole or not at all."""
    outputs = (out_dir / EVALUATION_METRICS_FILE, out_dir / SLICES_FILE, out_dir / PLOTS_DIR, out_dir / CARD_FILE)
    with staged(*outputs) as (metrics_path, slices_path, plots_dir, card_path):
        metrics.write(metrics_path)
        write_json(slices, slices_path)
        for name, table in plots.items():
            path = plots_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            table.write_csv(path)
        card_path.write_text(card, encoding="utf-8")
