"""MLflow glue: the tracking store, runs, logged models and the model registry (versions, aliases, tags, champion
history).

The only module that talks to MLflow (``tabloop/runtime/pyfunc.py`` is the code MLflow itself runs to load a model). The
registry decides what serves: the version behind the ``@champion`` alias. Every change of champion is recorded on the
registered model (``champion_history``) and on the versions involved, so a rollback knows where to go and a person
can read why.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import mlflow
import pandas as pd
import polars as pl
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from tabloop.config import RegistryConfig
from tabloop.errors import TabloopError, redact
from tabloop.runtime.bundle import BUNDLE_ARTIFACT
from tabloop.runtime.contract import INTEGER_DTYPES, FeatureContract, FeatureSpec
from tabloop.settings import Settings

logger = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"
BUNDLE_TAG = "bundle_sha256"  # what the model computes: the same bundle is never registered twice
FILES_TAG = "bundle_files_sha256"  # the bundle's files as served: checked on every load
TAG_LIMIT = 5000
PACKAGE_DIR = Path(__file__).parents[1]  # tabloop/
RUNTIME_DIR = PACKAGE_DIR / "runtime"
PYFUNC_CODE = RUNTIME_DIR / "pyfunc.py"
SHIPPED_FILES = ("__init__.py", "errors.py", "py.typed")  # what the runtime needs from the package beside itself
RUNTIME_PACKAGES = ("mlflow", "torch", "numpy", "pandas", "safetensors", "pydantic", "pyyaml")


class RegistryError(TabloopError):
    """The tracking server cannot be reached, or the registry cannot do what was asked."""


def now() -> str:
    """The current UTC time, ISO 8601, to the second."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Registry:
    """One registered model in one MLflow tracking store."""

    def __init__(self, settings: Settings, config: RegistryConfig) -> None:
        self.uri = settings.tracking_uri
        self.name = config.model_name
        self.experiment_name = config.experiment
        self.artifact_root = settings.artifact_root
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def is_local(self) -> bool:
        """Whether the store is a file on this machine (artifacts then go under ``artifact_root``)."""
        return self.uri.startswith(("sqlite:", "file:")) or "://" not in self.uri

    def connect(self) -> None:
        """Reach the store within seconds or raise a RegistryError that says what to do."""
        if self.uri.startswith("sqlite:///"):
            Path(self.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(self.uri)  # runs and registrations below go to this store
        mlflow.set_registry_uri(self.uri)
        start = time.monotonic()
        try:
            self.client.search_experiments(max_results=1)
        except Exception as e:  # an unreachable store raises many types (requests, SQLAlchemy, MLflow's own)
            reason = redact(str(e).splitlines()[0][:300]) if str(e) else ""
            raise RegistryError(
                f"the MLflow tracking store at {redact(self.uri)} cannot be reached after "
                f"{time.monotonic() - start:.1f} s ({type(e).__name__}: {reason}). Start it, or point "
                "TABLOOP_TRACKING_URI at one that runs; nothing was registered."
            ) from e

    @contextmanager
    def run(self, name: str) -> Iterator[str]:
        """A tracking run in the experiment, active inside the block; its id."""
        with mlflow.start_run(experiment_id=self.experiment_id(), run_name=name) as run:
            yield str(run.info.run_id)

    def experiment_id(self) -> str:
        """The experiment's id, creating the experiment on first use."""
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = Path(self.artifact_root).resolve().as_uri() if self.is_local else None
        return str(self.client.create_experiment(self.experiment_name, artifact_location=location))

    def by_alias(self, alias: str) -> ModelVersion | None:
        """The version behind ``@alias``, or None if the alias (or the model) does not exist."""
        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as e:
            if e.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def get(self, version: str) -> ModelVersion:
        """One version; a RegistryError if it does not exist."""
        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as e:
            raise RegistryError(f"model {self.name!r} has no version {version}") from e

    def by_bundle(self, digest: str) -> ModelVersion | None:
        """The version holding exactly this bundle, if one was registered before."""
        try:
            found = self.client.search_model_versions(f"name = '{self.name}' and tags.{BUNDLE_TAG} = '{digest}'")
        except MlflowException:
            return None
        return min(found, key=lambda v: int(v.version)) if found else None

    @staticmethod
    def number(version: ModelVersion) -> str:
        """A version's number as text (MLflow returns it as text or as an integer, depending on the store)."""
        return str(version.version)

    def fetch_bundle(self, version: str, dest: Path) -> Path:
        """Download a version's model into ``dest``; the path of its bundle directory."""
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{self.name}/{version}", dst_path=str(dest), tracking_uri=self.uri
        )
        bundle = Path(local) / "artifacts" / BUNDLE_ARTIFACT
        if not bundle.is_dir():
            raise RegistryError(f"version {version} of {self.name!r} holds no model bundle")
        return bundle

    def register(self, model_uri: str, tags: dict[str, str]) -> str:
        """A new version of the model for ``model_uri``, with ``tags``; its version number."""
        version = mlflow.register_model(model_uri, self.name, tags={k: _tag(v) for k, v in tags.items()})
        return str(version.version)

    def tag(self, version: str, tags: dict[str, str]) -> None:
        """Set tags on a version."""
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, _tag(value))

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``@alias`` at ``version``."""
        self.client.set_registered_model_alias(self.name, alias, str(version))

    def delete(self, version: str) -> None:
        """Remove a version (used to undo a registration that could not be completed)."""
        self.client.delete_model_version(self.name, version)

    def champion_history(self) -> list[str]:
        """Versions that were champion, oldest first, the current one last."""
        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException:
            return []
        return list(json.loads(model.tags.get(HISTORY_TAG, "[]")))

    def promote(self, version: str, reason: str, decided_by: str) -> str | None:
        """Make ``version`` the champion; the previous champion's version, if any."""
        self.get(version)
        version = str(version)
        current = self.by_alias(CHAMPION)
        previous = self.number(current) if current is not None else None
        if previous == version:
            raise RegistryError(f"version {version} is already the champion")
        self.set_alias(CHAMPION, version)
        history = [*self.champion_history(), version]
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.tag(version, {"champion.promoted_at": now(), "champion.reason": reason, "champion.decided_by": decided_by})
        if previous is not None:
            self.tag(previous, {"champion.replaced_at": now(), "champion.replaced_by": version})
        return previous

    def rollback(self, reason: str) -> tuple[str, str]:
        """Give ``@champion`` back to the previous champion; (from version, to version)."""
        current = self.by_alias(CHAMPION)
        if current is None:
            raise RegistryError(f"model {self.name!r} has no champion to roll back")
        demoted = self.number(current)
        history = self.champion_history()
        while history and history[-1] != demoted:  # the alias was moved outside this tool
            history.pop()
        if len(history) < 2:
            raise RegistryError(f"version {demoted} is the first recorded champion; nothing to roll back to")
        history.pop()
        target = history[-1]
        self.set_alias(CHAMPION, target)
        self.client.set_registered_model_tag(self.name, HISTORY_TAG, json.dumps(history))
        self.tag(demoted, {"champion.rolled_back_at": now(), "champion.rollback_reason": reason})
        self.tag(target, {"champion.restored_at": now(), "champion.reason": f"rollback: {reason}"})
        return demoted, target


