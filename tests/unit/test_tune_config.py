"""tune.yaml and tuned.yaml: search spaces that cannot run are refused naming the key; what tuning writes reads back
as what it found, and only the network's keys reach the training configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tabloop.config import TrainConfig, load_train_config, load_tune_config, load_tuned_config
from tabloop.config.tune import Budget, TuneConfig, nested, overlay
from tabloop.errors import ConfigError
from tabloop.tuning.space import check_network_space
from tabloop.tuning.study import StudyResult
from tabloop.tuning.tune import Request, budget_of
from tabloop.tuning.tuned import render


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("network: {}\n", ["network", "search space is empty"]),
        ("lightgbm: {}\n", ["lightgbm", "search space is empty"]),
        ("network:\n  optimizer.lr: {low: 0.01, high: 0.001}\n", ["network.optimizer.lr", "above high"]),
        ("network:\n  optimizer.lr: {low: 0, high: 0.01, log: true}\n", ["network.optimizer.lr", "log scale"]),
        ("network:\n  model.hidden: {choices: []}\n", ["network.model.hidden.Choices.choices"]),
        ("lightgbm:\n  num_leafs: {low: 4, high: 64}\n", ["lightgbm.num_leafs", "did you mean num_leaves"]),
        ("lightgbm:\n  feature_fraction: {low: 0.5, high: 1.5}\n", ["lightgbm.feature_fraction", "1.5"]),
        ("budget: {trials: 0}\n", ["budget.trials"]),
        ("budget: {minutes: 0}\n", ["budget.minutes"]),
    ],
)
def test_a_search_that_cannot_run_is_refused_naming_its_key(tmp_path: Path, text: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_tune_config(write(tmp_path / "tune.yaml", text))
    message = str(raised.value).replace("\n", " ")
    for name in names:
        assert name.split(".Choices")[0] in message
    assert str(tmp_path / "tune.yaml") in message


@pytest.mark.parametrize(
    ("space", "names"),
    [
        ({"model.hiden": {"choices": [[64]]}}, ["network.model.hiden", "unknown key"]),
        ({"model.dropout": {"low": 0.1, "high": 1.5}}, ["network.model.dropout", "1.5"]),
        ({"model.hidden": {"low": 1, "high": 3}}, ["network.model.hidden"]),
        ({"seed": {"low": 0, "high": 100}}, ["network.seed", "not searched"]),
        ({"distributed.nproc": {"choices": [1, 2]}}, ["network.distributed.nproc", "not searched"]),
    ],
)
def test_a_network_key_training_would_refuse_is_named_before_any_trial(space: dict[str, Any], names: list[str]) -> None:
    config = TuneConfig.model_validate({"network": space})
    with pytest.raises(ConfigError) as raised:
        check_network_space(config.network, {}, "tune.yaml")
    for name in names:
        assert name in str(raised.value)


def test_the_default_search_space_is_one_training_accepts_at_every_end() -> None:
    check_network_space(TuneConfig().network, {}, "tune.yaml")


@pytest.mark.parametrize(("trials", "minutes", "name"), [(0, None, "TRIALS=0"), (None, 0.0, "MINUTES=0")])
def test_a_budget_that_buys_no_trial_is_refused(trials: int | None, minutes: float | None, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        budget_of(TuneConfig(), Request(trials=trials, minutes=minutes))


def test_the_command_line_budget_replaces_the_configured_one() -> None:
    config = budget_of(TuneConfig(budget=Budget(trials=30, minutes=10)), Request(trials=4))
    assert config.budget == Budget(trials=4, minutes=10)


def test_tuned_network_keys_are_laid_over_train_yaml_and_nothing_else(tmp_path: Path) -> None:
    train = write(tmp_path / "train.yaml", "model:\n  hidden: [64]\n  dropout: 0.3\noptimizer:\n  lr: 0.001\n")
    tuned = write(tmp_path / "tuned.yaml", "network:\n  model:\n    dropout: 0.05\nlightgbm:\n  num_leaves: 12\n")
    config = load_train_config(train, tuned)
    assert (config.model.dropout, config.model.hidden, config.optimizer.lr) == (0.05, [64], 0.001)
    assert load_train_config(train, tmp_path / "absent.yaml") == load_train_config(train)


def test_a_tuned_key_training_refuses_names_both_files(tmp_path: Path) -> None:
    train = write(tmp_path / "train.yaml", "model:\n  hidden: [64]\n")
    tuned = write(tmp_path / "tuned.yaml", "network:\n  model:\n    dropot: 0.05\n")
    with pytest.raises(ConfigError, match=r"tuned.yaml.*\n.*model.dropot: unknown key"):
        load_train_config(train, tuned)


def test_what_tuning_writes_reads_back_as_what_it_found(tmp_path: Path) -> None:
    network = {"optimizer.lr": 0.0012, "model.hidden": [128, 128], "model.numeric_embedding": "periodic"}
    lightgbm = {"learning_rate": 0.05, "num_leaves": 31, "extra_trees": True, "lambda_l2": 1e-06}
    results = {
        "network": StudyResult("network", 0.81, network, {"complete": 3, "pruned": 1, "fail": 0}, 1.0),
        "lightgbm": StudyResult("lightgbm", 0.8, lightgbm, {"complete": 4, "pruned": 0, "fail": 0}, 0.2),
    }
    text = render("demo", Budget(trials=4, minutes=1), results, "ROC AUC")
    tuned = load_tuned_config(write(tmp_path / "tuned.yaml", text))
    assert tuned.network == nested(network)
    assert tuned.lightgbm == lightgbm
    assert "at most 4 trials and 1 minute each" in text.replace("\n# ", " ")
    config = TrainConfig.model_validate(overlay({}, tuned.network))
    assert (config.optimizer.lr, config.model.hidden) == (0.0012, [128, 128])
    assert config.model.numeric_embedding == "periodic"


def test_overlay_replaces_lists_whole_and_merges_mappings() -> None:
    base = {"model": {"hidden": [64, 64], "dropout": 0.3}, "seed": 1}
    assert overlay(base, {"model": {"hidden": [8]}}) == {"model": {"hidden": [8], "dropout": 0.3}, "seed": 1}
    assert nested({"a.b.c": 1, "a.d": 2, "e": 3}) == {"a": {"b": {"c": 1}, "d": 2}, "e": 3}


@pytest.mark.parametrize(("option", "says"), [("--trials=0", "TRIALS=0"), ("--minutes=0", "MINUTES=0")])
def test_the_command_refuses_a_budget_that_buys_nothing_in_one_line(option: str, says: str) -> None:
    tabloop = Path(sys.executable).parent / "tabloop"
    result = subprocess.run([str(tabloop), "tune", option], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 1
    assert f"tune failed: {says}" in result.stderr
    assert "Traceback" not in result.stderr
