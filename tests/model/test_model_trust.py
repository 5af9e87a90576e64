"""Bundles are verified end to end: a changed byte in the cache or in the registry is never served."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from helpers import MODEL_NAME, TARGET, TASK, answer_number
from serving.app import create_app
from serving.settings import ServeSettings
from tabloop.registry.mlflow import FILES_TAG, Registry
from tabloop.runtime.bundle import MODEL_FILE, WEIGHTS_FILE, Bundle, BundleError
from tabloop.settings import Settings

DOWN = Settings(tracking_uri="http://127.0.0.1:9")  # nothing listens there: the registry is unreachable


@pytest.fixture
def settings(registry_store: tuple[Settings, Path], tmp_path: Path) -> ServeSettings:
    return ServeSettings(
        registry_config=registry_store[1],
        cache_dir=tmp_path / "cache",
        prediction_log_url=f"sqlite:///{tmp_path}/log.db",
        poll_interval_s=0,
    )


def cached(settings: ServeSettings) -> Path:
    return settings.cache_dir / MODEL_NAME / "1"


def serve_once(settings: ServeSettings, registry: Settings, row: dict[str, Any]) -> dict[str, Any]:
    """Start the service, read readiness and one prediction (None if refused), stop it."""
    with TestClient(create_app(settings, registry)) as client:
        ready = client.get("/health/ready")
        answer = client.post("/predict", json=row)
        return {
            "ready": ready.status_code,
            "model": ready.json()["model"],
            "refused": ready.json()["refused_versions"],
            "probability": answer_number(answer.json()["predictions"][0]) if answer.status_code == 200 else None,
        }


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def set_threshold(bundle: Path, threshold: Any) -> None:
    model = json.loads((bundle / MODEL_FILE).read_text())
    model["threshold"] = threshold
    (bundle / MODEL_FILE).write_text(json.dumps(model))


def test_the_registry_version_carries_the_digest_of_its_files(registry_store: tuple[Settings, Path]) -> None:
    from tabloop.config import load_registry_config

    registry = Registry(registry_store[0], load_registry_config(registry_store[1]))
    tags = registry.get("1").tags
    assert len(tags[FILES_TAG]) == 64


@pytest.mark.parametrize("damage", ["weights", "threshold", "truncated", "extra file"])
def test_a_damaged_cache_is_fetched_again_when_the_registry_answers(
    settings: ServeSettings, registry_store: tuple[Settings, Path], test_rows: list, damage: str
) -> None:
    first = serve_once(settings, registry_store[0], test_rows[0])  # fills the cache
    bundle = cached(settings)
    if damage == "weights":
        flip_a_byte(bundle / WEIGHTS_FILE)
    elif damage == "threshold":
        set_threshold(bundle, 0.01)
    elif damage == "truncated":
        weights = bundle / WEIGHTS_FILE
        weights.write_bytes(weights.read_bytes()[:100])
    else:
        (bundle / "extra.py").write_text("print('hello')\n")
    again = serve_once(settings, registry_store[0], test_rows[0])
    assert again["ready"] == 200
    assert again["model"]["source"] == "registry"
    assert again["probability"] == first["probability"]  # the registry's model, not the damaged copy
    assert again["refused"] == {}  # the version itself is fine: only the copy was bad
    assert not (bundle / "extra.py").exists()


@pytest.mark.parametrize("damage", ["weights", "threshold", "truncated"])
def test_a_damaged_cache_is_not_served_while_the_registry_is_down(
    settings: ServeSettings, registry_store: tuple[Settings, Path], test_rows: list, damage: str
) -> None:
    serve_once(settings, registry_store[0], test_rows[0])
    assert serve_once(settings, DOWN, test_rows[0])["model"]["source"] == "cache"  # intact: served
    bundle = cached(settings)
    if damage == "weights":
        flip_a_byte(bundle / WEIGHTS_FILE)
    elif damage == "threshold":
        set_threshold(bundle, 0.01)
    else:
        (bundle / WEIGHTS_FILE).write_bytes(b"")
    refused = serve_once(settings, DOWN, test_rows[0])
    assert refused["ready"] == 503  # fail closed: no model rather than a tampered one
    assert refused["model"] is None
    assert refused["probability"] is None


@pytest.mark.parametrize("pointer", ["../../elsewhere", "1/../1", "/tmp", "x"])
def test_the_cache_pointer_names_a_version_never_a_path(
    settings: ServeSettings, registry_store: tuple[Settings, Path], test_rows: list, tmp_path: Path, pointer: str
) -> None:
    serve_once(settings, registry_store[0], test_rows[0])
    outside = tmp_path / "elsewhere"
    shutil.copytree(cached(settings), outside)  # a whole, valid bundle outside the cache
    path = settings.cache_dir / MODEL_NAME / "champion.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "version": pointer}))
    assert serve_once(settings, DOWN, test_rows[0])["model"] is None


def test_a_registry_answering_with_another_bundle_for_the_version_is_refused(
    settings: ServeSettings, registry_store: tuple[Settings, Path], test_rows: list
) -> None:
    artifacts = Path(registry_store[0].artifact_root)
    weights = next(artifacts.rglob(f"bundle/{WEIGHTS_FILE}"))
    original = weights.read_bytes()
    flip_a_byte(weights)  # the store's copy changed after registration
    try:
        refused = serve_once(settings, registry_store[0], test_rows[0])
    finally:
        weights.write_bytes(original)
    assert refused["ready"] == 503
    assert "does not match the digest recorded at registration" in refused["refused"]["1"]
    assert not cached(settings).exists()  # nothing unverified is kept


# What each task keeps beside the network, damaged: a binary model's threshold, a regression's target scaling
ANSWER_DAMAGE: dict[str, list[tuple[dict[str, Any], str]]] = {
    "binary": [
        ({"threshold": float("nan")}, "threshold must be a number from 0 to 1"),
        ({"threshold": 1.5}, "threshold must be a number from 0 to 1"),
        ({"threshold": "0.5"}, "threshold must be a number from 0 to 1"),
    ],
    "multiclass": [],
    "regression": [
        ({"target_scaling": {"scale": 0.0}}, "scale positive"),
        ({"target_scaling": {"shift": float("inf")}}, "shift and scale must be finite"),
        ({"target_scaling": {"transform": "log"}}, "transform 'log' is not none or log1p"),
    ],
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"args": {"hidden": [200_000]}}, "hidden must be integers from 1 to 65536"),
        ({"args": {"members": 0}}, "members must be an integer from 1 to 64"),
        ({"args": {"hidden": [60_000, 60_000, 60_000]}}, "parameters; at most"),
        ({"args": {"embedded": 100_000}}, "embedded must be an integer from 0 to"),
        ({"args": {"frequencies": 0}}, "frequencies must be an integer from 1 to 65536"),
        ({"args": {"ensemble": "bagging"}}, "ensemble must be one of independent, batch, not 'bagging'"),
        ({"args": {"outputs": TARGET.outputs + 1}}, f"{TARGET.outputs + 1} outputs for a target of {TARGET.outputs}"),
        *ANSWER_DAMAGE[TASK],
    ],
)
def test_model_sizes_and_threshold_are_bounded_before_anything_is_allocated(
    trained: dict[str, Path], tmp_path: Path, change: dict[str, Any], says: str
) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained["bundle"], bundle)
    model = json.loads((bundle / MODEL_FILE).read_text())
    for key, value in change.items():
        model[key] = {**model[key], **value} if isinstance(value, dict) else value
    (bundle / MODEL_FILE).write_text(json.dumps(model))
    with pytest.raises(BundleError, match=says):
        Bundle.load(bundle)
