"""The ``evaluate`` stage: the model and two baselines on the test split, overall and per slice, in the metrics of
the model's task (its primary metric named in ``metrics.json``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from tabloop.config import SPLITS, DataConfig, EvaluateConfig
from tabloop.errors import FeatureError
from tabloop.evaluation.card import CardInputs, model_card
from tabloop.evaluation.metrics import EvaluationResult, ModelScores, confusion
from tabloop.evaluation.scoring import baselines, curve_tables, measure_of, read_split, score
from tabloop.evaluation.task_metrics import per_class
from tabloop.io import staged, write_json
from tabloop.records import CARD_FILE, EVALUATION_METRICS_FILE, PLOTS_DIR, PRIMARY_METRICS, SLICES_FILE, TrainMetrics
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
    tuned_lightgbm: Mapping[str, bool | int | float | str] | None = None,
) -> EvaluationResult:
    """Score the model and the baselines on the test split; write metrics, curves and the model card."""
    frames = {split: read_split(features_dir, split) for split in SPLITS}
    predictor = Predictor.from_directory(bundle_dir)
    target = predictor.bundle.contract.target
    target_name = target.name
    targets = {s: f[target_name].to_numpy().astype(np.float64) for s, f in frames.items()}
    if target.task == "binary" and len(np.unique(targets["test"])) < 2:
        raise FeatureError("the test split has a single class; ROC AUC and the gate need both")

    model = score(predictor, frames["test"], config.slices, config.calibration_bins)
    baseline_proba, baseline_details = baselines(predictor, frames, targets, config, tuned_lightgbm)
    probabilities = {"pytorch": model.proba, **baseline_proba}
    metrics = _result(predictor, probabilities, targets["test"], config.calibration_bins, baseline_details)
    card = model_card(
        CardInputs(
            frames=frames,
            target=target_name,
            label=data.label,
            split=data.split.summary(),
            time_split=data.split.kind == "time",
            card=data.card,
            bundle=predictor.bundle,
            metrics=metrics,
            slices=model.slices,
            min_slice_rows=config.min_slice_rows,
            training=TrainMetrics.read(training_metrics) if training_metrics and training_metrics.is_file() else None,
        )
    )
    if not data.card.intended_use.strip():
        logger.warning(
            "card.intended_use is empty in data.yaml: the model card gives a generic sentence; write who uses the "
            "predictions, for what, and who makes the final call"
        )
    plots = curve_tables(targets["test"], probabilities, config, target)
    _write(out_dir, metrics, model.slices, card, plots=plots)
    for name, m in metrics.test.items():
        if isinstance(m, ModelScores):
            logger.info("test %-8s ROC AUC %.4f  PR AUC %.4f  log loss %.4f", name, m.roc_auc, m.pr_auc, m.log_loss)
        else:
            logger.info("test %-8s %s %.4f", name, PRIMARY_METRICS[target.task].title, metrics.score(name))
    return metrics


def _result(
    predictor: Predictor,
    probabilities: dict[str, np.ndarray[Any, Any]],
    test_target: np.ndarray[Any, Any],
    bins: int,
    details: dict[str, dict[str, int]],
) -> EvaluationResult:
    """``metrics.json``: every model's test metrics in the task's terms, and what only the task has (a binary
    model's decisions at its threshold, a multiclass one's metrics per class)."""
    target = predictor.bundle.contract.target
    measure = measure_of(target, bins)
    test = {name: measure(test_target, p) for name, p in probabilities.items()}
    primary = PRIMARY_METRICS[target.task]
    found: dict[str, object] = {"test": test}
    if target.task == "binary":
        found |= _binary_decision(test, probabilities["pytorch"], test_target, predictor.threshold)
    found |= {
        "baselines": details,
        "primary": {"name": primary.name, "higher_is_better": primary.higher_is_better},
    }
    if target.classes is not None:
        found["per_class"] = per_class(test_target, probabilities["pytorch"], target.classes)
    return EvaluationResult.model_validate(found)


def _binary_decision(
    test: dict[str, dict[str, float]], proba: np.ndarray[Any, Any], target: np.ndarray[Any, Any], threshold: float
) -> dict[str, object]:
    """A binary model's margin over LightGBM and its decisions at the threshold."""
    return {
        "pytorch_minus_lightgbm_roc_auc": round(test["pytorch"]["roc_auc"] - test["lightgbm"]["roc_auc"], 6),
        "decision": confusion(target, proba, threshold),
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
    outputs = (out_dir / EVALUATION_METRICS_FILE, out_dir / SLICES_FILE, out_dir / PLOTS_DIR, out_dir / CARD_FILE)
    with staged(*outputs) as (metrics_path, slices_path, plots_dir, card_path):
        metrics.write(metrics_path)
        write_json(slices, slices_path)
        for name, table in plots.items():
            path = plots_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            table.write_csv(path)
        card_path.write_text(card, encoding="utf-8")
