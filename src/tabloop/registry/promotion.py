"""The promotion gate: does a challenger replace the champion? A pure decision on scores of the same data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tabloop.config import PromotionGateConfig
from tabloop.errors import ConfigError
from tabloop.evaluation.task_metrics import GATE_METRICS, HIGHER_IS_BETTER
from tabloop.records import PRIMARY_METRICS

SliceScores = dict[str, dict[str, dict[str, float]]]  # column -> value -> metrics


@dataclass(frozen=True)
class Scorecard:
    """A model's metrics on the held-out data: overall and per slice."""

    metrics: dict[str, float]
    slices: SliceScores = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and every reason behind it."""

    promote: bool
    reasons: list[str]
    delta: float | None = None

    @property
    def verdict(self) -> str:
        """``promote`` or ``reject``."""
        return "promote" if self.promote else "reject"


def decide(challenger: Scorecard, champion: Scorecard | None, policy: PromotionGateConfig, metric: str) -> Decision:
    """Never promote past the quality bound; within it, promote when there is no champion, or when the challenger
    is better in ``metric``'s direction by the margin and no large slice regresses beyond the tolerance. Both
    scorecards must come from the same data."""
    higher = HIGHER_IS_BETTER[metric]
    new = challenger.metrics[metric]
    small = too_small_to_tell(challenger.metrics, policy)
    if small is not None:
        return Decision(False, [small])
    if math.isnan(new):
        return Decision(False, [f"the challenger's {metric} is undefined on the held-out data"])
    if policy.min_score is not None and new < policy.min_score:
        return Decision(False, [f"{metric} {new:.4f} is below the floor of {policy.min_score:.4f}"])
    if policy.max_score is not None and new > policy.max_score:
        return Decision(False, [f"{metric} {new:.4f} is above the ceiling of {policy.max_score:.4f}"])
    if champion is None:
        return Decision(True, [f"no champion yet; challenger {metric} {new:.4f}"])
    old = champion.metrics[metric]
    delta = new - old
    gain = delta if higher else -delta
    reasons = []
    better = gain >= policy.min_improvement
    direction = "higher" if higher else "lower"
    reasons.append(
        f"{metric} {new:.4f} vs champion {old:.4f} ({delta:+.4f}; "
        f"{'meets' if better else 'below'} the required {policy.min_improvement:+.4f}"
        + ("" if higher else f", {direction} is better")
        + ")"
    )
    regressions = slice_regressions(challenger.slices, champion.slices, policy, metric)
    reasons += regressions
    if better and not regressions:
        reasons.append(
            f"no slice of at least {policy.min_slice_rows} rows regresses by more than "
            f"{policy.max_slice_regression:.4f}"
        )
    return Decision(better and not regressions, reasons, round(delta, 6))


def too_small_to_tell(metrics: dict[str, float], policy: PromotionGateConfig) -> str | None:
    """Why the held-out data scored in ``metrics`` cannot decide a promotion, or None: too few rows, or for a binary
    target too few of either class (a handful of positives moves ROC AUC by more than any margin)."""
    rows = int(metrics.get("rows", policy.min_test_rows))
    if rows < policy.min_test_rows:
        return (
            f"the held-out data has {rows} rows, fewer than min_test_rows ({policy.min_test_rows}): too few to tell "
            "models apart; hold out more rows (the split's test share, or retrain's evaluation_rows)"
        )
    rate = metrics.get("positive_rate")
    if rate is None or math.isnan(rate):
        return None
    fewest, which = min((round(rows * rate), "positives"), (rows - round(rows * rate), "negatives"))
    if fewest < policy.min_test_positives:
        return (
            f"the held-out data has {fewest} {which} in {rows} rows, fewer than min_test_positives "
            f"({policy.min_test_positives}): too few to tell models apart; hold out more rows"
        )
    return None


def slice_regressions(
    challenger: SliceScores, champion: SliceScores, policy: PromotionGateConfig, metric: str
) -> list[str]:
    """One line per large slice whose metric worsens by more than the tolerance."""
    higher = HIGHER_IS_BETTER[metric]
    found = []
    for column, values in champion.items():
        for value, old in values.items():
            new = challenger.get(column, {}).get(value)
            if new is None or min(old["rows"], new["rows"]) < policy.min_slice_rows:
                continue
            before, after = old[metric], new[metric]
            if math.isnan(before) or math.isnan(after):
                continue
            if (before - after if higher else after - before) > policy.max_slice_regression:
                found.append(
                    f"slice {column}={value} ({int(new['rows'])} rows) regresses: {metric} {after:.4f} vs "
                    f"{before:.4f} ({after - before:+.4f}, tolerance {policy.max_slice_regression:.4f})"
                )
    return found


def gate_metric(policy: PromotionGateConfig, task: str) -> str:
    """The metric the gate compares for a model of ``task``: the configured one, or the task's primary; a
    ConfigError if it does not score that task."""
    metric = policy.metric or PRIMARY_METRICS[task].name
    if metric not in GATE_METRICS[task]:
        raise ConfigError(
            f"gate.metric: {metric} does not score a {task} model; choose one of {', '.join(GATE_METRICS[task])}"
        )
    if policy.min_score is not None and not HIGHER_IS_BETTER[metric]:
        raise ConfigError(f"gate.min_score: lower {metric} is better; its bound is gate.max_score (a ceiling)")
    if policy.max_score is not None and HIGHER_IS_BETTER[metric]:
        raise ConfigError(f"gate.max_score: higher {metric} is better; its bound is gate.min_score (a floor)")
    return metric
