"""What the service makes of each task's predictions: the answers, the API's models, the V2 tensors, the metrics'
buckets and the smoke test of a model before it is served."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from pydantic import ValidationError

from serving.metrics import VALUE_BUCKETS, value_buckets
from serving.model_store import smoke_problem
from serving.schemas import feedback_model, response_model
from serving.v2_protocol import OutputValues
from tabloop.runtime.contract import FeatureContract, FeatureSpec, TargetSpec
from tabloop.runtime.task import Answers, TargetScaling

BINARY = TargetSpec(name="late")
CLASSES = TargetSpec(name="grade", task="multiclass", classes=["1", "2", "3"])
VALUE = TargetSpec(name="price", task="regression")


def contract(target: TargetSpec) -> FeatureContract:
    return FeatureContract(entity="Item", target=target, features={"x": FeatureSpec(kind="numeric", dtype="float64")})


@pytest.mark.parametrize("target", [BINARY, CLASSES, VALUE], ids=["binary", "multiclass", "regression"])
def test_answers_travel_as_lists_and_back(target: TargetSpec) -> None:
    predicted = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]) if target.classes else np.array([0.25, 0.75])
    answers = Answers.of(target, predicted, 0.5 if target.task == "binary" else None)
    back = Answers.from_lists(answers.lists)
    assert back.lists == answers.lists
    if target.task == "binary":
        assert set(answers.lists) == {"probability", "label"}
        assert answers.lists["label"] == [False, True]
    elif target.classes:
        assert answers.lists["predicted_class"] == ["2", "1"]
        assert answers.lists["probability"] == [0.5, 0.6]
        assert set(answers.lists) == {"predicted_class", "probability", "probabilities"}
    else:
        assert answers.lists == {"value": [0.25, 0.75]}


def test_a_binary_answer_needs_its_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        Answers.of(BINARY, np.array([0.5]), None)


def test_classes_that_look_like_numbers_are_classes_in_feedback() -> None:
    feedback = feedback_model(contract(CLASSES))
    assert feedback.model_validate({"id": "a", "grade": 2}).grade == "2"  # type: ignore[attr-defined]
    assert feedback.model_validate({"id": "a", "grade": "3"}).grade == "3"  # type: ignore[attr-defined]
    for wrong in (4, 2.0, True, "4"):
        with pytest.raises(ValidationError, match="grade"):
            feedback.model_validate({"id": "a", "grade": wrong})
    assert "outcome" not in feedback.model_fields


def test_a_regression_takes_a_finite_number_as_feedback_and_answers_without_a_threshold() -> None:
    feedback = feedback_model(contract(VALUE))
    assert feedback.model_validate({"id": "a", "price": 12}).price == 12.0  # type: ignore[attr-defined]
    for wrong in (float("nan"), float("inf"), "cheap", True, "12"):
        with pytest.raises(ValidationError, match="price"):
            feedback.model_validate({"id": "a", "price": wrong})
    assert feedback.model_validate({"id": "a", "price": -5}).price == -5.0  # type: ignore[attr-defined]
    positive = feedback_model(contract(VALUE.model_copy(update={"transform": "log1p"})))
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        positive.model_validate({"id": "a", "price": -5})
    response = response_model(contract(VALUE))
    assert "threshold" not in response.model_fields
    assert "threshold" in response_model(contract(BINARY)).model_fields


def test_bytes_outputs_are_sent_with_their_lengths() -> None:
    tensor = OutputValues("BYTES", [2], ["VF", "médian"])
    raw = tensor.raw()
    decoded, at = [], 0
    while at < len(raw):
        (size,) = struct.unpack_from("<I", raw, at)
        decoded.append(raw[at + 4 : at + 4 + size].decode())
        at += 4 + size
    assert decoded == ["VF", "médian"]
    assert tensor.data() == ["VF", "médian"]
    numbers = OutputValues("FP64", [2, 2], np.array([[0.1, 0.9], [0.4, 0.6]]))
    assert np.frombuffer(numbers.raw(), "<f8").tolist() == [0.1, 0.9, 0.4, 0.6]


def test_value_buckets_follow_the_training_scale() -> None:
    prices = value_buckets(TargetScaling("log1p", shift=4.6, scale=0.5))  # around 100, geometric
    assert min(prices) >= 0
    assert list(prices) == sorted(prices)
    ratios = np.diff(np.log1p(prices))
    assert np.allclose(ratios, ratios[0], rtol=0.05)
    assert value_buckets(TargetScaling("none", shift=0.0, scale=10.0))[0] == -30.0
    assert value_buckets(None) == VALUE_BUCKETS


@pytest.mark.parametrize(
    ("target", "predicted", "problem"),
    [
        (BINARY, np.array([0.4]), None),
        (BINARY, np.array([1.4]), "is not a probability"),
        (CLASSES, np.array([[0.2, 0.3, 0.5]]), None),
        (CLASSES, np.array([[0.2, 0.3, 0.6]]), "is not a distribution over 3 classes"),
        (CLASSES, np.array([[0.5, 0.5]]), "is not a distribution over 3 classes"),
        (VALUE, np.array([-12.5]), None),
        (VALUE, np.array([np.inf]), "is not finite"),
    ],
)
def test_the_smoke_prediction_fits_the_task(target: TargetSpec, predicted: np.ndarray, problem: str | None) -> None:
    assert smoke_problem(target, predicted) == problem
