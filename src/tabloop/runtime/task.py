"""What each task makes of the network's outputs, in NumPy (serving imports no torch).

The network puts out ``[rows, members, outputs]``; a task turns that into its prediction:

- **binary**: the members' probabilities of the positive class, averaged: ``[rows]``;
- **multiclass**: the members' class probabilities (softmax), averaged: ``[rows, classes]``;
- **regression**: the members' values, averaged, then brought back from the training scale (standardised,
  after the target's transform) to the target's own: ``[rows]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from tabloop.runtime.contract import TargetSpec, TargetTransform

Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class TargetScaling:
    """How a regression target is put on the scale the network learns: transformed, then standardised."""

    transform: TargetTransform
    shift: float  # the mean of the transformed target on the training split
    scale: float  # its standard deviation (1 where it has none)

    @classmethod
    def fit(cls, transform: TargetTransform, target: npt.NDArray[Any]) -> TargetScaling:
        """The scaling of ``target`` (the training split's values)."""
        moved = forward_transform(transform, np.asarray(target, dtype=np.float64))
        scale = float(moved.std())
        return cls(transform, float(moved.mean()), scale if scale > 0 else 1.0)

    def scaled(self, target: npt.NDArray[Any]) -> Floats:
        """Target values on the network's scale."""
        return (forward_transform(self.transform, np.asarray(target, dtype=np.float64)) - self.shift) / self.scale

    def unscaled(self, values: npt.NDArray[Any]) -> Floats:
        """The network's values on the target's own scale."""
        moved = np.asarray(values, dtype=np.float64) * self.scale + self.shift
        if self.transform == "log1p":
            return np.expm1(moved)
        return moved

    def to_dict(self) -> dict[str, str | float]:
        """A JSON-ready copy."""
        return {"transform": self.transform, "shift": self.shift, "scale": self.scale}

    def problems(self) -> list[str]:
        """What makes this scaling unusable (a transform not known, numbers not finite)."""
        found = [] if self.transform in ("none", "log1p") else [f"transform {self.transform!r} is not none or log1p"]
        if not (np.isfinite(self.shift) and np.isfinite(self.scale) and self.scale > 0):
            found.append(f"shift and scale must be finite and scale positive, not {self.shift!r}, {self.scale!r}")
        return found


def forward_transform(transform: TargetTransform, values: Floats) -> Floats:
    """``values`` under the target transform (``log1p`` of a value below -1 is not a number)."""
    return np.log1p(values) if transform == "log1p" else values


def sigmoid(x: Floats) -> Floats:
    out: Floats = 1.0 / (1.0 + np.exp(-x))
    return out


def softmax(x: Floats) -> Floats:
    """Softmax over the last axis, stable for large logits."""
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    out: Floats = shifted / shifted.sum(axis=-1, keepdims=True)
    return out


def combine(target: TargetSpec, outputs: Floats, scaling: TargetScaling | None) -> Floats:
    """The task's prediction from the members' outputs ``[rows, members, outputs]``."""
    if target.task == "binary":
        proba: Floats = sigmoid(outputs[:, :, 0]).mean(axis=1)
        return proba
    if target.task == "multiclass":
        classes: Floats = softmax(outputs).mean(axis=1)
        return classes
    if scaling is None:
        raise ValueError("a regression model needs its target scaling")
    return scaling.unscaled(outputs[:, :, 0].mean(axis=1))


class AnswerLists(TypedDict, total=False):
    """:class:`Answers` as plain lists (JSON and the prediction log); a key the task has no use for is absent."""

    probability: list[float]
    label: list[bool]
    predicted_class: list[str]
    probabilities: list[list[float]]
    value: list[float]


@dataclass(frozen=True)
class Answers:
    """A batch's predictions as its task answers them; the fields of the other tasks are None.

    - **binary**: ``probability`` (the positive class's) and ``label`` (at or above the decision threshold);
    - **multiclass**: ``predicted_class`` (the most probable), ``probability`` (its probability) and
      ``probabilities`` (each class's, ``[rows, classes]`` in the contract's order);
    - **regression**: ``value``, on the target's own scale.
    """

    probability: Floats | None = None
    label: Bools | None = None
    predicted_class: list[str] | None = None
    probabilities: Floats | None = None
    value: Floats | None = None

    @classmethod
    def of(cls, target: TargetSpec, predicted: Floats, threshold: float | None) -> Answers:
        """The answers of ``target``'s task from its prediction (:func:`combine`)."""
        if target.task == "binary":
            if threshold is None:
                raise ValueError("a binary model needs its decision threshold")
            return cls(probability=predicted, label=predicted >= threshold)
        if target.classes is not None:
            best = predicted.argmax(axis=1)
            names = target.classes
            return cls(
                probability=predicted[np.arange(len(best)), best],
                predicted_class=[names[i] for i in best.tolist()],
                probabilities=predicted,
            )
        return cls(value=predicted)

    @cached_property
    def lists(self) -> AnswerLists:
        """The answers as plain lists, without the fields the task has no use for (made once: the service both
        logs and answers them)."""
        out: AnswerLists = {}
        if self.probability is not None:
            out["probability"] = self.probability.tolist()
        if self.label is not None:
            out["label"] = self.label.tolist()
        if self.predicted_class is not None:
            out["predicted_class"] = self.predicted_class
        if self.probabilities is not None:
            out["probabilities"] = self.probabilities.tolist()
        if self.value is not None:
            out["value"] = self.value.tolist()
        return out

    @classmethod
    def from_lists(cls, lists: AnswerLists) -> Answers:
        """The answers that :meth:`lists` wrote."""

        def floats(key: str) -> Floats | None:
            values = lists.get(key)
            return None if values is None else np.asarray(values, dtype=np.float64)

        label = lists.get("label")
        return cls(
            probability=floats("probability"),
            label=None if label is None else np.asarray(label, dtype=np.bool_),
            predicted_class=lists.get("predicted_class"),
            probabilities=floats("probabilities"),
            value=floats("value"),
        )
