"""The records pipeline stages write and later ones read back, and the column names they share.

Light on purpose: the register stage, evaluation and monitoring read them without importing torch or the features
stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, JsonValue, SerializerFunctionWrapHandler, model_serializer

from tabloop.errors import FeatureError
from tabloop.io import StageRecord, write_json

TRAIN_HISTORY_FILE = "history.csv"  # the train stage's reports
TRAIN_METRICS_FILE = "metrics.json"
EVALUATION_METRICS_FILE = "metrics.json"  # the evaluate stage's reports
SLICES_FILE = "slices.json"
PLOTS_DIR = "plots"
CARD_FILE = "model_card.md"


@dataclass(frozen=True)
class PrimaryMetric:
    """The metric that decides, for a task: early stopping, the best epoch, the promotion gate."""

    name: str
    higher_is_better: bool
    title: str  # in words, for logs and reports

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` beats score ``b``."""
        return a > b if self.higher_is_better else a < b

    @property
    def worst(self) -> float:
        """A score every real score beats."""
        return float("-inf") if self.higher_is_better else float("inf")


PRIMARY_METRICS = {
    "binary": PrimaryMetric("roc_auc", higher_is_better=True, title="ROC AUC"),
    "multiclass": PrimaryMetric("log_loss", higher_is_better=False, title="log loss"),
    "regression": PrimaryMetric("rmse", higher_is_better=False, title="RMSE"),
}


class TrainMetrics(StageRecord):
    """The train stage's ``metrics.json``: the epoch kept, how many ran, its validation score (``valid_`` and the
    task's primary metric) and, for a binary model, the threshold."""

    stage = "train"

    best_epoch: int
    epochs_run: int
    valid_roc_auc: float | None = None
    valid_log_loss: float | None = None
    valid_rmse: float | None = None
    threshold: float | None = None

    def write(self, path: Path) -> None:
        """The record as indented JSON, without the scores of other tasks."""
        write_json(self.model_dump(mode="python", exclude_none=True), path)

    @property
    def valid_score(self) -> float:
        """The validation score of the task's primary metric."""
        found = [v for v in (self.valid_roc_auc, self.valid_log_loss, self.valid_rmse) if v is not None]
        if len(found) != 1:
            raise FeatureError(f"the train stage's metrics hold {len(found)} validation scores, not one")
        return found[0]


# Columns kept beside the features, never model inputs: the example's id, its event time (naive, local to
# entity.time_zone), when its outcome is known, and the label column's raw value where it is a number.
ID, TIME, OUTCOME_TIME, OUTCOME = "_id", "_time", "_outcome_time", "_outcome"
META_COLUMNS = (ID, TIME, OUTCOME_TIME, OUTCOME)
SPLIT = "_split"  # each example's split while the features stage builds them (never written): a table may hold "split"


class _Dated(BaseModel):
    """Counts over an event time, ending with its first and last day (``start``, ``end``): those, and whatever
    else does not apply (another task's figures), are left out of the JSON."""

    model_config = ConfigDict(frozen=True)

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class ExampleCounts(_Dated):
    """The examples the adapter built, and those left out of the splits."""

    built: int
    unlabelled: int
    unlabelled_policy: str
    outside_split: int  # labelled, but in none of the splits (after a time split's test end)
    start: str | None = None
    end: str | None = None


class SplitCounts(_Dated):
    """One split's rows and its target: the positive rate (binary), each class's share (multiclass) or the mean
    (regression)."""

    rows: int
    positive_rate: float | None = None
    class_shares: dict[str, float] | None = None
    target_mean: float | None = None
    start: str | None = None
    end: str | None = None


class FeatureMetrics(StageRecord):
    """What the features stage produced (``reports/features.json``, DVC metrics), read back by retraining."""

    stage: ClassVar[str] = "features"

    examples: ExampleCounts
    adapter: dict[str, JsonValue]  # whatever the dataset's adapter chose to report
    splits: dict[str, SplitCounts]
    vocabulary: dict[str, int]  # categorical feature: the number of values it learnt
