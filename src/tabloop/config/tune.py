"""Tuning: the search spaces and budget of ``make tune`` (``tune.yaml``), and what it found (``tuned.yaml``).

``tune.yaml`` is the user's: which keys of ``train.yaml`` and which LightGBM parameters to search, and over what.
``tuned.yaml`` is the tuner's: it writes the best trial of each study there and nowhere else, so the user's files
are never rewritten. The train stage lays ``tuned.yaml``'s ``network`` over ``train.yaml``; the evaluate stage
reports LightGBM with ``tuned.yaml``'s ``lightgbm`` beside its defaults. Both are DVC parameters of those stages,
so ``dvc params diff`` shows what a tuning changed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import Discriminator, Field, Tag, model_validator

from tabloop.runtime.contract import StrictModel

Scalar = bool | int | float | str
ParamValue = Scalar | list[int] | list[Scalar]

# LightGBM parameters a search may set, with what each must be: the learning parameters of its documentation that
# change the model, not the ones that change the objective, the metric or how it runs.
LIGHTGBM_PARAMETERS: dict[str, str] = {
    "learning_rate": "a number above 0",
    "num_leaves": "an integer from 2 to 131072",
    "max_depth": "an integer (-1: no limit)",
    "min_child_samples": "an integer of at least 0",
    "min_sum_hessian_in_leaf": "a number of at least 0",
    "feature_fraction": "a number in (0, 1]",
    "bagging_fraction": "a number in (0, 1] (bagging_freq is set to 1 when it is below 1)",
    "lambda_l1": "a number of at least 0",
    "lambda_l2": "a number of at least 0",
    "min_split_gain": "a number of at least 0",
    "max_bin": "an integer above 1",
    "cat_smooth": "a number of at least 0",
    "cat_l2": "a number of at least 0",
    "min_data_per_group": "an integer above 0",
    "max_cat_threshold": "an integer above 0",
    "path_smooth": "a number of at least 0",
    "extra_trees": "true or false",
}
# LightGBM's own defaults (its documentation's), where a search starts.
LIGHTGBM_DEFAULTS: dict[str, bool | int | float] = {
    "learning_rate": 0.1,
    "num_leaves": 31,
    "max_depth": -1,
    "min_child_samples": 20,
    "min_sum_hessian_in_leaf": 1e-3,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "lambda_l1": 0.0,
    "lambda_l2": 0.0,
    "min_split_gain": 0.0,
    "max_bin": 255,
    "cat_smooth": 10.0,
    "cat_l2": 10.0,
    "min_data_per_group": 100,
    "max_cat_threshold": 32,
    "path_smooth": 0.0,
    "extra_trees": False,
}
LIGHTGBM_BOUNDS: dict[str, tuple[float, float]] = {
    "learning_rate": (1e-9, math.inf),
    "num_leaves": (2, 131072),
    "max_depth": (-1, math.inf),
    "min_child_samples": (0, math.inf),
    "min_sum_hessian_in_leaf": (0, math.inf),
    "feature_fraction": (1e-9, 1),
    "bagging_fraction": (1e-9, 1),
    "lambda_l1": (0, math.inf),
    "lambda_l2": (0, math.inf),
    "min_split_gain": (0, math.inf),
    "max_bin": (2, math.inf),
    "cat_smooth": (0, math.inf),
    "cat_l2": (0, math.inf),
    "min_data_per_group": (1, math.inf),
    "max_cat_threshold": (1, math.inf),
    "path_smooth": (0, math.inf),
}


class Range(StrictModel):
    """Numbers from ``low`` to ``high``; integers when both are written as integers; ``log``: sampled on a log
    scale (for a learning rate or a penalty)."""

    low: float | int
    high: float | int
    log: bool = False

    @property
    def integer(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}: the range is empty")
        if self.log and self.low <= 0:
            raise ValueError(f"a log scale needs low above 0, not {self.low}")
        return self


class Choices(StrictModel):
    """One of a list of values (sizes of the hidden layers, a kind of embedding, ``auto``)."""

    choices: list[ParamValue] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len({repr(c) for c in self.choices}) < len(self.choices):
            raise ValueError("the same choice is listed twice")
        return self


def _param_kind(value: Any) -> str:
    """Which kind of search a parameter's mapping is (so an error names only what is wrong with that kind)."""
    if isinstance(value, Mapping):
        return "Choices" if "choices" in value else "Range"
    return "Choices" if isinstance(value, Choices) else "Range"


