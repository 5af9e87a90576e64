"""The promotion gate's decisions on crafted pairs of scorecards."""

from __future__ import annotations

import pytest

from tabloop.config import PromotionGateConfig
from tabloop.errors import ConfigError
from tabloop.registry.promotion import Scorecard, decide, gate_metric

POLICY = PromotionGateConfig(metric="roc_auc", min_improvement=0.002, max_slice_regression=0.02, min_slice_rows=100)


def card(auc: float, **slices: tuple[float, int]) -> Scorecard:
    """A scorecard with an overall ROC AUC and origin slices given as (roc_auc, rows)."""
    return Scorecard(
        metrics={"roc_auc": auc, "pr_auc": auc - 0.2},
        slices={"origin": {name: {"roc_auc": a, "rows": n} for name, (a, n) in slices.items()}},
    )


def test_first_model_is_promoted() -> None:
    decision = decide(card(0.61), None, POLICY, "roc_auc")
    assert decision.promote
    assert decision.reasons == ["no champion yet; challenger roc_auc 0.6100"]


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.710, 0.700, True),  # better by more than the margin
        (0.702, 0.700, True),  # exactly the margin
        (0.701, 0.700, False),  # better, but below the margin
        (0.700, 0.700, False),  # equal
        (0.650, 0.700, False),  # worse
    ],
)
def test_overall_metric_must_beat_the_champion_by_the_margin(challenger: float, champion: float, promote: bool) -> None:
    decision = decide(card(challenger), card(champion), POLICY, "roc_auc")
    assert decision.promote is promote
    assert decision.delta == pytest.approx(challenger - champion)
    assert decision.verdict == ("promote" if promote else "reject")


def test_large_slice_regression_blocks_promotion() -> None:
    champion = card(0.70, EWR=(0.72, 500), JFK=(0.69, 400))
    challenger = card(0.72, EWR=(0.69, 500), JFK=(0.74, 400))
    decision = decide(challenger, champion, POLICY, "roc_auc")
    assert not decision.promote
    assert any("slice origin=EWR (500 rows) regresses: roc_auc 0.6900 vs 0.7200" in r for r in decision.reasons)


def test_small_slices_and_tolerated_drops_do_not_block() -> None:
    champion = card(0.70, EWR=(0.72, 500), XYZ=(0.90, 20))
    challenger = card(0.72, EWR=(0.705, 500), XYZ=(0.50, 20))
    decision = decide(challenger, champion, POLICY, "roc_auc")
    assert decision.promote
    assert "no slice of at least 100 rows regresses" in decision.reasons[-1]


def test_slices_missing_on_one_side_are_skipped() -> None:
    decision = decide(card(0.72, EWR=(0.70, 500)), card(0.70, LGA=(0.80, 500)), POLICY, "roc_auc")
    assert decision.promote


def test_undefined_challenger_metric_is_rejected() -> None:
    decision = decide(card(float("nan")), None, POLICY, "roc_auc")
    assert not decision.promote
    assert "undefined" in decision.reasons[0]


def test_gate_can_compare_on_pr_auc() -> None:
    policy = POLICY.model_copy(update={"metric": "pr_auc"})
    challenger = Scorecard(metrics={"roc_auc": 0.60, "pr_auc": 0.50})
    champion = Scorecard(metrics={"roc_auc": 0.70, "pr_auc": 0.40})
    assert decide(challenger, champion, policy, "pr_auc").promote


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.649, None, False),  # the first model, below the floor
        (0.650, None, True),  # exactly the floor
        (0.640, 0.600, False),  # better than a weak champion by far, still below the floor
        (0.700, 0.600, True),
    ],
)
def test_quality_floor_holds_even_without_a_champion(challenger: float, champion: float | None, promote: bool) -> None:
    policy = POLICY.model_copy(update={"min_score": 0.65})
    decision = decide(card(challenger), None if champion is None else card(champion), policy, "roc_auc")
    assert decision.promote is promote
    if not promote:
        assert decision.reasons == [f"roc_auc {challenger:.4f} is below the floor of 0.6500"]


def errors(rmse: float, **slices: tuple[float, int]) -> Scorecard:
    return Scorecard(
        metrics={"rmse": rmse, "rows": 1000},
        slices={"hotel": {k: {"rmse": v, "rows": n} for k, (v, n) in slices.items()}},
    )


def test_a_lower_is_better_metric_promotes_the_smaller_error_and_holds_its_ceiling() -> None:
    policy = PromotionGateConfig(min_improvement=0.5, max_score=20.0, max_slice_regression=1.0, min_slice_rows=100)
    assert decide(errors(10.0), errors(11.0), policy, "rmse").promote  # 1.0 smaller: better by more than 0.5
    worse = decide(errors(11.0), errors(10.0), policy, "rmse")
    assert not worse.promote
    assert "lower is better" in worse.reasons[0]
    assert worse.delta == 1.0
    assert not decide(errors(10.2), errors(10.5), policy, "rmse").promote  # better, but not by the margin
    ceiling = decide(errors(21.0), None, policy, "rmse")
    assert not ceiling.promote
    assert "above the ceiling of 20.0000" in ceiling.reasons[0]
    grown = decide(errors(9.0, city=(14.0, 500)), errors(10.0, city=(12.0, 500)), policy, "rmse")
    assert not grown.promote  # the slice's error grew by 2.0, past the tolerance of 1.0
    assert "slice hotel=city (500 rows) regresses: rmse 14.0000 vs 12.0000" in grown.reasons[1]


@pytest.mark.parametrize(
    ("gate", "task", "message"),
    [
        ({}, "regression", None),
        ({"metric": "roc_auc"}, "regression", "gate.metric: roc_auc does not score a regression model"),
        ({"metric": "rmse"}, "multiclass", "gate.metric: rmse does not score a multiclass model"),
        ({"min_score": 0.5}, "multiclass", "gate.min_score: lower log_loss is better"),
        ({"max_score": 0.5}, "binary", "gate.max_score: higher roc_auc is better"),
    ],
)
def test_the_gate_metric_must_score_the_models_task(gate: dict[str, object], task: str, message: str | None) -> None:
    policy = PromotionGateConfig.model_validate(gate)
    if message is None:
        assert gate_metric(policy, task) == "rmse"
        return
    with pytest.raises(ConfigError, match=message):
        gate_metric(policy, task)


@pytest.mark.parametrize(
    ("rows", "positive_rate", "promote", "reason"),
    [
        (15, 0.2, False, "the held-out data has 15 rows, fewer than min_test_rows (50)"),
        (100, 0.05, False, "the held-out data has 5 positives in 100 rows, fewer than min_test_positives (10)"),
        (100, 0.95, False, "the held-out data has 5 negatives in 100 rows"),
        (200, 0.05, True, "no champion yet"),  # 10 positives: enough
        (60, float("nan"), True, "no champion yet"),  # a task without classes: rows alone
    ],
)
def test_the_gate_refuses_to_decide_on_held_out_data_too_small_to_tell(
    rows: int, positive_rate: float, promote: bool, reason: str
) -> None:
    challenger = Scorecard(metrics={"roc_auc": 0.9, "rows": rows, "positive_rate": positive_rate})
    decision = decide(challenger, None, PromotionGateConfig(), "roc_auc")
    assert decision.promote is promote
    assert decision.reasons[0].startswith(reason)
