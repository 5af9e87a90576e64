"""``make tune DATASET=<name> [TRIALS=n] [MINUTES=m] [RESTART=1]``: search, then write ``tuned.yaml``."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import mlflow
import optuna

from tabloop.config import (
    TrainConfig,
    load_evaluate_config,
    load_registry_config,
    load_tune_config,
    load_tuned_config,
    load_yaml,
    parse_config,
)
from tabloop.config.tune import Budget, TuneConfig, flat
from tabloop.errors import ConfigError
from tabloop.io import write_json
from tabloop.layout import Layout
from tabloop.registry.mlflow import Registry
from tabloop.settings import Settings
from tabloop.tuning.space import check_network_space
from tabloop.tuning.study import (
    MODELS,
    StudyResult,
    log_result,
    open_study,
    progress_bar,
    run_study,
    storage_of,
)
from tabloop.tuning.trials import Inputs
from tabloop.tuning.tuned import render, write_tuned

logger = logging.getLogger(__name__)
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class Request:
    """What the user asked for on the command line (None: tune.yaml's)."""

    trials: int | None = None
    minutes: float | None = None
    restart: bool = False


def budget_of(config: TuneConfig, request: Request) -> TuneConfig:
    """``config`` with the command line's budget, or a ConfigError naming the value that cannot buy a trial."""
    if request.trials is not None and request.trials < 1:
        raise ConfigError(f"TRIALS={request.trials}: each model needs at least one trial")
    if request.minutes is not None and not request.minutes > 0:
        raise ConfigError(f"MINUTES={request.minutes:g}: a budget needs some time; give minutes above 0")
    budget = Budget(
        trials=request.trials if request.trials is not None else config.budget.trials,
        minutes=request.minutes if request.minutes is not None else config.budget.minutes,
    )
    return config.model_copy(update={"budget": budget})


def tune(settings: Settings, where: Layout, request: Request) -> dict[str, StudyResult]:
    """Both studies with the same budget; the best of each written to ``tuned.yaml``; their results."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per trial comes from run_study instead
    config = budget_of(load_tune_config(where.tune_config), request)
    train_yaml = load_yaml(where.train_config)
    check_network_space(config.network, train_yaml, str(where.tune_config))
    if not (where.features / "train.parquet").is_file():
        raise ConfigError(f"{where.features}: no features yet; `make tune` builds them first (dvc repro features@)")
    evaluate, tuned = load_evaluate_config(where.evaluate_config), load_tuned_config(where.tuned_config)
    inputs = Inputs.load(where.features, train_yaml, config, evaluate, tuned)
    primary = inputs.objective.primary
    storage = storage_of(where.tuning, where.dataset, where.features, config)
    registry = Registry(settings, load_registry_config(where.registry_config))
    registry.connect()
    results: dict[str, StudyResult] = {}
    with (
        mlflow.start_run(experiment_id=registry.experiment_id(), run_name=f"tune {where.dataset}"),
        progress_bar(primary, enabled=sys.stderr.isatty()) as progress,
    ):
        mlflow.set_tags({"tabloop.dataset": where.dataset, "tabloop.tuning.identity": storage.identity})
        mlflow.log_params({"trials": config.budget.trials, "minutes": config.budget.minutes, "seed": config.seed})
        for model in MODELS:
            study = open_study(storage, model, primary, restart=request.restart)
            results[model] = run_study(study, model, inputs, config, progress)
            log_result(results[model], primary)
    written = {**results, "network": _changed(results["network"], inputs)}
    write_tuned(where.tuned_config, render(where.dataset, config.budget, written, primary.title))
    _summary(where.tuning / SUMMARY_FILE, config, results, primary.name)
    return results


def _changed(result: StudyResult, inputs: Inputs) -> StudyResult:
    """The network's best values without those train.yaml already has: tuned.yaml holds only what tuning changed,
    so a key it does not change stays the user's to edit in train.yaml (``dvc exp run -S`` included)."""
    current = flat(parse_config(TrainConfig, inputs.train_yaml, "train.yaml").model_dump(mode="json"))
    kept = {key: value for key, value in result.best_values.items() if current.get(key) != value}
    if result.best_values.get("model.numeric_embedding", current.get("model.numeric_embedding")) == "none":
        kept = {key: value for key, value in kept.items() if key not in PERIODIC_KEYS}  # they do nothing then
    return replace(result, best_values=kept)


PERIODIC_KEYS = frozenset({"model.frequencies", "model.frequency_scale", "model.numeric_dim", "model.raw_numbers"})


def _summary(path: Path, config: TuneConfig, results: dict[str, StudyResult], metric: str) -> None:
    write_json(
        {
            "metric": f"valid_{metric}",
            "budget": config.budget.model_dump(),
            "seed": config.seed,
            "models": {
                model: {
                    "best": r.best_score,
                    "values": r.best_values,
                    "trials": r.trials,
                    "minutes_this_run": r.minutes,
                }
                for model, r in results.items()
            },
        },
        path,
    )
