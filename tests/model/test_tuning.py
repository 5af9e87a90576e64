"""``make tune`` on the tests' features: both studies run with the same budget as nested MLflow runs, never read the
test split, write what they found to tuned.yaml, resume after a kill, and refuse another dataset's storage."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import shrink
from tabloop.config import TrainConfig, load_train_config, load_tuned_config
from tabloop.errors import ConfigError
from tabloop.layout import Layout
from tabloop.settings import Settings
from tabloop.tuning import trials
from tabloop.tuning.study import STORAGE_FILE, StudyResult
from tabloop.tuning.tune import Request, _changed, tune

# A small search so that a trial takes about a second on the tests' few hundred rows.
TUNE_YAML = {
    "seed": 3,
    "budget": {"trials": 3, "minutes": 5},
    "network": {"optimizer.lr": {"low": 0.0005, "high": 0.005, "log": True}, "model.hidden": {"choices": [[8], [16]]}},
    "lightgbm": {"num_leaves": {"low": 4, "high": 16}, "learning_rate": {"low": 0.05, "high": 0.3, "log": True}},
}


def repository(root: Path, name: str, features: Path, train_config: TrainConfig) -> Layout:
    """A repository at ``root`` holding dataset ``name``: its configs and its features without the test split."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    datasets = root / "configs" / "datasets.yaml"
    known = yaml.safe_load(datasets.read_text())["datasets"] if datasets.is_file() else []
    datasets.write_text(yaml.safe_dump({"default": name, "datasets": [*known, name]}))
    where = Layout(name, root)
    where.configs.mkdir(parents=True)
    where.train_config.write_text(yaml.safe_dump(train_config.model_dump(mode="json")))
    where.tune_config.write_text(yaml.safe_dump(TUNE_YAML))
    where.registry_config.write_text(yaml.safe_dump({"experiment": f"tune-{name}", "model_name": f"tune-{name}"}))
    where.evaluate_config.write_text(yaml.safe_dump({"lightgbm": {"early_stopping_rounds": 20}}))
    shutil.copytree(features, where.features, ignore=shutil.ignore_patterns("test.parquet"))
    return where


@pytest.fixture
def setup(stage_outputs: dict[str, Path], train_config: TrainConfig, tmp_path: Path) -> tuple[Settings, Layout]:
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    config = shrink(train_config, max_epochs=4, patience=2)
    return settings, repository(tmp_path / "repo", "demo", stage_outputs["features"], config)


