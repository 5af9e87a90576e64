"""The drift gate: the latest judged window turned into a verdict, a summary for people, and an exit code.

A window's numbers (``WindowSummary``) are made by ``monitoring.report``, written beside the verdict and judged
here; the models keep the JSON written today's shape: a part a window lacks (its quality report before enough
outcomes) is left out, not written as null.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer, model_validator

from tabloop.config.monitor import GateConfig

HEALTHY, ALARM, UNJUDGED = 0, 3, 4  # exit codes of `make monitor` (1 is an error, 2 a usage error)


class DriftScore(BaseModel):
    """The drift test of one column: its statistic's value, the statistic, its threshold and the outcome."""

    model_config = ConfigDict(frozen=True)

    score: float
    method: str
    threshold: float
    drifted: bool


class LabelDrift(BaseModel):
    """The drift of the observed outcomes against the reference's."""

    model_config = ConfigDict(frozen=True)

    score: float
    method: str


BINARY_FIELDS = ("roc_auc", "precision", "recall", "calibration_error", "label_rate", "reference_roc_auc")
METRIC_NAMES = {"log_loss": "log loss", "rmse": "RMSE"}


class WindowQuality(BaseModel):
    """The quality of a window's predictions whose outcome has arrived, in its task's terms; a score is None where
    it is undefined (NaN: outcomes of one class, no positive prediction).

    A binary model's fields are written as before the task kinds existed (null where undefined); the other tasks'
    fields are left out where they do not apply. ``metric`` names the score the gate compares for a multiclass
    (log loss) or regression (RMSE) model, against ``reference_score``, its value on the validation split.
    """

    model_config = ConfigDict(frozen=True)

    # binary
    roc_auc: float | None = None
    precision: float | None = None
    recall: float | None = None
    calibration_error: float | None = None
    label_rate: float | None = None  # the observed positive rate
    label_drift: LabelDrift
    reference_roc_auc: float | None = None  # the model's own, on its validation split
    # multiclass
    accuracy: float | None = None
    f1: float | None = None
    log_loss: float | None = None
    f1_by_class: dict[str, float] | None = None
    # regression
    rmse: float | None = None
    mae: float | None = None
    r2: float | None = None
    mean_actual: float | None = None
    # the primary metric of a multiclass or regression model, and its reference
    metric: Literal["log_loss", "rmse"] | None = None
    reference_score: float | None = None

    @model_serializer(mode="wrap")
    def _task_fields(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        binary = self.metric is None
        return {k: v for k, v in data.items() if v is not None or (binary and k in BINARY_FIELDS)}

    @property
    def score(self) -> float | None:
        """The value of ``metric`` (None for a binary model)."""
        return None if self.metric is None else getattr(self, self.metric)


class WindowSummary(BaseModel):
    """A window's numbers: the drift of each feature and of the prediction, data quality and, once enough outcomes
    have arrived, the quality of the predictions."""

    model_config = ConfigDict(frozen=True)

    columns: dict[str, DriftScore]  # feature: its drift
    prediction_drift: DriftScore | None = None
    prediction: str = "predicted probability"  # what drifted in prediction_drift: the task's answer
    mean_prediction: float
    oov_rate: dict[str, float] = {}  # categorical feature: its share of values outside the training vocabulary
    out_of_range: dict[str, float] = {}  # numeric feature: its share of values outside the reference's range
    drifted_features: list[str]  # in the contract's order
    drift_share: float  # of the features
    rows: int
    labelled: int  # rows whose outcome has arrived
    missing_share: float  # of the feature values compared
    quality: WindowQuality | None = None

    @model_serializer(mode="wrap")
    def _leave_out_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        absent = [k for k in ("prediction_drift", "quality", "oov_rate", "out_of_range") if not data.get(k)]
        if data.get("prediction") == "predicted probability":  # a binary model's, written as before
            absent.append("prediction")
        return {k: v for k, v in data.items() if k not in absent}

    def strongest_drift(self) -> list[str]:
        """The drifted features, the strongest drift first."""
        return sorted(self.drifted_features, key=lambda c: -self.columns[c].score)


class Verdict(BaseModel):
    """The gate's decision on one window; as JSON, its summary's numbers beside the decision."""

    model_config = ConfigDict(frozen=True)

    status: str  # healthy, alarm, or not judged
    exit_code: int
    window: str | None
    reasons: list[str] = []
    summary: WindowSummary | None = None

    @model_serializer(mode="wrap")
    def _summary_inline(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {**{k: v for k, v in data.items() if k != "summary"}, **(data.get("summary") or {})}

    @model_validator(mode="before")
    @classmethod
    def _summary_nested(cls, data: Any) -> Any:
        """The serialised shape read back: the summary's numbers, written beside the decision, nested again."""
        if not isinstance(data, dict) or "summary" in data or "columns" not in data:
            return data
        inline = {k: v for k, v in data.items() if k in WindowSummary.model_fields}
        return {**{k: v for k, v in data.items() if k not in inline}, "summary": inline}


def judge(window: str | None, summary: WindowSummary | None, gate: GateConfig) -> Verdict:
    """Healthy unless drift or quality crosses a threshold; not judged without a large enough window."""
    if window is None or summary is None:
        return Verdict(
            status="not judged", exit_code=UNJUDGED, window=None, reasons=["no window with enough predictions yet"]
        )
    reasons = []
    share = summary.drift_share
    if share >= gate.max_drift_share:
        reasons.append(
            f"{len(summary.drifted_features)} of {len(summary.columns)} features drifted ({share:.0%}, "
            f"limit {gate.max_drift_share:.0%}); most: {', '.join(summary.strongest_drift()[:5])}"
        )
    prediction = summary.prediction_drift
    if gate.prediction_drift and prediction is not None and prediction.drifted:
        reasons.append(
            f"the {summary.prediction} drifted ({prediction.method} {prediction.score:.3f}, "
            f"threshold {prediction.threshold})"
        )
    reasons += _quality_reasons(summary.quality, gate)
    if reasons:
        return Verdict(status="alarm", exit_code=ALARM, window=window, reasons=reasons, summary=summary)
    return Verdict(status="healthy", exit_code=HEALTHY, window=window, summary=summary)


def _quality_reasons(quality: WindowQuality | None, gate: GateConfig) -> list[str]:
    """The alarm the window's quality raises, if any: ROC AUC (binary) lower than the reference's by more than
    ``max_roc_auc_drop``, or log loss (multiclass) or RMSE (regression) higher by more than ``max_error_increase``."""
    if quality is None:
        return []
    if quality.metric is None:
        auc, reference = quality.roc_auc, quality.reference_roc_auc
        if auc is not None and reference is not None and reference - auc > gate.max_roc_auc_drop:
            return [
                f"ROC AUC {auc:.3f} is {reference - auc:.3f} below the reference's {reference:.3f} "
                f"(limit {gate.max_roc_auc_drop})"
            ]
        return []
    score, reference, name = quality.score, quality.reference_score, METRIC_NAMES[quality.metric]
    if (
        score is not None
        and reference is not None
        and reference > 0
        and score > reference * (1 + gate.max_error_increase)
    ):
        return [
            f"{name} {score:.4g} is {score / reference - 1:.0%} above the reference's {reference:.4g} "
            f"(limit {gate.max_error_increase:.0%})"
        ]
    return []


def describe(verdict: Verdict) -> str:
    """The verdict as a short Markdown summary."""
    lines = [f"# Monitoring verdict: {verdict.status}", ""]
    s = verdict.summary
    if verdict.window is None or s is None:
        lines += [f"- {r}" for r in verdict.reasons]
        return "\n".join(lines) + "\n"
    lines.append(f"Window **{verdict.window}**: {s.rows:,} predictions, {s.labelled:,} with outcomes.")
    lines.append("")
    lines += [f"- **{r}**" for r in verdict.reasons] or ["- no threshold crossed"]
    lines.append("")
    lines += _drift_lines(s)
    lines.append("")
    lines.append(_quality_line(s.quality))
    return "\n".join(lines) + "\n"


def _drift_lines(s: WindowSummary) -> list[str]:
    drifted = s.strongest_drift()
    lines = [f"Drifted features ({len(drifted)} of {len(s.columns)}, share {s.drift_share:.0%}):"]
    lines += [f"- {c}: {s.columns[c].method} {s.columns[c].score:.3f}" for c in drifted] or ["- none"]
    lines.append("")
    mean = {"predicted class": "Mean probability of the predicted class", "predicted value": "Mean predicted value"}
    lines.append(
        f"{mean.get(s.prediction, 'Mean prediction')} {s.mean_prediction:.4g}; missing values {s.missing_share:.1%} "
        "of feature values."
    )
    oov = {k: v for k, v in s.oov_rate.items() if v > 0}
    if oov:
        lines.append("Out-of-vocabulary rates: " + ", ".join(f"{k} {v:.1%}" for k, v in oov.items()) + ".")
    outside = {k: v for k, v in s.out_of_range.items() if v > 0}
    if outside:
        lines.append(
            "Outside the reference range (accepted, never learned from): "
            + ", ".join(f"{k} {v:.1%}" for k, v in outside.items())
            + "."
        )
    return lines


def _quality_line(q: WindowQuality | None) -> str:
    if q is None:
        return "No quality report yet: too few outcomes have arrived for this window."

    def num(value: float | None) -> float:
        return float("nan") if value is None else value

    if q.metric == "log_loss":
        return (
            f"Quality on the outcomes so far: log loss {num(q.log_loss):.4f} (reference {num(q.reference_score):.4f}), "
            f"accuracy {num(q.accuracy):.3f}, F1 {num(q.f1):.3f}."
        )
    if q.metric == "rmse":
        return (
            f"Quality on the outcomes so far: RMSE {num(q.rmse):.4g} (reference {num(q.reference_score):.4g}), "
            f"MAE {num(q.mae):.4g}, R² {num(q.r2):.3f}, mean observed {num(q.mean_actual):.4g}."
        )
    return (
        f"Quality on the outcomes so far: ROC AUC {num(q.roc_auc):.3f} (reference {num(q.reference_roc_auc):.3f}), "
        f"precision {num(q.precision):.3f}, recall {num(q.recall):.3f}, "
        f"calibration error {num(q.calibration_error):.3f}, observed positive rate {num(q.label_rate):.1%}."
    )
