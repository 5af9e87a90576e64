"""One trial of each model: sample its parameters, train on the training split, score on the validation split.

Both report their validation score as they go (the network per epoch, LightGBM every ten rounds) so that the
pruner stops a trial that trails the others at the same step, and both stop when the budget's time has run out.
The test split is never read.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from tabloop.config import EvaluateConfig, TrainConfig, TuneConfig, TunedConfig, parse_config
from tabloop.config.tune import LIGHTGBM_DEFAULTS, flat, nested, overlay
from tabloop.evaluation.baselines import Labelled, Task, lightgbm_baseline
from tabloop.evaluation.scoring import read_split
from tabloop.features.fitting import frame_columns
from tabloop.runtime.preprocessing import load_preprocessor
from tabloop.training.checkpoint import CHECKPOINT_FILE, EpochRecord
from tabloop.training.distributed import World
from tabloop.training.loop import fit_model
from tabloop.training.objective import Objective
from tabloop.tuning.space import starting_point, suggest

LIGHTGBM_REPORT_EVERY = 10  # boosting rounds between the scores a LightGBM trial reports to the pruner


@dataclass(frozen=True)
class Deadline:
    """When the budget's time runs out (``time.monotonic()``)."""

    at: float

    def check(self) -> None:
        """Stop the trial, as a pruned one, once the time is up."""
        if time.monotonic() >= self.at:
            raise optuna.TrialPruned("the budget's time ran out during this trial")


@dataclass(frozen=True)
class Inputs:
    """What every trial reads: the training and validation splits and the configurations the search starts from."""

    features: Path
    train_yaml: dict[str, Any]  # the user's train.yaml, not what an earlier tuning found
    tune: TuneConfig
    evaluate: EvaluateConfig
    train: Labelled
    valid: Labelled
    task: Task
    objective: Objective

    tuned: TunedConfig  # what an earlier search found (tuned.yaml): the model make train trains now

    @property
    def start(self) -> dict[str, list[dict[str, Any]]]:
        """Each model's first trials, so that a search never ends worse than where it started: the network as
        train.yaml has it and as tuned.yaml changes it, LightGBM with its defaults and with tuned.yaml's values."""
        own = parse_config(TrainConfig, self.train_yaml, "train.yaml")
        now = parse_config(TrainConfig, overlay(self.train_yaml, self.tuned.network), "tuned.yaml")
        networks = [starting_point(self.tune.network, flat(c.model_dump(mode="json"))) for c in (own, now)]
        boosters: list[Mapping[str, Any]] = [LIGHTGBM_DEFAULTS, {**LIGHTGBM_DEFAULTS, **self.tuned.lightgbm}]
        lightgbms = [starting_point(self.tune.lightgbm, params) for params in boosters]
        return {"network": _distinct(networks), "lightgbm": _distinct(lightgbms)}

    @classmethod
    def load(
        cls,
        features: Path,
        train_yaml: dict[str, Any],
        tune: TuneConfig,
        evaluate: EvaluateConfig,
        tuned: TunedConfig | None = None,
    ) -> Inputs:
        preprocessor = load_preprocessor(features)
        contract = preprocessor.contract
        labelled = {}
        for split in ("train", "valid"):
            frame = read_split(features, split)
            target = frame[contract.target.name].to_numpy().astype(np.float64)
            labelled[split] = Labelled(preprocessor.transform(frame_columns(frame, contract)), target)
        train_target = labelled["train"].target
        return cls(
            features,
            train_yaml,
            tune,
            evaluate,
            labelled["train"],
            labelled["valid"],
            Task.fit(contract.target, train_target),
            Objective.fit(contract.target, train_target),
            tuned or TunedConfig(),
        )


def network_trial(trial: optuna.Trial, inputs: Inputs, deadline: Deadline) -> float:
    """Train the network with the sampled ``train.yaml`` keys; its best epoch's validation score."""
    values = suggest(trial, inputs.tune.network)
    trial.set_user_attr("values", values)
    config = parse_config(TrainConfig, overlay(inputs.train_yaml, nested(values)), f"trial {trial.number}")

    def on_epoch_end(record: EpochRecord) -> None:
        trial.report(record.valid_score, record.epoch)
        deadline.check()
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record.epoch}")

    with tempfile.TemporaryDirectory(prefix="tabloop-trial-") as scratch, _quiet("tabloop.training"):
        checkpoint = Path(scratch) / CHECKPOINT_FILE
        trained = fit_model(config, inputs.features, checkpoint, World(), on_epoch_end=on_epoch_end, progress=False)
    trial.set_user_attr("best_epoch", trained.result.best_epoch)
    return trained.result.valid_score


def lightgbm_trial(trial: optuna.Trial, inputs: Inputs, deadline: Deadline) -> float:
    """Train LightGBM with the sampled parameters, stopping early on the validation split; its validation score
    in the same metric as the network's."""
    values = suggest(trial, inputs.tune.lightgbm)
    trial.set_user_attr("values", values)

    def report(env: Any) -> None:
        if env.iteration % LIGHTGBM_REPORT_EVERY or not env.evaluation_result_list:
            return
        trial.report(float(env.evaluation_result_list[0][2]), env.iteration)
        deadline.check()
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after {env.iteration} rounds")

    fitted = lightgbm_baseline(
        inputs.train,
        inputs.valid,
        inputs.valid.inputs,
        inputs.evaluate.lightgbm,
        inputs.evaluate.seed,
        task=inputs.task,
        tuned=values,
        callbacks=[report],
    )
    trial.set_user_attr("rounds", fitted.details["rounds"])
    return inputs.objective.score(inputs.valid.target, fitted.proba)[1]


TRIALS = {"network": network_trial, "lightgbm": lightgbm_trial}


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The logger ``name`` at WARNING inside the block: a trial's epochs would bury the study's progress."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def best_values(study: optuna.Study) -> Mapping[str, Any]:
    """The sampled values of the study's best trial."""
    values: Mapping[str, Any] = study.best_trial.user_attrs["values"]
    return values


def _distinct(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``points`` in order, each once."""
    return [point for i, point in enumerate(points) if point not in points[:i]]
