"""What training optimises and scores, per task: the loss on the network's outputs, a split's predictions on the
target's own scale, and the validation score that keeps the best epoch (the task's primary metric).

- **binary**: binary cross-entropy of each member's logit; ROC AUC, higher is better;
- **multiclass**: cross-entropy of each member's softmax; log loss, lower is better;
- **regression**: squared error on the standardised (and transformed) target; RMSE on the target's own scale,
  lower is better.

The members are trained on the mean of their losses and predict together (:mod:`tabloop.runtime.task`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from tabloop.records import PRIMARY_METRICS, PrimaryMetric
from tabloop.runtime.contract import TargetSpec
from tabloop.runtime.network import TabularNet
from tabloop.runtime.task import TargetScaling
from tabloop.training.tensors import SplitTensors, log_loss

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Objective:
    """The loss, the predictions and the validation score of one target."""

    target: TargetSpec
    scaling: TargetScaling | None = None  # a regression target's, fitted on the training split

    @classmethod
    def fit(cls, target: TargetSpec, train_target: npt.NDArray[Any]) -> Objective:
        """The objective of ``target``, its scaling (regression) fitted on the training split's values."""
        if target.task == "regression":
            return cls(target, TargetScaling.fit(target.transform, train_target))
        return cls(target)

    @property
    def primary(self) -> PrimaryMetric:
        return PRIMARY_METRICS[self.target.task]

    def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean over rows and members of each member's loss; ``outputs`` is ``[batch, members, outputs]``."""
        task = self.target.task
        if task == "binary":
            logits = outputs.squeeze(2)  # a view, as the gradient flows back: [..., 0] would reorder the sums
            return nn.functional.binary_cross_entropy_with_logits(logits, target.unsqueeze(1).expand_as(logits))
        if task == "multiclass":
            batch, members, classes = outputs.shape
            labels = target.long().unsqueeze(1).expand(batch, members)
            return nn.functional.cross_entropy(outputs.reshape(-1, classes), labels.reshape(-1))
        values = outputs.squeeze(2)
        return nn.functional.mse_loss(values, self._scaled(target).unsqueeze(1).expand_as(values))

    def _scaled(self, target: torch.Tensor) -> torch.Tensor:
        if self.scaling is None:
            raise ValueError("a regression objective needs its target scaling")
        moved = torch.log1p(target) if self.scaling.transform == "log1p" else target
        return (moved - self.scaling.shift) / self.scaling.scale

    @torch.inference_mode()
    def predict(self, model: TabularNet, split: SplitTensors, batch_size: int) -> Floats:
        """The task's prediction for every row of ``split`` in evaluation mode: the positive class's probability,
        each class's probabilities, or the value on the target's scale."""
        was_training = model.training
        model.eval()
        parts = [
            self._combine(model(split.categorical[i : i + batch_size], split.numeric[i : i + batch_size]))
            for i in range(0, len(split), batch_size)
        ]
        model.train(was_training)
        combined = torch.cat(parts).cpu().numpy().astype(np.float64)
        if self.target.task == "regression" and self.scaling is not None:
            return self.scaling.unscaled(combined)
        return combined

    def _combine(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.target.task == "binary":
            return torch.sigmoid(outputs.squeeze(2)).mean(dim=1)
        if self.target.task == "multiclass":
            return torch.softmax(outputs, dim=2).mean(dim=1)
        return outputs.squeeze(2).mean(dim=1)

    def score(self, target: npt.NDArray[Any], prediction: Floats) -> tuple[float, float]:
        """The validation loss and the primary metric's score of ``prediction`` against ``target``."""
        task = self.target.task
        if task == "binary":
            return log_loss(target, prediction), float(roc_auc_score(target, prediction))
        if task == "multiclass":
            chosen = prediction[np.arange(len(target)), np.asarray(target, dtype=np.int64)]
            loss = float(-np.mean(np.log(np.clip(chosen, 1e-15, 1.0))))
            return loss, loss
        if self.scaling is None:
            raise ValueError("a regression objective needs its target scaling")
        rmse = float(np.sqrt(np.mean((np.asarray(prediction, dtype=np.float64) - target) ** 2)))
        scaled = self.scaling.scaled(prediction) - self.scaling.scaled(target)
        return float(np.mean(scaled**2)), rmse
