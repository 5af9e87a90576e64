"""Each task through the network, its objective and its bundle: a multiclass and a regression network learn a planted
rule, their bundles save and load without loss and serve what the network learned, and a binary bundle is written
exactly as before the task kinds existed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tabloop.config import PreprocessingConfig
from tabloop.features.fitting import fit_preprocessor
from tabloop.records import PRIMARY_METRICS
from tabloop.runtime.bundle import MODEL_FILE, Bundle, BundleError, Predictor
from tabloop.runtime.contract import FeatureContract, FeatureSpec, TargetSpec
from tabloop.runtime.model_args import ModelArgs
from tabloop.runtime.network import TabularNet
from tabloop.runtime.preprocessing import PREPROCESSING_FILE, FittedOn, Preprocessor
from tabloop.training.checkpoint import EpochRecord, TrainingState
from tabloop.training.objective import Objective
from tabloop.training.tensors import SplitTensors

FEATURES = {
    "group": FeatureSpec(kind="categorical", dtype="string", values=["a", "b", "c"]),
    "x": FeatureSpec(kind="numeric", dtype="float64", min=-10, max=10),
}
CLASSES = ["low", "mid", "high"]
FITTED_ON = FittedOn(split="train", rows=600, start=None, end=None)


def draw(n: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {"group": [["a", "b", "c"][i] for i in rng.integers(0, 3, n)], "x": rng.normal(0, 1, n).tolist()}


def planted_class(columns: dict[str, Any]) -> np.ndarray[Any, Any]:
    """The group's index, moved up one class when x is positive."""
    group = np.array(["abc".index(g) for g in columns["group"]])
    return (group + (np.asarray(columns["x"]) > 0)) % 3


def planted_value(columns: dict[str, Any]) -> np.ndarray[Any, Any]:
    """A positive, skewed number (a price): exp of a linear rule."""
    group = np.array(["abc".index(g) for g in columns["group"]])
    return np.exp(1.0 + 0.6 * np.asarray(columns["x"]) + 0.5 * group)


def fitted(target: TargetSpec) -> Preprocessor:
    contract = FeatureContract(features=FEATURES, target=target)
    return fit_preprocessor(draw(600, 0), contract, PreprocessingConfig(min_category_count=1), FITTED_ON)


def tensors(pre: Preprocessor, columns: dict[str, Any], target: np.ndarray[Any, Any]) -> SplitTensors:
    encoded = pre.transform(columns)
    return SplitTensors(
        torch.from_numpy(encoded.categorical),
        torch.from_numpy(encoded.numeric),
        torch.from_numpy(target.astype(np.float32)),
    )


def trained(pre: Preprocessor, objective: Objective, split: SplitTensors) -> tuple[TabularNet, ModelArgs]:
    """A small network fitted full-batch on ``split``."""
    torch.manual_seed(0)
    args = ModelArgs(
        cardinalities=pre.cardinalities,
        embedding_dims=[3] * len(pre.cardinalities),
        n_numeric=len(pre.numeric_names),
        hidden=[32],
        dropout=0.0,
        members=2,
        outputs=pre.contract.target.outputs,
    )
    net = TabularNet(args)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(300):
        loss = objective.loss(net(split.categorical, split.numeric), split.target)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return net.eval(), args


def bundled(net: TabularNet, args: ModelArgs, pre: Preprocessor, objective: Objective, directory: Path) -> Bundle:
    """The network saved as a bundle in ``directory`` and loaded back."""
    weights = {name: tensor.detach().numpy().copy() for name, tensor in net.state_dict().items()}
    threshold = 0.5 if objective.target.task == "binary" else None
    Bundle(args, weights, pre, threshold, scaling=objective.scaling).save(directory)
    return Bundle.load(directory)


