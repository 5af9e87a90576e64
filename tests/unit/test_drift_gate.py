"""The drift gate's decisions on crafted window summaries: each threshold on its own, at and past its edge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitoring.gate import (
    ALARM,
    HEALTHY,
    UNJUDGED,
    DriftScore,
    LabelDrift,
    WindowQuality,
    WindowSummary,
    describe,
    judge,
)
from monitoring.monitor import MonitorError, MonitorResult, WindowEntry
from tabloop.config.monitor import GateConfig

GATE = GateConfig(max_drift_share=0.5, max_roc_auc_drop=0.05, prediction_drift=True)


def summary(
    drifted: dict[str, float] | None = None,
    steady: int = 4,
    prediction_drifted: bool = False,
    roc_auc: float | None = 0.70,
    reference_roc_auc: float | None = 0.70,
) -> WindowSummary:
    """A window's summary: ``drifted`` features with their scores, ``steady`` features that did not drift."""
    drifted = drifted or {}
    columns = {
        name: DriftScore(method="psi", score=score, threshold=0.1, drifted=True) for name, score in drifted.items()
    }
    columns |= {
        f"steady_{i}": DriftScore(method="psi", score=0.01, threshold=0.1, drifted=False) for i in range(steady)
    }
    quality = WindowQuality(
        roc_auc=roc_auc,
        precision=0.5,
        recall=0.5,
        calibration_error=0.02,
        label_rate=0.2,
        label_drift=LabelDrift(method="jensenshannon", score=0.01),
        reference_roc_auc=reference_roc_auc,
    )
    return WindowSummary(
        rows=1200,
        labelled=900,
        columns=columns,
        drifted_features=list(drifted),
        drift_share=len(drifted) / len(columns),
        prediction_drift=DriftScore(drifted=prediction_drifted, method="wasserstein", score=0.2, threshold=0.1),
        mean_prediction=0.21,
        missing_share=0.02,
        quality=quality,
    )


def test_a_quiet_window_is_healthy() -> None:
    verdict = judge("2013-11-25", summary({"a": 0.3}), GATE)
    assert (verdict.status, verdict.exit_code, verdict.reasons) == ("healthy", HEALTHY, [])
    assert verdict.window == "2013-11-25"
    assert "no threshold crossed" in describe(verdict)


def test_no_window_is_not_judged() -> None:
    verdict = judge(None, None, GATE)
    assert (verdict.status, verdict.exit_code, verdict.window) == ("not judged", UNJUDGED, None)
    assert "no window with enough predictions yet" in describe(verdict)


@pytest.mark.parametrize(("drifted", "alarm"), [(3, False), (4, True), (6, True)])
def test_the_drift_share_alarms_from_its_limit_on(drifted: int, alarm: bool) -> None:
    scores = {f"f{i}": 0.1 * (i + 1) for i in range(drifted)}
    verdict = judge("w", summary(scores, steady=4), GATE)  # 3 of 7, 4 of 8, 6 of 10
    assert (verdict.exit_code == ALARM) is alarm
    if alarm:
        [reason] = verdict.reasons
        assert reason.startswith(f"{drifted} of {drifted + 4} features drifted")
        assert "limit 50%" in reason
        most = sorted(scores, key=lambda name: -scores[name])[:5]  # the five strongest, strongest first
        assert reason.endswith("most: " + ", ".join(most))


@pytest.mark.parametrize("watched", [True, False])
def test_a_drifted_prediction_alarms_only_when_watched(watched: bool) -> None:
    gate = GATE.model_copy(update={"prediction_drift": watched})
    verdict = judge("w", summary(prediction_drifted=True), gate)
    assert (verdict.exit_code == ALARM) is watched
    said = "the predicted probability drifted (wasserstein 0.200, threshold 0.1)"
    assert (said in verdict.reasons) is watched


@pytest.mark.parametrize(("roc_auc", "alarm"), [(0.66, False), (0.65, False), (0.64, True)])
def test_a_roc_auc_drop_alarms_past_its_limit(roc_auc: float, alarm: bool) -> None:
    verdict = judge("w", summary(roc_auc=roc_auc, reference_roc_auc=0.70), GATE)
    assert (verdict.exit_code == ALARM) is alarm
    if alarm:
        assert verdict.reasons == ["ROC AUC 0.640 is 0.060 below the reference's 0.700 (limit 0.05)"]


@pytest.mark.parametrize(("roc_auc", "reference"), [(None, 0.70), (0.40, None)])
def test_a_window_without_outcomes_is_judged_on_drift_alone(roc_auc: float | None, reference: float | None) -> None:
    verdict = judge("w", summary(roc_auc=roc_auc, reference_roc_auc=reference), GATE)
    assert verdict.exit_code == HEALTHY


