"""Registration, the promotion gate and the pyfunc model, against a throwaway MLflow store."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
import torch
from mlflow.models import validate_schema
from mlflow.tracking import MlflowClient

from helpers import TASK, register_inputs, slice_registry
from synthetic import Probe
from tabloop import runtime
from tabloop.config import EvaluateConfig, RegistryConfig
from tabloop.data.dtypes import polars_dtype
from tabloop.features.fitting import frame_columns
from tabloop.io import read_json
from tabloop.records import PRIMARY_METRICS
from tabloop.registry.candidate import RegisterInputs
from tabloop.registry.mlflow import CHALLENGER, CHAMPION, Registry, RegistryError, input_example, model_signature
from tabloop.runtime.bundle import LINEAGE_FILE, Bundle, Predictor
from tabloop.runtime.contract import FeatureContract, FeatureSpec
from tabloop.runtime.network import TabularNet
from tabloop.settings import Settings
from tabloop.stages.register import run as register_candidate

PRIMARY = PRIMARY_METRICS[TASK]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("mlflow")
    return Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))


@pytest.fixture
def registry_config(request: pytest.FixtureRequest) -> RegistryConfig:
    """A registered model of its own for every test."""
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name)[:60].strip("-")
    return slice_registry("tests", name)


@pytest.fixture
def inputs(trained: dict[str, Path], evaluated: Path, stage_outputs: dict[str, Path], tmp_path: Path) -> RegisterInputs:
    inputs = register_inputs(
        trained["bundle"], stage_outputs["features"], trained, evaluated, tmp_path / "registry.json"
    )
    return replace(inputs, params={"train": {"seed": 42, "model": {"hidden": [64]}}})


@pytest.fixture
def worse_bundle(trained: dict[str, Path], tmp_path: Path) -> Path:
    """The trained bundle with untrained weights: the same inputs and outputs, no skill."""
    bundle = Bundle.load(trained["bundle"])
    torch.manual_seed(12345)
    untrained = {name: tensor.numpy() for name, tensor in TabularNet(bundle.args).state_dict().items()}
    path = tmp_path / "worse"
    replace(bundle, weights=untrained).save(path)
    return path


def with_bundle(inputs: RegisterInputs, bundle_dir: Path) -> RegisterInputs:
    return RegisterInputs(**{**inputs.__dict__, "bundle_dir": bundle_dir})


def test_first_registration_becomes_champion_with_lineage(
    settings: Settings,
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    trained: dict[str, Path],
    tmp_path: Path,
) -> None:
    outcome = register_candidate(settings, registry_config, evaluate_config, inputs)
    assert (outcome.version, outcome.new, outcome.champion) == ("1", True, "1")
    assert outcome.decision is not None
    assert outcome.decision.promote

    registry = Registry(settings, registry_config)
    digest = Bundle.load(trained["bundle"]).digest()
    for alias in (CHAMPION, CHALLENGER):
        version = registry.by_alias(alias)
        assert version is not None
        assert Registry.number(version) == "1"
    tags = registry.get("1").tags
    assert tags["bundle_sha256"] == digest
    assert tags["gate.decision"] == "promote"
    assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"])
    assert tags["champion.decided_by"] == "gate"
    assert registry.champion_history() == ["1"]
    assert read_json(inputs.receipt) == {"model_name": registry_config.model_name, "bundle_sha256": digest}

    run_id = registry.get("1").run_id
    client = MlflowClient(settings.tracking_uri)
    history = client.get_metric_history(run_id, f"valid_{PRIMARY.name}")
    assert len(history) == read_json(trained["reports"] / "metrics.json")["epochs_run"]
    run = client.get_run(run_id)
    assert f"test_{PRIMARY.name}" in run.data.metrics
    assert f"lightgbm_test_{PRIMARY.name}" in run.data.metrics
    assert run.data.params["train.seed"] == "42"

    bundle_dir = registry.fetch_bundle("1", tmp_path / "download")
    lineage = read_json(bundle_dir / LINEAGE_FILE)
    assert lineage["bundle_sha256"] == digest
    assert set(lineage["data"]) == {"raw", "validated", "features"}
    assert lineage["mlflow_run_id"] == run_id
    assert "test" in lineage["metrics"]
    assert (bundle_dir / "model_card.md").is_file()
    assert Bundle.load(bundle_dir).digest() == digest  # loading needs nothing but the bundle


def test_registering_the_same_bundle_again_does_nothing(
    settings: Settings, registry_config: RegistryConfig, evaluate_config: EvaluateConfig, inputs: RegisterInputs
) -> None:
    register_candidate(settings, registry_config, evaluate_config, inputs)
    again = register_candidate(settings, registry_config, evaluate_config, inputs)
    assert (again.version, again.new, again.decision) == ("1", False, None)
    versions = MlflowClient(settings.tracking_uri).search_model_versions(f"name = '{registry_config.model_name}'")
    assert len(versions) == 1


def test_worse_model_is_not_promoted(
    settings: Settings,
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    worse_bundle: Path,
) -> None:
    register_candidate(settings, registry_config, evaluate_config, inputs)
    outcome = register_candidate(settings, registry_config, evaluate_config, with_bundle(inputs, worse_bundle))
    assert outcome.version == "2"
    assert outcome.champion == "1"
    assert outcome.decision is not None
    assert not outcome.decision.promote
    registry = Registry(settings, registry_config)
    challenger = registry.by_alias(CHALLENGER)
    assert challenger is not None
    assert Registry.number(challenger) == "2"
    tags = registry.get("2").tags
    assert tags["gate.decision"] == "reject"
    assert tags["gate.champion"] == "1"
    assert "vs champion" in tags["gate.reasons"]
    delta = float(tags["gate.delta"])  # the challenger's score less the champion's
    assert delta < 0 if PRIMARY.higher_is_better else delta > 0


def test_pyfunc_and_bundle_predictor_agree(
    settings: Settings,
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    trained: dict[str, Path],
    stage_outputs: dict[str, Path],
) -> None:
    register_candidate(settings, registry_config, evaluate_config, inputs)
    model = mlflow.pyfunc.load_model(f"models:/{registry_config.model_name}@{CHAMPION}")
    predictor = Predictor.from_directory(trained["bundle"])
    test = pl.read_parquet(stage_outputs["features"] / "test.parquet")
    frame = test.select(list(predictor.bundle.contract.features)).to_pandas()
    contract = predictor.bundle.contract
    probe = Probe.of(contract)
    for row, kind in enumerate(("numeric", "categorical")):  # a missing value of each kind, where one may be
        for name in [n for n in probe.nullable if contract.features[n].kind == kind][:1]:
            frame.loc[row, name] = None
    if probe.categorical is not None:
        frame.loc[2, probe.categorical] = probe.unseen
    served = model.predict(frame)

    columns = frame_columns(pl.from_pandas(frame), predictor.bundle.contract)
    answers = predictor.answer(columns)
    numbers = served.select_dtypes("number").to_numpy()  # the probabilities, or the value
    assert np.allclose(numbers.reshape(predictor.outputs(columns).shape), predictor.outputs(columns), atol=1e-7)
    if TASK == "binary":
        assert (served["label"].to_numpy() == answers.label).all()
    elif TASK == "multiclass":
        assert served["label"].tolist() == answers.predicted_class


def test_manual_promotion_and_rollback(
    settings: Settings,
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    worse_bundle: Path,
) -> None:
    register_candidate(settings, registry_config, evaluate_config, inputs)
    register_candidate(settings, registry_config, evaluate_config, with_bundle(inputs, worse_bundle))
    registry = Registry(settings, registry_config)

    assert registry.promote("2", reason="testing a hand-over", decided_by="manual") == "1"
    champion = registry.by_alias(CHAMPION)
    assert champion is not None
    assert Registry.number(champion) == "2"
    assert registry.get("2").tags["champion.reason"] == "testing a hand-over"
    assert registry.champion_history() == ["1", "2"]
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote("2", reason="again", decided_by="manual")
    with pytest.raises(RegistryError, match="has no version 9"):
        registry.promote("9", reason="typo", decided_by="manual")

    assert registry.rollback("worse on Mondays") == ("2", "1")
    champion = registry.by_alias(CHAMPION)
    assert champion is not None
    assert Registry.number(champion) == "1"
    assert registry.get("2").tags["champion.rollback_reason"] == "worse on Mondays"
    with pytest.raises(RegistryError, match="first recorded champion"):
        registry.rollback("nothing before it")


def test_unreachable_tracking_server_fails_fast_and_registers_nothing(
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    down = Settings(tracking_uri=f"http://127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(RegistryError, match=rf"127\.0\.0\.1:{port} cannot be reached .* nothing was registered") as e:
        register_candidate(down, registry_config, evaluate_config, inputs)
    assert "Max retries exceeded" in str(e.value)  # a refused connection, not a configuration mistake
    assert time.monotonic() - start < 15
    assert not inputs.receipt.exists()


def test_failure_after_registration_leaves_no_version(
    settings: Settings,
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: object) -> None:
        raise RuntimeError("registry refused the alias")

    monkeypatch.setattr(Registry, "set_alias", refuse)
    with pytest.raises(RuntimeError, match="refused the alias"):
        register_candidate(settings, registry_config, evaluate_config, inputs)
    client = MlflowClient(settings.tracking_uri)
    assert client.search_model_versions(f"name = '{registry_config.model_name}'") == []
    assert not inputs.receipt.exists()
    runs = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id],
        filter_string=f"tags.bundle_sha256 = '{Bundle.load(inputs.bundle_dir).digest()}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    assert runs[0].info.status == "FAILED"


@pytest.mark.parametrize("dtype", ["int16", "int64", "float32"])
def test_the_input_example_satisfies_the_signature_whatever_the_number_dtype(dtype: str) -> None:
    contract = FeatureContract(
        features={
            "count": FeatureSpec(kind="numeric", dtype=dtype, min=0),
            "grade": FeatureSpec(kind="categorical", dtype="string"),
            "level": FeatureSpec(kind="categorical", dtype="int64"),
        }
    )
    frame = pl.DataFrame(
        {"count": [1, 2, 3], "grade": ["a", "b", "a"], "level": [1, 2, 3]},
        schema={"count": polars_dtype(dtype), "grade": pl.String, "level": pl.Int64},
    )
    signature = model_signature(contract).inputs
    validate_schema(input_example(contract, frame), signature)  # raises if MLflow refuses it
    validate_schema(frame.to_pandas(), signature)  # as a client holds the rows: integers as integers


RUNTIME_PY = {"__init__.py", "errors.py"} | {f"runtime/{p.name}" for p in Path(runtime.__file__).parent.glob("*.py")}


def test_a_registered_model_ships_the_runtime_alone_and_loads_from_it(
    settings: Settings,
    registry_config: RegistryConfig,
    evaluate_config: EvaluateConfig,
    inputs: RegisterInputs,
    stage_outputs: dict[str, Path],
    tmp_path: Path,
) -> None:
    register_candidate(settings, registry_config, evaluate_config, inputs)
    model_dir = Path(
        mlflow.artifacts.download_artifacts(f"models:/{registry_config.model_name}/1", dst_path=str(tmp_path))
    )
    shipped = model_dir / "code" / "tabloop"
    files = {p.relative_to(shipped).as_posix() for p in shipped.rglob("*.py")}
    assert files == RUNTIME_PY
    assert len(files) <= 15

    # In a process of its own (as `mlflow models serve` loads it), the model imports the runtime from its own copy.
    rows = pl.read_parquet(stage_outputs["features"] / "test.parquet").head(5)
    rows.write_parquet(tmp_path / "rows.parquet")
    script = (
        "import sys, json, mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "import tabloop.runtime.bundle as b\n"
        "served = model.predict(pd.read_parquet(sys.argv[2]))\n"
        "print(json.dumps({'module': b.__file__, 'numbers': served.select_dtypes('number').to_numpy().tolist()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(model_dir), str(tmp_path / "rows.parquet")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(answer["module"]).is_relative_to(shipped)
    predictor = Predictor.from_directory(inputs.bundle_dir)
    expected = predictor.outputs(frame_columns(rows, predictor.bundle.contract))
    assert np.allclose(np.reshape(answer["numbers"], expected.shape), expected, atol=1e-7)
