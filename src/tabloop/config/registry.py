"""The registry configuration (``registry.yaml``): the experiment, the model's name and the promotion gate."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from tabloop.runtime.contract import StrictModel

GateMetric = Literal["roc_auc", "pr_auc", "log_loss", "accuracy", "macro_f1", "roc_auc_ovr", "rmse", "mae", "r2"]


class PromotionGateConfig(StrictModel):
    """When a challenger replaces the champion: compared on the same held-out data in ``metric``'s direction (higher
    ROC AUC, lower RMSE), by at least ``min_improvement``."""

    metric: GateMetric | None = Field(None, description="None: the task's primary metric (roc_auc, log_loss, rmse).")
    min_improvement: float = Field(0.001, ge=-1)
    # a quality floor for a metric where higher is better (a ceiling, max_score, where lower is): a challenger past
    # it is never promoted, not even as the first model (None: none); no default fits every table (chance is 0.5 for
    # ROC AUC, the positive rate for PR AUC; the spread of the target for RMSE), so make init drafts one
    min_score: float | None = Field(None)
    max_score: float | None = Field(None)
    max_slice_regression: float = Field(0.02, ge=0)
    min_slice_rows: int = Field(200, ge=1)
    # the held-out data must be large enough to tell models apart: fewer rows (or, for a binary target, fewer
    # positives or negatives) and the gate refuses to promote, saying so
    min_test_rows: int = Field(50, ge=1)
    min_test_positives: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _one_bound(self) -> Self:
        if self.min_score is not None and self.max_score is not None:
            raise ValueError("set min_score (a floor, for a metric where higher is better) or max_score, not both")
        return self


class RegistryConfig(StrictModel):
    """The MLflow experiment, the registered model and its promotion gate: ``configs/registry.yaml``."""

    experiment: str = Field("model", min_length=1)
    model_name: str = Field("model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    gate: PromotionGateConfig = PromotionGateConfig()
