"""Fitting the preprocessing on the training split; applying it is :mod:`tabloop.runtime.preprocessing`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from tabloop.config import PreprocessingConfig
from tabloop.runtime.contract import FeatureContract
from tabloop.runtime.preprocessing import (
    CategoricalEncoding,
    Column,
    CrossEncoding,
    CyclicEncoding,
    FittedOn,
    NumericEncoding,
    Preprocessor,
)


def fit_preprocessor(
    columns: Mapping[str, Column],
    contract: FeatureContract,
    config: PreprocessingConfig,
    fitted_on: FittedOn,
) -> Preprocessor:
    """Preprocessing fitted on ``columns`` (the training split only)."""
    categorical = [
        CategoricalEncoding(name=name, vocabulary=_vocabulary(columns[name], config.min_category_count))
        for name in contract.of_kind("categorical")
    ]
    crosses = [
        CrossEncoding(
            name=f"{a}_x_{b}",
            of=(a, b),
            vocabulary=_vocabulary(
                [
                    (x, y) if x is not None and y is not None else None
                    for x, y in zip(columns[a], columns[b], strict=True)
                ],
                config.min_category_count,
            ),
        )
        for a, b in config.crosses
    ]
    numeric = []
    for name in contract.of_kind("numeric"):
        transform = config.transforms.get(name)
        values = _apply_transform(_floats(columns[name]), transform)
        present = values[~np.isnan(values)]
        mean = float(present.mean()) if present.size else 0.0
        std = float(present.std()) if present.size else 1.0
        numeric.append(
            NumericEncoding(
                name=name,
                transform=transform,
                mean=mean,
                std=std if std > 1e-12 else 1.0,
                missing_indicator=contract.features[name].nullable,
            )
        )
    cyclic = [
        CyclicEncoding(
            name=name,
            period=float(contract.features[name].period or 1.0),
            missing_indicator=contract.features[name].nullable,
        )
        for name in contract.of_kind("cyclic")
    ]
    return Preprocessor(
        contract=contract,
        categorical=categorical,
        crosses=crosses,
        numeric=numeric,
        cyclic=cyclic,
        clip=config.clip,
        fitted_on=fitted_on,
    )


def frame_columns(frame: pl.DataFrame, contract: FeatureContract) -> dict[str, Column]:
    """The contract's features of a table as columns to transform: arrays for numbers, lists for categories."""
    return {
        name: frame[name].to_list() if spec.kind == "categorical" else frame[name].to_numpy()
        for name, spec in contract.features.items()
    }


def _vocabulary(values: Column, min_count: int) -> list[Any]:
    counts = Counter(v for v in values if v is not None)
    kept = [v for v, c in counts.items() if c >= min_count]
    return sorted(kept, key=lambda v: (-counts[v], str(v)))


def _floats(values: Column) -> npt.NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(array), array, np.nan)


def _apply_transform(values: npt.NDArray[np.float64], transform: str | None) -> npt.NDArray[np.float64]:
    if transform == "log1p":
        return np.log1p(np.maximum(values, 0.0))
    return values
