"""Evaluation: metric definitions on crafted data, and the evaluate stage on the slice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from helpers import TASK
from tabloop.config import DataConfig, EvaluateConfig
from tabloop.errors import ConfigError
from tabloop.evaluation.metrics import (
    EvaluationResult,
    confusion,
    curves,
    downsample,
    expected_calibration_error,
    probability_metrics,
    slice_metrics,
)
from tabloop.evaluation.task_metrics import TASK_COLUMNS
from tabloop.io import read_json
from tabloop.records import PRIMARY_METRICS
from tabloop.stages.evaluate import run as evaluate


def test_perfect_and_inverted_rankings() -> None:
    target = np.array([0, 0, 1, 1])
    assert probability_metrics(target, np.array([0.1, 0.2, 0.8, 0.9]))["roc_auc"] == 1.0
    assert probability_metrics(target, np.array([0.9, 0.8, 0.2, 0.1]))["roc_auc"] == 0.0
    single = probability_metrics(np.array([1, 1]), np.array([0.4, 0.6]))
    assert np.isnan(single["roc_auc"])
    assert single["positive_rate"] == 1.0


def test_log_loss_and_brier_of_known_values() -> None:
    m = probability_metrics(np.array([1, 0]), np.array([0.8, 0.2]))
    assert m["log_loss"] == pytest.approx(-np.log(0.8), abs=1e-6)
    assert m["brier"] == pytest.approx(0.04, abs=1e-6)


def test_calibration_error_is_zero_when_rates_match_and_large_when_not() -> None:
    rng = np.random.default_rng(0)
    proba = np.repeat([0.1, 0.5, 0.9], 20_000)
    target = (rng.random(proba.size) < proba).astype(float)
    assert expected_calibration_error(target, proba) < 0.01
    assert expected_calibration_error(target, np.clip(proba + 0.3, 0, 1)) > 0.2


def test_confusion_counts() -> None:
    c = confusion(np.array([1, 1, 0, 0, 1]), np.array([0.9, 0.2, 0.7, 0.1, 0.6]), 0.5)
    assert (c["tp"], c["fp"], c["tn"], c["fn"]) == (2, 1, 1, 1)
    assert c["precision"] == pytest.approx(2 / 3, abs=1e-6)
    assert c["recall"] == pytest.approx(2 / 3, abs=1e-6)


def test_slices_are_ordered_by_size() -> None:
    frame = pl.DataFrame({"origin": ["JFK", "EWR", "EWR", "LGA", "EWR", "JFK"]})
    target = np.array([1, 0, 1, 0, 0, 1])
    s = slice_metrics(frame, target, np.linspace(0.1, 0.9, 6), ["origin"])
    assert list(s["origin"]) == ["EWR", "JFK", "LGA"]
    assert s["origin"]["EWR"]["rows"] == 3


def test_curves_are_downsampled_and_keep_their_ends() -> None:
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, 5000)
    c = curves(target, rng.random(5000), points=50)
    assert c["roc"].height <= 50
    assert c["roc"].row(0) == (0.0, 0.0)
    assert c["roc"].row(-1) == (1.0, 1.0)
    assert c["calibration"]["rows"].sum() == 5000
    assert downsample(pl.DataFrame({"x": range(10)}), 20).height == 10


PLOTS = {
    "binary": ("roc", "pr", "calibration"),
    "multiclass": ("confusion",),
    "regression": ("predicted_vs_actual", "residuals"),
}


def test_evaluate_stage_writes_metrics_plots_and_card(
    evaluated: Path, config: DataConfig, evaluate_config: EvaluateConfig
) -> None:
    metrics = read_json(evaluated / "metrics.json")
    primary = PRIMARY_METRICS[TASK]
    linear = "ridge" if TASK == "regression" else "logistic"
    assert set(metrics["test"]) == {"pytorch", "lightgbm", linear}
    assert metrics["primary"] == {"name": primary.name, "higher_is_better": primary.higher_is_better}
    for model in metrics["test"].values():
        assert {key for _, key in TASK_COLUMNS[TASK]} - {"mape"} <= set(model)  # MAPE: a positive target's
        assert model["rows"] == metrics["test"]["pytorch"]["rows"]
        assert model[primary.name] >= 0
        if TASK == "binary":
            assert model["roc_auc"] <= 1
    if TASK == "binary":
        delta = metrics["test"]["pytorch"]["roc_auc"] - metrics["test"]["lightgbm"]["roc_auc"]
        assert metrics["pytorch_minus_lightgbm_roc_auc"] == pytest.approx(delta, abs=1e-6)
    assert metrics["baselines"]["lightgbm"]["rounds"] >= 1
    read = EvaluationResult.read(evaluated / "metrics.json")
    assert read.model_dump(mode="python", exclude_none=True) == metrics  # read back whole
    slices = read_json(evaluated / "slices.json")
    assert list(slices) == evaluate_config.slices
    for by in evaluate_config.slices:  # every test example in one slice of each
        assert sum(v["rows"] for v in slices[by].values()) == metrics["test"]["pytorch"]["rows"]
    for kind in PLOTS[TASK]:
        for model in ("pytorch", "lightgbm", linear):
            assert pl.read_csv(evaluated / "plots" / kind / f"{model}.csv").height > 1
    card = (evaluated / "model_card.md").read_text()
    for heading in (
        "## Data",
        "## Test metrics against the baselines",
        "## Slices",
        "## Intended use",
        "## Limitations",
    ):
        assert heading in card
    assert "LightGBM baseline" in card
    if TASK == "binary":
        assert config.card.positive in card


def test_evaluation_is_deterministic(
    config: DataConfig,
    evaluate_config: EvaluateConfig,
    stage_outputs: dict[str, Path],
    trained: dict[str, Path],
    evaluated: Path,
    tmp_path: Path,
) -> None:
    evaluate(
        config,
        evaluate_config,
        stage_outputs["features"],
        trained["bundle"],
        tmp_path,
        training_metrics=trained["reports"] / "metrics.json",
    )
    for name in ("metrics.json", "slices.json", "model_card.md"):
        assert (tmp_path / name).read_bytes() == (evaluated / name).read_bytes()


def test_slice_that_is_not_a_categorical_feature_is_refused(
    config: DataConfig,
    evaluate_config: EvaluateConfig,
    stage_outputs: dict[str, Path],
    trained: dict[str, Path],
    tmp_path: Path,
) -> None:
    numeric = config.contract.of_kind("numeric")[0]
    bad = evaluate_config.model_copy(update={"slices": [*evaluate_config.slices, numeric]})
    with pytest.raises(ConfigError, match=f"slices: '{numeric}' is not a categorical feature"):
        evaluate(config, bad, stage_outputs["features"], trained["bundle"], tmp_path)
    assert not (tmp_path / "metrics.json").exists()


def test_tuned_lightgbm_is_reported_beside_the_default_one_with_its_own_parameters(
    config: DataConfig,
    evaluate_config: EvaluateConfig,
    stage_outputs: dict[str, Path],
    trained: dict[str, Path],
    evaluated: Path,
    tmp_path: Path,
) -> None:
    tuned = {"num_leaves": 4, "learning_rate": 0.3, "min_child_samples": 5}
    evaluate(config, evaluate_config, stage_outputs["features"], trained["bundle"], tmp_path, tuned_lightgbm=tuned)
    metrics = read_json(tmp_path / "metrics.json")
    default = read_json(evaluated / "metrics.json")
    assert set(metrics["test"]) == {*default["test"], "lightgbm_tuned"}
    assert metrics["test"]["lightgbm"] == default["test"]["lightgbm"]  # the default one is untouched
    assert metrics["test"]["lightgbm_tuned"] != metrics["test"]["lightgbm"]  # other parameters, another model
    assert metrics["baselines"]["lightgbm_tuned"]["rounds"] >= 1
    assert "LightGBM baseline, tuned" in (tmp_path / "model_card.md").read_text()
