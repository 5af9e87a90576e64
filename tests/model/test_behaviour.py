"""Behavioural tests of the model, whatever the dataset: what it must not care about (invariance), what it must
learn and in which direction (a signal planted in the configured dataset's features), and the quality floor that
keeps a model without signal from ever becoming the champion."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from helpers import SPLITS, TASK, WHERE, register_inputs, shrink, slice_registry
from synthetic import Probe
from tabloop.config import DataConfig, EvaluateConfig, TrainConfig, load_registry_config
from tabloop.features.fitting import frame_columns
from tabloop.records import PRIMARY_METRICS
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
    """The planted target, in the task's terms, rising with a numeric feature (or, inverted, falling): above its
    median (binary); the band of its value between cuts around the median, one class each (multiclass); a positive
    number growing with it (regression)."""
    feature, cut = signal_feature(stage_outputs, config)
    target = config.contract.target
    value = pl.col(feature).cast(pl.Float64).fill_null(cut)
    if target.task == "binary":
        above = value > cut
        return (~above if inverted else above).alias(target.name)
    spread = float(pl.read_parquet(stage_outputs["features"] / "train.parquet")[feature].cast(pl.Float64).std() or 1.0)
    z = ((value - cut) / spread).clip(-3, 3) * (-1 if inverted else 1)
    if target.classes is not None:
        k = len(target.classes)
        edges = np.linspace(-0.8, 0.8, k - 1).tolist()  # bands of about equal size around the median
        band = pl.sum_horizontal([(z > edge).cast(pl.Int64) for edge in edges])
        return band.alias(target.name)
    return (100.0 + 30.0 * z).alias(target.name)  # from 10 to 190


def prior_score(target: pl.Series) -> float:
    """The score of knowing only the target's distribution, as make init drafts a ceiling: the log loss of
    predicting each class's share (multiclass), or the RMSE of predicting the mean (regression)."""
    if TASK == "multiclass":
        shares = target.value_counts(normalize=True)["proportion"].to_numpy()
        return float(-(shares * np.log(shares)).sum())
    return float(target.std(ddof=0) or 0.0)


def rises(model: Predictor, columns: dict[str, Any]) -> npt.NDArray[np.float64]:
    """What should rise with the planted feature: the probability (binary), the expected class index (multiclass)
    or the value (regression)."""
    predicted = model.outputs(columns)
    if predicted.ndim == 2:
        return np.asarray(predicted @ np.arange(predicted.shape[1]), dtype=np.float64)
    return predicted


def learned(target: npt.NDArray[Any], predicted: npt.NDArray[np.float64]) -> float:
    """How well the planted target is learned, 1 at best: ROC AUC (binary; one against the rest, multiclass), or
    the rank correlation of values (regression)."""
    if TASK == "binary":
        return float(roc_auc_score(target.astype(np.float64), predicted))
    if TASK == "multiclass":  # each class present in the split against the rest, averaged
        present = [c for c in np.unique(target) if 0 < (target == c).mean() < 1]
        return float(np.mean([roc_auc_score(target == c, predicted[:, c]) for c in present]))
    return float(spearmanr(target, predicted).statistic)


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
    batch = predictor.outputs(frame_columns(frame, config.contract))
    reversed_batch = predictor.outputs(frame_columns(frame.reverse(), config.contract))
    alone = [predictor.outputs(frame_columns(frame.slice(i, 1), config.contract))[0] for i in range(5)]
    scale = 1.0 if TASK != "regression" else max(1.0, float(np.abs(batch).mean()))  # a value: to its size
    np.testing.assert_allclose(reversed_batch[::-1], batch, rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(alone, batch[:5], rtol=0, atol=1e-6 * scale)


def test_a_tiny_change_of_a_numeric_feature_moves_no_prediction_much(
    trained: dict[str, Path], stage_outputs: dict[str, Path], config: DataConfig
) -> None:
    predictor = Predictor.from_directory(trained["bundle"])
    frame = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    feature = Probe.of(config.contract).bounded
    scale = float(frame[feature].std() or 1.0)
    nudged = frame.with_columns(pl.col(feature).cast(pl.Float64) + 1e-6 * scale)
    before = predictor.outputs(frame_columns(frame, config.contract))
    after = predictor.outputs(frame_columns(nudged, config.contract))
    scale = 1.0 if TASK != "regression" else float(np.abs(before).mean()) or 1.0  # a value: relative to its size
    assert np.abs(after - before).max() < 1e-3 * scale


def test_a_planted_signal_is_learned(planted: tuple[Predictor, Path, str], config: DataConfig) -> None:
    model, features, _ = planted
    test = pl.read_parquet(features / "test.parquet")
    target = test[config.contract.target.name].to_numpy()
    assert len(np.unique(target)) > 1, "the planted target must vary in the test split"
    assert learned(target, model.outputs(frame_columns(test, config.contract))) > 0.9


def test_raising_the_planted_feature_raises_the_probability(
    planted: tuple[Predictor, Path, str], config: DataConfig
) -> None:
    model, features, feature = planted
    train_values = pl.read_parquet(features / "train.parquet")[feature].drop_nulls()
    low, high = float(train_values.quantile(0.1)), float(train_values.quantile(0.9))  # type: ignore[arg-type]
    test = pl.read_parquet(features / "test.parquet")
    dtype = test.schema[feature]
    at = {
        level: rises(model, frame_columns(test.with_columns(pl.lit(value).cast(dtype).alias(feature)), config.contract))
        for level, value in (("low", low), ("high", high))
    }
    assert (at["high"] > at["low"]).mean() >= 0.9  # row by row, all else equal
    # and on average well beyond chance, without holding any one table or CPU to an effect size: the mean rise is
    # at least five standard errors of the rows' rises
    rise = at["high"] - at["low"]
    assert rise.mean() > 5 * rise.std(ddof=1) / np.sqrt(len(rise))


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
    """With the configured dataset's floor (gate.min_score; for a multiclass or regression model the ceiling,
    gate.max_score, as make init drafts it for the planted table): a model that learned the opposite of the
    held-out truth is rejected even as the first model, and the planted model is then promoted."""
    configured = load_registry_config(WHERE.registry_config)
    sizes = slice_registry("behaviour").gate  # a slice's few held-out rows are decided on, as in every test
    configured_gate = configured.gate.model_copy(
        update={"min_test_rows": sizes.min_test_rows, "min_test_positives": sizes.min_test_positives}
    )
    registry_config = configured.model_copy(update={"model_name": "behaviour", "gate": configured_gate})
    higher = PRIMARY_METRICS[TASK].higher_is_better
    bound = registry_config.gate.min_score if higher else registry_config.gate.max_score
    assert bound is not None, f"{WHERE.registry_config} sets no bound (gate.{'min' if higher else 'max'}_score)"
    if not higher:  # the configured ceiling is in the real target's terms: the same rule on the planted one
        ceiling = prior_score(pl.read_parquet(planted[1] / "train.parquet")[config.contract.target.name])
        gate = registry_config.gate.model_copy(update={"max_score": ceiling})
        registry_config = registry_config.model_copy(update={"gate": gate})
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
    assert ("below the floor" if higher else "above the ceiling") in rejected.decision.reasons[0]
    assert rejected.champion is None
    promoted = register(planted_features.parent / "bundle")
    assert promoted.decision is not None
    assert promoted.decision.promote
    assert promoted.champion == promoted.version == "2"