def test_a_multiclass_network_learns_the_classes_and_its_bundle_serves_what_it_learned(tmp_path: Path) -> None:
    pre = fitted(TargetSpec(task="multiclass", classes=CLASSES))
    train_rows, test_rows = draw(600, 0), draw(300, 1)
    objective = Objective.fit(pre.contract.target, planted_class(train_rows))
    net, args = trained(pre, objective, tensors(pre, train_rows, planted_class(train_rows)))
    test = tensors(pre, test_rows, planted_class(test_rows))
    proba = objective.predict(net, test, 64)
    assert proba.shape == (300, 3)
    assert np.allclose(proba.sum(axis=1), 1)
    assert (proba.argmax(axis=1) == planted_class(test_rows)).mean() > 0.9
    loss, score = objective.score(planted_class(test_rows), proba)
    assert loss == score < np.log(3) / 2  # log loss, well under a uniform guess's

    loaded = bundled(net, args, pre, objective, tmp_path)
    model = json.loads((tmp_path / MODEL_FILE).read_text())
    assert "threshold" not in model
    assert model["args"]["outputs"] == 3
    served, names = Predictor(loaded).predict_classes(test_rows)
    assert np.allclose(served, proba, atol=1e-6)
    assert names == [CLASSES[i] for i in proba.argmax(axis=1)]
    with pytest.raises(BundleError, match="no decision threshold"):
        _ = Predictor(loaded).threshold


def test_a_regression_network_learns_a_skewed_target_on_its_log_scale_and_serves_it_on_its_own(tmp_path: Path) -> None:
    pre = fitted(TargetSpec(task="regression", transform="log1p"))
    train_rows, test_rows = draw(600, 0), draw(300, 1)
    objective = Objective.fit(pre.contract.target, planted_value(train_rows))
    assert objective.scaling is not None
    assert objective.scaling.transform == "log1p"
    net, args = trained(pre, objective, tensors(pre, train_rows, planted_value(train_rows)))
    test = tensors(pre, test_rows, planted_value(test_rows))
    values = objective.predict(net, test, 64)
    truth = planted_value(test_rows)
    _, rmse = objective.score(truth, values)
    assert rmse < 0.25 * truth.std()  # on the target's own scale, not the log scale it learned on
    assert np.all(values > 0)

    loaded = bundled(net, args, pre, objective, tmp_path)
    assert loaded.scaling == objective.scaling
    assert np.allclose(Predictor(loaded).outputs(test_rows), values, rtol=1e-5)
    with pytest.raises(BundleError, match="values, not probabilities"):
        Predictor(loaded).predict_proba(test_rows)


def test_a_binary_bundle_is_written_as_before_the_task_kinds(tmp_path: Path) -> None:
    pre = fitted(TargetSpec(name="churned"))
    rows = draw(600, 0)
    target = (np.asarray(rows["x"]) > 0).astype(np.float64)
    objective = Objective.fit(pre.contract.target, target)
    net, args = trained(pre, objective, tensors(pre, rows, target))
    bundled(net, args, pre, objective, tmp_path)
    model = json.loads((tmp_path / MODEL_FILE).read_text())
    assert list(model) == ["format_version", "args", "threshold", "target"]
    assert "outputs" not in model["args"]
    assert json.loads((tmp_path / PREPROCESSING_FILE).read_text())["contract"]["target"] == {
        "name": "churned",
        "description": "",
    }


def test_a_bundle_whose_network_does_not_fit_its_target_is_refused(tmp_path: Path) -> None:
    pre = fitted(TargetSpec(task="multiclass", classes=CLASSES))
    rows = draw(600, 0)
    objective = Objective.fit(pre.contract.target, planted_class(rows))
    net, args = trained(pre, objective, tensors(pre, rows, planted_class(rows)))
    bundled(net, args, pre, objective, tmp_path)
    model = json.loads((tmp_path / MODEL_FILE).read_text())
    model["args"]["outputs"] = 4
    (tmp_path / MODEL_FILE).write_text(json.dumps(model))
    with pytest.raises(BundleError, match="4 outputs for a target of 3"):
        Bundle.load(tmp_path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task": "multiclass"}, "classes are required"),
        ({"classes": CLASSES}, "classes are required"),
        ({"task": "multiclass", "classes": ["yes", "no"]}, "three or more distinct classes"),
        ({"task": "multiclass", "classes": ["a", "b", "a"]}, "three or more distinct classes"),
        ({"transform": "log1p"}, "transform applies to a regression target"),
    ],
)
def test_a_target_that_does_not_fit_its_task_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TargetSpec(**fields)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_a_lower_is_better_metric_keeps_the_epoch_with_the_lowest_score(task: str) -> None:
    state = TrainingState(best_state={}, primary=PRIMARY_METRICS[task])
    net = torch.nn.Linear(1, 1)
    for epoch, score in enumerate([0.9, 0.7, 0.8, 0.75], start=1):
        state.record(EpochRecord(epoch, train_loss=1.0, valid_loss=score, valid_score=score), net)
    assert (state.best_epoch, state.best_score, state.stale) == (2, 0.7, 2)
