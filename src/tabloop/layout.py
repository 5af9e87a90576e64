"""Where each dataset's configuration, data, models, reports and logs live: one namespace per dataset.

``configs/datasets.yaml`` lists the datasets (``dvc.yaml`` runs every stage once per name, as ``ingest@<name>``
and so on) and names the default one; ``DATASET=<name>`` on a ``make`` target, or ``TABLOOP_DATASET``, picks
another. Everything of a dataset sits under its name: ``configs/<name>/``, ``data/<name>/``, ``models/<name>/``,
``reports/<name>/`` and ``logs/<name>/``, so that switching datasets never overwrites another's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, model_validator

from tabloop.config import RETRAINED_FILE, load_yaml, parse_config
from tabloop.errors import ConfigError
from tabloop.runtime.contract import StrictModel

DATASETS_FILE = Path("configs") / "datasets.yaml"
# Lower case letters, digits and underscores: a name that is safe in paths, DVC stage names and MLflow names.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
DatasetName = Annotated[str, Field(pattern=NAME_PATTERN)]


class DatasetsConfig(StrictModel):
    """``configs/datasets.yaml``: the datasets of this repository and the default one."""

    default: DatasetName
    datasets: list[DatasetName] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_default(self) -> Self:
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError("datasets: a name is listed twice")
        if self.default not in self.datasets:
            raise ValueError(f"default: {self.default!r} is not one of the datasets ({', '.join(self.datasets)})")
        return self


def load_datasets(root: Path = Path()) -> DatasetsConfig:
    """The datasets file under ``root``, validated."""
    path = root / DATASETS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; run from the repository root (it lists the datasets)")
    return parse_config(DatasetsConfig, load_yaml(path), str(path))


@dataclass(frozen=True)
class Layout:
    """The paths of one dataset, relative to the repository root (``root``)."""

    dataset: str
    root: Path = Path()

    @classmethod
    def of(cls, dataset: str | None, root: Path = Path()) -> Layout:
        """The layout of ``dataset`` (None: the default one); a ConfigError naming the choices if it is unknown."""
        datasets = load_datasets(root)
        name = dataset or datasets.default
        if name not in datasets.datasets:
            raise ConfigError(
                f"dataset {name!r} is not in {root / DATASETS_FILE} (it lists: {', '.join(datasets.datasets)}); "
                "add one with `make init`"
            )
        return cls(name, root)

    def _under(self, top: str) -> Path:
        return self.root / top / self.dataset

    @property
    def configs(self) -> Path:
        return self._under("configs")

    @property
    def data_config(self) -> Path:
        return self.configs / "data.yaml"

    @property
    def train_config(self) -> Path:
        return self.configs / "train.yaml"

    @property
    def tune_config(self) -> Path:
        """The search spaces and budget of ``make tune`` (the user's; optional)."""
        return self.configs / "tune.yaml"

    @property
    def retrained_config(self) -> Path:
        """The split of the last promoted retraining (``make retrain``'s; laid over data.yaml's split)."""
        return self.configs / RETRAINED_FILE

    @property
    def tuned_config(self) -> Path:
        """The best parameters ``make tune`` found (the tuner's; laid over train.yaml and evaluate.yaml)."""
        return self.configs / "tuned.yaml"

    @property
    def tuning(self) -> Path:
        """The tuning studies' storage and summary."""
        return self.reports / "tuning"

    @property
    def evaluate_config(self) -> Path:
        return self.configs / "evaluate.yaml"

    @property
    def registry_config(self) -> Path:
        return self.configs / "registry.yaml"

    @property
    def monitor_config(self) -> Path:
        return self.configs / "monitor.yaml"

    @property
    def raw(self) -> Path:
        return self._under("data") / "raw"

    @property
    def validated(self) -> Path:
        return self._under("data") / "validated"

    @property
    def features(self) -> Path:
        return self._under("data") / "features"

    @property
    def bundle(self) -> Path:
        return self._under("models") / "bundle"

    @property
    def checkpoints(self) -> Path:
        return self._under("models") / "checkpoints"

    @property
    def cache(self) -> Path:
        """Bundles downloaded from the registry (by the service and by monitoring)."""
        return self._under("models") / "cache"

    @property
    def reports(self) -> Path:
        return self._under("reports")

    @property
    def validation_reports(self) -> Path:
        return self.reports / "validation"

    @property
    def features_metrics(self) -> Path:
        return self.reports / "features.json"

    @property
    def train_reports(self) -> Path:
        return self.reports / "train"

    @property
    def evaluation(self) -> Path:
        return self.reports / "evaluation"

    @property
    def receipt(self) -> Path:
        """The register stage's note of which bundle the registry holds."""
        return self.reports / "registry.json"

    @property
    def monitoring(self) -> Path:
        return self.reports / "monitoring"

    @property
    def logs(self) -> Path:
        return self._under("logs")

    @property
    def prediction_log_url(self) -> str:
        """The service's prediction log: a SQLite file by default."""
        return f"sqlite:///{(self.logs / 'predictions.db').as_posix()}"

    @property
    def replay_state(self) -> Path:
        return self.logs / "replay" / "state.json"

    @property
    def data_outputs(self) -> dict[str, str]:
        """The DVC-tracked data directories by role (``raw``, ``validated``, ``features``), as ``dvc.lock`` names
        them."""
        roles = {"raw": self.raw, "validated": self.validated, "features": self.features}
        return {role: path.relative_to(self.root).as_posix() for role, path in roles.items()}
