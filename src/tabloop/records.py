"""The records pipeline stages write and later ones read back, and the column names they share.

Light on purpose: the register stage, evaluation and monitoring read them without importing torch or the features
stage.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, JsonValue, SerializerFunctionWrapHandler, model_serializer

from tabloop.io import StageRecord

TRAIN_HISTORY_FILE = "history.csv"  # the train stage's reports
TRAIN_METRICS_FILE = "metrics.json"
EVALUATION_METRICS_FILE = "metrics.json"  # the evaluate stage's reports
SLICES_FILE = "slices.json"
PLOTS_DIR = "plots"
CARD_FILE = "model_card.md"


class TrainMetrics(StageRecord):
    """The train stage's ``metrics.json``: the epoch kept, how many ran, its validation ROC AUC and the threshold."""

    stage = "train"

    best_epoch: int
    epochs_run: int
    valid_roc_auc: float
    threshold: float


# Columns kept beside the features, never model inputs: the example's id, its event time (naive, local to
# entity.time_zone), when its outcome is known, and the label column's raw value where it is a number.
ID, TIME, OUTCOME_TIME, OUTCOME = "_id", "_time", "_outcome_time", "_outcome"
META_COLUMNS = (ID, TIME, OUTCOME_TIME, OUTCOME)


class _Dated(BaseModel):
    """Counts over an event time, ending with its first and last day (``start``, ``end``): those are left out of
    the JSON where there is no event time."""

    model_config = ConfigDict(frozen=True)

    @model_serializer(mode="wrap")
    def _leave_out_absent_days(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k not in ("start", "end") or v is not None}


class ExampleCounts(_Dated):
    """The examples the adapter built, and those left out of the splits."""

    built: int
    unlabelled: int
    unlabelled_policy: str
    outside_split: int  # labelled, but in none of the splits (after a time split's test end)
    start: str | None = None
    end: str | None = None


class SplitCounts(_Dated):
    """One split's rows and positive rate."""

    rows: int
    positive_rate: float
    start: str | None = None
    end: str | None = None


class FeatureMetrics(StageRecord):
    """What the features stage produced (``reports/features.json``, DVC metrics), read back by retraining."""

    stage: ClassVar[str] = "features"

    examples: ExampleCounts
    adapter: dict[str, JsonValue]  # whatever the dataset's adapter chose to report
    splits: dict[str, SplitCounts]
    vocabulary: dict[str, int]  # categorical feature: the number of values it learnt
