"""Typed pipeline configuration, loaded once from ``configs/*.yaml`` at an entry point and passed down.

Pipeline parameters live in YAML files that DVC tracks (``params`` of each stage), so they are deliberately not
overridable from the environment: a run is reproducible from the files alone. Process settings that may come from
the environment live in :mod:`tabloop.settings`.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator
from ruamel.yaml.error import YAMLError

from tabloop.contract import FeatureContract, StrictModel, TableSpec
from tabloop.errors import ConfigError
from tabloop.io import parse_yaml

REQUIRED_TABLES = ("flights", "weather", "planes", "airports")
SPLITS = ("train", "valid", "test")


class SourceConfig(StrictModel):
    """Where the source tables come from."""

    dir: Path | None = None
    null_values: list[str] = Field(default_factory=lambda: ["NA", ""])


class LabelConfig(StrictModel):
    """How the binary target is derived from the arrival delay."""

    delay_column: str = "arr_delay"
    threshold_minutes: float = Field(15, ge=0, le=24 * 60)
    unlabelled: Literal["drop", "late"] = "drop"


class Period(StrictModel):
    """An inclusive range of local scheduled departure dates."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self


class SplitConfig(StrictModel):
    """The temporal split: train, then validation, then test, without overlap."""

    train: Period
    valid: Period
    test: Period

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.train.end < self.valid.start:
            raise ValueError(f"valid.start ({self.valid.start}) must be after train.end ({self.train.end})")
        if not self.valid.end < self.test.start:
            raise ValueError(f"test.start ({self.test.start}) must be after valid.end ({self.valid.end})")
        return self

    def periods(self) -> dict[str, Period]:
        """The three periods by split name, in time order."""
        return {"train": self.train, "valid": self.valid, "test": self.test}


class ValidationConfig(StrictModel):
    """How strict the validate stage is."""

    max_rejected_share: float = Field(0.01, ge=0, le=1)
    examples_per_rule: int = Field(5, ge=0, le=100)


class PreprocessingConfig(StrictModel):
    """How the features are encoded; fitted on the training split only."""

    min_category_count: int = Field(10, ge=1)
    transforms: dict[str, Literal["log1p"]] = Field(default_factory=dict)
    crosses: list[tuple[str, str]] = Field(default_factory=list)
    clip: float = Field(5.0, gt=0)


class DataConfig(StrictModel):
    """Everything the data stages need: ``configs/data.yaml``."""

    source: SourceConfig = SourceConfig()
    label: LabelConfig = LabelConfig()
    split: SplitConfig
    validation: ValidationConfig = ValidationConfig()
    tables: dict[str, TableSpec]
    contract: FeatureContract
    preprocessing: PreprocessingConfig = PreprocessingConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        missing = [t for t in REQUIRED_TABLES if t not in self.tables]
        if missing:
            raise ValueError(f"tables: missing required table(s) {missing}")
        for table, spec in self.tables.items():
            for column, col in spec.columns.items():
                ref = col.references
                if ref is None:
                    continue
                where = f"tables.{table}.columns.{column}.references"
                if ref.table not in self.tables:
                    raise ValueError(f"{where}: unknown table {ref.table!r}")
                if ref.column not in self.tables[ref.table].columns:
                    raise ValueError(f"{where}: table {ref.table!r} has no column {ref.column!r}")
        if self.label.delay_column not in self.tables["flights"].columns:
            raise ValueError(f"label.delay_column: flights has no column {self.label.delay_column!r}")
        features = self.contract.features
        for name in self.preprocessing.transforms:
            if name not in features or features[name].kind != "numeric":
                raise ValueError(f"preprocessing.transforms.{name}: not a numeric feature of the contract")
        for pair in self.preprocessing.crosses:
            for name in pair:
                if name not in features or features[name].kind != "categorical":
                    raise ValueError(f"preprocessing.crosses: {name!r} is not a categorical feature")
        return self


