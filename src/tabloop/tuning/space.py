"""A search space checked before anything trains, and sampled by an Optuna trial.

A network parameter is a dotted key of ``train.yaml``; every value a search may reach (a range's ends, each
choice) is laid over the user's ``train.yaml`` and validated as the training configuration, so an unknown key or a
value training would refuse is a one-line error naming the key before the first trial, not a failed study.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import optuna

from tabloop.config import TrainConfig, parse_config
from tabloop.config.tune import Choices, Param, Range, nested, overlay
from tabloop.errors import ConfigError

# Keys a search may not set: they choose where and how training runs, or (the seed) would tune luck on the
# validation split instead of the model.
NOT_SEARCHED = ("seed", "device", "threads", "distributed", "training.eval_batch_size")


def reachable(param: Param) -> list[Any]:
    """The values of ``param`` that bound what a search can sample: a range's ends, or every choice."""
    return [param.low, param.high] if isinstance(param, Range) else list(param.choices)


def check_network_space(space: Mapping[str, Param], train: Mapping[str, Any], origin: str) -> None:
    """A ConfigError naming the first key of ``space`` that training would refuse at a value it can reach."""
    for key, param in space.items():
        if key.split(".")[0] in NOT_SEARCHED or key in NOT_SEARCHED:
            raise ConfigError(f"{origin}: network.{key}: not searched (it sets where training runs, or its luck)")
        for value in reachable(param):
            try:
                parse_config(TrainConfig, overlay(train, nested({key: value})), "train.yaml")
            except ConfigError as e:
                reason = str(e).splitlines()[-1].strip()
                raise ConfigError(f"{origin}: network.{key}: {value!r} is refused by train.yaml ({reason})") from e


def starting_point(space: Mapping[str, Param], values: Mapping[str, Any]) -> dict[str, Any]:
    """What the first trial tries, so that a search never ends worse than where it started: the value each key
    has now (``values``, dotted), brought into its range; a choice the space does not list is left to sampling.
    Values travel as :func:`suggest` hands them to Optuna."""
    start: dict[str, Any] = {}
    for key, param in space.items():
        if key not in values:
            continue
        value = values[key]
        if isinstance(param, Choices):
            if value in param.choices:
                start[key] = json.dumps(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            start[key] = min(max(value, param.low), param.high)
    return start


def suggest(trial: optuna.Trial, space: Mapping[str, Param]) -> dict[str, Any]:
    """One value per key of ``space``, sampled by ``trial`` (choices travel through Optuna as JSON text, since a
    list of layer sizes is not one of the values it stores; numbers are kept to four significant digits)."""
    values: dict[str, Any] = {}
    for key, param in space.items():
        if isinstance(param, Choices):
            values[key] = json.loads(trial.suggest_categorical(key, [json.dumps(c) for c in param.choices]))
        elif param.integer:
            values[key] = trial.suggest_int(key, int(param.low), int(param.high), log=param.log)
        else:  # four significant digits: what tuned.yaml says is exactly what the trial trained with
            sampled = trial.suggest_float(key, float(param.low), float(param.high), log=param.log)
            values[key] = float(f"{sampled:.4g}")
    return values