PARAM_KINDS = ("Range", "Choices")  # the tags below; config/loading.py leaves them out of the keys it names
Param = Annotated[Annotated[Range, Tag("Range")] | Annotated[Choices, Tag("Choices")], Discriminator(_param_kind)]


class Budget(StrictModel):
    """What each model's study may spend: at most ``trials`` trials and ``minutes`` minutes, whichever ends first.
    The network and LightGBM get the same budget."""

    trials: int = Field(30, ge=1)
    minutes: float = Field(10.0, gt=0)


def _network_space() -> dict[str, Param]:
    return {
        "optimizer.lr": Range(low=2e-4, high=5e-3, log=True),
        "optimizer.weight_decay": Range(low=1e-5, high=0.1, log=True),
        "model.dropout": Range(low=0.0, high=0.5),
        "model.hidden": Choices(choices=[[64], [128], [256], [128, 128], [256, 256]]),
        "model.numeric_embedding": Choices(choices=["periodic", "none"]),
        "model.frequency_scale": Range(low=0.01, high=3.0, log=True),
        "model.numeric_dim": Choices(choices=[4, 8, 16]),
        "model.raw_numbers": Choices(choices=[False, True]),
        "model.linear": Choices(choices=[False, True]),
    }


def _lightgbm_space() -> dict[str, Param]:
    return {
        "learning_rate": Range(low=0.005, high=0.2, log=True),
        "num_leaves": Range(low=4, high=256, log=True),
        "min_child_samples": Range(low=2, high=200, log=True),
        "feature_fraction": Range(low=0.4, high=1.0),
        "bagging_fraction": Range(low=0.4, high=1.0),
        "lambda_l2": Range(low=1e-6, high=10.0, log=True),
    }


class TuneConfig(StrictModel):
    """``configs/<name>/tune.yaml``: the seed, the budget, and each model's search space (dotted keys of
    ``train.yaml`` for the network; LightGBM parameter names)."""

    seed: int = Field(0, ge=0)
    budget: Budget = Budget()
    network: dict[str, Param] = Field(default_factory=_network_space)
    lightgbm: dict[str, Param] = Field(default_factory=_lightgbm_space)

    @model_validator(mode="after")
    def _known(self) -> Self:
        for model in ("network", "lightgbm"):
            if not getattr(self, model):
                raise ValueError(f"{model}: the search space is empty; give at least one parameter to search")
        for name, param in self.lightgbm.items():
            if name not in LIGHTGBM_PARAMETERS:
                close = difflib.get_close_matches(name, LIGHTGBM_PARAMETERS, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; known: {', '.join(LIGHTGBM_PARAMETERS)}"
                raise ValueError(f"lightgbm.{name}: not a LightGBM parameter tune can search{hint}")
            problem = _lightgbm_bounds_problem(name, param)
            if problem:
                raise ValueError(f"lightgbm.{name}: {problem}")
        return self


def _lightgbm_bounds_problem(name: str, param: Param) -> str | None:
    """What makes a LightGBM parameter's search reach a value LightGBM refuses."""
    low, high = LIGHTGBM_BOUNDS.get(name, (-math.inf, math.inf))
    values: list[Any] = [param.low, param.high] if isinstance(param, Range) else list(param.choices)
    if name == "extra_trees":
        return None if all(isinstance(v, bool) for v in values) else "must be true or false"
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            return f"{value!r} is out of bounds: it must be {LIGHTGBM_PARAMETERS[name]}"
    return None


class TunedConfig(StrictModel):
    """``configs/<name>/tuned.yaml``: the best parameters ``make tune`` found (empty until it has run)."""

    network: dict[str, Any] = Field(default_factory=dict)  # nested like train.yaml; laid over it
    lightgbm: dict[str, Annotated[Scalar, Field()]] = Field(default_factory=dict)


def overlay(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys laid on it, mapping by mapping (lists and values replaced whole)."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = overlay(below, value) if isinstance(value, Mapping) and isinstance(below, Mapping) else value
    return merged


def nested(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` as ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


Model = Literal["network", "lightgbm"]
