"""Behavioural tests of the model, whatever the dataset: what it must not care about (invariance), what it must
learn and in which direction (a signal planted in the configured dataset's features), and the quality floor that
keeps a model without signal from ever becoming the champion."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from helpers import SPLITS, WHERE, register_inputs, shrink
from synthetic import Probe
from tabloop.config import DataConfig, EvaluateConfig, TrainConfig, load_registry_config
from tabloop.features.fitting import frame_columns
from tabloop.runtime.bundle import Predictor
from tabloop.settings import Settings
from tabloop.stages.register import RegisterOutcome
from tabloop.stages.register import run as register_candidate
from tabloop.stages.train import run as train


def relabelled(features: Path, out: Path, label: pl.Expr) -> Path:
    """A copy of a features directory whose target is ``label`` in every split (the preprocessing is kept: it
    was fitted on the features, not on the target)."""
    shutil.copytree(features, out)
    for split in SPLITS:
        path = out / f"{split}.parquet"
        pl.read_parquet(path).with_columns(label).write_parquet(path)
    return out


def train_on(features: Path, config: TrainConfig, root: Path) -> Predictor:
    """A model trained on ``features`` with the tests' small configuration."""
    bundle = root / "bundle"
    train(config, features, bundle, root / "reports", root / "checkpoints")
    return Predictor.from_directory(bundle)


def signal_feature(stage_outputs: dict[str, Path], config: DataConfig) -> tuple[str, float]:
    """A numeric feature to plant the signal in, and the cut: the first one whose overall median splits every
    split into two classes of at least a fifth each (a time split can leave a feature constant within a split)."""
    splits = [pl.read_parquet(stage_outputs["features"] / f"{split}.parquet") for split in SPLITS]
    for name, feature in config.contract.features.items():
        if feature.kind != "numeric":
            continue
        cut = pl.concat([frame[name] for frame in splits]).cast(pl.Float64).median()
        if cut is None:
            continue
        shares = [float((frame[name] > cut).fill_null(False).mean() or 0.0) for frame in splits]  # type: ignore[arg-type]
        if all(0.2 <= share <= 0.8 for share in shares):
            return name, float(cut)  # type: ignore[arg-type]
    raise LookupError("no numeric feature splits every split in two")


def planted_label(stage_outputs: dict[str, Path], config: DataConfig, *, inverted: bool = False) -> pl.Expr:
    """The planted target: a numeric feature above its median (or, inverted, not above it)."""
    feature, cut = signal_feature(stage_outputs, config)
    above = (pl.col(feature) > cut).fill_null(False)
    return (~above if inverted else above).alias(config.contract.target.name)


@pytest.fixture(scope="module")
def planted(
    stage_outputs: dict[str, Path],
    config: DataConfig,
    train_config: TrainConfig,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Predictor, Path, str]:
    """A model trained where the target is exactly "a numeric feature above its median": the model, its features
    and that feature."""
    root = tmp_path_factory.mktemp("planted")
    features = relabelled(stage_outputs["features"], root / "features", planted_label(stage_outputs, config))
    model = train_on(features, shrink(train_config, max_epochs=20, patience=20), root)
    return model, features, signal_feature(stage_outputs, config)[0]


def test_a_rows_prediction_does_not_depend_on_the_rows_sent_with_it(
    trained: dict[str, Path], stage_outputs: dict[str, Path], config: DataConfig
) -> None:
    predictor = Predictor.from_directory(trained["bundle"])
    frame = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    batch = predictor.predict_proba(frame_columns(frame, config.contract))
    reversed_batch = predictor.predict_proba(frame_columns(frame.reverse(), config.contract))
    alone = [predictor.predict_proba(frame_columns(frame.slice(i, 1), config.contract))[0] for i in range(5)]
    np.testing.assert_allclose(reversed_batch[::-1], batch, rtol=0, atol=1e-6)
    np.testing.assert_allclose(alone, batch[:5], rtol=0, atol=1e-6)


def test_a_tiny_change_of_a_numeric_feature_moves_no_prediction_much(
    trained: dict[str, Path], stage_outputs: dict[str, Path], config: DataConfig
) -> None:
    predictor = Predictor.from_directory(trained["bundle"])
    frame = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    feature = Probe.of(config.contract).bounded
    scale = float(frame[feature].std() or 1.0)
    nudged = frame.with_columns(pl.col(feature).cast(pl.Float64) + 1e-6 * scale)
    before = predictor.predict_proba(frame_columns(frame, config.contract))
    after = predictor.predict_proba(frame_columns(nudged, config.contract))
    assert np.abs(after - before).max() < 1e-3


def test_a_planted_signal_is_learned(planted: tuple[Predictor, Path, str], config: DataConfig) -> None:
    model, features, _ = planted
    test = pl.read_parquet(features / "test.parquet")
    target = test[config.contract.target.name].to_numpy().astype(np.float64)
    assert 0 < target.mean() < 1, "the planted target must have both classes in the test split"
    assert roc_auc_score(target, model.predict_proba(frame_columns(test, config.contract))) > 0.9


def test_raising_the_planted_feature_raises_the_probability(
    planted: tuple[Predictor, Path, str], config: DataConfig
) -> None:
    model, features, feature = planted
    train_values = pl.read_parquet(features / "train.parquet")[feature].drop_nulls()
    low, high = float(train_values.quantile(0.1)), float(train_values.quantile(0.9))  # type: ignore[arg-type]
    test = pl.read_parquet(features / "test.parquet")
    dtype = test.schema[feature]
    at = {
        level: model.predict_proba(
            frame_columns(test.with_columns(pl.lit(value).cast(dtype).alias(feature)), config.contract)
        )
        for level, value in (("low", low), ("high", high))
    }
    assert (at["high"] > at["low"]).mean() >= 0.9  # row by row, all else equal
    assert at["high"].mean() - at["low"].mean() > 0.3


def test_the_gate_never_promotes_a_model_below_the_floor_but_promotes_one_above_it(
    planted: tuple[Predictor, Path, str],
    stage_outputs: dict[str, Path],
    trained: dict[str, Path],
    evaluated: Path,
    evaluate_config: EvaluateConfig,
    train_config: TrainConfig,
    config: DataConfig,
    tmp_path: Path,
) -> None:
    """With the configured dataset's floor (gate.min_score): a model that learned the opposite of the held-out
    truth is rejected even as the first model, and the planted model is then promoted."""
    registry_config = load_registry_config(WHERE.registry_config).model_copy(update={"model_name": "behaviour"})
    assert registry_config.gate.min_score is not None, f"{WHERE.registry_config} sets no floor (gate.min_score)"
    inverted = relabelled(
        stage_outputs["features"], tmp_path / "inverted", planted_label(stage_outputs, config, inverted=True)
    )
    train_on(inverted, shrink(train_config, max_epochs=20, patience=20), tmp_path / "inverted-model")
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    _, planted_features, _ = planted

    def register(bundle: Path) -> RegisterOutcome:
        # both scored on the planted truth; the run logs the fixture's evaluation (the gate scores the bundle itself)
        inputs = register_inputs(bundle, planted_features, trained, evaluated, tmp_path / "receipt.json")
        return register_candidate(settings, registry_config, evaluate_config, inputs)

    rejected = register(tmp_path / "inverted-model" / "bundle")
    assert rejected.decision is not None
    assert not rejected.decision.promote
    assert "below the floor" in rejected.decision.reasons[0]
    assert rejected.champion is None
    promoted = register(planted_features.parent / "bundle")
    assert promoted.decision is not None
    assert promoted.decision.promote
    assert promoted.champion == promoted.version == "2"