def _tag(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:TAG_LIMIT]


@dataclass(frozen=True)
class RunRecord:
    """What a run records: tags, flat parameters, metrics per step and final ones, and artifacts (directories by
    the artifact path they go to, and files by theirs)."""

    tags: dict[str, str]
    params: dict[str, str]
    steps: list[tuple[int, dict[str, float]]]
    metrics: dict[str, float]
    directories: dict[str, Path] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)


def log_run(record: RunRecord) -> None:
    """``record`` into the active run (:meth:`Registry.run`)."""
    mlflow.set_tags(record.tags)
    mlflow.log_params(record.params)
    for step, values in record.steps:
        mlflow.log_metrics(values, step=step)
    mlflow.log_metrics(record.metrics)
    for artifact_path, directory in record.directories.items():
        mlflow.log_artifacts(str(directory), artifact_path=artifact_path)
    for artifact_path, paths in record.files.items():
        for path in paths:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


class LoggedModel(NamedTuple):
    """A model logged to a run: its URI and the digest of its bundle's files."""

    uri: str
    files_sha256: str


def log_pyfunc_model(
    bundle_dir: Path, contract: FeatureContract, held_out: pl.DataFrame, *, files_sha256: str
) -> LoggedModel:
    """The bundle in ``bundle_dir`` logged to the active run as a pyfunc model "from code" (runtime/pyfunc.py),
    with the runtime's code (:func:`runtime_code`), the contract's signature, an input example from ``held_out`` and
    the runtime's pinned requirements."""
    with runtime_code() as code:
        info = _log_pyfunc(bundle_dir, contract, held_out, code)
    return LoggedModel(str(info.model_uri), files_sha256)


def _log_pyfunc(bundle_dir: Path, contract: FeatureContract, held_out: pl.DataFrame, code: Path) -> ModelInfo:
    info: ModelInfo = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        code_paths=[str(code)],
        signature=model_signature(contract),
        input_example=input_example(contract, held_out),
        pip_requirements=[f"{p}=={importlib.metadata.version(p)}" for p in RUNTIME_PACKAGES],
    )
    return info


@contextmanager
def runtime_code() -> Iterator[Path]:
    """A copy of the package that holds only what loading and predicting run: ``tabloop/runtime/`` and the few
    files of ``tabloop/`` it imports. A registered model carries this, not the training, data or tooling code."""
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / PACKAGE_DIR.name
        shutil.copytree(RUNTIME_DIR, package / RUNTIME_DIR.name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in SHIPPED_FILES:
            shutil.copy2(PACKAGE_DIR / name, package / name)
        yield package


def column_type(spec: FeatureSpec) -> str:
    """The MLflow type of a feature's column: integers as long (MLflow refuses an int64 column where a double is
    expected), except nullable numbers, which pandas holds as floats with NaN for the missing ones."""
    if spec.dtype == "string":
        return "string"
    if spec.dtype in INTEGER_DTYPES and (spec.kind == "categorical" or not spec.nullable):
        return "long"
    return "double"


def model_signature(contract: FeatureContract) -> ModelSignature:
    """The MLflow signature of the contract: nullable features are optional columns; the outputs are the task's
    (:class:`~tabloop.runtime.pyfunc.TabloopModel`)."""
    inputs = Schema([ColSpec(column_type(s), n, required=not s.nullable) for n, s in contract.features.items()])
    target = contract.target
    if target.classes is not None:
        outputs = Schema([ColSpec("string", "label"), *(ColSpec("double", f"probability_{c}") for c in target.classes)])
    elif target.task == "regression":
        outputs = Schema([ColSpec("double", target.name)])
    else:
        outputs = Schema([ColSpec("double", "probability"), ColSpec("boolean", "label")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def input_example(contract: FeatureContract, frame: pl.DataFrame, rows: int = 3) -> pd.DataFrame:
    """A few real rows of contract features, as a client would send them, in the signature's types."""
    polars_type = {"string": pl.String, "long": pl.Int64, "double": pl.Float64}
    head = frame.head(rows).select(list(contract.features))
    return head.with_columns(
        pl.col(n).cast(polars_type[column_type(s)]) for n, s in contract.features.items()
    ).to_pandas()
