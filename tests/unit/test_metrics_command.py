"""``make metrics``: one line per stage that has run, read from the records the stages wrote."""

from __future__ import annotations

from pathlib import Path

from tabloop.commands.metrics import stage_lines
from tabloop.io import write_json
from tabloop.layout import Layout
from tabloop.records import ExampleCounts, FeatureMetrics, SplitCounts, TrainMetrics


def test_nothing_run_gives_no_lines(tmp_path: Path) -> None:
    assert stage_lines(Layout("loans", tmp_path)) == []


def test_each_stage_that_ran_has_its_line(tmp_path: Path) -> None:
    where = Layout("loans", tmp_path)
    write_json(
        {"tables": {"loans": {"rows": 1200, "rejected": 3}, "branches": {"rows": 40, "rejected": 0}}},
        where.validation_reports / "summary.json",
    )
    FeatureMetrics(
        examples=ExampleCounts(built=1197, unlabelled=0, unlabelled_policy="drop", outside_split=0),
        adapter={},
        splits={
            "train": SplitCounts(rows=837, positive_rate=0.125, start="2020-01-01", end="2021-06-30"),
            "valid": SplitCounts(rows=180, target_mean=1234.5),
            "test": SplitCounts(rows=180, class_shares={"low": 0.25, "high": 0.75}),
        },
        vocabulary={"branch": 12},
    ).write(where.features_metrics)
    TrainMetrics(best_epoch=7, epochs_run=17, valid_roc_auc=0.8123, threshold=0.31).write(
        where.train_reports / "metrics.json"
    )

    lines = stage_lines(where)

    assert lines[0].startswith("validate  1,240 rows read, 3 rejected")
    assert lines[1] == "features  train       837 rows, 12.5% positive, 2020-01-01 to 2021-06-30"
    assert lines[2] == "features  valid       180 rows, mean 1,234"
    assert lines[3] == "features  test        180 rows, largest class high 75.0%"
    assert lines[4] == "train     epoch 7 of 17 kept, validation 0.8123, threshold 0.310"
