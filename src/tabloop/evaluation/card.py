"""The model card: what the model is for, what it saw, how good it is against the baselines, and its limits."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from tabloop.config import CardConfig, LabelConfig
from tabloop.evaluation.metrics import EvaluationResult
from tabloop.evaluation.task_metrics import TASK_COLUMNS
from tabloop.records import PRIMARY_METRICS, TIME, TrainMetrics
from tabloop.runtime.bundle import Bundle

MODEL_NAMES = {
    "pytorch": "PyTorch network (this model)",
    "lightgbm": "LightGBM baseline",
    "lightgbm_tuned": "LightGBM baseline, tuned",
    "logistic": "Logistic regression",
    "ridge": "Ridge regression",
}


@dataclass(frozen=True)
class CardInputs:
    """Everything the card reports; nothing in it depends on when or where it was written."""

    frames: dict[str, pl.DataFrame]
    target: str
    label: LabelConfig
    split: str  # how the examples were split, in words
    time_split: bool  # whether the splits are periods of time rather than random draws
    card: CardConfig
    bundle: Bundle
    metrics: EvaluationResult
    slices: dict[str, dict[str, dict[str, float]]]
    min_slice_rows: int
    training: TrainMetrics | None


def _rate(frame: pl.DataFrame, target: str) -> float:
    return float(frame[target].cast(pl.Float64).to_numpy().mean())


def _f(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def model_card(inputs: CardInputs) -> str:
    """The card as Markdown."""
    sections = (_what_it_does, _data, _model, _test_metrics, _slices, _use_and_limitations)
    return "\n".join(line for section in sections for line in section(inputs))


def _what_it_does(inputs: CardInputs) -> list[str]:
    card, things, positive = inputs.card, inputs.card.examples, inputs.card.positive
    target, label = inputs.bundle.contract.target, inputs.label
    if target.classes is not None:
        answer = (
            f"The target `{inputs.target}` is {label.column}, one of {len(target.classes)} classes "
            f"({', '.join(target.classes)}). The model gives each class a probability and answers the most probable."
        )
    elif target.task == "regression":
        scale = (
            f" It learnt the {target.transform} of it; answers are on its own scale."
            if target.transform != "none"
            else ""
        )
        answer = f"The target `{inputs.target}` is the number {label.column}; the model estimates it.{scale}"
    else:
        answer = (
            f"The target `{inputs.target}` is true when {label.describe()}. {things.capitalize()} whose "
            f"probability reaches {_f(inputs.bundle.threshold or math.nan, 3)} are labelled {positive} (the "
            "threshold that maximises F1 on the validation split)."
        )
    return [
        f"# Model card: {card.title}",
        "",
        "## What it does",
        "",
        *([card.summary, ""] if card.summary else []),
        answer,
        "",
    ]


def _target_column(inputs: CardInputs) -> tuple[str, Callable[[pl.DataFrame], str]]:
    """The data table's last column for the task: its header, and what it says of a split."""
    target = inputs.bundle.contract.target
    if target.classes is not None:
        classes = target.classes

        def largest(frame: pl.DataFrame) -> str:
            counts = frame[inputs.target].value_counts(sort=True)
            return f"{classes[int(counts[inputs.target][0])]} {counts['count'][0] / max(frame.height, 1):.1%}"

        return "largest class", largest
    if target.task == "regression":
        return f"mean {inputs.target}", lambda frame: f"{_rate(frame, inputs.target):,.4g}"
    return inputs.card.positive, lambda frame: f"{_rate(frame, inputs.target):.1%}"


def _data(inputs: CardInputs) -> list[str]:
    header, describe = _target_column(inputs)
    dated = all(TIME in frame.columns for frame in inputs.frames.values())
    days_header, days_rule = ("| first day | last day ", "|---|---") if dated else ("", "")
    lines = [
        "## Data",
        "",
        f"Split: {inputs.split}.",
        "",
        f"| split {days_header}| {inputs.card.examples} | {header} |",
        f"|---{days_rule}|---:|---:|",
    ]
    for split, frame in inputs.frames.items():
        days = f"| {frame[TIME].dt.date().min()!s} | {frame[TIME].dt.date().max()!s} " if dated else ""
        lines.append(f"| {split} {days}| {frame.height:,} | {describe(frame)} |")
    return [
        *lines,
        "",
        "Preprocessing (vocabularies, scaling statistics) was fitted on the training split only; the model and its "
        "threshold were chosen on the validation split; the test split was used for this report alone.",
        "",
    ]


def _model(inputs: CardInputs) -> list[str]:
    args = inputs.bundle.args
    lines = [
        "## Model",
        "",
        f"{args.members} networks trained side by side and averaged, each with embeddings for "
        f"{len(args.cardinalities)} categorical inputs (sizes {args.embedding_dims}), {args.n_numeric} numeric "
        f"inputs (standardised, with missing-value indicators) and an MLP head with hidden layers {args.hidden} "
        f"(dropout {args.dropout}).",
    ]
    if inputs.training:
        t = inputs.training
        lines.append(
            f"Trained for {t.epochs_run} epochs; epoch {t.best_epoch} was kept "
            f"(validation {PRIMARY_METRICS[inputs.bundle.contract.target.task].title} {_f(t.valid_score)})."
        )
    return [*lines, ""]


