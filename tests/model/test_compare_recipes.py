"""``python -m tools.compare_recipes``: variants of train.yaml trained on a dataset's features, scored on its
validation split."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from helpers import TASK
from tabloop.config import TrainConfig
from tabloop.errors import TabloopError
from tabloop.records import PRIMARY_METRICS
from tools.compare_recipes import compare, recipe


def test_variants_are_laid_over_the_base_and_scored_on_validation_deterministically(
    stage_outputs: dict[str, Path], train_config: TrainConfig
) -> None:
    start = train_config.model_dump(mode="json")
    variants = ["{}", '{"model": {"hidden": [8]}}', "{}"]
    rows = list(compare(stage_outputs["features"], start, variants, seeds=[1]))
    assert [row.variant for row in rows] == variants
    assert {row.metric for row in rows} == {PRIMARY_METRICS[TASK].title}  # the configured dataset's task
    assert all(math.isfinite(row.mean) and len(row.scores) == 1 for row in rows)
    assert rows[0].scores == rows[2].scores  # the same recipe and seed: the same network
    assert rows[0].scores != rows[1].scores  # the variant changed the network


def test_a_variant_that_is_no_recipe_is_named_before_anything_trains() -> None:
    assert recipe({"model": {"hidden": [16]}}, '{"model": {"dropout": 0.3}}', 7).model.hidden == [16]
    assert recipe({}, "{}", 7).seed == 7
    with pytest.raises(TabloopError, match="is not JSON"):
        recipe({}, "{model: 1}", 42)
    with pytest.raises(TabloopError, match="not a JSON object"):
        recipe({}, "[1]", 42)
    with pytest.raises(TabloopError, match="hiden"):
        recipe({}, '{"model": {"hiden": [8]}}', 42)
