"""``label.task``: the label's rules fit the task, the contract's target follows the label, and the features stage
labels each task's rows (a class index, a number) or names the rows it cannot label."""

from __future__ import annotations

import copy
from typing import Any

import polars as pl
import pytest
import yaml

from helpers import REPO_ROOT
from profiles import FLIGHTS_SPLIT
from tabloop.config import DataConfig, parse_config
from tabloop.errors import ConfigError, FeatureError
from tabloop.features.build import add_label, shuffled_split

RANDOM = {"kind": "random", "fractions": {"train": 0.6, "valid": 0.2, "test": 0.2}, "seed": 0}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data = yaml.safe_load((REPO_ROOT / "configs" / "flights" / "data.yaml").read_text())
    return {**data, "split": FLIGHTS_SPLIT.model_dump(mode="json")}


def parse(raw: dict[str, Any], label: dict[str, Any], **changes: Any) -> DataConfig:
    data = copy.deepcopy(raw) | {"label": label} | changes
    return parse_config(DataConfig, data, "data.yaml")


def test_the_contracts_target_takes_the_task_from_the_label(raw: dict[str, Any]) -> None:
    config = parse(raw, {"column": "carrier", "task": "multiclass", "classes": ["UA", "B6", "EV", "9E"]})
    target = config.contract.target
    assert (target.task, target.classes, target.outputs) == ("multiclass", ["UA", "B6", "EV", "9E"], 4)
    regression = parse(raw, {"column": "arr_delay", "task": "regression", "transform": "none"}).contract.target
    assert (regression.task, regression.classes, regression.outputs) == ("regression", None, 1)
    assert parse(raw, raw["label"]).contract.target.task == "binary"


@pytest.mark.parametrize(
    ("label", "changes", "key", "reason"),
    [
        ({"column": "carrier", "task": "multiclass", "threshold": 3}, {}, "label", "threshold makes a binary label"),
        ({"column": "carrier", "task": "multiclass"}, {}, "label", "classes: required for task multiclass"),
        ({"column": "carrier", "task": "multiclass", "classes": ["UA", "B6"]}, {}, "label", "fewer than three"),
        ({"column": "carrier", "task": "multiclass", "classes": ["UA", "UA", "EV"]}, {}, "label", "a class twice"),
        ({"column": "arr_delay", "threshold": 15, "transform": "log1p"}, {}, "label", "transform: applies to task"),
        (
            {"column": "arr_delay", "task": "regression", "unlabelled": "positive"},
            {},
            "label",
            "applies to task binary",
        ),
        ({"column": "arr_delay", "task": "regression"}, {"split": {**RANDOM, "kind": "stratified"}}, "split.kind", ""),
    ],
)
def test_a_label_that_does_not_fit_its_task_stops_before_anything_runs(
    raw: dict[str, Any], label: dict[str, Any], changes: dict[str, Any], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw, label, **changes)
    assert key in str(caught.value)
    assert reason in str(caught.value)


def test_a_task_written_into_the_contract_that_disagrees_with_the_label_is_named(raw: dict[str, Any]) -> None:
    data = copy.deepcopy(raw)
    data["contract"]["target"] = {**data["contract"].get("target", {}), "task": "regression"}
    with pytest.raises(ConfigError, match=r"contract\.target\.task: set by label"):
        parse_config(DataConfig, data, "data.yaml")


def test_multiclass_rows_get_their_class_index_and_numbers_are_classes_too(raw: dict[str, Any]) -> None:
    config = parse(raw, {"column": "arr_delay", "task": "multiclass", "classes": [3, 1, 2]})
    frame = pl.DataFrame({"arr_delay": [1, 2, 3, None, 1]})
    labelled, unlabelled = add_label(frame, config)
    assert unlabelled == 1
    assert labelled[config.contract.target.name].to_list() == [1, 2, 0, 1]


def test_positive_values_match_the_label_columns_type_or_are_refused_by_name(raw: dict[str, Any]) -> None:
    config = parse(raw, {"column": "carrier", "task": "binary", "positive": [1]})
    labelled, _ = add_label(pl.DataFrame({"carrier": ["1", "0", "1"]}), config)  # 1 in the YAML, "1" in the data
    assert labelled[config.contract.target.name].to_list() == [True, False, True]
    config = parse(raw, {"column": "carrier", "task": "binary", "positive": ["Yes"]})
    with pytest.raises(FeatureError, match=r"label.positive: \['Yes'\] cannot be values of carrier, which holds Int64"):
        add_label(pl.DataFrame({"carrier": [1, 0, 1]}), config)


def test_a_value_that_is_no_class_is_named_with_its_count(raw: dict[str, Any]) -> None:
    config = parse(raw, {"column": "carrier", "task": "multiclass", "classes": ["UA", "B6", "EV"]})
    frame = pl.DataFrame({"carrier": ["UA", "XX", "B6", "XX", "YY"]})
    with pytest.raises(FeatureError, match=r"no class: 'XX' \(2 rows\), 'YY' \(1 rows\)"):
        add_label(frame, config)


def test_a_regression_label_is_the_number_and_refuses_what_is_none(raw: dict[str, Any]) -> None:
    config = parse(raw, {"column": "arr_delay", "task": "regression", "transform": "log1p"}, split=RANDOM)
    labelled, _ = add_label(pl.DataFrame({"arr_delay": [3, 0, None, 12]}), config)
    assert labelled[config.contract.target.name].to_list() == [3.0, 0.0, 12.0]
    with pytest.raises(FeatureError, match="log1p needs arr_delay above -1; its smallest value is -5"):
        add_label(pl.DataFrame({"arr_delay": [3.0, -5.0]}), config)
    with pytest.raises(FeatureError, match="2 values that are not finite"):
        add_label(pl.DataFrame({"arr_delay": [3.0, float("inf"), float("nan")]}), config)
    with pytest.raises(FeatureError, match="a regression target is a number"):
        add_label(pl.DataFrame({"arr_delay": ["3", "4"]}), config)


def test_a_stratified_split_keeps_every_class_share_in_every_split(raw: dict[str, Any]) -> None:
    config = parse(raw, raw["label"], split={**RANDOM, "kind": "stratified"})
    target = pl.Series([0] * 500 + [1] * 300 + [2] * 200)
    names = shuffled_split(target.len(), config.split, target)  # type: ignore[arg-type]
    shares = pl.DataFrame({"split": names, "y": target}).group_by("split", "y").len().sort("split", "y")
    for split, fraction in (("train", 0.6), ("valid", 0.2), ("test", 0.2)):
        counts = shares.filter(pl.col("split") == split)["len"].to_list()
        assert counts == [round(500 * fraction), round(300 * fraction), round(200 * fraction)]
