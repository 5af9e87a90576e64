"""The ``train`` stage: fit the network (:mod:`tabloop.training`), then write the bundle and the reports (rank 0)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import polars as pl

from tabloop.config import TrainConfig
from tabloop.io import staged
from tabloop.records import TRAIN_HISTORY_FILE, TRAIN_METRICS_FILE, PrimaryMetric, TrainMetrics
from tabloop.runtime.bundle import Bundle
from tabloop.training.checkpoint import CHECKPOINT_FILE, EpochRecord
from tabloop.training.distributed import World
from tabloop.training.loop import EpochHook, TrainResult, fit_model

logger = logging.getLogger(__name__)


def run(
    config: TrainConfig,
    features_dir: Path,
    bundle_dir: Path,
    reports_dir: Path,
    checkpoint_dir: Path,
    *,
    on_epoch_end: EpochHook | None = None,
) -> TrainResult:
    """Train, keep the best epoch, choose the threshold on validation; write the bundle and the reports (rank 0)."""
    world = World.from_environment()
    checkpoint = checkpoint_dir / CHECKPOINT_FILE
    trained = fit_model(config, features_dir, checkpoint, world, on_epoch_end=on_epoch_end)
    result = trained.result
    if world.is_main:
        write_outputs(trained.bundle, result, bundle_dir, reports_dir)
        checkpoint.unlink(missing_ok=True)
        threshold = f", threshold {result.threshold:.3f}" if result.threshold is not None else ""
        logger.info(
            "best epoch %d of %d: valid %s %.4f%s",
            result.best_epoch,
            result.epochs_run,
            result.primary.title,
            result.valid_score,
            threshold,
        )
    return result


def write_outputs(bundle: Bundle, result: TrainResult, bundle_dir: Path, reports_dir: Path) -> None:
    """The bundle and the reports (history, metrics), each directory replaced whole or not at all."""
    with staged(bundle_dir, reports_dir) as (bundle_staging, reports_staging):
        bundle.save(bundle_staging)
        write_history(result.history, result.primary, reports_staging / TRAIN_HISTORY_FILE)
        metrics = TrainMetrics.model_validate(
            {
                "best_epoch": result.best_epoch,
                "epochs_run": result.epochs_run,
                f"valid_{result.primary.name}": result.valid_score,
                "threshold": round(result.threshold, 6) if result.threshold is not None else None,
            }
        )
        metrics.write(reports_staging / TRAIN_METRICS_FILE)


def write_history(history: list[EpochRecord], primary: PrimaryMetric, path: Path) -> None:
    """Per-epoch losses and the validation score (``valid_`` and the primary metric's name) as CSV (a DVC plot)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.DataFrame([asdict(r) for r in history]).rename({"valid_score": f"valid_{primary.name}"})
    frame.write_csv(path)
