"""Typed pipeline configuration, loaded once from ``configs/<name>/*.yaml`` at an entry point and passed down.

One module per file a user edits (:mod:`~tabloop.config.data`, :mod:`~tabloop.config.train`,
:mod:`~tabloop.config.evaluate`, :mod:`~tabloop.config.registry`); :mod:`~tabloop.config.loading` reads YAML into
them with errors that name the key. The defaults declared there are the only ones: ``make init`` drafts them.

Pipeline parameters live in YAML files that DVC tracks (``params`` of each stage), so they are deliberately not
overridable from the environment: a run is reproducible from the files alone. Process settings that may come from
the environment live in :mod:`tabloop.settings`.
"""

from __future__ import annotations

import json
from pathlib import Path

from tabloop.config.data import (
    SPLIT_KINDS,
    SPLITS,
    Arrived,
    CardConfig,
    DataConfig,
    EntityConfig,
    Fractions,
    GroupSplit,
    LabelConfig,
    Period,
    PreprocessingConfig,
    RandomSplit,
    ShuffledSplit,
    SourceConfig,
    SplitConfig,
    TimeSplit,
    ValidationConfig,
)
from tabloop.config.evaluate import EvaluateConfig, LightGBMConfig, LogisticConfig
from tabloop.config.loading import format_validation_error, load_yaml, parse_config
from tabloop.config.registry import PromotionGateConfig, RegistryConfig
from tabloop.config.train import DistributedConfig, LoopConfig, ModelConfig, OptimizerConfig, TrainConfig
from tabloop.config.tune import TuneConfig, TunedConfig, flat, overlay
from tabloop.errors import ConfigError

__all__ = [
    "RETRAINED_FILE",
    "SPLITS",
    "SPLIT_KINDS",
    "Arrived",
    "CardConfig",
    "DataConfig",
    "DistributedConfig",
    "EntityConfig",
    "EvaluateConfig",
    "Fractions",
    "GroupSplit",
    "LabelConfig",
    "LightGBMConfig",
    "LogisticConfig",
    "LoopConfig",
    "ModelConfig",
    "OptimizerConfig",
    "Period",
    "PreprocessingConfig",
    "PromotionGateConfig",
    "RandomSplit",
    "RegistryConfig",
    "ShuffledSplit",
    "SourceConfig",
    "SplitConfig",
    "TimeSplit",
    "TrainConfig",
    "TuneConfig",
    "TunedConfig",
    "ValidationConfig",
    "format_validation_error",
    "load_data_config",
    "load_evaluate_config",
    "load_registry_config",
    "load_train_config",
    "load_tune_config",
    "load_tuned_config",
    "load_yaml",
    "parse_config",
    "retrained_yaml",
    "tuned_overrides",
]


RETRAINED_FILE = "retrained.yaml"  # beside data.yaml: the split of the last retraining the gate promoted


def load_data_config(path: Path) -> DataConfig:
    """The data configuration at ``path``, with the split ``make retrain`` moved (``retrained.yaml`` beside it,
    when present) laid over its own, validated."""
    data, origin = load_yaml(path), str(path)
    retrained = path.with_name(RETRAINED_FILE)
    moved = retrained_split(retrained) if retrained.is_file() else {}
    if moved:
        data, origin = overlay(data, {"split": moved}), f"{path} with {retrained}"
    return parse_config(DataConfig, data, origin)


def retrained_yaml(split: dict[str, dict[str, object]] | None = None) -> str:
    """The text of a ``retrained.yaml`` holding ``split`` (sections of flat values), or nothing moved yet."""
    lines = [
        "# Written by `make retrain`, not by hand: the split of the last retraining the gate promoted, laid over",
        "# data.yaml's split (a time split's periods, or the production rows whose outcomes have arrived). A rejected",
        "# retraining leaves this file, dvc.lock and the outputs as they were. To train on data.yaml's split alone",
        "# again, set `split: {}` and run make train.",
    ]
    if not split:
        return "\n".join([*lines, "split: {}", ""])
    lines.append("split:")
    for name, values in split.items():
        shown = ", ".join(f"{key}: {json.dumps(value)}" for key, value in values.items())
        lines.append(f"  {name}: {{{shown}}}")
    return "\n".join([*lines, ""])


def retrained_split(path: Path) -> dict[str, object]:
    """The ``split`` keys of a ``retrained.yaml``; a ConfigError naming the file for anything else in it."""
    data = load_yaml(path)
    unknown = sorted(set(data) - {"split"})
    split = data.get("split") or {}
    if unknown or not isinstance(split, dict):
        raise ConfigError(
            f"{path}: make retrain writes only a split mapping here ({', '.join(unknown) or 'split'} is not one); "
            "put your own settings in data.yaml"
        )
    return split


def load_train_config(path: Path, tuned: Path | None = None) -> TrainConfig:
    """The training configuration at ``path``, with the network parameters of ``tuned`` (``tuned.yaml``, when
    given and present) laid over it, validated."""
    data, origin = load_yaml(path), str(path)
    if tuned is not None and tuned.is_file():
        data, origin = overlay(data, load_tuned_config(tuned).network), f"{path} with {tuned}"
    return parse_config(TrainConfig, data, origin)


def tuned_overrides(own: TrainConfig, tuned: TrainConfig) -> dict[str, tuple[object, object]]:
    """The keys whose value ``tuned.yaml`` changed: dotted key to (train.yaml's value, the tuned one)."""
    mine, theirs = flat(own.model_dump(mode="json")), flat(tuned.model_dump(mode="json"))
    return {key: (mine[key], value) for key, value in theirs.items() if mine.get(key) != value}


def load_tune_config(path: Path) -> TuneConfig:
    """The tuning configuration at ``path`` (the defaults when there is no file), validated."""
    return parse_config(TuneConfig, load_yaml(path) if path.is_file() else {}, str(path))


def load_tuned_config(path: Path) -> TunedConfig:
    """What ``make tune`` found, at ``path`` (nothing when there is no file), validated."""
    return parse_config(TunedConfig, load_yaml(path) if path.is_file() else {}, str(path))


def load_evaluate_config(path: Path) -> EvaluateConfig:
    """The evaluation configuration at ``path``, validated."""
    return parse_config(EvaluateConfig, load_yaml(path), str(path))


def load_registry_config(path: Path) -> RegistryConfig:
    """The registry configuration at ``path``, validated."""
    return parse_config(RegistryConfig, load_yaml(path), str(path))
