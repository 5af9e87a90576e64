"""Fitted preprocessing: vocabularies with an out-of-vocabulary bucket, scaling statistics, missing indicators.

Fitted once, on the training split only, and stored as plain JSON next to the features; training and serving both
encode through :meth:`Preprocessor.transform`, so the two can never disagree. Only NumPy is needed to apply it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tabloop.runtime.contract import FeatureContract

PREPROCESSING_FILE = "preprocessing.json"
OOV = 0  # categories not in the vocabulary (unseen, or rarer than min_category_count)
MISSING = 1  # null categories
FIRST_INDEX = 2
FORMAT_VERSION = 1

Category = str | int
Column = Sequence[Any] | npt.NDArray[Any]


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoricalEncoding(_State):
    """Index ``FIRST_INDEX + i`` for ``vocabulary[i]``; OOV and MISSING for the rest."""

    name: str
    vocabulary: list[Category]

    @property
    def cardinality(self) -> int:
        """Number of distinct indices, buckets included."""
        return len(self.vocabulary) + FIRST_INDEX


class CrossEncoding(_State):
    """A categorical feature made of a pair of categorical features (e.g. the route: origin by destination)."""

    name: str
    of: tuple[str, str]
    vocabulary: list[tuple[Category, Category]]

    @property
    def cardinality(self) -> int:
        """Number of distinct indices, buckets included."""
        return len(self.vocabulary) + FIRST_INDEX


class NumericEncoding(_State):
    """``clip((transform(x) - mean) / std)``; missing values become 0 with an indicator column."""

    name: str
    transform: Literal["log1p"] | None = None
    mean: float
    std: float = Field(gt=0)
    missing_indicator: bool


class CyclicEncoding(_State):
    """``sin`` and ``cos`` of ``2π x / period``; missing values become (0, 0) with an indicator column."""

    name: str
    period: float = Field(gt=0)
    missing_indicator: bool


class FittedOn(_State):
    """What the statistics were computed from."""

    split: str
    rows: int
    start: str | None = None  # first and last day of the event time, where the dataset has one
    end: str | None = None


class Preprocessor(_State):
    """The fitted encoding of the contract's features into a categorical and a numeric matrix."""

    format_version: int = FORMAT_VERSION
    contract: FeatureContract
    categorical: list[CategoricalEncoding]
    crosses: list[CrossEncoding]
    numeric: list[NumericEncoding]
    cyclic: list[CyclicEncoding]
    clip: float = Field(gt=0)
    fitted_on: FittedOn

    _encoder: _Encoder = PrivateAttr()

    @property
    def cardinalities(self) -> list[int]:
        """Size of each column of the categorical matrix (categoricals, then crosses)."""
        return [e.cardinality for e in self.categorical] + [e.cardinality for e in self.crosses]

    @property
    def categorical_names(self) -> list[str]:
        """Names of the columns of the categorical matrix."""
        return [e.name for e in self.categorical] + [e.name for e in self.crosses]

    @property
    def numeric_names(self) -> list[str]:
        """Names of the columns of the numeric matrix."""
        names = [e.name for e in self.numeric]
        for e in self.cyclic:
            names += [f"{e.name}_sin", f"{e.name}_cos"]
        encodings: list[NumericEncoding | CyclicEncoding] = [*self.numeric, *self.cyclic]
        names += [f"{e.name}_missing" for e in encodings if e.missing_indicator]
        return names

    def __eq__(self, other: object) -> bool:
        """Equal when fitted alike; the lookup tables derived from the fitted state are not compared."""
        return isinstance(other, Preprocessor) and self.model_dump() == other.model_dump()

    __hash__ = _State.__hash__

    def model_post_init(self, _context: Any, /) -> None:
        """Build the encoder once, so that encoding a row is cheap."""
        self._encoder = _Encoder(self)

    def transform(self, columns: Mapping[str, Column]) -> EncodedBatch:
        """The encoded matrices for a batch given as columns (lists, arrays or Series) of contract features.

        The cost is a fixed number of array operations plus one dictionary lookup per category value, so one
        row (a request) and a whole split (training) go through the same code.
        """
        return self._encoder.encode(columns)

    def save(self, path: Path) -> None:
        """Write the fitted state as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Preprocessor:
        """The preprocessing saved at ``path``."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


