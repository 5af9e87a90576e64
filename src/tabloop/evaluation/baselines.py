"""Baselines trained on exactly the network's inputs: LightGBM and a logistic regression.

Both see the encoded features the network sees (category indices and standardised numbers with missing
indicators), keep their library defaults, and are trained on the training split only; LightGBM stops early on
the validation split. They are yardsticks, not straw men: neither is weakened to make the network look better.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder

from tabloop.config import LightGBMConfig, LogisticConfig
from tabloop.runtime.preprocessing import EncodedBatch


@dataclass(frozen=True)
class Labelled:
    """Encoded inputs with their binary target."""

    inputs: EncodedBatch
    target: npt.NDArray[np.float64]


@dataclass(frozen=True)
class BaselineResult:
    """Test probabilities of a fitted baseline, and what fitting it decided."""

    proba: npt.NDArray[np.float64]
    details: dict[str, int]  # what fitting it chose: its boosting rounds or solver iterations


def _dense(inputs: EncodedBatch) -> npt.NDArray[np.float64]:
    return np.hstack([inputs.categorical.astype(np.float64), inputs.numeric.astype(np.float64)])


def lightgbm_baseline(
    train: Labelled, valid: Labelled, test: EncodedBatch, config: LightGBMConfig, seed: int
) -> BaselineResult:
    """LightGBM with default hyperparameters, categories as categorical features, early stopping on valid."""
    categorical = list(range(train.inputs.categorical.shape[1]))
    params = {
        "objective": "binary",
        "metric": "auc",
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbosity": -1,
    }
    train_set = lgb.Dataset(_dense(train.inputs), train.target, categorical_feature=categorical, free_raw_data=False)
    valid_set = lgb.Dataset(_dense(valid.inputs), valid.target, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=config.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    proba = np.asarray(booster.predict(_dense(test), num_iteration=booster.best_iteration), dtype=np.float64)
    return BaselineResult(proba, {"rounds": int(booster.best_iteration)})


def logistic_baseline(train: Labelled, test: EncodedBatch, config: LogisticConfig) -> BaselineResult:
    """L2-regularised logistic regression on one-hot categories and the standardised numbers."""
    encoder = OneHotEncoder(handle_unknown="ignore").fit(train.inputs.categorical)

    def design(inputs: EncodedBatch) -> sparse.csr_matrix:
        return sparse.hstack([encoder.transform(inputs.categorical), sparse.csr_matrix(inputs.numeric)]).tocsr()

    model = LogisticRegression(C=config.C, max_iter=config.max_iter)
    model.fit(design(train.inputs), train.target)
    proba = model.predict_proba(design(test))[:, 1].astype(np.float64)
    return BaselineResult(proba, {"iterations": int(np.max(model.n_iter_))})
