"""The evaluation configuration (``evaluate.yaml``): the baselines, slices, calibration and curves."""

from __future__ import annotations

from pydantic import Field

from tabloop.runtime.contract import StrictModel


class LightGBMConfig(StrictModel):
    """The LightGBM baseline: library defaults, early stopping on the validation split."""

    max_rounds: int = Field(5000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)


class LogisticConfig(StrictModel):
    """The logistic-regression baseline."""

    C: float = Field(1.0, gt=0)
    max_iter: int = Field(2000, ge=1)


class EvaluateConfig(StrictModel):
    """Everything the evaluate stage needs: ``configs/evaluate.yaml``."""

    seed: int = Field(0, ge=0)
    lightgbm: LightGBMConfig = LightGBMConfig()
    logistic: LogisticConfig = LogisticConfig()
    slices: list[str] = Field(default_factory=list, description="Categorical features to report metrics per value of.")
    min_slice_rows: int = Field(100, ge=1)
    calibration_bins: int = Field(10, ge=2, le=100)
    curve_points: int = Field(200, ge=10, le=100_000)
