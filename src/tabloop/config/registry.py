"""The registry configuration (``registry.yaml``): the experiment, the model's name and the promotion gate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tabloop.runtime.contract import StrictModel


class PromotionGateConfig(StrictModel):
    """When a challenger replaces the champion."""

    metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    min_improvement: float = Field(0.001, ge=-1, le=1)
    # a quality floor: a challenger below it is never promoted, not even as the first model (None: no floor); no
    # default fits every metric (chance is 0.5 for ROC AUC, the positive rate for PR AUC), so make init drafts one
    min_score: float | None = Field(None, ge=0, le=1)
    max_slice_regression: float = Field(0.02, ge=0, le=1)
    min_slice_rows: int = Field(200, ge=1)


class RegistryConfig(StrictModel):
    """The MLflow experiment, the registered model and its promotion gate: ``configs/registry.yaml``."""

    experiment: str = Field("model", min_length=1)
    model_name: str = Field("model", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    gate: PromotionGateConfig = PromotionGateConfig()
