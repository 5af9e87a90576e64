"""A multiclass and a regression table drafted by ``make init`` and run through the data stages and training, as a
user who brings one gets them: the task inferred, labels written per task, a network that learns the planted rule
on the task's primary metric, and the evaluate stage saying plainly that it scores binary models only so far."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from helpers import shrink
from tabloop.config import load_data_config, load_evaluate_config, load_train_config
from tabloop.drafting import DraftRequest, draft_dataset
from tabloop.errors import ConfigError
from tabloop.features.fitting import frame_columns
from tabloop.io import read_json
from tabloop.layout import DATASETS_FILE, Layout
from tabloop.runtime.bundle import Predictor
from tabloop.stages.evaluate import run as evaluate
from tabloop.stages.features import run as build_features
from tabloop.stages.ingest import run as ingest
from tabloop.stages.train import run as train
from tabloop.stages.validate import run as validate

ROWS = 1200


def table(seed: int = 0) -> pl.DataFrame:
    """Jobs of a compute cluster: the class follows the size and the queue; the cost is skewed and follows both."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, ROWS)
    queue = rng.choice(["batch", "gpu", "short"], ROWS)
    boost = np.select([queue == "gpu", queue == "short"], [2.5, -2.5], 0.0)
    score = size + boost + rng.normal(0, 0.5, ROWS)
    duration = np.select([score < 2.5, score < 5, score < 7.5], ["VF", "F", "M"], "L")
    cost = np.round(np.exp(0.3 * size + 0.4 * boost + rng.normal(0, 0.1, ROWS)), 3)
    return pl.DataFrame({"size": np.round(size, 4), "queue": queue, "duration": duration, "cost": cost})


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    (root / "configs").mkdir()
    (root / DATASETS_FILE).write_text("default: example\ndatasets:\n  - example\n")
    (root / "data" / "external").mkdir(parents=True)
    table().write_csv(root / "data" / "external" / "jobs.csv")
    return root


def run_stages(root: Path, name: str, target: str, drop: str) -> tuple[Any, Path]:
    """Draft the dataset (the other target column left out of the table), then ingest, validate, features, train."""
    csv = root / "data" / "external" / f"{name}.csv"
    pl.read_csv(root / "data" / "external" / "jobs.csv").drop(drop).write_csv(csv)
    draft_dataset(DraftRequest(name, str(csv), target), root)
    where = Layout(name, root)
    config = load_data_config(where.data_config)
    config = config.model_copy(update={"source": config.source.model_copy(update={"dir": csv.parent})})
    out = root / "out" / name
    ingest(config, out / "raw")
    validate(config, out / "raw", out / "validated", out / "validation")
    build_features(config, out / "validated", out / "features", out / "features.json")
    train(shrink(load_train_config(where.train_config), max_epochs=30, patience=6), out / "features", out / "bundle",
          out / "train", out / "checkpoints")  # fmt: skip
    return config, out


def test_a_multiclass_table_is_drafted_labelled_and_learned(root: Path) -> None:
    config, out = run_stages(root, "durations", "duration", drop="cost")
    assert config.label.task == "multiclass"
    assert config.label.classes == ["F", "L", "M", "VF"]
    shares = read_json(out / "features.json")["splits"]["train"]["class_shares"]
    assert set(shares) == {"F", "L", "M", "VF"}
    assert abs(sum(shares.values()) - 1) < 1e-6
    metrics = read_json(out / "train" / "metrics.json")
    assert set(metrics) == {"best_epoch", "epochs_run", "valid_log_loss"}
    assert metrics["valid_log_loss"] < 0.7 * np.log(4)  # far better than a uniform guess over four classes

    predictor = Predictor.from_directory(out / "bundle")
    test = pl.read_parquet(out / "features" / "test.parquet")
    proba, classes = predictor.predict_classes(frame_columns(test, predictor.bundle.contract))
    truth = [config.contract.target.classes[i] for i in test[config.contract.target.name]]
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.mean(np.array(classes) == np.array(truth)) > 0.6
    with pytest.raises(ConfigError, match=r"label\.task: multiclass: the evaluate stage scores binary models only"):
        evaluate(config, load_evaluate_config(Layout("durations", root).evaluate_config), out / "features",
                 out / "bundle", out / "evaluation")  # fmt: skip
    assert not (out / "evaluation").exists()


def test_a_skewed_regression_table_is_drafted_with_a_log_transform_and_learned(root: Path) -> None:
    config, out = run_stages(root, "costs", "cost", drop="duration")
    assert (config.label.task, config.label.transform) == ("regression", "log1p")
    assert config.split.kind == "random"
    metrics = read_json(out / "train" / "metrics.json")
    assert set(metrics) == {"best_epoch", "epochs_run", "valid_rmse"}
    history = pl.read_csv(out / "train" / "history.csv")
    assert history.columns == ["epoch", "train_loss", "valid_loss", "valid_rmse"]
    assert history["valid_rmse"].arg_min() + 1 == metrics["best_epoch"]  # lower is better

    predictor = Predictor.from_directory(out / "bundle")
    test = pl.read_parquet(out / "features" / "test.parquet")
    values = predictor.outputs(frame_columns(test, predictor.bundle.contract))
    truth = test[config.contract.target.name].to_numpy()
    rmse = float(np.sqrt(np.mean((values - truth) ** 2)))
    assert rmse < 0.5 * truth.std()  # well under predicting the mean
    assert np.all(values > 0)
