"""Baselines trained on exactly the network's inputs: LightGBM with the task's objective, and a linear model
(logistic regression for classes, multinomial for several; ridge regression for a number).

Both see the encoded features the network sees (category indices and standardised numbers with missing
indicators), keep their library defaults, and are trained on the training split only; LightGBM stops early on
the validation split. When ``make tune`` has tuned LightGBM with the network's budget, the evaluate stage reports
it beside the default one. They are yardsticks, not straw men: neither is weakened to make the network look better.
A regression target is given to both as the network learns it (transformed and standardised) and their
predictions are brought back to the target's scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import OneHotEncoder

from tabloop.config import LightGBMConfig, LogisticConfig
from tabloop.runtime.contract import TargetSpec
from tabloop.runtime.preprocessing import EncodedBatch
from tabloop.runtime.task import TargetScaling


@dataclass(frozen=True)
class Labelled:
    """Encoded inputs with their target (binary, a class index, or a number)."""

    inputs: EncodedBatch
    target: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Task:
    """The target the baselines predict, and a regression target's scaling (fitted on the training split)."""

    target: TargetSpec
    scaling: TargetScaling | None = None

    @classmethod
    def fit(cls, target: TargetSpec, train_target: npt.NDArray[np.float64]) -> Task:
        if target.task == "regression":
            return cls(target, TargetScaling.fit(target.transform, train_target))
        return cls(target)

    def learnt(self, target: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """The target as the models learn it (a regression's scaled; classes as they are)."""
        return self.scaling.scaled(target) if self.scaling is not None else target

    def answered(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """A regression's predictions back on the target's scale."""
        return self.scaling.unscaled(values) if self.scaling is not None else values


BINARY = Task(TargetSpec())


@dataclass(frozen=True)
class BaselineResult:
    """Test probabilities of a fitted baseline, and what fitting it decided."""

    proba: npt.NDArray[np.float64]
    details: dict[str, int]  # what fitting it chose: its boosting rounds or solver iterations


def _dense(inputs: EncodedBatch) -> npt.NDArray[np.float64]:
    return np.hstack([inputs.categorical.astype(np.float64), inputs.numeric.astype(np.float64)])


OBJECTIVES: dict[str, dict[str, str]] = {
    "binary": {"objective": "binary", "metric": "auc"},
    "multiclass": {"objective": "multiclass", "metric": "multi_logloss"},
    "regression": {"objective": "regression", "metric": "rmse"},
}


def lightgbm_baseline(
    train: Labelled,
    valid: Labelled,
    test: EncodedBatch,
    config: LightGBMConfig,
    seed: int,
    *,
    task: Task = BINARY,
    tuned: Mapping[str, bool | int | float | str] | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> BaselineResult:
    """LightGBM with the task's objective, categories as categorical features, early stopping on valid: with its
    default hyperparameters, or with ``tuned`` ones (``make tune``'s) laid over them. ``callbacks`` see every
    boosting round (the tuner prunes with one)."""
    categorical = list(range(train.inputs.categorical.shape[1]))
    classes = task.target.classes
    tuned = dict(tuned or {})
    if "bagging_fraction" in tuned and "bagging_freq" not in tuned:
        tuned["bagging_freq"] = 1  # LightGBM ignores a bagging fraction unless it bags every so many rounds
    params = {
        **OBJECTIVES[task.target.task],
        **({"num_class": len(classes)} if classes is not None else {}),
        **tuned,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    train_set = lgb.Dataset(
        _dense(train.inputs), task.learnt(train.target), categorical_feature=categorical, free_raw_data=False
    )
    valid_set = lgb.Dataset(_dense(valid.inputs), task.learnt(valid.target), reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False), *callbacks],
    )
    proba = np.asarray(booster.predict(_dense(test), num_iteration=booster.best_iteration), dtype=np.float64)
    return BaselineResult(task.answered(proba), {"rounds": int(booster.best_iteration)})


def logistic_baseline(
    train: Labelled, test: EncodedBatch, config: LogisticConfig, *, task: Task = BINARY
) -> BaselineResult:
    """L2-regularised logistic regression (multinomial for several classes; ridge regression, ``alpha = 1 / C``,
    for a number) on one-hot categories and the standardised numbers."""
    categories = train.inputs.categorical.shape[1] > 0  # a table of numbers only has none to encode
    encoder = OneHotEncoder(handle_unknown="ignore").fit(train.inputs.categorical) if categories else None

    def design(inputs: EncodedBatch) -> sparse.csr_matrix:
        one_hot = [encoder.transform(inputs.categorical)] if encoder is not None else []
        return sparse.hstack([*one_hot, sparse.csr_matrix(inputs.numeric)]).tocsr()

    if task.target.task == "regression":
        ridge = Ridge(alpha=1 / config.C).fit(design(train.inputs), task.learnt(train.target))
        values = np.asarray(ridge.predict(design(test)), dtype=np.float64)
        return BaselineResult(task.answered(values), {"coefficients": int(ridge.coef_.size)})
    model = LogisticRegression(C=config.C, max_iter=config.max_iter)
    model.fit(design(train.inputs), train.target)
    proba = model.predict_proba(design(test)).astype(np.float64)
    chosen = proba if task.target.classes is not None else proba[:, 1]
    return BaselineResult(chosen, {"iterations": int(np.max(model.n_iter_))})
