"""Training: reproducible, resumable after an interruption, and refusing data it cannot learn from."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest
import torch

from helpers import TASK, shrink
from profiles import configured_config
from tabloop.config import TrainConfig
from tabloop.errors import ConfigError, FeatureError
from tabloop.io import read_json
from tabloop.records import PRIMARY_METRICS
from tabloop.runtime.bundle import Bundle
from tabloop.stages.train import run as train
from tabloop.training.checkpoint import CHECKPOINT_FILE, EpochRecord
from tabloop.training.loop import TrainResult, resolve_device
from tabloop.training.tensors import batch_bounds, choose_threshold

CONTRACT = configured_config().contract
TARGET, FEATURE = CONTRACT.target.name, next(iter(CONTRACT.features))


def run(config: TrainConfig, features: Path, root: Path, **kwargs: object) -> TrainResult:
    return train(config, features, root / "bundle", root / "reports", root / "checkpoints", **kwargs)  # type: ignore[arg-type]


def weights(root: Path) -> dict[str, npt.NDArray[Any]]:
    return Bundle.load(root / "bundle").weights


def same_weights(a: dict[str, npt.NDArray[Any]], b: dict[str, npt.NDArray[Any]]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


PRIMARY = PRIMARY_METRICS[TASK]


def interrupt_after(epoch: int):
    def hook(record: EpochRecord) -> None:
        if record.epoch == epoch:
            raise KeyboardInterrupt

    return hook


def test_training_writes_a_loadable_bundle_and_reports(trained: dict[str, Path], train_config: TrainConfig) -> None:
    bundle = Bundle.load(trained["bundle"])
    assert bundle.args.members == train_config.model.members
    if TASK == "binary":
        assert 0 < bundle.threshold < 1
    else:
        assert bundle.threshold is None
        assert (bundle.scaling is not None) is (TASK == "regression")
    metrics = read_json(trained["reports"] / "metrics.json")
    history = pl.read_csv(trained["reports"] / "history.csv")
    assert history.height == metrics["epochs_run"] <= train_config.training.max_epochs
    column = history[f"valid_{PRIMARY.name}"]
    best = column.max() if PRIMARY.higher_is_better else column.min()
    assert metrics[f"valid_{PRIMARY.name}"] == best
    assert (column.arg_max() if PRIMARY.higher_is_better else column.arg_min()) + 1 == metrics["best_epoch"]
    assert not (trained["checkpoints"] / CHECKPOINT_FILE).exists()  # removed once training finished


def test_same_data_parameters_and_seed_give_the_same_model(
    train_config: TrainConfig, stage_outputs: dict[str, Path], trained: dict[str, Path], tmp_path: Path
) -> None:
    result = run(train_config, stage_outputs["features"], tmp_path)
    assert same_weights(weights(tmp_path), Bundle.load(trained["bundle"]).weights)
    assert result.valid_score == read_json(trained["reports"] / "metrics.json")[f"valid_{PRIMARY.name}"]
    other_seed = train_config.model_copy(update={"seed": train_config.seed + 1})
    run(other_seed, stage_outputs["features"], tmp_path / "other")
    assert not same_weights(weights(tmp_path / "other"), weights(tmp_path))


def test_interrupted_training_resumes_exactly(
    train_config: TrainConfig, stage_outputs: dict[str, Path], trained: dict[str, Path], tmp_path: Path
) -> None:
    features = stage_outputs["features"]
    with pytest.raises(KeyboardInterrupt):
        run(train_config, features, tmp_path, on_epoch_end=interrupt_after(2))
    assert (tmp_path / "checkpoints" / CHECKPOINT_FILE).is_file()
    assert not (tmp_path / "bundle").exists()  # nothing half-written

    result = run(train_config, features, tmp_path)
    assert result.resumed_from_epoch == 2
    assert same_weights(weights(tmp_path), Bundle.load(trained["bundle"]).weights)
    assert pl.read_csv(tmp_path / "reports" / "history.csv").equals(pl.read_csv(trained["reports"] / "history.csv"))


def test_corrupt_checkpoint_is_discarded_and_training_restarts(
    train_config: TrainConfig, stage_outputs: dict[str, Path], trained: dict[str, Path], tmp_path: Path
) -> None:
    features = stage_outputs["features"]
    with pytest.raises(KeyboardInterrupt):
        run(train_config, features, tmp_path, on_epoch_end=interrupt_after(1))
    checkpoint = tmp_path / "checkpoints" / CHECKPOINT_FILE
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # as if the disk filled up mid-write
    result = run(train_config, features, tmp_path)
    assert result.resumed_from_epoch is None
    assert same_weights(weights(tmp_path), Bundle.load(trained["bundle"]).weights)


def test_checkpoint_of_other_parameters_is_not_resumed(
    train_config: TrainConfig, stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    features = stage_outputs["features"]
    with pytest.raises(KeyboardInterrupt):
        run(train_config, features, tmp_path, on_epoch_end=interrupt_after(1))
    changed = train_config.model_copy(update={"optimizer": train_config.optimizer.model_copy(update={"lr": 0.01})})
    assert run(changed, features, tmp_path).resumed_from_epoch is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.head(0), "the train split is empty"),
        (lambda f: f.with_columns(pl.lit(False).alias(TARGET)), "every row of the train split has the same label"),
        (lambda f: f.drop(FEATURE), rf"columns \['{FEATURE}'\] of the contract are missing"),
    ],
)
def test_unusable_training_split_fails_before_training(
    train_config: TrainConfig, stage_outputs: dict[str, Path], tmp_path: Path, change: object, message: str
) -> None:
    features = Path(shutil.copytree(stage_outputs["features"], tmp_path / "features"))
    change(pl.read_parquet(features / "train.parquet")).write_parquet(features / "train.parquet")  # type: ignore[operator]
    with pytest.raises(FeatureError, match=message):
        run(train_config, features, tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_device_is_chosen_automatically_and_checked() -> None:
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_threshold_maximises_f1() -> None:
    target = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    proba = np.array([0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.9])
    threshold = choose_threshold(target, proba)
    assert threshold == pytest.approx(0.35)  # labels 0.35 and above late: 4 of 4 late found, 1 false alarm


def test_fixed_threshold_is_kept_or_refused_where_the_task_has_none(
    train_config: TrainConfig, stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    fixed = shrink(train_config, max_epochs=1).model_copy(update={"threshold": 0.42})
    if TASK != "binary":
        with pytest.raises(ConfigError, match=f"binary model's decision threshold, and this dataset's task is {TASK}"):
            run(fixed, stage_outputs["features"], tmp_path)
        assert not (tmp_path / "bundle").exists()
        return
    assert run(fixed, stage_outputs["features"], tmp_path).threshold == 0.42
    assert Bundle.load(tmp_path / "bundle").threshold == 0.42


def test_a_lone_last_row_joins_the_batch_before_it() -> None:
    assert batch_bounds(65, 32) == [(0, 32), (32, 65)]
    assert batch_bounds(66, 32) == [(0, 32), (32, 64), (64, 66)]
    assert batch_bounds(1, 32) == [(0, 1)]
    assert batch_bounds(0, 32) == []


def test_a_training_split_one_row_past_a_whole_batch_trains(
    train_config: TrainConfig, stage_outputs: dict[str, Path], tmp_path: Path
) -> None:
    features = Path(shutil.copytree(stage_outputs["features"], tmp_path / "features"))
    rows = pl.read_parquet(features / "train.parquet")
    batch = train_config.training.batch_size
    assert rows.height > batch + 1
    # Drawn, not the first rows: a file sorted by its target would give rows of one class (batch norm cannot train
    # on a batch of one)
    rows.sample(n=batch + 1, seed=0).write_parquet(features / "train.parquet")
    once = train_config.model_copy(update={"training": train_config.training.model_copy(update={"max_epochs": 1})})
    assert run(once, features, tmp_path).epochs_run == 1
