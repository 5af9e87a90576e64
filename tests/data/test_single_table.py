"""Every single-table dataset of this repository (no adapter, no code) through the data stages, training and
evaluation, on rows generated from its own contract: what a user who adds one with `make init` gets."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from helpers import REPO_ROOT, shrink, with_source
from profiles import fixture_config, time_split_of
from synthetic import single_table, write_source
from tabloop.config import load_data_config, load_evaluate_config, load_train_config
from tabloop.io import read_json
from tabloop.layout import Layout, load_datasets
from tabloop.records import ID, PRIMARY_METRICS
from tabloop.stages.evaluate import run as evaluate
from tabloop.stages.features import run as build_features
from tabloop.stages.ingest import run as ingest
from tabloop.stages.train import run as train
from tabloop.stages.validate import run as validate

SINGLE_TABLE = [
    name
    for name in load_datasets(REPO_ROOT).datasets
    if load_data_config(Layout(name, REPO_ROOT).data_config).adapter is None
]


@pytest.mark.parametrize("dataset", SINGLE_TABLE)
def test_a_single_table_dataset_trains_and_evaluates_from_its_contract(dataset: str, tmp_path: Path) -> None:
    where = Layout(dataset, REPO_ROOT)
    shipped = load_data_config(where.data_config)
    rows = single_table(shipped, n=600, seed=1)
    write_source(rows, tmp_path / "source", shipped.entity.table)
    config = time_split_of(with_source(fixture_config(shipped), tmp_path / "source"), tmp_path / "source")

    ingest(config, tmp_path / "raw")
    report = validate(config, tmp_path / "raw", tmp_path / "validated", tmp_path / "reports")
    assert sum(t.rejected for t in report.tables.values()) == 0  # generated within the rules
    build_features(config, tmp_path / "validated", tmp_path / "features", tmp_path / "features.json")
    splits = {s: pl.read_parquet(tmp_path / "features" / f"{s}.parquet") for s in ("train", "valid", "test")}
    assert sum(f.height for f in splits.values()) == rows.height
    assert not set(splits["train"][ID]) & set(splits["test"][ID])
    train(
        shrink(load_train_config(where.train_config)),
        tmp_path / "features",
        tmp_path / "bundle",
        tmp_path / "train",
        tmp_path / "checkpoints",
    )
    evaluation = load_evaluate_config(where.evaluate_config).model_copy(update={"min_slice_rows": 5})
    metrics = evaluate(config, evaluation, tmp_path / "features", tmp_path / "bundle", tmp_path / "evaluation")
    assert metrics.primary.name == PRIMARY_METRICS[shipped.label.task].name  # the task's own metric decides
    assert math.isfinite(metrics.score("pytorch"))
    assert set(metrics.test) == {"pytorch", "lightgbm", "ridge" if shipped.label.task == "regression" else "logistic"}
    assert read_json(tmp_path / "features.json")["examples"]["built"] == rows.height
    card = (tmp_path / "evaluation" / "model_card.md").read_text()
    assert shipped.card.title in card
