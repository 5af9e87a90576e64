"""The fitted preprocessing: vocabularies with buckets, scaling, indicators, and a lossless JSON round trip."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tabloop.config import PreprocessingConfig
from tabloop.features.fitting import fit_preprocessor
from tabloop.runtime.contract import FeatureContract, FeatureSpec
from tabloop.runtime.preprocessing import FIRST_INDEX, MISSING, OOV, FittedOn, Preprocessor

CONTRACT = FeatureContract(
    features={
        "carrier": FeatureSpec(kind="categorical", dtype="string"),
        "dest": FeatureSpec(kind="categorical", dtype="string", nullable=True),
        "day": FeatureSpec(kind="categorical", dtype="int8", values=[1, 2, 3, 4, 5, 6, 7]),
        "distance": FeatureSpec(kind="numeric", dtype="float32", min=1, max=5000),
        "temp": FeatureSpec(kind="numeric", dtype="float32", nullable=True, min=-60, max=130),
        "hour": FeatureSpec(kind="cyclic", dtype="float32", min=0, max=24, period=24),
    }
)
TRAIN = {
    "carrier": ["UA"] * 5 + ["AA"] * 4 + ["XX"],
    "dest": ["LAX"] * 3 + ["SFO"] * 3 + [None] * 4,
    "day": [1, 2, 3, 4, 5, 6, 7, 1, 1, 2],
    "distance": [100.0, 200, 300, 400, 500, 600, 700, 800, 900, 1000],
    "temp": [50.0, None, 60, 70, None, 80, 90, 40, 30, 20],
    "hour": [0.0, 6, 12, 18, 23.5, 1, 2, 3, 4, 5],
}
FITTED_ON = FittedOn(split="train", rows=10, start="2013-01-01", end="2013-08-31")


@pytest.fixture(scope="module")
def pre() -> Preprocessor:
    config = PreprocessingConfig(min_category_count=2, transforms={"distance": "log1p"}, crosses=[("carrier", "dest")])
    return fit_preprocessor(TRAIN, CONTRACT, config, FITTED_ON)


def test_vocabulary_orders_by_frequency_and_drops_rare(pre: Preprocessor) -> None:
    carrier = pre.categorical[0]
    assert carrier.vocabulary == ["UA", "AA"]  # "XX" seen once, below min_category_count
    assert pre.crosses[0].vocabulary == [("UA", "LAX"), ("UA", "SFO")]  # ("AA", "SFO") seen once
    assert pre.categorical[2].vocabulary == [1, 2]
    assert pre.cardinalities == [4, 4, 4, 4]  # two buckets (out-of-vocabulary, missing) + two kept values each


def test_unseen_rare_and_null_categories_get_buckets(pre: Preprocessor) -> None:
    batch = {**{k: v[:4] for k, v in TRAIN.items()}, "carrier": ["UA", "AA", "XX", "ZZ"]}
    batch["dest"] = ["LAX", None, "SFO", "JFK"]
    codes = pre.transform(batch).categorical
    assert codes[:, 0].tolist() == [FIRST_INDEX, FIRST_INDEX + 1, OOV, OOV]
    assert codes[:, 1].tolist() == [FIRST_INDEX, MISSING, FIRST_INDEX + 1, OOV]
    assert codes[:, 3].tolist() == [FIRST_INDEX, MISSING, OOV, OOV]


def test_numeric_scaling_missing_indicator_and_clipping(pre: Preprocessor) -> None:
    encoded = pre.transform(TRAIN).numeric
    names = pre.numeric_names
    assert names == ["distance", "temp", "hour_sin", "hour_cos", "temp_missing"]
    distance = encoded[:, names.index("distance")]
    assert distance.mean() == pytest.approx(0.0, abs=1e-6)
    assert distance.std() == pytest.approx(1.0, abs=1e-5)
    missing = np.array([v is None for v in TRAIN["temp"]])
    assert (encoded[:, names.index("temp_missing")] == missing).all()
    assert (encoded[missing, names.index("temp")] == 0).all()
    extreme = pre.transform({**{k: v[:1] for k, v in TRAIN.items()}, "temp": [1e9]}).numeric
    assert extreme[0, names.index("temp")] == pytest.approx(pre.clip)


def test_cyclic_encoding_wraps_around(pre: Preprocessor) -> None:
    rows = {k: v[:3] for k, v in TRAIN.items()}
    rows["hour"] = [0.0, 24.0, 6.0]
    encoded = pre.transform(rows).numeric
    sin, cos = pre.numeric_names.index("hour_sin"), pre.numeric_names.index("hour_cos")
    assert encoded[0, [sin, cos]] == pytest.approx(encoded[1, [sin, cos]], abs=1e-6)
    assert encoded[2, [sin, cos]] == pytest.approx([1.0, 0.0], abs=1e-6)


def test_non_finite_numbers_are_treated_as_missing(pre: Preprocessor) -> None:
    rows = {k: v[:3] for k, v in TRAIN.items()}
    rows["temp"] = [math.nan, math.inf, None]
    encoded = pre.transform(rows).numeric
    assert np.isfinite(encoded).all()
    assert (encoded[:, pre.numeric_names.index("temp_missing")] == 1).all()


def test_json_round_trip_is_lossless(pre: Preprocessor, tmp_path: Path) -> None:
    path = tmp_path / "preprocessing.json"
    pre.save(path)
    loaded = Preprocessor.load(path)
    assert loaded == pre
    a, b = pre.transform(TRAIN), loaded.transform(TRAIN)
    assert np.array_equal(a.categorical, b.categorical)
    assert np.array_equal(a.numeric, b.numeric)


def test_all_null_and_constant_columns_fit_safely() -> None:
    data = {**TRAIN, "temp": [None] * 10, "distance": [5.0] * 10}
    fitted = fit_preprocessor(data, CONTRACT, PreprocessingConfig(min_category_count=1), FITTED_ON)
    encoded = fitted.transform(data).numeric
    assert np.isfinite(encoded).all()
    assert (encoded[:, fitted.numeric_names.index("distance")] == 0).all()


rows = st.fixed_dictionaries(
    {
        "carrier": st.text(alphabet="ABCUAXZ", min_size=2, max_size=2),
        "dest": st.none() | st.sampled_from(["LAX", "SFO", "JFK", "ORD"]),
        "day": st.integers(1, 7),
        "distance": st.floats(1, 5000),
        "temp": st.none() | st.floats(-60, 130),
        "hour": st.floats(0, 24),
    }
)


@given(batch=st.lists(rows, min_size=1, max_size=30))
@settings(max_examples=60, deadline=None)
def test_any_valid_batch_encodes_to_finite_in_range_values(pre: Preprocessor, batch: list[dict]) -> None:
    columns = {name: [row[name] for row in batch] for name in CONTRACT.features}
    encoded = pre.transform(columns)
    assert encoded.categorical.shape == (len(batch), 4)
    assert encoded.numeric.shape == (len(batch), len(pre.numeric_names))
    assert ((encoded.categorical >= 0) & (encoded.categorical < np.array(pre.cardinalities))).all()
    assert np.isfinite(encoded.numeric).all()
    assert (np.abs(encoded.numeric) <= pre.clip + 1e-6).all()


@given(batch=st.lists(rows, min_size=2, max_size=30))
@settings(max_examples=60, deadline=None)
def test_one_row_encodes_as_it_does_in_a_batch(pre: Preprocessor, batch: list[dict]) -> None:
    """A request of one row takes the scalar path (``encode_one``), a batch the array path: the same numbers."""
    columns = {name: [row[name] for row in batch] for name in CONTRACT.features}
    together = pre.transform(columns)
    for i, row in enumerate(batch):
        alone = pre.transform({name: [row[name]] for name in CONTRACT.features})
        assert np.array_equal(alone.categorical[0], together.categorical[i])
        np.testing.assert_allclose(alone.numeric[0], together.numeric[i], rtol=1e-6, atol=1e-6)
