"""The promotion gate: does a challenger replace the champion? A pure decision on scores of the same data."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tabloop.config import PromotionGateConfig

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


def decide(challenger: Scorecard, champion: Scorecard | None, policy: PromotionGateConfig) -> Decision:
    """Never promote below the quality floor; above it, promote when there is no champion, or when the challenger
    is better by the margin and no large slice regresses beyond the tolerance. Both scorecards must come from the
    same data."""
    metric = policy.metric
    new = challenger.metrics[metric]
    if math.isnan(new):
        return Decision(False, [f"the challenger's {metric} is undefined on the held-out data"])
    if policy.min_score is not None and new < policy.min_score:
        return Decision(False, [f"{metric} {new:.4f} is below the floor of {policy.min_score:.4f}"])
    if champion is None:
        return Decision(True, [f"no champion yet; challenger {metric} {new:.4f}"])
    old = champion.metrics[metric]
    delta = new - old
    reasons = []
    better = delta >= policy.min_improvement
    reasons.append(
        f"{metric} {new:.4f} vs champion {old:.4f} ({delta:+.4f}; "
        f"{'meets' if better else 'below'} the required {policy.min_improvement:+.4f})"
    )
    regressions = slice_regressions(challenger.slices, champion.slices, policy)
    reasons += regressions
    if better and not regressions:
        reasons.append(
            f"no slice of at least {policy.min_slice_rows} rows regresses by more than "
            f"{policy.max_slice_regression:.4f}"
        )
    return Decision(better and not regressions, reasons, round(delta, 6))


def slice_regressions(challenger: SliceScores, champion: SliceScores, policy: PromotionGateConfig) -> list[str]:
    """One line per large slice whose metric drops by more than the tolerance."""
    found = []
    for column, values in champion.items():
        for value, old in values.items():
            new = challenger.get(column, {}).get(value)
            if new is None or min(old["rows"], new["rows"]) < policy.min_slice_rows:
                continue
            before, after = old[policy.metric], new[policy.metric]
            if math.isnan(before) or math.isnan(after):
                continue
            if before - after > policy.max_slice_regression:
                found.append(
                    f"slice {column}={value} ({int(new['rows'])} rows) regresses: {policy.metric} {after:.4f} vs "
                    f"{before:.4f} ({after - before:+.4f}, tolerance {policy.max_slice_regression:.4f})"
                )
    return found
