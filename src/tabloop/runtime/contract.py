"""The data contract: what each source table and each model feature must look like.

Declared once in ``configs/<dataset>/data.yaml``. The validation schemas, the model's input encoding, the API's
request model and the drift report's column definitions are all derived from these classes. The module has no
heavy imports so that a model bundle can carry and re-read its contract anywhere.
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

DType = Literal["int8", "int16", "int32", "int64", "float32", "float64", "string", "bool", "datetime"]
INTEGER_DTYPES = frozenset({"int8", "int16", "int32", "int64"})
NUMERIC_DTYPES = INTEGER_DTYPES | {"float32", "float64"}


class StrictModel(BaseModel):
    """A config model that rejects unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ValueRules(StrictModel):
    """Rules on the values of one column: type, nullability, range, allowed values or pattern."""

    dtype: DType
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    values: list[str] | list[int] | None = None
    pattern: str | None = None

    @model_validator(mode="after")
    def _rules_fit_dtype(self) -> Self:
        numeric = self.dtype in NUMERIC_DTYPES
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to numeric dtypes, not {self.dtype}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.pattern is not None:
            if self.dtype != "string":
                raise ValueError(f"pattern applies to string dtype, not {self.dtype}")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {e}") from e
        if self.values is not None:
            if not self.values:
                raise ValueError("values must list at least one allowed value")
            wanted = str if self.dtype == "string" else int
            if self.dtype not in INTEGER_DTYPES | {"string"} or not all(isinstance(v, wanted) for v in self.values):
                raise ValueError(f"values must be {wanted.__name__}s matching dtype {self.dtype}")
        return self


class Reference(StrictModel):
    """A foreign key: values must exist in another table's column (or in ``also``)."""

    table: str
    column: str
    also: list[str] = Field(default_factory=list)


class ColumnSpec(ValueRules):
    """One column of a source table."""

    clock: bool = False
    references: Reference | None = None

    @model_validator(mode="after")
    def _clock_is_integer(self) -> Self:
        if self.clock and self.dtype not in INTEGER_DTYPES:
            raise ValueError("clock (HHMM time of day) applies to integer dtypes")
        return self


class TableSpec(StrictModel):
    """One source table: its unique key (if it has one) and its columns."""

    key: list[str] = Field(default_factory=list)
    columns: dict[str, ColumnSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _key_columns_declared(self) -> Self:
        missing = [k for k in self.key if k not in self.columns]
        if missing:
            raise ValueError(f"key column(s) {missing} are not declared under columns")
        return self


FeatureKind = Literal["categorical", "numeric", "cyclic"]


class FeatureSpec(ValueRules):
    """One model input feature, as a client would send it and as the features stage writes it."""

    kind: FeatureKind
    period: float | None = Field(default=None, gt=0)
    description: str = ""

    @model_validator(mode="after")
    def _kind_fits(self) -> Self:
        if self.kind in ("numeric", "cyclic") and self.dtype not in NUMERIC_DTYPES:
            raise ValueError(f"a {self.kind} feature needs a numeric dtype, not {self.dtype}")
        if self.kind == "categorical" and self.dtype not in INTEGER_DTYPES | {"string"}:
            raise ValueError(f"a categorical feature needs a string or integer dtype, not {self.dtype}")
        if (self.kind == "cyclic") != (self.period is not None):
            raise ValueError("period is required for cyclic features and only allowed for them")
        return self


TaskKind = Literal["binary", "multiclass", "regression"]
TargetTransform = Literal["none", "log1p"]


class TargetSpec(StrictModel):
    """What the model predicts: a binary label, one of several classes (in order), or a number.

    A binary target is written as before the task kinds existed (name and description only), so that a binary
    model trained now still loads where an older release serves it.
    """

    name: str = Field("label", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    task: TaskKind = "binary"
    classes: list[str] | None = Field(None, description="A multiclass target's classes; the model's output i is i.")
    transform: TargetTransform = Field("none", description="A regression target's transform for training.")

    @model_validator(mode="after")
    def _fits_task(self) -> Self:
        if (self.task == "multiclass") != (self.classes is not None):
            raise ValueError("classes are required for a multiclass target and only allowed for one")
        if self.classes is not None and (len(self.classes) < 3 or len(set(self.classes)) != len(self.classes)):
            raise ValueError(f"a multiclass target needs three or more distinct classes, not {self.classes}")
        if self.transform != "none" and self.task != "regression":
            raise ValueError(f"transform applies to a regression target, not a {self.task} one")
        return self

    @model_serializer(mode="wrap")
    def _binary_as_before(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        data: dict[str, object] = handler(self)
        if self.task == "binary":
            for key in ("task", "classes", "transform"):
                data.pop(key, None)
        return data

    @property
    def outputs(self) -> int:
        """How many numbers the network puts out per member: one per class for multiclass, else one."""
        return len(self.classes) if self.classes is not None else 1


# The fields of the API's predictions and feedback
RESERVED_NAMES = frozenset({"id", "probability", "probabilities", "outcome"})
# What a feature may not be called: those fields, the columns that the prediction log and monitoring keep beside
# the features (the answers, the outcome, the times), and the features stage's own columns
TAKEN_FEATURE_NAMES = RESERVED_NAMES | {
    "event_time",
    "label",
    "predicted_class",
    "value",
    "actual",
    "actual_class",
    "features",
    "_id",
    "_time",
    "_outcome",
    "_outcome_time",
    "_split",
}


class FeatureContract(StrictModel):
    """The model's inputs and target: the single source of truth for encoding, validation and serving."""

    entity: str = Field(
        "Row", pattern=r"^[A-Z][A-Za-z0-9]*$", description="The API's name for one example (e.g. Customer, Loan)."
    )
    title: str = Field("Predictions", min_length=1, description="The API's title.")
    description: str = Field("", description="What the API predicts, in a sentence or two.")
    features: dict[str, FeatureSpec] = Field(min_length=1)
    target: TargetSpec = Field(default_factory=TargetSpec)

    @model_validator(mode="after")
    def _names_free(self) -> Self:
        if self.target.name in RESERVED_NAMES:
            raise ValueError(f"target.name: {self.target.name!r} is taken by the API; pick another")
        if taken := sorted(set(self.features) & TAKEN_FEATURE_NAMES):
            raise ValueError(
                f"features: {', '.join(map(repr, taken))}: the API or the prediction log has a column of that name; "
                "rename it in the data, or derive it under another name in an adapter"
            )
        return self

    def of_kind(self, kind: FeatureKind) -> list[str]:
        """Names of the features of one kind, in declaration order."""
        return [name for name, spec in self.features.items() if spec.kind == kind]


def entity_words(entity: str, *, many: bool = False) -> str:
    """The contract's entity as words for prose: ``LoanApplication`` as "loan application", with ``many`` "loan
    applications" (English's regular plurals: "company" -> "companies", "box" -> "boxes")."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", entity).lower()
    if not many:
        return words
    if re.search(r"[^aeiou]y$", words):
        return words[:-1] + "ies"
    return words + ("es" if re.search(r"(s|x|z|ch|sh)$", words) else "s")
