"""Hot reload: a new champion is served without a restart; one that cannot be served is refused."""

from __future__ import annotations

from pathlib import Path

import mlflow
import polars as pl
import pytest
import yaml
from fastapi.testclient import TestClient

from helpers import SMOKE_NOT_FINITE, register, slice_registry, variant
from serving.app import create_app
from serving.settings import ServeSettings
from tabloop.config import RegistryConfig
from tabloop.registry.mlflow import FILES_TAG, Registry
from tabloop.runtime.bundle import Bundle
from tabloop.settings import Settings
from tabloop.stages.register import log_model


@pytest.fixture
def store(tmp_path: Path) -> tuple[Settings, RegistryConfig, Path]:
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    config = slice_registry("reload", "flight-delay")
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    return settings, config, path


@pytest.fixture
def reg(trained, evaluated, stage_outputs, evaluate_config, tmp_path, store):
    return lambda bundle_dir: register(store, bundle_dir, trained, evaluated, stage_outputs, evaluate_config, tmp_path)


def test_new_champion_is_served_without_restart(
    store: tuple,
    reg,
    trained: dict[str, Path],
    tmp_path: Path,
    test_rows: list,
) -> None:
    assert reg(trained["bundle"]) == "1"
    settings = ServeSettings(
        registry_config=store[2],
        cache_dir=tmp_path / "cache",
        poll_interval_s=0,
        prediction_log_url=f"sqlite:///{tmp_path}/log.db",
    )
    with TestClient(create_app(settings, store[0])) as client:
        assert client.post("/predict", json=test_rows[0]).json()["model_version"] == "1"
        version = reg(variant(trained, tmp_path, "nudged", "nudged"))
        registry = Registry(store[0], store[1])
        registry.connect()
        if registry.champion_history()[-1] != version:  # the gate may promote the nudged model itself
            registry.promote(version, reason="test", decided_by="manual")
        assert client.post("/admin/reload").json() == {"changed": True, "version": version}
        assert client.post("/predict", json=test_rows[0]).json()["model_version"] == version
        assert client.get("/health/ready").json()["model"]["version"] == version
        assert client.post("/admin/reload").json() == {"changed": False, "version": version}
    assert (tmp_path / "cache" / "flight-delay" / version / "weights.safetensors").is_file()


def log_unchecked(store: tuple, bundle_dir: Path, evaluated: Path, stage_outputs: dict[str, Path]) -> str:
    """Register a bundle directly, as another tool might, without the register stage's checks."""
    registry = Registry(store[0], store[1])
    registry.connect()
    held_out = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    with mlflow.start_run(experiment_id=registry.experiment_id()):
        logged = log_model(Bundle.load(bundle_dir), evaluated / "model_card.md", held_out)
    return registry.register(logged.uri, {FILES_TAG: logged.files_sha256})


@pytest.mark.parametrize(
    ("change", "reason"),
    [("nan", SMOKE_NOT_FINITE), ("contract", "feature contract differs")],
)
def test_unservable_champion_is_refused_and_the_old_one_keeps_serving(
    store: tuple,
    reg,
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    tmp_path: Path,
    test_rows: list,
    change: str,
    reason: str,
) -> None:
    reg(trained["bundle"])
    settings = ServeSettings(
        registry_config=store[2],
        cache_dir=tmp_path / "cache",
        poll_interval_s=0,
        prediction_log_url=f"sqlite:///{tmp_path}/log.db",
    )
    with TestClient(create_app(settings, store[0])) as client:
        registry = Registry(store[0], store[1])
        bad = log_unchecked(store, variant(trained, tmp_path, change, change), evaluated, stage_outputs)
        registry.promote(bad, reason="test", decided_by="manual")
        assert client.post("/admin/reload").json() == {"changed": False, "version": "1"}
        ready = client.get("/health/ready").json()
        assert ready["model"]["version"] == "1"
        assert reason in ready["refused_versions"][bad]
        assert client.post("/predict", json=test_rows[0]).json()["model_version"] == "1"
        assert "model_versions_refused 1.0" in client.get("/metrics").text


def test_a_model_with_non_finite_predictions_is_not_registered(
    store: tuple,
    reg,
    trained: dict[str, Path],
    tmp_path: Path,
) -> None:
    from tabloop.runtime.bundle import BundleError

    with pytest.raises(BundleError, match="predictions are not finite for"):
        reg(variant(trained, tmp_path, "nan", "nan"))
