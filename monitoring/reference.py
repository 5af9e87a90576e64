"""What a window is compared with: the validation months of the model version that served it, via its lineage.

A bundle's lineage records the DVC hash of the feature tables it was trained on; the validation split is read from
DVC's cache by that hash (so a window is compared with exactly the data its model was validated on, even after the
pipeline has moved on), and scored by the same bundle, which gives the reference predictions.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from monitoring.log_reader import feature_dtype
from tabloop.config import RegistryConfig
from tabloop.errors import TabloopError
from tabloop.features.fitting import frame_columns
from tabloop.io import staged
from tabloop.registry.dvc_repo import cached_file
from tabloop.runtime.bundle import Bundle, Predictor
from tabloop.settings import Settings

if TYPE_CHECKING:
    from tabloop.registry.mlflow import Registry

FEATURES_DIR = "features"  # the role of the features directory in a bundle's lineage
REFERENCE_SPLIT = "valid.parquet"


class ReferenceError(TabloopError):
    """A model version's bundle or reference data cannot be found."""


@dataclass(frozen=True)
class Reference:
    """One model version: its predictor and its reference rows (features, the task's answers, actual)."""

    version: str
    predictor: Predictor
    rows: pl.DataFrame
    score: float | None  # its primary metric on the validation split, from the lineage (binary: ROC AUC)

    @property
    def bundle(self) -> Bundle:
        return self.predictor.bundle


class References:
    """Bundles and reference data per model version, loaded once each."""

    def __init__(
        self,
        settings: Settings,
        registry: RegistryConfig,
        cache_dir: Path,
        reference_dir: Path | None = None,
        repo: Path = Path(),
    ) -> None:
        self.settings, self.registry_config, self.cache_dir, self.repo = settings, registry, cache_dir, repo
        self.reference_dir = reference_dir
        self._loaded: dict[str, Reference] = {}
        self._registry: Registry | None = None

    def get(self, name: str, version: str) -> Reference:
        key = f"{name}/{version}"
        if key not in self._loaded:
            bundle = Bundle.load(self._bundle_dir(name, version))
            predictor = Predictor(bundle)
            rows = reference_rows(predictor, self._reference_file(version, bundle))
            self._loaded[key] = Reference(version, predictor, rows, valid_score(bundle))
        return self._loaded[key]

    def _bundle_dir(self, name: str, version: str) -> Path:
        directory = self.cache_dir / name / version
        if directory.is_dir():
            return directory
        if self._registry is None:
            from tabloop.registry.mlflow import Registry  # MLflow is slow to import; only for a version not cached

            self._registry = Registry(self.settings, self.registry_config.model_copy(update={"model_name": name}))
            self._registry.connect()
        with tempfile.TemporaryDirectory(prefix="download-") as tmp:
            downloaded = self._registry.fetch_bundle(version, Path(tmp))
            with staged(directory) as (staging,):
                shutil.copytree(downloaded, staging)
        return directory

    def _reference_file(self, version: str, bundle: Bundle) -> Path:
        if self.reference_dir is not None:
            path = self.reference_dir / REFERENCE_SPLIT
            if not path.is_file():
                raise ReferenceError(f"{path}: no reference data there (reports.reference_dir)")
            return path
        digest = bundle.lineage.data.get(FEATURES_DIR) if bundle.lineage else None
        if not digest:
            raise ReferenceError(f"version {version}: its lineage names no {FEATURES_DIR} hash")
        cached = cached_file(self.repo, digest, REFERENCE_SPLIT)
        if cached is None:
            raise ReferenceError(
                f"version {version}: its reference data ({REFERENCE_SPLIT} of {FEATURES_DIR} {digest}) is not in the "
                "DVC cache; run `make pull` to fetch it from the DVC remote"
            )
        return cached


def valid_score(bundle: Bundle) -> float | None:
    """The bundle's primary metric on its validation split, as its lineage records it (None if unregistered)."""
    if bundle.lineage is None:
        return None
    metrics = bundle.lineage.metrics
    return metrics.valid_roc_auc if bundle.contract.target.task == "binary" else metrics.valid_score


def reference_rows(predictor: Predictor, path: Path) -> pl.DataFrame:
    """The validation split at ``path`` with the bundle's answers (the columns ``read_log`` gives the task, the
    probabilities of a multiclass model as a list) and the observed ``actual`` (a multiclass one's by name)."""
    contract = predictor.bundle.contract
    target = contract.target
    frame = pl.read_parquet(path)
    answers = predictor.answer(frame_columns(frame, contract))
    if target.task == "binary":
        answered = [
            pl.Series("probability", answers.probability, dtype=pl.Float64),
            pl.Series("label", answers.label, dtype=pl.Boolean),
        ]
        actual = pl.col(target.name).cast(pl.Boolean)
    elif target.classes is not None:
        answered = [
            pl.Series("predicted_class", answers.predicted_class, dtype=pl.String),
            pl.Series("probability", answers.probability, dtype=pl.Float64),
            pl.Series("probabilities", answers.lists["probabilities"], dtype=pl.List(pl.Float64)),
        ]
        index = pl.Series(range(len(target.classes)), dtype=frame[target.name].dtype)
        actual = pl.col(target.name).replace_strict(index, pl.Series(target.classes), return_dtype=pl.String)
    else:
        answered = [pl.Series("value", answers.value, dtype=pl.Float64)]
        actual = pl.col(target.name).cast(pl.Float64)
    return frame.select(
        *[pl.col(name).cast(feature_dtype(spec)) for name, spec in contract.features.items()],
        *answered,
        actual.alias("actual"),
    )
