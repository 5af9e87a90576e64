"""The model card: what the model is for, what it saw, how good it is against the baselines, and its limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from tabloop.config import CardConfig, LabelConfig
from tabloop.evaluation.metrics import EvaluationResult
from tabloop.records import PRIMARY_METRICS, TIME, TrainMetrics
from tabloop.runtime.bundle import Bundle

MODEL_NAMES = {
    "pytorch": "PyTorch network (this model)",
    "lightgbm": "LightGBM baseline",
    "logistic": "Logistic regression",
}


@dataclass(frozen=True)
class CardInputs:
    """Everything the card reports; nothing in it depends on when or where it was written."""

    frames: dict[str, pl.DataFrame]
    target: str
    label: LabelConfig
    split: str  # how the examples were split, in words
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
    return [
        f"# Model card: {card.title}",
        "",
        "## What it does",
        "",
        *([card.summary, ""] if card.summary else []),
        f"The target `{inputs.target}` is true when {inputs.label.describe()}. {things.capitalize()} whose "
        f"probability reaches {_f(inputs.bundle.threshold or math.nan, 3)} are labelled {positive} (the threshold that "
        "maximises "
        "F1 on the validation split).",
        "",
    ]


def _data(inputs: CardInputs) -> list[str]:
    lines = [
        "## Data",
        "",
        f"Split: {inputs.split}.",
        "",
        f"| split | first day | last day | {inputs.card.examples} | {inputs.card.positive} |",
        "|---|---|---|---:|---:|",
    ]
    for split, frame in inputs.frames.items():
        days = (
            [str(frame[TIME].dt.date().min()), str(frame[TIME].dt.date().max())] if TIME in frame.columns else ["-"] * 2
        )
        rate = _rate(frame, inputs.target)
        lines.append(f"| {split} | {days[0]} | {days[1]} | {frame.height:,} | {rate:.1%} |")
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
    test, decision = inputs.metrics.test, inputs.metrics.decision
    lines = [
        "## Test metrics against the baselines",
        "",
        "Baselines use the same inputs and their library defaults; LightGBM stops early on the validation split.",
        "",
        "| model | ROC AUC | PR AUC | log loss | Brier | calibration error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in MODEL_NAMES.items():
        r = test[name]
        lines.append(f"| {label} | {_f(r.roc_auc)} | {_f(r.pr_auc)} | {_f(r.log_loss)} | {_f(r.brier)} | {_f(r.ece)} |")
    return [
        *lines,
        "",
        f"At the threshold: precision {_f(decision.precision, 3)}, recall {_f(decision.recall, 3)}, "
        f"F1 {_f(decision.f1, 3)} ({decision.tp:,} true and {decision.fp:,} false alarms, "
        f"{decision.fn:,} {inputs.card.positive} {inputs.card.examples} missed).",
        "",
    ]


def _slices(inputs: CardInputs) -> list[str]:
    things, positive = inputs.card.examples, inputs.card.positive
    lines = ["## Slices", ""]
    for column, values in inputs.slices.items():
        lines += [f"| {column} | {things} | {positive} | mean prediction | ROC AUC |", "|---|---:|---:|---:|---:|"]
        for value, r in values.items():
            small = "" if r["rows"] >= inputs.min_slice_rows else " (small)"
            lines.append(
                f"| {value}{small} | {r['rows']:,} | {r['positive_rate']:.1%} | {r['mean_prediction']:.1%} | "
                f"{_f(r['roc_auc'])} |"
            )
        lines.append("")
    return lines


def _use_and_limitations(inputs: CardInputs) -> list[str]:
    card, things, positive = inputs.card, inputs.card.examples, inputs.card.positive
    valid_rate = _rate(inputs.frames["valid"], inputs.target)
    test_rate = inputs.metrics.test["pytorch"].positive_rate
    return [
        "## Intended use",
        "",
        card.intended_use or f"Ranking {things} by their probability of being {positive}.",
        "",
        "## Limitations",
        "",
        f"- The {positive} rate moves between splits ({valid_rate:.1%} in the validation split, {test_rate:.1%} in the "
        "test split): probabilities are well ranked but not calibrated to a new period; monitor the mean "
        "prediction against the observed rate and retrain when they part.",
        *(f"- {limitation}" for limitation in card.limitations),
        f"- Slices marked small have too few {things} for their metrics to be reliable.",
        "",
    ]
