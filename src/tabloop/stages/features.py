"""The ``features`` stage: validated tables → ``data/<dataset>/features/{train,valid,test}.parquet`` + preprocessing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl

from tabloop.config import SPLITS, DataConfig
from tabloop.data.validate import read_raw_table
from tabloop.datasets import load_adapter
from tabloop.features.build import (
    add_label,
    assign_split,
    check_contract,
    check_split,
    entity_rows,
    select_features,
    share,
    time_range,
)
from tabloop.features.fitting import fit_preprocessor, frame_columns
from tabloop.io import staged, write_parquet
from tabloop.records import SPLIT, TIME, ExampleCounts, FeatureMetrics, SplitCounts
from tabloop.runtime.preprocessing import FIRST_INDEX, PREPROCESSING_FILE, FittedOn

logger = logging.getLogger(__name__)


def run(config: DataConfig, validated_dir: Path, out_dir: Path, metrics_path: Path) -> FeatureMetrics:
    """Make the examples, label and split them; fit preprocessing on train; write it all."""
    tables = {name: read_raw_table(validated_dir, name) for name in config.tables}
    built = load_adapter(config.adapter).build(tables, config)
    examples = entity_rows(built.frame, config)
    labelled, unlabelled = add_label(examples, config)
    if unlabelled:
        what = "left out" if config.label.unlabelled == "drop" else f"counted as {config.label.unlabelled}"
        logger.info("features: %d rows have no %s: %s (label.unlabelled)", unlabelled, config.label.column, what)
    frame = assign_split(labelled, config)
    outside = labelled.height - frame.height
    table = select_features(frame, config)
    check_contract(table, config.contract)

    splits = {name: table.filter(pl.col(SPLIT) == name).drop(SPLIT) for name in SPLITS}
    for name, part in splits.items():
        check_split(name, part, config)
    train = splits["train"]
    times = train[TIME] if TIME in train.columns else None
    preprocessor = fit_preprocessor(
        frame_columns(train, config.contract),
        config.contract,
        config.preprocessing,
        FittedOn(
            split="train",
            rows=train.height,
            start=None if times is None else str(times.min().date()),  # type: ignore[union-attr]
            end=None if times is None else str(times.max().date()),  # type: ignore[union-attr]
        ),
    )

    target = config.contract.target.name
    metrics = FeatureMetrics(
        examples=ExampleCounts(
            built=examples.height,
            unlabelled=unlabelled,
            unlabelled_policy=config.label.unlabelled,
            outside_split=outside,
            **time_range(labelled),
        ),
        adapter=built.metrics,
        splits={
            name: SplitCounts(rows=part.height, **target_summary(part[target], config), **time_range(part))
            for name, part in splits.items()
        },
        vocabulary={
            name: size - FIRST_INDEX
            for name, size in zip(preprocessor.categorical_names, preprocessor.cardinalities, strict=True)
        },
    )
    with staged(out_dir, metrics_path) as (staging, metrics_staging):
        for name, part in splits.items():
            write_parquet(part, staging / f"{name}.parquet")
        preprocessor.save(staging / PREPROCESSING_FILE)
        metrics.write(metrics_staging)
    for name, part in splits.items():
        logger.info("features %-5s %7d rows, %s", name, part.height, describe_target(part[target], config))
    return metrics


def target_summary(target: pl.Series, config: DataConfig) -> dict[str, Any]:
    """What :class:`SplitCounts` says of a split's target, for the task."""
    classes = config.contract.target.classes
    if classes is not None:
        counts = target.value_counts().rows()
        found = {int(i): n for i, n in counts}
        return {"class_shares": {c: round(found.get(i, 0) / max(target.len(), 1), 6) for i, c in enumerate(classes)}}
    if config.label.task == "regression":
        return {"target_mean": round(float(target.mean() or 0.0), 6)}  # type: ignore[arg-type]
    return {"positive_rate": round(share(target), 6)}


def describe_target(target: pl.Series, config: DataConfig) -> str:
    """A split's target in a few words for the log."""
    summary = target_summary(target, config)
    if "class_shares" in summary:
        return ", ".join(f"{share_:.1%} {name}" for name, share_ in summary["class_shares"].items())
    if "target_mean" in summary:
        return f"mean {config.contract.target.name} {summary['target_mean']:g}"
    return f"{100 * summary['positive_rate']:.1f}% positive"