class ModelConfig(StrictModel):
    """Sizes of the network."""

    members: int = Field(3, ge=1, le=32)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [64])
    dropout: float = Field(0.3, ge=0, lt=1)
    embedding_scale: float = Field(0.5, gt=0)
    max_embedding_dim: int = Field(32, ge=1)


class OptimizerConfig(StrictModel):
    """AdamW settings."""

    lr: float = Field(1e-3, gt=0, le=1)
    weight_decay: float = Field(0.01, ge=0)


class LoopConfig(StrictModel):
    """Batching and stopping."""

    batch_size: int = Field(1024, ge=1)
    max_epochs: int = Field(40, ge=1)
    patience: int = Field(4, ge=1)
    eval_batch_size: int = Field(65536, ge=1)


class TrainConfig(StrictModel):
    """Everything the train stage needs: ``configs/train.yaml``."""

    seed: int = Field(42, ge=0)
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    threads: int = Field(0, ge=0)
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    training: LoopConfig = LoopConfig()
    threshold: Literal["f1"] | Annotated[float, Field(gt=0, lt=1)] = "f1"


class LightGBMConfig(StrictModel):
    """The LightGBM baseline: library defaults, early stopping on the validation months."""

    max_rounds: int = Field(5000, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)


class LogisticConfig(StrictModel):
    """The logistic-regression baseline."""

    C: float = Field(1.0, gt=0)
    max_iter: int = Field(2000, ge=1)


class EvaluateConfig(StrictModel):
    """Everything the evaluate stage needs: ``configs/evaluate.yaml``."""

    seed: int = Field(0, ge=0)
    lightgbm: LightGBMConfig = LightGBMConfig()
    logistic: LogisticConfig = LogisticConfig()
    slices: list[str] = Field(default_factory=lambda: ["origin", "carrier"])
    min_slice_rows: int = Field(500, ge=1)
    calibration_bins: int = Field(10, ge=2, le=100)
    curve_points: int = Field(200, ge=10, le=100_000)


class GateConfig(StrictModel):
    """When a challenger replaces the champion."""

    metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    min_improvement: float = Field(0.001, ge=-1, le=1)
    max_slice_regression: float = Field(0.02, ge=0, le=1)
    min_slice_rows: int = Field(1000, ge=1)


class RegistryConfig(StrictModel):
    """The MLflow experiment, the registered model and its promotion gate: ``configs/registry.yaml``."""

    experiment: str = Field("flight-delay", min_length=1)
    model_name: str = Field("flight-delay", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    gate: GateConfig = GateConfig()


M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path) -> dict[str, Any]:
    """The mapping at the top of a YAML file, or a ConfigError saying why there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: configuration file not found") from e
    try:
        data = parse_yaml(text)
    except YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return data


def parse_config(model: type[M], data: dict[str, Any], origin: str) -> M:
    """``data`` validated as ``model``; errors name each offending key as a dotted path."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, origin)) from e


def format_validation_error(error: ValidationError, origin: str) -> str:
    """One line per problem, each naming the key path, for a human reading a config file."""
    lines = [f"{origin}: invalid configuration"]
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"] if not _is_union_tag(part))
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (not part of the configuration schema; check its spelling)"
        lines.append(f"  {key}: {message}" if key else f"  {message}")
    return "\n".join(lines)


def _is_union_tag(part: int | str) -> bool:
    # pydantic inserts the chosen union member (e.g. "list[str]") into error locations; users never wrote those.
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def load_data_config(path: Path) -> DataConfig:
    """The data configuration at ``path``, validated."""
    return parse_config(DataConfig, load_yaml(path), str(path))


def load_train_config(path: Path) -> TrainConfig:
    """The training configuration at ``path``, validated."""
    return parse_config(TrainConfig, load_yaml(path), str(path))


def load_evaluate_config(path: Path) -> EvaluateConfig:
    """The evaluation configuration at ``path``, validated."""
    return parse_config(EvaluateConfig, load_yaml(path), str(path))


def load_registry_config(path: Path) -> RegistryConfig:
    """The registry configuration at ``path``, validated."""
    return parse_config(RegistryConfig, load_yaml(path), str(path))
