"""Features of the configured dataset: exact split boundaries, deterministic tables, standardised encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from helpers import read_splits, rebuild
from tabloop.config import DataConfig, TimeSplit
from tabloop.features.fitting import frame_columns
from tabloop.records import ID, TIME
from tabloop.runtime.preprocessing import FIRST_INDEX, load_preprocessor


def test_split_boundaries_are_exact(stage_outputs: dict[str, Path], config: DataConfig) -> None:
    splits = read_splits(stage_outputs["features"])
    total = sum(frame.height for frame in splits.values())
    for name, frame in splits.items():
        assert frame.height > 0
        if isinstance(config.split, TimeSplit):
            period = config.split.periods()[name]
            dates = frame[TIME].dt.date()
            assert dates.min() >= period.start
            assert dates.max() <= period.end
        else:  # a shuffle cut by the fractions, to the row (of each class, when stratified)
            classes = config.contract.target.classes if config.split.kind == "stratified" else None
            rounding = len(classes) if classes is not None else 1  # each class's share is cut to the row
            assert abs(frame.height - getattr(config.split.fractions, name) * total) <= rounding
    keys = [set(frame[ID]) for frame in splits.values()]
    for i, j in ((0, 1), (1, 2), (0, 2)):
        assert not keys[i] & keys[j]


def test_encoded_training_split_is_standardised(stage_outputs: dict[str, Path]) -> None:
    pre = load_preprocessor(stage_outputs["features"])
    train = pl.read_parquet(stage_outputs["features"] / "train.parquet")
    encoded = pre.transform(frame_columns(train, pre.contract))
    assert encoded.categorical.shape == (train.height, len(pre.cardinalities))
    assert (encoded.categorical < np.array(pre.cardinalities)).all()
    # the numeric features that are always present, vary, and that no clipping touched: exactly standardised
    unclipped = [
        i
        for i, name in enumerate(pre.numeric_names)
        if name in train.columns
        and train[name].null_count() == 0
        and train[name].n_unique() > 1
        and np.abs(encoded.numeric[:, i]).max() < pre.clip
    ]
    assert unclipped, "no numeric feature of the training split is complete and unclipped"
    for i in unclipped:
        assert encoded.numeric[:, i].mean() == pytest.approx(0.0, abs=1e-5)
        assert encoded.numeric[:, i].std() == pytest.approx(1.0, abs=1e-3)
    assert np.isfinite(encoded.numeric).all()
    assert (encoded.categorical >= FIRST_INDEX).mean() > 0.5


def test_features_are_deterministic(stage_outputs: dict[str, Path], config: DataConfig, tmp_path: Path) -> None:
    out = rebuild(config, stage_outputs["validated"], tmp_path)
    for name in ("train.parquet", "valid.parquet", "test.parquet", "preprocessing.json"):
        assert (out / name).read_bytes() == (stage_outputs["features"] / name).read_bytes()
