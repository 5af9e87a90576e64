"""The split kinds: time ranges, seeded shuffles (plain and stratified) and groups, each deterministic."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np
import polars as pl
import pytest

from tabloop.config import Fractions, GroupSplit, RandomSplit
from tabloop.errors import FeatureError
from tabloop.features.build import group_split, shuffled_split
from tabloop.records import SPLIT


def counts(names: pl.Series) -> dict[str, int]:
    return {
        str(k): int(v) for k, v in zip(*names.value_counts(sort=True).to_dict(as_series=False).values(), strict=True)
    }


def test_a_random_split_cuts_the_fractions_and_is_the_same_every_time() -> None:
    split = RandomSplit(kind="random", fractions=Fractions(train=0.6, valid=0.2, test=0.2), seed=3)
    names = shuffled_split(1000, split, None)
    assert counts(names) == {"train": 600, "valid": 200, "test": 200}
    assert names.equals(shuffled_split(1000, split, None))
    other = shuffled_split(1000, split.model_copy(update={"seed": 4}), None)
    assert not names.equals(other)
    assert names.head(20).n_unique() > 1  # shuffled, not cut in file order


def test_a_stratified_split_keeps_the_class_share_in_every_split() -> None:
    target = pl.Series([i % 10 < 2 for i in range(2000)])  # 20% positive
    names = shuffled_split(2000, RandomSplit(kind="stratified"), target)
    frame = pl.DataFrame({"split": names, "y": target})
    shares = frame.group_by("split").agg(pl.col("y").mean()).sort("split")
    assert np.allclose(shares["y"].to_numpy(), 0.2, atol=0.005)
    assert counts(names) == {"train": 1400, "valid": 300, "test": 300}


def test_a_group_split_never_puts_a_group_in_two_splits() -> None:
    groups = pl.Series("customer", [f"c{i % 97}" for i in range(3000)])
    names = group_split(groups, GroupSplit(kind="group", column="customer", seed=1))
    frame = pl.DataFrame({"customer": groups, "split": names})
    assert frame.group_by("customer").agg(pl.col("split").n_unique())["split"].max() == 1
    sizes = counts(names)
    assert set(sizes) == {"train", "valid", "test"}
    assert 0.6 < sizes["train"] / 3000 < 0.8  # whole groups: close to the fraction, not exact
    assert names.equals(group_split(groups, GroupSplit(kind="group", column="customer", seed=1)))


def test_a_group_split_refuses_rows_without_a_group() -> None:
    with pytest.raises(FeatureError, match=r"split\.column: 1 rows have no customer"):
        group_split(pl.Series("customer", ["a", None, "b"]), GroupSplit(kind="group", column="customer"))


def test_a_shuffled_splits_test_rows_reach_production_last_in_a_seeded_order() -> None:
    """A file sorted by its target: the test split comes last and shuffled (the replay's order), the other rows keep
    theirs, and retraining's arrived rows are the first ones of that order."""
    from tabloop.config import Arrived, DataConfig
    from tabloop.features.build import assign_split, production_order

    rows = 200
    frame = pl.DataFrame({"position": range(rows), "price": [float(i) for i in range(rows)]})
    split = RandomSplit(kind="random", fractions=Fractions(train=0.5, valid=0.25, test=0.25), seed=5)
    config = SimpleNamespace(split=split, contract=SimpleNamespace(target=SimpleNamespace(name="price")))
    placed = assign_split(frame, cast(DataConfig, config))
    test = placed.filter(pl.col(SPLIT) == "test")["position"].to_list()
    assert placed["position"].to_list()[-len(test) :] == test  # last
    assert test != sorted(test)  # not in file order: a sorted file does not reach production sorted
    for name in ("train", "valid"):
        kept = placed.filter(pl.col(SPLIT) == name)["position"].to_list()
        assert kept == sorted(kept)
    assert assign_split(frame, cast(DataConfig, config)).equals(placed)  # seeded

    names = shuffled_split(rows, split, None)
    order = production_order(names, split.seed, shuffled=True)
    arrived = split.model_copy(update={"arrived": Arrived(rows=20, valid=5, test=5)})
    moved = assign_split(frame, cast(DataConfig, SimpleNamespace(split=arrived, contract=config.contract)))
    held_out = moved.filter(pl.col(SPLIT) == "test")["position"].to_list()
    assert held_out == order[15:20].tolist()  # the newest five of the first twenty to arrive, in production order
