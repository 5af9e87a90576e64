"""The target of a draft: which task it is (``TASK=`` or inferred from the column) and why, and what the task needs:
the positive class (binary), the classes in order (multiclass), a transform for a positive, skewed number
(regression). A column that cannot be the target of its task stops the draft with a message naming it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from tabloop.drafting.request import DraftError

MAX_CLASSES = 20  # more distinct values than this: a number is a regression, text is no target a draft takes
MIN_CLASS_ROWS = 10  # a class with fewer rows would be missing from a split (a split holds 15% of the rows)
SKEWED = 1.0  # a positive target whose skewness exceeds this is drafted with a log1p transform
TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class TargetDraft:
    """The task the draft chose, why, and what it needs."""

    task: str
    reason: str
    positive: Any = None  # binary
    classes: list[Any] | None = None  # multiclass, in order
    transform: str = "none"  # regression
    transform_reason: str = ""


def whole_classes(frame: pl.DataFrame, target: str, task: str | None) -> pl.DataFrame:
    """``frame`` with a class target written as whole floats (``0.0``, ``1.0``: integers with gaps, as pandas
    exports them) read as integers: the draft names the classes 0 and 1 and declares the column int64, which the
    ingest stage reads ``1.0`` as. A regression target keeps its floats."""
    if target not in frame.columns or task == "regression" or not frame[target].dtype.is_float():
        return frame
    values = frame[target].drop_nulls()
    if values.is_empty() or values.n_unique() > MAX_CLASSES or not bool((values % 1 == 0).all()):
        return frame
    return frame.with_columns(pl.col(target).cast(pl.Int64))


def draft_target(target: pl.Series, positive: str | None, task: str | None) -> TargetDraft:
    """The target's task and what it needs; a DraftError if the column cannot be the target of that task."""
    if task is not None and task not in TASKS:
        raise DraftError(f"TASK: {task!r} is not a task; choose {', '.join(TASKS)}")
    if target.null_count() == target.len():
        raise DraftError(f"TARGET: {target.name!r} has no value in any row; nothing to learn")
    target = target.drop_nulls()  # unlabelled rows are left out (label.unlabelled: drop), and said so
    counts = target.value_counts(sort=True)
    if counts.height < 2:
        raise DraftError(
            f"TARGET: {target.name!r} has a single value ({counts[target.name][0]!r}) in every row; nothing to learn"
        )
    chosen, reason = (task, "as given (TASK)") if task is not None else _infer(target, counts.height, positive)
    if chosen == "regression":
        return _regression(target, reason)
    if chosen == "multiclass":
        return _multiclass(target, counts, reason)
    return _binary(target, counts, positive, reason)


def _infer(target: pl.Series, distinct: int, positive: str | None) -> tuple[str, str]:
    if positive is not None:
        return "binary", "POSITIVE was given"
    if distinct == 2:
        return "binary", "two values"
    numeric = target.dtype.is_numeric()
    whole = numeric and bool((target.cast(pl.Float64) % 1 == 0).all())
    if numeric and (distinct > MAX_CLASSES or not whole):
        return "regression", f"a number with {distinct:,} distinct values"
    if distinct <= MAX_CLASSES:
        return "multiclass", f"{distinct} distinct values (at most {MAX_CLASSES} are drafted as classes)"
    raise DraftError(
        f"TARGET: {target.name!r} has {distinct:,} text values, more than the {MAX_CLASSES} classes a draft takes; "
        "merge them into fewer classes, or give POSITIVE=<value> for a binary target"
    )


def _binary(target: pl.Series, counts: pl.DataFrame, positive: str | None, reason: str) -> TargetDraft:
    name = target.name
    if counts.height > 2 and positive is None:
        raise DraftError(
            f"TARGET: {name!r} has {counts.height} values; give POSITIVE=<value> (the positive class; every other "
            "value is negative), TASK=multiclass for classes, or edit label.threshold in the draft for a number"
        )
    if positive is None:
        return TargetDraft("binary", reason, positive=counts[name][-1])  # the minority value (ties: the later one)
    values = [str(v) for v in counts[name]]
    if positive not in values:
        raise DraftError(f"POSITIVE: {positive!r} is not a value of {name!r} (values: {', '.join(values)})")
    return TargetDraft("binary", reason, positive=counts[name][values.index(positive)])


def _multiclass(target: pl.Series, counts: pl.DataFrame, reason: str) -> TargetDraft:
    name = target.name
    if counts.height == 2:
        raise DraftError(f"TASK: {name!r} has two values; that is TASK=binary (a multiclass target has three or more)")
    if counts.height > MAX_CLASSES:
        raise DraftError(
            f"TASK: {name!r} has {counts.height:,} values, more than the {MAX_CLASSES} classes a draft takes; merge "
            "them into fewer classes first" + (", or give TASK=regression" if target.dtype.is_numeric() else "")
        )
    rare = [(v, n) for v, n in counts.rows() if n < MIN_CLASS_ROWS]
    if rare:
        found = ", ".join(f"{v!r} ({n} rows)" for v, n in rare)
        raise DraftError(
            f"TARGET: {name!r} has classes too rare to appear in every split: {found}; each needs {MIN_CLASS_ROWS} "
            "rows at least. Merge them into another class or drop those rows"
        )
    return TargetDraft("multiclass", reason, classes=sorted(counts[name].to_list()))


def _regression(target: pl.Series, reason: str) -> TargetDraft:
    name = target.name
    if not target.dtype.is_numeric():
        numbers = target.cast(pl.Float64, strict=False)
        bad = pl.DataFrame({"row": pl.int_range(target.len(), eager=True) + 1, "value": target}).filter(
            numbers.is_null()
        )
        if bad.height:
            shown = ", ".join(f"row {r}: {v!r}" for r, v in bad.head(3).rows())
            raise DraftError(f"TARGET: {name!r} is no number in {bad.height} rows ({shown}); a regression needs one")
        raise DraftError(f"TARGET: {name!r} holds numbers as text; write them as numbers for a regression")
    values = target.cast(pl.Float64)
    if not bool(values.is_finite().all()):
        raise DraftError(f"TARGET: {name!r} has values that are not finite numbers; a regression needs finite ones")
    skew = float(values.skew() or 0.0)
    if float(values.min()) >= 0 and skew > SKEWED:  # type: ignore[arg-type]
        why = f"positive and skewed (skewness {skew:.1f}): trained on log(1 + {name}), answered on its own scale"
        return TargetDraft("regression", reason, transform="log1p", transform_reason=why)
    return TargetDraft("regression", reason, transform_reason=f"skewness {skew:.1f}: trained on {name} as it is")
