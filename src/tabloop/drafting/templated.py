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
from tabloop.drafting.profile import Column
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


def monitor_yaml(request: DraftRequest, task: str = "binary") -> str:
    """The drafted ``monitor.yaml``: the defaults, with the replay's synthetic clock where there is no event time,
    and the gate's quality rule of the task (ROC AUC lost, or log loss and RMSE grown)."""
    defaults = monitor_defaults()
    clock = "" if request.time else _template("monitor_clock.yaml", c=defaults)
    gate = defaults.gate
    quality = (
        f"max_roc_auc_drop: {yaml_value(gate.max_roc_auc_drop)}      # ROC AUC below the reference's by more: alarm"
        if task == "binary"
        else f"max_error_increase: {yaml_value(gate.max_error_increase)}    # {PRIMARY_METRICS[task].title} above "
        "the reference's by this share: alarm"
    )
    return _template("monitor.yaml", c=defaults, clock=Verbatim(clock), quality=Verbatim(quality))


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
