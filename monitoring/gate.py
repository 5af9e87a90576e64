"""The drift gate: the latest judged window turned into a verdict, a summary for people, and an exit code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from monitoring.config import GateConfig

HEALTHY, ALARM, UNJUDGED = 0, 3, 4  # exit codes of `make monitor` (1 is an error, 2 a usage error)


@dataclass(frozen=True)
class Verdict:
    """The gate's decision on one window."""

    status: str  # healthy, alarm, or not judged
    exit_code: int
    window: str | None
    reasons: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "window": self.window,
            "reasons": self.reasons,
            **self.summary,
        }


def judge(window: str | None, summary: dict[str, Any] | None, gate: GateConfig) -> Verdict:
    """Healthy unless drift or quality crosses a threshold; not judged without a large enough window."""
    if window is None or summary is None:
        return Verdict("not judged", UNJUDGED, None, ["no window with enough predictions yet"])
    reasons = []
    share = summary["drift_share"]
    if share >= gate.max_drift_share:
        top = sorted(summary["drifted_features"], key=lambda c: -summary["columns"][c]["score"])[:5]
        reasons.append(
            f"{len(summary['drifted_features'])} of {len(summary['columns'])} features drifted ({share:.0%}, "
            f"limit {gate.max_drift_share:.0%}); most: {', '.join(top)}"
        )
    prediction = summary.get("prediction_drift", {})
    if gate.prediction_drift and prediction.get("drifted"):
        reasons.append(
            f"the predicted probability drifted ({prediction['method']} {prediction['score']:.3f}, "
            f"threshold {prediction['threshold']})"
        )
    quality = summary.get("quality") or {}
    auc, reference = quality.get("roc_auc"), quality.get("reference_roc_auc")
    if auc is not None and reference is not None and reference - auc > gate.max_roc_auc_drop:
        reasons.append(
            f"ROC AUC {auc:.3f} is {reference - auc:.3f} below the reference's {reference:.3f} "
            f"(limit {gate.max_roc_auc_drop})"
        )
    if reasons:
        return Verdict("alarm", ALARM, window, reasons, summary)
    return Verdict("healthy", HEALTHY, window, [], summary)


def describe(verdict: Verdict) -> str:
    """The verdict as a short Markdown summary."""
    s = verdict.summary
    lines = [f"# Monitoring verdict: {verdict.status}", ""]
    if verdict.window is None:
        lines += [f"- {r}" for r in verdict.reasons]
        return "\n".join(lines) + "\n"
    lines.append(f"Window **{verdict.window}**: {s['rows']:,} predictions, {s['labelled']:,} with outcomes.")
    lines.append("")
    lines += [f"- **{r}**" for r in verdict.reasons] or ["- no threshold crossed"]
    lines.append("")
    drifted = sorted(s["drifted_features"], key=lambda c: -s["columns"][c]["score"])
    lines.append(f"Drifted features ({len(drifted)} of {len(s['columns'])}, share {s['drift_share']:.0%}):")
    lines += [f"- {c}: {s['columns'][c]['method']} {s['columns'][c]['score']:.3f}" for c in drifted] or ["- none"]
    lines.append("")
    lines.append(
        f"Mean prediction {s.get('mean_prediction', float('nan')):.3f}; "
        f"missing values {s.get('missing_share', 0):.1%} of feature values."
    )
    oov = {k: v for k, v in (s.get("oov_rate") or {}).items() if v > 0}
    if oov:
        lines.append("Out-of-vocabulary rates: " + ", ".join(f"{k} {v:.1%}" for k, v in oov.items()) + ".")
    q = s.get("quality")
    if q:
        lines.append("")
        nan = float("nan")

        def num(key: str) -> float:
            value = q.get(key)
            return nan if value is None else float(value)

        lines.append(
            f"Quality on the outcomes so far: ROC AUC {num('roc_auc'):.3f} (reference {num('reference_roc_auc'):.3f}), "
            f"precision {num('precision'):.3f}, recall {num('recall'):.3f}, "
            f"calibration error {num('calibration_error'):.3f}, observed positive rate {num('label_rate'):.1%}."
        )
    else:
        lines.append("")
        lines.append("No quality report yet: too few outcomes have arrived for this window.")
    return "\n".join(lines) + "\n"
