"""The MLflow pyfunc flavour of a model bundle, logged as code ("models from code"): nothing is pickled.

MLflow executes this file when it loads the model; :class:`TabloopModel` then rebuilds the predictor from the
bundle stored among the model's artifacts. The runtime package travels with the model (``code_paths``): in a
process of its own the model imports it from its own copy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext


class TabloopModel(PythonModel):
    """For each row of contract features, what the task answers (:func:`answer_columns`): the positive class's
    probability and the label (binary); the most probable class and each class's probability (multiclass); the
    value, in a column named after the target (regression)."""

    def load_context(self, context: PythonModelContext) -> None:
        from tabloop.runtime.bundle import BUNDLE_ARTIFACT, Predictor

        self.predictor = Predictor.from_directory(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(  # the signature is mlflow.pyfunc.PythonModel's: context and params are unused here
        self,
        context: PythonModelContext,  # noqa: ARG002
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,  # noqa: ARG002
    ) -> pd.DataFrame:
        contract = self.predictor.bundle.contract
        table = model_input.to_dict(orient="list")  # one pass over the frame; numbers keep NaN for missing
        columns: dict[str, Any] = {
            name: [None if _missing(v) else v for v in table[name]] if spec.kind == "categorical" else table[name]
            for name, spec in contract.features.items()
        }
        target = contract.target
        if target.task == "binary":
            proba, label = self.predictor.predict(columns)
            return pd.DataFrame({"probability": proba, "label": label})
        if target.classes is not None:
            probabilities, classes = self.predictor.predict_classes(columns)
            each = {f"probability_{name}": probabilities[:, i] for i, name in enumerate(target.classes)}
            return pd.DataFrame({"label": classes, **each})
        return pd.DataFrame({target.name: self.predictor.outputs(columns)})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


mlflow.models.set_model(TabloopModel())
