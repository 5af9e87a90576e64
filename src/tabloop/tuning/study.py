"""``make tune``: one Optuna study per model (the network, LightGBM) with the same budget, resumable from its storage.

Each study samples with TPE (seeded) and prunes with the median rule on the validation score; it stops after the
budget's trials or minutes, whichever comes first, counting the trials of an earlier, interrupted run. Trials are
nested MLflow runs under one parent run per ``make tune``. The best trial of each study is written to
``tuned.yaml`` (:mod:`tabloop.tuning.tuned`), which ``make train`` then trains with.

The storage is an SQLite file under ``reports/<name>/tuning/``. It remembers what its studies were run on (the
dataset, the training and validation features, the search spaces and seed): a storage of another dataset, or of
other features or spaces, is refused with a message rather than mixed into the new search.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import optuna
from optuna.trial import TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tabloop.config import TuneConfig
from tabloop.config.tune import Model
from tabloop.errors import ConfigError, TabloopError
from tabloop.records import PrimaryMetric
from tabloop.tuning.trials import TRIALS, Deadline, Inputs

logger = logging.getLogger(__name__)
STORAGE_FILE = "study.db"
MODELS: tuple[Model, ...] = ("network", "lightgbm")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# What a trial may fail with and the study go on: the project's own errors (a sampled configuration training
# refuses), and numerical or library errors (a diverging run, a LightGBM check).
TRIAL_ERRORS = (TabloopError, ValueError, RuntimeError, ArithmeticError)


@dataclass(frozen=True)
class StudyResult:
    """What one model's study holds after this run."""

    model: Model
    best_score: float
    best_values: dict[str, Any]
    trials: dict[str, int]  # by state: complete, pruned, fail
    minutes: float  # spent by this run


def storage_of(directory: Path, dataset: str, features: Path, config: TuneConfig) -> Storage:
    """The storage of ``dataset``'s studies, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / STORAGE_FILE}"
    return Storage(url, dataset, identity(dataset, features, config), config.seed)


def identity(dataset: str, features: Path, config: TuneConfig) -> str:
    """What a study's trials were scored on: the dataset, its training and validation features, the search spaces
    and the seed (not the budget: a larger one continues the same study)."""
    digest = hashlib.sha256(dataset.encode())
    for name in ("train.parquet", "valid.parquet", "preprocessing.json"):
        path = features / name
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    spaces = config.model_dump(mode="json", include={"seed", "network", "lightgbm"})
    digest.update(json.dumps(spaces, sort_keys=True).encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Storage:
    """Where a dataset's studies live, and what they must have been run on to be resumed."""

    url: str
    dataset: str
    identity: str  # of the features, the search spaces and the seed
    seed: int

    @property
    def path(self) -> str:
        return self.url.removeprefix("sqlite:///")


def open_study(storage: Storage, model: Model, primary: PrimaryMetric, *, restart: bool) -> optuna.Study:
    """This dataset's study of ``model``: resumed (trials a killed run left running are marked failed), started
    afresh with ``restart``, or refused when the storage holds another dataset's or another search's study."""
    name = f"{storage.dataset}-{model}"
    existing = {s.study_name: s for s in optuna.get_all_study_summaries(storage.url, include_best_trial=False)}
    others = sorted({str(s.user_attrs.get("dataset")) for s in existing.values()} - {storage.dataset})
    if others:
        raise ConfigError(
            f"{storage.path}: holds the tuning of dataset {', '.join(others)}, not {storage.dataset!r}; remove it, "
            "or give this dataset a storage of its own"
        )
    if name in existing and (restart or existing[name].user_attrs.get("identity") != storage.identity):
        if not restart:
            raise ConfigError(
                f"{storage.path}: its {model} study was run on other features, search spaces or seed; RESTART=1 "
                "(--restart) starts it again"
            )
        optuna.delete_study(study_name=name, storage=storage.url)
    study = optuna.create_study(
        storage=storage.url,
        study_name=name,
        direction="maximize" if primary.higher_is_better else "minimize",
        sampler=optuna.samplers.TPESampler(seed=storage.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
        load_if_exists=True,
    )
    study.set_user_attr("dataset", storage.dataset)
    study.set_user_attr("identity", storage.identity)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)  # left running by a killed run
    return study