def test_every_crossed_threshold_is_a_reason() -> None:
    verdict = judge("w", summary({"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6}, prediction_drifted=True, roc_auc=0.5), GATE)
    assert verdict.exit_code == ALARM
    assert len(verdict.reasons) == 3
    text = describe(verdict)
    assert text.index("- a: psi 0.900") < text.index("- d: psi 0.600")  # drifted features, strongest first
    assert all(f"**{reason}**" in text for reason in verdict.reasons)


def test_the_verdict_as_json_holds_the_summary_beside_the_decision() -> None:
    verdict = judge("w", summary(roc_auc=None), GATE)
    data = verdict.model_dump()
    assert list(data)[:5] == ["status", "exit_code", "window", "reasons", "columns"]  # the summary inline
    assert data["columns"]["steady_0"] == {"score": 0.01, "method": "psi", "threshold": 0.1, "drifted": False}
    assert data["quality"]["roc_auc"] is None  # an undefined score is written as null
    assert "oov_rate" not in data  # no categorical feature: left out, not written empty
    assert WindowSummary.model_validate_json(json.dumps(verdict.summary.model_dump())) == verdict.summary


def test_a_summary_without_outcomes_leaves_quality_out() -> None:
    window = summary().model_copy(update={"quality": None})
    assert "quality" not in window.model_dump()
    assert "No quality report yet" in describe(judge("w", window, GATE))


def test_an_unjudged_verdict_holds_no_numbers() -> None:
    assert judge(None, None, GATE).model_dump() == {
        "status": "not judged",
        "exit_code": UNJUDGED,
        "window": None,
        "reasons": ["no window with enough predictions yet"],
    }


@pytest.mark.parametrize("judged", [True, False])
def test_verdict_json_reads_back_into_the_result_it_was_written_from(judged: bool, tmp_path: Path) -> None:
    verdict = judge("w", summary(drifted={"a": 0.4}), GATE) if judged else judge(None, None, GATE)
    entries = [WindowEntry(window="w", rows=1200, labelled=900, status="reported")]
    written = MonitorResult(windows=entries, verdict=verdict)
    written.write(tmp_path / "verdict.json")
    data = json.loads((tmp_path / "verdict.json").read_text())
    assert list(data)[:3] == ["status", "exit_code", "window"]
    assert list(data)[-1] == "windows"
    assert MonitorResult.read(tmp_path / "verdict.json") == written


def test_a_damaged_verdict_json_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(MonitorError, match="run the monitor first"):
        MonitorResult.read(tmp_path / "verdict.json")
    (tmp_path / "verdict.json").write_text('{"status": "healthy"}')
    with pytest.raises(MonitorError, match=r"verdict.json: not what the monitor writes \(\d+ problems\); run it again"):
        MonitorResult.read(tmp_path / "verdict.json")


def task_summary(metric: str, score: float, reference: float | None) -> WindowSummary:
    """A steady window of a multiclass (log loss) or regression (RMSE) model, its quality at ``score``."""
    quality = WindowQuality(
        metric=metric,  # type: ignore[arg-type]
        reference_score=reference,
        label_drift=LabelDrift(method="wasserstein", score=0.01),
        **{metric: score},
    )
    return summary().model_copy(update={"quality": quality, "prediction": "predicted value"})


@pytest.mark.parametrize(
    ("metric", "score", "alarm"),
    [("rmse", 12.4, False), ("rmse", 12.6, True), ("log_loss", 0.62, False), ("log_loss", 0.63, True)],
)
def test_an_error_metric_above_the_reference_by_more_than_the_share_raises_the_alarm(
    metric: str, score: float, alarm: bool
) -> None:
    reference = 10.0 if metric == "rmse" else 0.5
    verdict = judge("w", task_summary(metric, score, reference), GATE.model_copy(update={"max_error_increase": 0.25}))
    assert (verdict.exit_code == ALARM) is alarm
    if alarm:
        name = "RMSE" if metric == "rmse" else "log loss"
        assert verdict.reasons == [
            f"{name} {score:.4g} is {score / reference - 1:.0%} above the reference's {reference:.4g} (limit 25%)"
        ]


def test_an_unregistered_reference_has_no_score_to_compare() -> None:
    assert judge("w", task_summary("rmse", 1e6, None), GATE).exit_code == HEALTHY


def test_each_task_writes_its_own_quality_fields() -> None:
    binary = summary().quality
    assert binary is not None
    assert set(binary.model_dump()) == {
        "roc_auc", "precision", "recall", "calibration_error", "label_rate", "label_drift", "reference_roc_auc"
    }  # fmt: skip
    regression = task_summary("rmse", 3.0, 2.5)
    assert regression.quality is not None
    assert set(regression.quality.model_dump()) == {"rmse", "label_drift", "metric", "reference_score"}
    assert regression.model_dump()["prediction"] == "predicted value"
    assert "prediction" not in summary().model_dump()  # a binary window's summary, written as before
    assert WindowSummary.model_validate_json(regression.model_dump_json()) == regression
    described = describe(judge("w", regression, GATE))
    assert "RMSE 3 (reference 2.5)" in described
