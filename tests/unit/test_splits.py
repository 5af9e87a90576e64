"""The split kinds: time ranges, seeded shuffles (plain and stratified) and groups, each deterministic."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tabloop.config import Fractions, GroupSplit, RandomSplit
from tabloop.errors import FeatureError
from tabloop.features.build import group_split, shuffled_split


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