def run_study(study: optuna.Study, model: Model, inputs: Inputs, config: TuneConfig, progress: Progress) -> StudyResult:
    """Trials of ``model`` until the budget is spent; each a nested MLflow run; the study's best."""
    budget = config.budget
    done = len(study.get_trials(deepcopy=False, states=FINISHED))
    start = time.monotonic()
    deadline = Deadline(start + budget.minutes * 60)
    bar = progress.add_task(model, total=budget.trials, completed=min(done, budget.trials), best=_best(study))
    trial_function = TRIALS[model]

    def objective(trial: optuna.Trial) -> float:
        with _trial_run(model, trial):
            score = trial_function(trial, inputs, deadline)
            mlflow.log_metric(f"valid_{inputs.objective.primary.name}", score)
            return score

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        progress.update(bar, advance=1, best=_best(study))
        if trial.state == TrialState.FAIL:
            logger.warning("%s trial %d failed: %s", model, trial.number, trial.user_attrs.get("error", "see MLflow"))
        elif trial.state == TrialState.COMPLETE:
            logger.info("%s trial %d: valid %s %.4f", model, trial.number, inputs.objective.primary.title, trial.value)
        else:
            logger.info("%s trial %d stopped: %s", model, trial.number, trial.user_attrs.get("stopped", "pruned"))

    if not study.trials:  # the first trials try where the search starts: train.yaml or LightGBM's defaults,
        for point in inputs.start[model]:  # then what tuned.yaml holds from an earlier search
            study.enqueue_trial(point, user_attrs={"start": True})
    remaining = budget.trials - done
    if remaining > 0:
        study.optimize(
            objective, n_trials=remaining, timeout=budget.minutes * 60, catch=TRIAL_ERRORS, callbacks=[after]
        )
    return _result(study, model, (time.monotonic() - start) / 60)


def _best(study: optuna.Study) -> float:
    try:
        return float(study.best_value)
    except ValueError:  # no complete trial yet
        return math.nan


def _result(study: optuna.Study, model: Model, minutes: float) -> StudyResult:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in FINISHED}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(
            f"tune: no {model} trial finished within the budget ({counts['pruned']} stopped, {counts['fail']} "
            "failed); give more minutes (MINUTES=) or look at the failures in MLflow; tuned.yaml is unchanged"
        )
    best = study.best_trial
    return StudyResult(model, float(best.value or 0.0), dict(best.user_attrs["values"]), counts, round(minutes, 2))


@contextmanager
def _trial_run(model: Model, trial: optuna.Trial) -> Iterator[None]:
    """The trial as a nested MLflow run: its parameters, and how it ended (finished, killed by the pruner or the
    budget, failed)."""
    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent is not None else None
    mlflow.start_run(run_name=f"{model} trial {trial.number}", nested=True, experiment_id=experiment)
    mlflow.set_tags({"tabloop.tuning.model": model, "tabloop.tuning.trial": str(trial.number)})
    status, state = "FINISHED", "complete"
    try:
        yield
    except optuna.TrialPruned as e:
        status, state = "KILLED", "pruned"
        trial.set_user_attr("stopped", str(e) or "pruned")
        mlflow.set_tag("tabloop.tuning.reason", str(e) or "pruned")
        raise
    except TRIAL_ERRORS as e:
        status, state = "FAILED", "failed"
        trial.set_user_attr("error", str(e).splitlines()[0][:300] if str(e) else type(e).__name__)
        raise
    finally:
        mlflow.log_params({k: json.dumps(v) for k, v in trial.user_attrs.get("values", {}).items()})
        mlflow.set_tag("tabloop.tuning.state", state)
        mlflow.end_run(status)


def log_result(result: StudyResult, primary: PrimaryMetric) -> None:
    mlflow.log_metric(f"{result.model}_best_valid_{primary.name}", result.best_score)
    mlflow.log_dict(result.best_values, f"best_{result.model}.json")


def progress_bar(primary: PrimaryMetric, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"best valid {primary.title} {{task.fields[best]:.4f}}"),
        TimeElapsedColumn(),
        disable=not enabled,
    )
