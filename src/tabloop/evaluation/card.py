"""The model card: what the model is for, what it saw, how good it is against the baselines, and its limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import polars as pl

from tabloop.model.bundle import Bundle

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
    threshold_minutes: float
    bundle: Bundle
    metrics: dict[str, Any]
    slices: dict[str, dict[str, dict[str, float]]]
    min_slice_rows: int
    training: dict[str, Any] | None


def _rate(frame: pl.DataFrame, target: str) -> float:
    return float(frame[target].cast(pl.Float64).to_numpy().mean())


def _f(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}f}"


def model_card(inputs: CardInputs) -> str:
    """The card as Markdown."""
    m = inputs.metrics
    test, decision = m["test"], m["decision"]
    args = inputs.bundle.args
    lines = [
        "# Model card: late-arrival classifier for New York flights",
        "",
        "## What it does",
        "",
        f"Predicts, when a flight is scheduled, the probability that it arrives at least "
        f"{inputs.threshold_minutes:g} minutes late, from the schedule, carrier, route, aircraft and the weather at "
        f"the origin. Flights whose probability reaches {_f(inputs.bundle.threshold, 3)} are labelled late "
        "(the threshold that maximises F1 on the validation months).",
        "",
        "## Data",
        "",
        "| split | first day | last day | flights | late |",
        "|---|---|---|---:|---:|",
    ]
    for split, frame in inputs.frames.items():
        dates = frame["flight_date"]
        rate = _rate(frame, inputs.target)
        lines.append(f"| {split} | {dates.min()!s} | {dates.max()!s} | {frame.height:,} | {rate:.1%} |")
    lines += [
        "",
        "Preprocessing (vocabularies, scaling statistics) was fitted on the training split only; the model and its "
        "threshold were chosen on the validation split; the test split was used for this report alone.",
        "",
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
            f"Trained for {t['epochs_run']} epochs; epoch {t['best_epoch']} was kept "
            f"(validation ROC AUC {_f(t['valid_roc_auc'])})."
        )
    lines += [
        "",
        "## Test metrics against the baselines",
        "",
        "Baselines use the same inputs and their library defaults; LightGBM stops early on the validation months.",
        "",
        "| model | ROC AUC | PR AUC | log loss | Brier | calibration error |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, label in MODEL_NAMES.items():
        r = test[name]
        lines.append(
            f"| {label} | {_f(r['roc_auc'])} | {_f(r['pr_auc'])} | {_f(r['log_loss'])} | {_f(r['brier'])} | "
            f"{_f(r['ece'])} |"
        )
    lines += [
        "",
        f"At the threshold: precision {_f(decision['precision'], 3)}, recall {_f(decision['recall'], 3)}, "
        f"F1 {_f(decision['f1'], 3)} ({decision['tp']:,} true and {decision['fp']:,} false alarms, "
        f"{decision['fn']:,} late flights missed).",
        "",
        "## Slices",
        "",
    ]
    for column, values in inputs.slices.items():
        lines += [f"| {column} | flights | late | mean prediction | ROC AUC |", "|---|---:|---:|---:|---:|"]
        for value, r in values.items():
            small = "" if r["rows"] >= inputs.min_slice_rows else " (small)"
            lines.append(
                f"| {value}{small} | {r['rows']:,} | {r['positive_rate']:.1%} | {r['mean_prediction']:.1%} | "
                f"{_f(r['roc_auc'])} |"
            )
        lines.append("")
    valid_rate = _rate(inputs.frames["valid"], inputs.target)
    test_rate = test["pytorch"]["positive_rate"]
    lines += [
        "## Intended use",
        "",
        "Ranking and flagging scheduled departures from EWR, JFK and LGA by their risk of a late arrival, for "
        "planning buffers or alerting, with a person or a downstream rule making the final call. It is a "
        "reference implementation of a production ML pipeline, not an operational forecasting service.",
        "",
        "## Limitations",
        "",
        f"- The late rate moves between periods ({valid_rate:.1%} in the validation months, {test_rate:.1%} in the "
        "test months): probabilities are well ranked but not calibrated to a new period; monitor the mean "
        "prediction against the observed rate and retrain when they part.",
        "- Weather is the observation at the origin, standing in for the forecast a scheduler would have; with a "
        "real forecast the model will be somewhat worse.",
        "- Trained on one year (2013) of departures from three airports; holidays that do not occur in the "
        "training months (Thanksgiving, Christmas) are seen only through the distance to the nearest holiday.",
        "- Cancelled and diverted flights are not in the labels.",
        "- Slices marked small have too few flights for their metrics to be reliable.",
        "",
    ]
    return "\n".join(lines)
