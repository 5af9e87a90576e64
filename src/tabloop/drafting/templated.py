"""Rendering a draft's ``train.yaml``, ``evaluate.yaml``, ``registry.yaml`` and ``monitor.yaml``: the templates
filled with the typed defaults, and what the task changes in them."""

from __future__ import annotations

import json
import string
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl

from tabloop.config import EvaluateConfig, PromotionGateConfig, TrainConfig, TuneConfig
from tabloop.config.monitor import GateConfig, ReplayConfig, ReportsConfig, RetrainConfig
from tabloop.config.tune import Param
from tabloop.drafting.profile import SPLIT_SHARES, Column, DraftedTimeSplit
from tabloop.drafting.request import DraftRequest
from tabloop.drafting.target import TargetDraft
from tabloop.drafting.yaml_text import q, yaml_value
from tabloop.records import PRIMARY_METRICS

LINEAR_BASELINE = {
    "binary": "the logistic-regression baseline",
    "multiclass": "the multinomial logistic-regression baseline",
    "regression": "the linear baseline: ridge regression, alpha = 1 / C",
}


def evaluate_yaml(columns: list[Column], task: str = "binary") -> str:
    """The drafted ``evaluate.yaml``: the defaults, and slices by up to two categorical features of few values."""
    few = [
        c.name for c in columns if c.role == "feature" and c.kind == "categorical" and c.values and len(c.values) <= 10
    ]
    slices = Verbatim(f"[{', '.join(q(n) for n in few[:2])}]")
    return _template("evaluate.yaml", c=EvaluateConfig(), slices=slices, linear=Verbatim(LINEAR_BASELINE[task]))


def train_yaml(task: str = "binary") -> str:
    """The drafted ``train.yaml``: the defaults (the decision threshold only for a binary model)."""
    config = TrainConfig()
    threshold = (
        f"threshold: {yaml_value(config.threshold)}                # the threshold maximising F1 on the validation "
        "split, or a number\n"
        if task == "binary"
        else ""
    )
    return _template("train.yaml", c=config, threshold=Verbatim(threshold))


def tune_yaml() -> str:
    """The drafted ``tune.yaml``: the default budget and search spaces, one parameter a line."""
    config = TuneConfig()

    def space(params: dict[str, Param]) -> Verbatim:
        # JSON's numbers, so that a float range reads back as floats (0.0, not 0: integers when both ends are)
        lines = [
            f"  {key}: "
            + "{"
            + ", ".join(f"{k}: {json.dumps(v)}" for k, v in param.model_dump(exclude_defaults=True).items())
            + "}"
            for key, param in params.items()
        ]
        return Verbatim("\n".join(lines))

    return _template("tune.yaml", c=config, network=space(config.network), lightgbm=space(config.lightgbm))


def tuned_yaml() -> str:
    """The drafted ``tuned.yaml``: nothing tuned yet."""
    return _template("tuned.yaml")


def registry_yaml(name: str, target: TargetDraft | None = None, values: pl.Series | None = None) -> str:
    """The drafted ``registry.yaml``: the defaults, the experiment and the model named after the dataset, the task's
    primary metric, and a quality bound that a model must beat even as the first one: a little better than chance
    for ROC AUC; for log loss, that of predicting each class's share; for RMSE, the target's spread (predicting
    its mean)."""
    task = target.task if target is not None else "binary"
    metric, gate = PRIMARY_METRICS[task].name, PromotionGateConfig()
    if task == "binary" or values is None:
        bound = (
            f"min_score: {yaml_value(FLOOR[metric])}            # a quality floor, even for the first model: better "
        )
        bound += "than chance; raise it to what is useful"
    elif task == "multiclass":
        shares = values.value_counts()["count"].to_numpy() / values.len()
        bound = f"max_score: {float(-(shares * np.log(shares)).sum()):.4f}         # a ceiling, even for the first "
        bound += "model: the log loss of predicting each class's share"
    else:
        spread = float(np.std(values.cast(pl.Float64).to_numpy(), ddof=1))
        bound = f"max_score: {spread:.4g}         # a ceiling, even for the "
        bound += "first model: the RMSE of predicting the mean"
        gate = gate.model_copy(  # in the target's units: a thousandth and a fiftieth of its spread
            update={
                "min_improvement": float(f"{spread / 1000:.2g}"),
                "max_slice_regression": float(f"{spread / 50:.2g}"),
            }
        )
    return _template(
        "registry.yaml",
        c=SimpleNamespace(gate=gate),
        name=Verbatim(name.replace("_", "-")),
        metric=Verbatim(metric),
        bound=Verbatim(bound),
    )


