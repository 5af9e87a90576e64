"""Helpers the tests share (fixtures live in conftest.py): the configured dataset's paths, small configurations,
the service on a free port, and reading what it logged."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sqlalchemy as sa
import uvicorn
import yaml

from profiles import CONFIGURED, REPO_ROOT, configured_config
from serving.app import create_app
from serving.http import bounded_head_protocol
from serving.settings import ServeSettings
from tabloop.config import DataConfig, EvaluateConfig, PromotionGateConfig, RegistryConfig, TrainConfig
from tabloop.config.monitor import MonitorConfig, ReportsConfig, load_monitor_config
from tabloop.registry.candidate import RegisterInputs
from tabloop.registry.mlflow import CHAMPION, Registry
from tabloop.runtime.bundle import Bundle
from tabloop.settings import Settings
from tabloop.stages.features import run as build_features
from tabloop.stages.register import run as register_candidate

__all__ = ["REPO_ROOT"]

WHERE = CONFIGURED  # the configured dataset's paths in this repository
CONFIG_PATH = WHERE.data_config
MODEL_NAME = "tests-model"  # the registered model of the serving tests
SPLITS = ("train", "valid", "test")
TARGET = configured_config().contract.target  # what the configured dataset's model predicts
TASK = TARGET.task


# The V2 outputs of the configured task: name and datatype
V2_OUTPUTS = {
    "binary": [("probability", "FP64"), ("label", "BOOL")],
    "multiclass": [("label", "BYTES"), ("probabilities", "FP64")],
    "regression": [(TARGET.name, "FP64")],
}[TASK]


# Where the prediction log keeps the configured task's observed outcome (prediction_tables.py)
OUTCOME_COLUMN = {"binary": "actual", "multiclass": "actual_class", "regression": "outcome"}[TASK]
SMOKE_NOT_FINITE = "smoke prediction is not a probability" if TASK == "binary" else "smoke prediction is not finite"


def answer_number(prediction: dict[str, Any]) -> float:
    """The number a /predict prediction carries, whatever the task: the probability (of the positive class, or of
    the predicted class) or a regression's value."""
    return float(prediction["probability"] if "probability" in prediction else prediction[TARGET.name])


def with_source(config: DataConfig, directory: Path) -> DataConfig:
    """``config`` reading its tables from ``directory``."""
    source = config.source.model_copy(update={"dir": directory, "package": None, "rdataset": None})
    return config.model_copy(update={"source": source})


def shrink(config: TrainConfig, **training: int) -> TrainConfig:
    """The real training config, made small and quick for a few hundred examples."""
    loop = config.training.model_copy(update={"batch_size": 32, "max_epochs": 6, "patience": 3, **training})
    return config.model_copy(update={"training": loop, "threads": 1, "device": "cpu"})


@contextmanager
def running_service(settings: ServeSettings, registry: Any) -> Iterator[str]:
    """The service on a free port of 127.0.0.1 in a background thread; stopped (and its log flushed) on exit."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings, registry)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", http=bounded_head_protocol(settings.max_header_bytes))
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()


def monitor_config(log: Path, tmp_path: Path, features: Path, **reports: Any) -> MonitorConfig:
    """Monitoring of ``log`` with windows small enough for the tests' log, writing under ``tmp_path``."""
    configured = load_monitor_config(WHERE.monitor_config, WHERE)
    return MonitorConfig(
        replay=configured.replay,
        reports=ReportsConfig(
            log_url=f"sqlite:///{log}",
            window="week",
            min_rows=50,
            min_labels=50,
            max_rows=2000,
            cache_dir=tmp_path / "cache",
            reference_dir=features,
            workspace=tmp_path / "workspace",
            out_dir=tmp_path / "out",
            project=configured.reports.project,
            # the configured dataset's choice, so that the dashboard has its panel of feature drift
            dashboard_features=configured.reports.dashboard_features,
            **reports,
        ),
    )


def read_splits(features: Path) -> dict[str, pl.DataFrame]:
    return {name: pl.read_parquet(features / f"{name}.parquet") for name in SPLITS}