class _Encoder:
    """The fitted state of a :class:`Preprocessor` as plain lookups and arrays, for fast encoding.

    Encoding costs a fixed number of NumPy calls (about fifteen) plus one dictionary lookup per category value,
    so one row (a request) and a whole split (training) go through the same code.
    """

    def __init__(self, p: Preprocessor) -> None:
        self.categorical: list[tuple[str, dict[Any, int]]] = [
            (e.name, {v: i + FIRST_INDEX for i, v in enumerate(e.vocabulary)}) for e in p.categorical
        ]
        self.crosses: list[tuple[tuple[str, str], dict[Any, int]]] = [
            (e.of, {tuple(v): i + FIRST_INDEX for i, v in enumerate(e.vocabulary)}) for e in p.crosses
        ]
        self.numbers = [e.name for e in p.numeric] + [e.name for e in p.cyclic]
        self.n_numeric = len(p.numeric)
        self.log1p = np.array([e.transform == "log1p" for e in p.numeric], dtype=bool)
        self.any_log1p = bool(self.log1p.any())
        self.mean = np.array([e.mean for e in p.numeric], dtype=np.float64)
        self.std = np.array([e.std for e in p.numeric], dtype=np.float64)
        self.clip = p.clip
        self.radians = np.array([2 * math.pi / e.period for e in p.cyclic], dtype=np.float64)
        self.indicators = np.array(
            [e.missing_indicator for e in p.numeric] + [e.missing_indicator for e in p.cyclic], dtype=bool
        )
        # The same constants as Python floats, for one row at a time.
        self.scalar_numeric = [(e.name, e.transform == "log1p", e.mean, e.std, e.missing_indicator) for e in p.numeric]
        self.scalar_cyclic = [(e.name, 2 * math.pi / e.period, e.missing_indicator) for e in p.cyclic]

    def encode(self, columns: Mapping[str, Column]) -> EncodedBatch:
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 1:
            return self.encode_one(columns)
        codes = [
            [MISSING if v is None else lookup.get(v, OOV) for v in columns[name]] for name, lookup in self.categorical
        ]
        codes += [
            [
                MISSING if x is None or y is None else lookup.get((x, y), OOV)
                for x, y in zip(columns[a], columns[b], strict=True)
            ]
            for (a, b), lookup in self.crosses
        ]
        categorical = np.array(codes, dtype=np.int64).reshape(len(codes), n).T.copy()

        values = _matrix(columns, self.numbers, n)  # numeric features, then cyclic ones; NaN where missing
        missing = np.isnan(values)
        numeric = values[:, : self.n_numeric]
        if self.any_log1p:
            numeric = np.where(self.log1p, np.log1p(np.maximum(numeric, 0.0)), numeric)
        scaled = (numeric - self.mean) / self.std
        np.minimum(scaled, self.clip, out=scaled)
        np.maximum(scaled, -self.clip, out=scaled)
        angles = values[:, self.n_numeric :] * self.radians
        sin_cos = np.empty((n, angles.shape[1], 2))  # name_sin, name_cos for each cyclic feature
        np.sin(angles, out=sin_cos[:, :, 0])
        np.cos(angles, out=sin_cos[:, :, 1])
        flags = missing[:, self.indicators]
        encoded = np.concatenate([scaled, sin_cos.reshape(n, -1), flags], axis=1, dtype=np.float32)
        np.copyto(encoded, 0.0, where=np.isnan(encoded))  # a missing number, or a missing angle's sin and cos, is 0
        return EncodedBatch(categorical=categorical, numeric=encoded)

    def encode_one(self, columns: Mapping[str, Column]) -> EncodedBatch:
        """:meth:`encode` for a single row in plain Python floats: the same arithmetic, without NumPy's
        per-call overhead, which dominates for one row (a typical request)."""
        codes = [
            MISSING if (v := columns[name][0]) is None else lookup.get(v, OOV) for name, lookup in self.categorical
        ]
        for (a, b), lookup in self.crosses:
            x, y = columns[a][0], columns[b][0]
            codes.append(MISSING if x is None or y is None else lookup.get((x, y), OOV))
        values: list[float] = []
        flags: list[float] = []
        clip = self.clip
        for name, log1p, mean, std, indicator in self.scalar_numeric:
            v = columns[name][0]
            if v is None or not math.isfinite(v):
                values.append(0.0)
                missing = 1.0
            else:
                x = math.log1p(max(float(v), 0.0)) if log1p else float(v)
                values.append(min(max((x - mean) / std, -clip), clip))
                missing = 0.0
            if indicator:
                flags.append(missing)
        for name, radians, indicator in self.scalar_cyclic:
            v = columns[name][0]
            if v is None or not math.isfinite(v):
                values += (0.0, 0.0)
                missing = 1.0
            else:
                angle = float(v) * radians
                values += (math.sin(angle), math.cos(angle))
                missing = 0.0
            if indicator:
                flags.append(missing)
        return EncodedBatch(
            categorical=np.array([codes], dtype=np.int64), numeric=np.array([values + flags], dtype=np.float32)
        )


@dataclass(frozen=True)
class EncodedBatch:
    """Model-ready inputs: category indices and standardised numbers, one row per example."""

    categorical: npt.NDArray[np.int64]
    numeric: npt.NDArray[np.float32]


def _matrix(columns: Mapping[str, Column], names: Sequence[str], n: int) -> npt.NDArray[np.float64]:
    """The named columns as an ``[n, len(names)]`` float matrix; nulls and non-finite numbers become NaN."""
    if not names:
        return np.empty((n, 0), dtype=np.float64)
    parts = [columns[name] for name in names]
    if all(isinstance(p, np.ndarray) for p in parts):
        matrix = np.column_stack(parts).astype(np.float64)
    else:  # lists from requests: one conversion of the whole table, None becoming NaN
        matrix = np.array(parts, dtype=np.float64).reshape(len(names), n).T.copy()
    np.copyto(matrix, np.nan, where=np.isinf(matrix))
    return matrix


def load_preprocessor(features_dir: Path) -> Preprocessor:
    """The preprocessing fitted by the features stage."""
    return Preprocessor.load(features_dir / PREPROCESSING_FILE)