def monitor_yaml(
    request: DraftRequest,
    task: str = "binary",
    *,
    target: pl.Series | None = None,
    positive: Any = None,
    columns: list[Column] | None = None,
    split: DraftedTimeSplit | None = None,
) -> str:
    """The drafted ``monitor.yaml``: the defaults, sized to the data where it has no event time (a synthetic clock
    that spreads the replayed test rows over several weekly windows; retraining hold-outs with enough positives for
    the gate), the gate's quality rule of the task (ROC AUC lost, or log loss and RMSE grown) and up to four
    features whose drift the dashboard charts."""
    defaults = monitor_defaults()
    rows = target.len() if target is not None else 0
    replayed = int(rows * SPLIT_SHARES[2])  # a shuffled split's test share: what make replay sends
    if target is not None and rows:
        # a small test split still fills a window: a third of it, as the first calendar week may be short
        judged = min(defaults.reports.min_rows, max(MIN_JUDGED, replayed // 3))
        defaults.reports = defaults.reports.model_copy(update={"min_rows": judged, "min_labels": judged})
        interval = synthetic_interval(replayed, judged)
        first, last = split.test if split is not None else (None, None)
        span = (last - first).days * 86400 + 86400 if first and last else replayed * interval
        update = {"synthetic_interval_s": interval, "speedup": replay_speedup(span)}
        defaults.replay = defaults.replay.model_copy(update=update)
        held = held_out_rows(target, positive)
        defaults.retrain = defaults.retrain.model_copy(update={"evaluation_rows": held, "validation_rows": held})
    features = [c for c in columns or [] if c.role == "feature"]
    charted = [c.name for c in features if c.kind == "numeric"] + [c.name for c in features if c.kind != "numeric"]
    defaults.reports = defaults.reports.model_copy(update={"dashboard_features": charted[:4]})
    clock = "" if request.time else _template("monitor_clock.yaml", c=defaults, replayed=Verbatim(f"{replayed:,}"))
    gate = defaults.gate
    quality = (
        f"max_roc_auc_drop: {yaml_value(gate.max_roc_auc_drop)}      # ROC AUC below the reference's by more: alarm"
        if task == "binary"
        else f"max_error_increase: {yaml_value(gate.max_error_increase)}    # {PRIMARY_METRICS[task].title} above "
        "the reference's by this share: alarm"
    )
    return _template("monitor.yaml", c=defaults, clock=Verbatim(clock), quality=Verbatim(quality))


WEEK_S = 7 * 86400
MAX_WINDOWS = 8  # weekly windows a drafted replay spreads the test rows over, at most
NICE_INTERVALS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MIN_JUDGED = 30  # predictions a drafted window needs to be judged, at least: fewer tell no drift apart from noise
MIN_HELD_OUT = 100  # rows in each retraining hold-out, at least
HELD_OUT_MINORITY = 15  # of the rarer class in each hold-out: above the gate's min_test_positives


def synthetic_interval(replayed: int, min_rows: int = 100) -> float:
    """Seconds between replayed rows that spread ``replayed`` rows over as many weekly windows of at least
    ``min_rows`` (the rows a window needs to be judged) as they fill, from one to eight; a round number."""
    windows = max(1, min(MAX_WINDOWS, replayed // (min_rows + min_rows // 2)))
    wanted = windows * WEEK_S / max(replayed, 1)
    return float(min(NICE_INTERVALS_S, key=lambda s: abs(np.log(s / wanted))))


SPEEDUPS = (3600.0, 86400.0, 604800.0, 2592000.0)  # an hour, a day, a week, thirty days of traffic a second
MAX_REPLAY_S = 120  # a drafted replay sends the test split in about two minutes at most


def replay_speedup(span_s: float) -> float:
    """The slowest of an hour, a day, a week or thirty days a second that replays ``span_s`` seconds of traffic in
    two minutes at most (the fastest if none does)."""
    return next((s for s in SPEEDUPS if span_s / s <= MAX_REPLAY_S), SPEEDUPS[-1])


def held_out_rows(target: pl.Series, positive: Any) -> int:
    """Rows in each of retraining's hold-outs: 100, or enough for 15 of the rarer class of a binary target."""
    if positive is None:
        return MIN_HELD_OUT
    share = float((target.cast(pl.String) == str(positive)).cast(pl.Float64).mean() or 0.0)  # type: ignore[arg-type]
    rarer = min(share, 1 - share)
    return max(MIN_HELD_OUT, int(np.ceil(HELD_OUT_MINORITY / rarer))) if rarer > 0 else MIN_HELD_OUT


FLOOR = {"roc_auc": 0.55}  # a drafted gate's floor: a little better than chance (0.5)
UNUSED_PATH = Path()  # the dataset's paths are filled from its layout when loaded, never drafted


def monitor_defaults() -> SimpleNamespace:
    """The monitoring configuration's defaults, section by section (the dataset's paths are not defaults)."""
    return SimpleNamespace(
        replay=ReplayConfig(traffic=UNUSED_PATH, state=UNUSED_PATH),
        reports=ReportsConfig(
            log_url="", cache_dir=UNUSED_PATH, workspace=UNUSED_PATH, project="", out_dir=UNUSED_PATH
        ),
        gate=GateConfig(),
        retrain=RetrainConfig(),
    )


class Verbatim(str):
    """Text a template takes as it is (a list or a block already written as YAML)."""

    __slots__ = ()


class _YamlFields(string.Formatter):
    """Fills ``{c.section.key}`` fields with the value written as YAML 1.2 reads it back."""

    def format_field(self, value: Any, format_spec: str) -> str:  # noqa: ARG002 - every field is YAML as it is
        return str(value) if isinstance(value, Verbatim) else yaml_value(value)


def _template(file_name: str, /, **fields: Any) -> str:
    text = (resources.files("tabloop.drafting") / "templates" / file_name).read_text(encoding="utf-8")
    return _YamlFields().format(text, **fields)