def rebuild(config: DataConfig, validated: Path, tmp_path: Path) -> Path:
    out = tmp_path / "features"
    build_features(config, validated, out, tmp_path / "features.json")
    return out


def log_rows(settings: ServeSettings, table: str = "predictions") -> list[dict[str, Any]]:
    """The rows of one table of the service's prediction log."""
    engine = sa.create_engine(settings.prediction_log_url)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text(f"select * from {table}"))]
    engine.dispose()
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def register(
    store: tuple[Settings, RegistryConfig, Path],
    bundle_dir: Path,
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    evaluate_config: EvaluateConfig,
    tmp_path: Path,
) -> str:
    inputs = register_inputs(bundle_dir, stage_outputs["features"], trained, evaluated, tmp_path / "receipt.json")
    return register_candidate(store[0], store[1], evaluate_config, inputs).version


def register_inputs(
    bundle_dir: Path, features_dir: Path, trained: dict[str, Path], evaluated: Path, receipt: Path
) -> RegisterInputs:
    """What the register stage reads, for a bundle of the tests (the trained fixture's reports and evaluation)."""
    return RegisterInputs(
        bundle_dir=bundle_dir,
        features_dir=features_dir,
        train_reports=trained["reports"],
        evaluation_dir=evaluated,
        lock_file=REPO_ROOT / "dvc.lock",
        root=REPO_ROOT,
        params={},
        receipt=receipt,
        data_outputs=WHERE.data_outputs,
    )


def variant(trained: dict[str, Path], tmp_path: Path, name: str, change: str) -> Path:
    """A copy of the trained bundle: nudged weights (a valid new model), NaN weights, or another contract."""
    bundle = Bundle.load(trained["bundle"])
    weights = {k: v.copy() for k, v in bundle.weights.items()}
    preprocessor = bundle.preprocessor
    if change == "nudged":
        first = next(k for k, v in weights.items() if v.dtype.kind == "f")
        weights[first] += 0.01
    elif change == "nan":
        weights = {k: np.full_like(v, np.nan) if v.dtype.kind == "f" else v for k, v in weights.items()}
    elif change == "contract":
        features = dict(preprocessor.contract.features)
        feature = next(iter(features))
        features[feature] = features[feature].model_copy(update={"description": "renamed"})
        contract = preprocessor.contract.model_copy(update={"features": features})
        preprocessor = preprocessor.model_copy(update={"contract": contract})
    path = tmp_path / name
    replace(bundle, weights=weights, preprocessor=preprocessor).save(path)
    return path


@dataclass(frozen=True)
class TwoVersions:
    """A registry holding two versions of the model, ``@champion`` on the first."""

    settings: Settings
    config_path: Path
    registry: Registry
    first: str
    second: str
    second_bundle: Path


def two_versions(
    experiment: str,
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    evaluate_config: EvaluateConfig,
    tmp_path: Path,
) -> TwoVersions:
    """A registry in ``tmp_path`` with the trained bundle and a nudged copy of it as two versions."""
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    config = slice_registry(experiment)
    config_path = tmp_path / "registry.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    store = (settings, config, config_path)
    first = register(store, trained["bundle"], trained, evaluated, stage_outputs, evaluate_config, tmp_path)
    second_bundle = variant(trained, tmp_path, "second", "nudged")
    second = register(store, second_bundle, trained, evaluated, stage_outputs, evaluate_config, tmp_path)
    registry = Registry(settings, config)
    registry.connect()
    registry.set_alias(CHAMPION, first)
    return TwoVersions(settings, config_path, registry, first, second, second_bundle)


def slice_registry(experiment: str, model_name: str = MODEL_NAME) -> RegistryConfig:
    """A registry configuration for the tests' slices: the default gate, except that it decides on however few
    held-out rows or positives a slice has (a slice of an imbalanced table holds a handful; the sizes the gate
    refuses are tests/unit/test_promotion.py's)."""
    gate = PromotionGateConfig(min_test_rows=1, min_test_positives=1)
    return RegistryConfig(experiment=experiment, model_name=model_name, gate=gate)
