"""The MLflow pyfunc flavour of a model bundle, logged as code ("models from code"): nothing is pickled.

MLflow executes this file when it loads the model; :class:`FlightDelayModel` then rebuilds the predictor from the
bundle stored among the model's artifacts. The ``flightdelay`` package travels with the model (``code_paths``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

BUNDLE_ARTIFACT = "bundle"


class FlightDelayModel(PythonModel):
    """Probability and label of a late arrival for each row of contract features."""

    def load_context(self, context: PythonModelContext) -> None:
        from flightdelay.model.bundle import Predictor

        self.predictor = Predictor.from_directory(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(  # the signature is mlflow.pyfunc.PythonModel's: context and params are unused here
        self,
        context: PythonModelContext,  # noqa: ARG002
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,  # noqa: ARG002
    ) -> pd.DataFrame:
        contract = self.predictor.bundle.contract
        columns: dict[str, Any] = {}
        for name, spec in contract.features.items():
            values = model_input[name]
            if spec.kind == "categorical":
                columns[name] = [None if pd.isna(v) else v for v in values.tolist()]
            else:
                columns[name] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        proba, label = self.predictor.predict(columns)
        return pd.DataFrame({"probability": proba, "label": label})


mlflow.models.set_model(FlightDelayModel())
