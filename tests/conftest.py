"""Shared fixtures: the configured dataset's configuration (tests/profiles.py), run on source tables written on the
fly: a slice of its real tables, or rows generated from its contract."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest
import yaml

from helpers import CONFIG_PATH, MODEL_NAME, WHERE, register_inputs, shrink, slice_registry, with_source
from monitoring.traffic import load_traffic
from profiles import configured_config, profile, time_split_of
from serving.log import PredictionLog
from serving.log.lines import PredictionBatch
from serving.settings import ServeSettings
from tabloop.config import (
    DataConfig,
    EvaluateConfig,
    TrainConfig,
    load_evaluate_config,
    load_train_config,
)
from tabloop.config.monitor import ReplayConfig, load_monitor_config
from tabloop.runtime.bundle import Predictor
from tabloop.settings import Settings
from tabloop.stages.evaluate import run as evaluate
from tabloop.stages.features import run as build_features
from tabloop.stages.ingest import run as ingest
from tabloop.stages.register import run as register_candidate
from tabloop.stages.train import run as train
from tabloop.stages.validate import run as validate

pytest_plugins = ["chromium"]  # the browser fixture of the ui tests

TESTS = Path(__file__).parent
E2E = TESTS / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ is marked ``e2e`` (``make test`` leaves it to ``make test-all``), and a test
    marked ``adapter(name)`` is skipped unless the configured dataset uses that adapter."""
    adapter = configured_config().adapter
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)
        wanted = item.get_closest_marker("adapter")
        if wanted is not None and wanted.args[0] != adapter:
            reason = f"{wanted.args[0]} adapter tests; the configured dataset is {WHERE.dataset!r}"
            item.add_marker(pytest.mark.skip(reason=reason))


MLFLOW_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@pytest.fixture(scope="session", autouse=True)
def _original_mlflow_uris() -> dict[str, str | None]:
    """The MLflow URIs of the environment pytest started in (set up before any other session fixture)."""
    return {name: os.environ.get(name) for name in MLFLOW_URI_VARIABLES}


@pytest.fixture(autouse=True)
def _restore_mlflow_uris(_original_mlflow_uris: dict[str, str | None]) -> Iterator[None]:
    """``mlflow.set_tracking_uri`` also writes MLFLOW_TRACKING_URI into ``os.environ``: without this, a fixture's
    throwaway store would leak into the DVC pipelines that tests run as subprocesses."""
    _set_environment(_original_mlflow_uris)
    yield
    _set_environment(_original_mlflow_uris)


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def real_config() -> DataConfig:
    """The configured dataset's configuration, with the split the tests reason about (tests/profiles.py)."""
    return configured_config()


@pytest.fixture(scope="session")
def slice_tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pl.DataFrame]]:
    """The flights tests' slice of the real tables: a directory holding it, and the slices themselves (as text)."""
    from flights.slices import write_slice

    directory = tmp_path_factory.mktemp("flights")
    return directory, write_slice(directory)