def trial_runs(settings: Settings, experiment: str) -> list[Any]:
    client = MlflowClient(settings.tracking_uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return [r for r in client.search_runs([found.experiment_id]) if "tabloop.tuning.trial" in r.data.tags]


def test_both_models_are_tuned_with_one_budget_and_the_best_written_to_tuned_yaml(
    setup: tuple[Settings, Layout],
) -> None:
    settings, where = setup
    results = tune(settings, where, Request())

    tuned = load_tuned_config(where.tuned_config)
    best = results["network"].best_values
    trained = load_train_config(where.train_config, where.tuned_config)  # what make train trains
    assert trained.optimizer.lr == best["optimizer.lr"]
    assert 0.0005 <= trained.optimizer.lr <= 0.005
    assert trained.model.hidden == best["model.hidden"]
    assert trained.model.hidden in ([8], [16])
    own = load_train_config(where.train_config)
    # tuned.yaml holds only what the tuning changed: an unchanged key stays train.yaml's to edit
    assert ("lr" in tuned.network.get("optimizer", {})) == (best["optimizer.lr"] != own.optimizer.lr)
    assert 4 <= tuned.lightgbm["num_leaves"] <= 16
    for model in ("network", "lightgbm"):
        assert sum(results[model].trials.values()) == 3

    storage = f"sqlite:///{where.tuning / STORAGE_FILE}"
    first = {m: optuna.load_study(study_name=f"demo-{m}", storage=storage).trials[0] for m in ("network", "lightgbm")}
    lr = load_train_config(where.train_config).optimizer.lr
    assert first["network"].user_attrs["values"]["optimizer.lr"] == lr  # the search starts where train.yaml is
    assert first["lightgbm"].user_attrs["values"] == {"num_leaves": 16, "learning_rate": 0.1}  # LightGBM's defaults,
    # 31 leaves brought into the searched range

    runs = trial_runs(settings, "tune-demo")
    assert sorted(r.data.tags["tabloop.tuning.model"] for r in runs) == ["lightgbm"] * 3 + ["network"] * 3
    parents = {r.data.tags["mlflow.parentRunId"] for r in runs}
    assert len(parents) == 1
    complete = [r for r in runs if r.data.tags["tabloop.tuning.state"] == "complete"]
    assert complete
    assert all(r.info.status == "FINISHED" and r.data.metrics for r in complete)


def test_an_interrupted_tuning_resumes_and_a_larger_budget_continues_the_same_study(
    setup: tuple[Settings, Layout],
) -> None:
    settings, where = setup
    tune(settings, where, Request(trials=2))
    storage = f"sqlite:///{where.tuning / STORAGE_FILE}"
    killed = optuna.load_study(study_name="demo-network", storage=storage)
    killed.ask()  # a trial a killed run left running

    results = tune(settings, where, Request(trials=4))

    assert results["network"].trials["fail"] == 1  # the killed trial, marked failed, counts against the budget
    assert sum(results["network"].trials.values()) == 4
    assert sum(results["lightgbm"].trials.values()) == 4


def test_a_failing_trial_is_recorded_as_failed_and_the_study_goes_on(
    setup: tuple[Settings, Layout], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, where = setup
    real = trials.fit_model
    calls = []

    def first_fails(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the loss diverged")
        return real(*args, **kwargs)

    monkeypatch.setattr(trials, "fit_model", first_fails)
    results = tune(settings, where, Request())

    assert results["network"].trials["fail"] == 1
    assert results["network"].trials["complete"] >= 1
    failed = [r for r in trial_runs(settings, "tune-demo") if r.data.tags["tabloop.tuning.state"] == "failed"]
    assert len(failed) == 1
    assert failed[0].info.status == "FAILED"


def test_another_datasets_storage_and_a_changed_search_are_refused(setup: tuple[Settings, Layout]) -> None:
    settings, where = setup
    tune(settings, where, Request(trials=1))
    other = repository(where.root, "other", where.features, load_train_config(where.train_config))
    shutil.copytree(where.tuning, other.tuning)
    with pytest.raises(ConfigError, match="holds the tuning of dataset demo, not 'other'"):
        tune(settings, other, Request(trials=1))

    where.tune_config.write_text(yaml.safe_dump({**TUNE_YAML, "seed": 4}))
    with pytest.raises(ConfigError, match="RESTART=1"):
        tune(settings, where, Request(trials=1))
    restarted = tune(settings, where, Request(trials=1, restart=True))
    assert sum(restarted["network"].trials.values()) == 1


def test_a_restarted_search_tries_train_yaml_then_what_tuned_yaml_holds(setup: tuple[Settings, Layout]) -> None:
    settings, where = setup
    where.tuned_config.write_text(
        "network:\n  optimizer: {lr: 0.003}\n  model: {hidden: [16]}\nlightgbm: {num_leaves: 9, learning_rate: 0.2}\n"
    )
    tune(settings, where, Request(trials=2, restart=True))

    storage = f"sqlite:///{where.tuning / STORAGE_FILE}"
    network = optuna.load_study(study_name="demo-network", storage=storage).trials
    own = load_train_config(where.train_config)
    assert network[0].user_attrs["values"]["optimizer.lr"] == own.optimizer.lr  # its [64] layer is not a choice
    assert network[1].user_attrs["values"] == {"optimizer.lr": 0.003, "model.hidden": [16]}  # where make train is
    lightgbm = optuna.load_study(study_name="demo-lightgbm", storage=storage).trials
    assert lightgbm[1].user_attrs["values"] == {"num_leaves": 9, "learning_rate": 0.2}


def test_a_budget_too_small_for_one_trial_says_so_and_leaves_tuned_yaml(setup: tuple[Settings, Layout]) -> None:
    settings, where = setup
    where.tuned_config.write_text("network: {}\nlightgbm: {}\n")
    with pytest.raises(ConfigError, match=r"no network trial finished within the budget.*MINUTES="):
        tune(settings, where, Request(trials=2, minutes=1e-6))
    assert where.tuned_config.read_text() == "network: {}\nlightgbm: {}\n"
    assert mlflow.active_run() is None


def test_tuned_yaml_leaves_out_the_embeddings_settings_when_the_best_network_has_none() -> None:
    best = {
        "model.numeric_embedding": "none",
        "model.numeric_dim": 16,
        "model.frequency_scale": 0.3,
        "model.dropout": 0.4,
    }
    result = StudyResult(model="network", best_score=0.8, best_values=best, trials={"complete": 3}, minutes=1.0)
    inputs = SimpleNamespace(train_yaml={"model": {"dropout": 0.15}})  # what _changed reads of a study's inputs
    assert _changed(result, inputs).best_values == {"model.numeric_embedding": "none", "model.dropout": 0.4}  # type: ignore[arg-type]
    periodic = replace(result, best_values={**best, "model.numeric_embedding": "periodic"})
    assert _changed(periodic, inputs).best_values == {  # type: ignore[arg-type]
        "model.numeric_dim": 16,
        "model.frequency_scale": 0.3,
        "model.dropout": 0.4,
    }
