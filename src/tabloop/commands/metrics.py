"""What ``make metrics`` and ``make train``'s closing summary print: one dataset's stage metrics, in 80 columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from tabloop.evaluation.metrics import EvaluationResult
from tabloop.evaluation.task_metrics import TASK_COLUMNS
from tabloop.layout import Layout
from tabloop.records import FeatureMetrics, SplitCounts, TrainMetrics

LABELS = {"pytorch": "network", "lightgbm": "LightGBM", "lightgbm_tuned": "LightGBM, tuned"}


def evaluation_table(result: EvaluationResult) -> Table:
    """The network and the baselines on the test split, in the task's metrics."""
    test, columns = result.test, TASK_COLUMNS[result.task]
    table = Table(title=f"Test split ({test['pytorch'].rows:,} rows)")
    for column in ("model", *(title for title, _ in columns)):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, scores in test.items():
        table.add_row(LABELS.get(name, name), *(f"{getattr(scores, key):.4f}" for _, key in columns))
    return table


def stage_lines(where: Layout) -> list[str]:
    """A line for each stage that has run: rows read and rejected, the splits, the epoch the training kept."""
    lines = []
    validation = _read(where.validation_reports / "summary.json")
    if validation:
        tables = validation.get("tables", {})
        read = sum(t.get("rows", 0) for t in tables.values())
        rejected = sum(t.get("rejected", 0) for t in tables.values())
        lines.append(f"validate  {read:,} rows read, {rejected:,} rejected ({where.validation_reports}/)")
    if where.features_metrics.is_file():
        for name, split in FeatureMetrics.read(where.features_metrics).splits.items():
            lines.append(f"features  {name:<5} {_split(split)}")
    train = where.train_reports / "metrics.json"
    if train.is_file():
        record = TrainMetrics.read(train)
        threshold = f", threshold {record.threshold:.3f}" if record.threshold is not None else ""
        lines.append(
            f"train     epoch {record.best_epoch} of {record.epochs_run} kept, validation {record.valid_score:.4f}"
            f"{threshold}"
        )
    return lines


def _split(split: SplitCounts) -> str:
    """A split's rows and its target: the positive share, the mean or the largest class's share."""
    rows = f"{split.rows:>9,} rows"
    period = f", {split.start} to {split.end}" if split.start and split.end else ""
    if split.positive_rate is not None:
        return f"{rows}, {split.positive_rate:.1%} positive{period}"
    if split.target_mean is not None:
        return f"{rows}, mean {split.target_mean:,.4g}{period}"
    shares = split.class_shares
    if shares:
        largest = max(shares, key=lambda c: shares[c])
        return f"{rows}, largest class {largest} {shares[largest]:.1%}{period}"
    return rows + period


def _read(path: Path) -> dict[str, Any]:
    """The validate stage's ``summary.json`` (no typed record: its reader, the validate stage, imports pandera)."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}