@pytest.fixture(scope="session")
def slice_dir(real_config: DataConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the tests' source tables (read-only for tests; copy it to change it)."""
    directory = tmp_path_factory.mktemp("source")
    profile(real_config).write(real_config, directory, False)
    return directory


@pytest.fixture(scope="session")
def config(real_config: DataConfig, slice_dir: Path) -> DataConfig:
    """The configuration pointed at the tests' source tables."""
    return time_split_of(with_source(real_config, slice_dir), slice_dir)


@pytest.fixture
def source_copy(slice_dir: Path, tmp_path: Path) -> Path:
    """A private, writable copy of the sliced source tables."""
    return Path(shutil.copytree(slice_dir, tmp_path / "source"))


@pytest.fixture(scope="session")
def stage_outputs(config: DataConfig, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three data stages run once on the slice; tests must not modify these outputs."""
    root = tmp_path_factory.mktemp("pipeline")
    paths = {
        "raw": root / "data" / "raw",
        "validated": root / "data" / "validated",
        "reports": root / "reports" / "validation",
        "features": root / "data" / "features",
        "features_metrics": root / "reports" / "features.json",
    }
    ingest(config, paths["raw"])
    validate(config, paths["raw"], paths["validated"], paths["reports"])
    build_features(config, paths["validated"], paths["features"], paths["features_metrics"])
    return paths


@pytest.fixture(scope="session")
def train_config() -> TrainConfig:
    """configs/train.yaml, shrunk for the slice."""
    return shrink(load_train_config(WHERE.train_config))


@pytest.fixture(scope="session")
def evaluate_config() -> EvaluateConfig:
    """The evaluation config with slices small enough for the tests' few hundred examples."""
    config = load_evaluate_config(WHERE.evaluate_config)
    return config.model_copy(update={"min_slice_rows": 5})


@pytest.fixture(scope="session")
def trained(
    stage_outputs: dict[str, Path], train_config: TrainConfig, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The model trained once on the slice's features; tests must not modify these outputs."""
    root = tmp_path_factory.mktemp("trained")
    paths = {"bundle": root / "bundle", "reports": root / "reports" / "train", "checkpoints": root / "checkpoints"}
    train(train_config, stage_outputs["features"], paths["bundle"], paths["reports"], paths["checkpoints"])
    return paths


@pytest.fixture(scope="session")
def evaluated(
    config: DataConfig,
    evaluate_config: EvaluateConfig,
    stage_outputs: dict[str, Path],
    trained: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The evaluation of the trained model on the tests' test split."""
    out = tmp_path_factory.mktemp("evaluation")
    evaluate(
        config,
        evaluate_config,
        stage_outputs["features"],
        trained["bundle"],
        out,
        training_metrics=trained["reports"] / "metrics.json",
    )
    return out


@pytest.fixture(scope="session")
def registry_store(
    tmp_path_factory: pytest.TempPathFactory,
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    evaluate_config: EvaluateConfig,
) -> tuple[Settings, Path]:
    """An MLflow store holding the slice's model as version 1, @champion; and a registry config naming it."""
    root = tmp_path_factory.mktemp("registry")
    settings = Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))
    config = slice_registry("serving-tests")
    inputs = register_inputs(trained["bundle"], stage_outputs["features"], trained, evaluated, root / "registry.json")
    register_candidate(settings, config, evaluate_config, inputs)
    config_path = root / "registry.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return settings, config_path


@pytest.fixture
def serve_settings(registry_store: tuple[Settings, Path], tmp_path: Path) -> ServeSettings:
    """Service settings on the test registry, with a private cache and log, and small limits."""
    return ServeSettings(
        registry_config=registry_store[1],
        contract_config=CONFIG_PATH,
        cache_dir=tmp_path / "cache",
        prediction_log_url=f"sqlite:///{tmp_path}/predictions.db",
        poll_interval_s=0,
        max_batch=50,
        max_body_bytes=64_000,
        inline_rows=8,
    )


@pytest.fixture(scope="session")
def test_rows(stage_outputs: dict[str, Path], config: DataConfig) -> list[dict[str, Any]]:
    """The test split's examples as request bodies (contract features only)."""
    frame = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    return frame.select(list(config.contract.features)).to_dicts()


@pytest.fixture(scope="session")
def replayed_log(
    real_config: DataConfig, trained: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A denser slice's test split predicted by the tests' model and logged with their outcomes, as a replay
    through the service logs them (tests/api/test_replay.py covers that path): the log file and the features."""
    root = tmp_path_factory.mktemp("dense")
    profile(real_config).write(real_config, root / "source", True)
    config = time_split_of(with_source(real_config, root / "source"), root / "source")
    ingest(config, root / "raw")
    validate(config, root / "raw", root / "validated", root / "reports")
    build_features(config, root / "validated", root / "features", root / "features.json")
    predictor = Predictor.from_directory(trained["bundle"])
    traffic = load_traffic(
        root / "features" / "test.parquet",
        config.contract,
        load_monitor_config(WHERE.monitor_config, WHERE).replay,
        time_zone=config.entity.time_zone,
    )
    rows = [orjson.loads(body) for body in traffic.bodies]
    probability, label = predictor.predict({name: [r[name] for r in rows] for name in config.contract.features})
    log = PredictionLog(f"sqlite:///{root}/predictions.db")
    answered = dt.datetime.now(dt.UTC)
    for i, key in enumerate(traffic.keys):
        log.record_batch(
            PredictionBatch(
                request_id=key,
                ids=[key],
                created_at=answered,
                event_time=traffic.event_time[i],
                route="/predict",
                model_name=MODEL_NAME,
                model_version="1",
                features={name: [rows[i][name]] for name in config.contract.features},
                answers={"probability": [float(probability[i])], "label": [bool(label[i])]},
            )
        )
    log.record_feedback(
        {"prediction_id": key, "actual": actual, "outcome": outcome, "received_at": answered}
        for key, actual, outcome in zip(traffic.keys, traffic.labels, traffic.outcomes, strict=True)
    )
    asyncio.run(log.close())
    return root / "predictions.db", root / "features"


@pytest.fixture
def replay_config(stage_outputs: dict[str, Path], tmp_path: Path) -> ReplayConfig:
    """The tests' test split, in well under a second; a dataset without event times on its own synthetic clock."""
    shipped = load_monitor_config(WHERE.monitor_config, WHERE).replay
    return shipped.model_copy(
        update={
            "traffic": stage_outputs["features"] / "test.parquet",
            "speedup": 2e7,
            "rate": 5000,
            "concurrency": 8,
            "max_seconds": 120,
            "retry_seconds": 1,
            "feedback_batch": 20,  # within serve_settings' max_batch
            "state": tmp_path / "replay" / "state.json",
        }
    )
