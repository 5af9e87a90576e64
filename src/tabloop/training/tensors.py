"""A split as tensors, encoded once, and what is computed on it: batches, the binary log loss, the threshold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import torch
from sklearn.metrics import precision_recall_curve

from tabloop.errors import FeatureError
from tabloop.features.fitting import frame_columns
from tabloop.runtime.preprocessing import Preprocessor


@dataclass(frozen=True)
class SplitTensors:
    """One split, encoded once: category indices, numbers and the target."""

    categorical: torch.Tensor
    numeric: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return int(self.target.shape[0])

    def to(self, device: torch.device) -> SplitTensors:
        """The same tensors on ``device``."""
        return SplitTensors(self.categorical.to(device), self.numeric.to(device), self.target.to(device))


def load_split(features_dir: Path, split: str, preprocessor: Preprocessor) -> SplitTensors:
    """The split's features encoded by the fitted preprocessing, as tensors."""
    path = features_dir / f"{split}.parquet"
    if not path.is_file():
        raise FeatureError(f"{path}: not found; run the features stage first (dvc repro features)")
    frame = pl.read_parquet(path)
    target_name = preprocessor.contract.target.name
    if frame.height == 0:
        raise FeatureError(f"{path}: the {split} split is empty")
    if frame[target_name].n_unique() < 2:
        raise FeatureError(f"{path}: every row of the {split} split has the same label; nothing to learn or score")
    missing = [name for name in preprocessor.contract.features if name not in frame.columns]
    if missing:
        raise FeatureError(f"{path}: columns {missing} of the contract are missing; rebuild the features")
    encoded = preprocessor.transform(frame_columns(frame, preprocessor.contract))
    return SplitTensors(
        categorical=torch.from_numpy(encoded.categorical),
        numeric=torch.from_numpy(encoded.numeric),
        target=torch.from_numpy(frame[target_name].to_numpy().astype(np.float32)),
    )


def batch_bounds(rows: int, batch_size: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each batch of an epoch; a lone last row joins the batch before it, because batch
    normalisation cannot train on a batch of one."""
    bounds = [(start, min(start + batch_size, rows)) for start in range(0, rows, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], rows)]
    return bounds


def log_loss(target: npt.NDArray[Any], proba: npt.NDArray[np.float64]) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    return float(-np.mean(target * np.log(p) + (1 - target) * np.log(1 - p)))


def choose_threshold(target: npt.NDArray[Any], proba: npt.NDArray[np.float64]) -> float:
    """The probability threshold that maximises F1 on ``target``."""
    precision, recall, thresholds = precision_recall_curve(target, proba)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])