def _test_metrics(inputs: CardInputs) -> list[str]:
    test, decision, task = inputs.metrics.test, inputs.metrics.decision, inputs.bundle.contract.target.task
    columns = TASK_COLUMNS[task]
    lines = [
        "## Test metrics against the baselines",
        "",
        "Baselines use the same inputs and their library defaults; LightGBM stops early on the validation split.",
        "",
        f"| model | {' | '.join(title for title, _ in columns)} |",
        f"|---|{'---:|' * len(columns)}",
    ]
    for name, scores in test.items():
        values = " | ".join(_f(getattr(scores, key)) for _, key in columns)
        lines.append(f"| {MODEL_NAMES.get(name, name)} | {values} |")
    lines.append("")
    if decision is not None:
        lines += [
            f"At the threshold: precision {_f(decision.precision, 3)}, recall {_f(decision.recall, 3)}, "
            f"F1 {_f(decision.f1, 3)} ({decision.tp:,} true and {decision.fp:,} false alarms, "
            f"{decision.fn:,} {inputs.card.positive} {inputs.card.examples} missed).",
            "",
        ]
    if inputs.metrics.per_class:
        lines += ["| class | share | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
        for name, r in inputs.metrics.per_class.items():
            lines.append(
                f"| {name} | {r['share']:.1%} | {_f(r['precision'], 3)} | {_f(r['recall'], 3)} | {_f(r['f1'], 3)} |"
            )
        lines.append("")
    return lines


def _slices(inputs: CardInputs) -> list[str]:
    things, positive, task = inputs.card.examples, inputs.card.positive, inputs.bundle.contract.target.task
    lines = ["## Slices", ""]
    for column, values in inputs.slices.items():
        if task == "binary":
            lines += [f"| {column} | {things} | {positive} | mean prediction | ROC AUC |", "|---|---:|---:|---:|---:|"]
        else:
            titles = [title for title, _ in TASK_COLUMNS[task][:2]]
            lines += [f"| {column} | {things} | {' | '.join(titles)} |", "|---|---:|---:|---:|"]
        for value, r in values.items():
            small = "" if r["rows"] >= inputs.min_slice_rows else " (small)"
            if task == "binary":
                lines.append(
                    f"| {value}{small} | {r['rows']:,} | {r['positive_rate']:.1%} | {r['mean_prediction']:.1%} | "
                    f"{_f(r['roc_auc'])} |"
                )
            else:
                shown = " | ".join(_f(r[key]) for _, key in TASK_COLUMNS[task][:2])
                lines.append(f"| {value}{small} | {r['rows']:,} | {shown} |")
        lines.append("")
    return lines


def _use_and_limitations(inputs: CardInputs) -> list[str]:
    card, things = inputs.card, inputs.card.examples
    use, shift = _use_and_shift(inputs)
    return [
        "## Intended use",
        "",
        card.intended_use
        or f"{use} *(A placeholder: `card.intended_use` in data.yaml says who uses the predictions.)*",
        "",
        "## Limitations",
        "",
        f"- {shift}",
        *(f"- {limitation}" for limitation in card.limitations),
        f"- Slices marked small have too few {things} for their metrics to be reliable.",
        "",
    ]


def _use_and_shift(inputs: CardInputs) -> tuple[str, str]:
    """The default intended use, and how the target moves between the validation and the test split."""
    things, positive, target = inputs.card.examples, inputs.card.positive, inputs.bundle.contract.target
    valid, test = inputs.frames["valid"], inputs.frames["test"]
    if target.classes is not None:
        _, describe = _target_column(inputs)
        return (
            f"Sorting {things} into {', '.join(target.classes)}, with the probability of each.",
            f"The largest class moves between splits ({describe(valid)} in the validation split, {describe(test)} in "
            "the test split); monitor the predicted class shares against the observed ones and retrain when they part.",
        )
    if target.task == "regression":
        return (
            f"Estimating {inputs.target} for {things}.",
            f"The mean {inputs.target} moves between splits ({_rate(valid, inputs.target):,.4g} in the validation "
            f"split, {_rate(test, inputs.target):,.4g} in the test split); estimates outside the range seen in "
            "training are extrapolations; monitor the error on the outcomes and retrain when it grows.",
        )
    rates = (
        f"{_rate(valid, inputs.target):.1%} in the validation split, {_rate(test, inputs.target):.1%} in the test split"
    )
    use = f"Ranking {things} by their probability of being {positive}."
    if not inputs.time_split:
        return (
            use,
            f"The splits are drawn from the same rows at random ({positive} {rates}): the test metrics hold for "
            f"{things} like those in the data; a shift in who or what arrives, or in the {positive} rate, is not "
            "measured here; monitor the mean prediction against the observed rate and retrain when they part.",
        )
    return (
        use,
        f"The {positive} rate moves between splits ({rates}): probabilities are well ranked but not calibrated to a "
        "new period; monitor the mean prediction against the observed rate and retrain when they part.",
    )
