"""A multiclass and a regression table drafted by ``make init`` and run through the data stages and training, as a
user who brings one gets them: the task inferred, labels written per task, a network that learns the planted rule
on the task's primary metric, and an evaluation in the task's terms against baselines of the same families."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import orjson
import polars as pl
import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from helpers import REPO_ROOT, WHERE, log_rows, shrink
from monitoring.monitor import run_monitor
from serving.app import create_app
from serving.routes.v2 import datatype_of
from serving.settings import ServeSettings
from tabloop.config import load_data_config, load_evaluate_config, load_registry_config, load_train_config
from tabloop.config.monitor import GateConfig, MonitorConfig, ReportsConfig, load_monitor_config
from tabloop.drafting import DraftRequest, draft_dataset
from tabloop.features.fitting import frame_columns
from tabloop.io import read_json
from tabloop.layout import DATASETS_FILE, Layout
from tabloop.registry.candidate import RegisterInputs
from tabloop.registry.mlflow import CHAMPION
from tabloop.runtime.bundle import Bundle, Predictor
from tabloop.settings import Settings
from tabloop.stages.evaluate import run as evaluate
from tabloop.stages.features import run as build_features
from tabloop.stages.ingest import run as ingest
from tabloop.stages.register import run as register
from tabloop.stages.train import run as train
from tabloop.stages.validate import run as validate

ROWS = 1200


def table(seed: int = 0) -> pl.DataFrame:
    """Jobs of a compute cluster: the class follows the size and the queue; the cost is skewed and follows both."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(0, 10, ROWS)
    queue = rng.choice(["batch", "gpu", "short"], ROWS)
    boost = np.select([queue == "gpu", queue == "short"], [2.5, -2.5], 0.0)
    score = size + boost + rng.normal(0, 0.5, ROWS)
    duration = np.select([score < 2.5, score < 5, score < 7.5], ["VF", "F", "M"], "L")
    cost = np.round(np.exp(0.3 * size + 0.4 * boost + rng.normal(0, 0.1, ROWS)), 3)
    region = rng.choice(["north", "south"], ROWS)  # noise, named as the features stage's own split column once was
    return pl.DataFrame(
        {"size": np.round(size, 4), "queue": queue, "duration": duration, "cost": cost, "split": region}
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    (root / "configs").mkdir()
    (root / DATASETS_FILE).write_text("default: example\ndatasets:\n  - example\n")
    (root / "data" / "external").mkdir(parents=True)
    table().write_csv(root / "data" / "external" / "jobs.csv")
    return root


def run_stages(root: Path, name: str, target: str, drop: str | tuple[str, ...]) -> tuple[Any, Path]:
    """Draft the dataset (the other target column left out of the table), then ingest, validate, features, train."""
    csv = root / "data" / "external" / f"{name}.csv"
    pl.read_csv(root / "data" / "external" / "jobs.csv").drop(drop).write_csv(csv)
    draft_dataset(DraftRequest(name, str(csv), target), root)
    where = Layout(name, root)
    config = load_data_config(where.data_config)
    config = config.model_copy(update={"source": config.source.model_copy(update={"dir": csv.parent})})
    out = root / "out" / name
    ingest(config, out / "raw")
    validate(config, out / "raw", out / "validated", out / "validation")
    build_features(config, out / "validated", out / "features", out / "features.json")
    train(shrink(load_train_config(where.train_config), max_epochs=30, patience=6), out / "features", out / "bundle",
          out / "train", out / "checkpoints")  # fmt: skip
    return config, out


def test_a_multiclass_table_is_drafted_labelled_and_learned(root: Path) -> None:
    config, out = run_stages(root, "durations", "duration", drop="cost")
    assert config.label.task == "multiclass"
    assert config.label.classes == ["F", "L", "M", "VF"]
    shares = read_json(out / "features.json")["splits"]["train"]["class_shares"]
    assert set(shares) == {"F", "L", "M", "VF"}
    assert abs(sum(shares.values()) - 1) < 1e-6
    metrics = read_json(out / "train" / "metrics.json")
    assert set(metrics) == {"best_epoch", "epochs_run", "valid_log_loss"}
    assert metrics["valid_log_loss"] < 0.7 * np.log(4)  # far better than a uniform guess over four classes

    predictor = Predictor.from_directory(out / "bundle")
    test = pl.read_parquet(out / "features" / "test.parquet")
    proba, classes = predictor.predict_classes(frame_columns(test, predictor.bundle.contract))
    truth = [config.contract.target.classes[i] for i in test[config.contract.target.name]]
    assert np.allclose(proba.sum(axis=1), 1)
    assert np.mean(np.array(classes) == np.array(truth)) > 0.6

    evaluation = evaluated(root, "durations", config, out)
    assert evaluation["primary"] == {"name": "log_loss", "higher_is_better": False}
    assert set(evaluation["test"]) == {"pytorch", "lightgbm", "logistic"}
    for scores in evaluation["test"].values():
        assert set(scores) == {"rows", "log_loss", "accuracy", "macro_f1", "roc_auc_ovr"}
        assert scores["log_loss"] < np.log(4)  # every model, baselines too, learns the planted rule
    assert set(evaluation["per_class"]) == {"F", "L", "M", "VF"}
    assert "decision" not in evaluation
    confusion = pl.read_csv(out / "evaluation" / "plots" / "confusion" / "pytorch.csv")
    assert confusion["rows"].sum() == test.height
    assert confusion.height == 16
    card = (out / "evaluation" / "model_card.md").read_text()
    assert "| class | share | precision | recall | F1 |" in card
    assert "one of 4 classes (F, L, M, VF)" in card


def test_a_skewed_regression_table_is_drafted_with_a_log_transform_and_learned(root: Path) -> None:
    config, out = run_stages(root, "costs", "cost", drop="duration")
    assert (config.label.task, config.label.transform) == ("regression", "log1p")
    assert config.split.kind == "random"
    metrics = read_json(out / "train" / "metrics.json")
    assert set(metrics) == {"best_epoch", "epochs_run", "valid_rmse"}
    history = pl.read_csv(out / "train" / "history.csv")
    assert history.columns == ["epoch", "train_loss", "valid_loss", "valid_rmse"]
    assert history["valid_rmse"].arg_min() + 1 == metrics["best_epoch"]  # lower is better

    predictor = Predictor.from_directory(out / "bundle")
    test = pl.read_parquet(out / "features" / "test.parquet")
    values = predictor.outputs(frame_columns(test, predictor.bundle.contract))
    truth = test[config.contract.target.name].to_numpy()
    rmse = float(np.sqrt(np.mean((values - truth) ** 2)))
    assert rmse < 0.5 * truth.std()  # well under predicting the mean
    assert np.all(values > 0)

    evaluation = evaluated(root, "costs", config, out)
    assert evaluation["primary"] == {"name": "rmse", "higher_is_better": False}
    assert set(evaluation["test"]) == {"pytorch", "lightgbm", "ridge"}
    assert evaluation["test"]["pytorch"]["rmse"] == pytest.approx(rmse, rel=1e-5)
    assert evaluation["test"]["pytorch"]["r2"] > 0.7
    assert evaluation["test"]["pytorch"]["mape"] >= 0  # every cost is positive: MAPE is defined
    assert (out / "evaluation" / "plots" / "predicted_vs_actual" / "ridge.csv").is_file()
    assert "Estimating cost" in (out / "evaluation" / "model_card.md").read_text()


@pytest.mark.parametrize(("name", "kept", "kind"), [("sizes", "size", "numeric"), ("queues", "queue", "categorical")])
def test_a_table_of_numbers_or_categories_only_is_drafted_and_learned(
    root: Path, name: str, kept: str, kind: str
) -> None:
    config, out = run_stages(root, name, "cost", drop=tuple({"duration", "queue", "size", "split"} - {kept}))
    assert [spec.kind for spec in config.contract.features.values()] == [kind]  # nothing of the other kind
    predictor = Predictor.from_directory(out / "bundle")
    test = pl.read_parquet(out / "features" / "test.parquet")
    values = predictor.outputs(frame_columns(test, predictor.bundle.contract))
    truth = test[config.contract.target.name].to_numpy()
    assert float(np.sqrt(np.mean((values - truth) ** 2))) < 0.9 * truth.std()  # one feature explains some cost

    evaluation = evaluated(root, name, config, out)
    assert set(evaluation["test"]) == {"pytorch", "lightgbm", "ridge"}  # the baselines need both kinds neither
    assert evaluation["test"]["ridge"]["r2"] > 0.15


def evaluated(root: Path, name: str, config: Any, out: Path) -> Any:
    """The evaluate stage on the trained model, its ``metrics.json``."""
    settings = load_evaluate_config(Layout(name, root).evaluate_config)
    evaluate(config, settings, out / "features", out / "bundle", out / "evaluation")
    return read_json(out / "evaluation" / "metrics.json")


@pytest.mark.parametrize(
    ("name", "target", "drop"),
    [
        ("durations", "duration", "cost"),
        ("costs", "cost", "duration"),
        ("sizes", "cost", ("duration", "queue", "split")),
        ("queues", "cost", ("duration", "size", "split")),
    ],
    ids=["multiclass", "regression", "regression on numbers only", "regression on categories only"],
)
def test_a_multiclass_or_regression_model_is_gated_registered_and_answers_through_mlflow(
    root: Path, tmp_path: Path, name: str, target: str, drop: str | tuple[str, ...]
) -> None:
    out = root / "out" / name
    if not (out / "evaluation" / "metrics.json").is_file():
        config, _ = run_stages(root, name, target, drop)
        evaluated(root, name, config, out)
    settings = Settings(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts"))
    where = Layout(name, root)
    inputs = RegisterInputs(
        bundle_dir=out / "bundle",
        features_dir=out / "features",
        train_reports=out / "train",
        evaluation_dir=out / "evaluation",
        lock_file=REPO_ROOT / "dvc.lock",
        root=REPO_ROOT,
        params={},
        receipt=tmp_path / "registry.json",
        data_outputs=WHERE.data_outputs,
    )
    registry = load_registry_config(where.registry_config)
    outcome = register(settings, registry, load_evaluate_config(where.evaluate_config), inputs)
    assert outcome.decision is not None
    assert outcome.decision.promote, outcome.decision.reasons  # under the drafted ceiling, and no champion yet
    metric = "log_loss" if target == "duration" else "rmse"
    assert f"no champion yet; challenger {metric}" in outcome.decision.reasons[0]

    model = mlflow.pyfunc.load_model(f"models:/{registry.model_name}@{CHAMPION}")
    predictor = Predictor.from_directory(out / "bundle")
    test = pl.read_parquet(out / "features" / "test.parquet").head(20)
    served = model.predict(test.select(list(predictor.bundle.contract.features)).to_pandas())
    columns = frame_columns(test, predictor.bundle.contract)
    if target == "duration":
        proba, classes = predictor.predict_classes(columns)
        assert list(served.columns) == ["label", "probability_F", "probability_L", "probability_M", "probability_VF"]
        assert served["label"].tolist() == classes
        assert np.allclose(served.drop(columns="label").to_numpy(), proba)
    else:
        assert list(served.columns) == [predictor.bundle.contract.target.name]
        assert np.allclose(served.iloc[:, 0].to_numpy(), predictor.outputs(columns))
    lineage = MlflowClient(settings.tracking_uri).get_model_version(registry.model_name, outcome.version)
    assert f"test_{metric}" in lineage.tags

    serve = ServeSettings(
        registry_config=where.registry_config,
        contract_config=where.data_config,
        cache_dir=tmp_path / "cache",
        prediction_log_url=f"sqlite:///{tmp_path}/predictions.db",
        poll_interval_s=0,
    )
    rows = test.select(list(predictor.bundle.contract.features)).to_dicts()
    with TestClient(create_app(serve, settings)) as client:
        answered = check_routes(client, registry.model_name, predictor, rows, served)
        check_feedback(client, predictor.bundle.contract.target, answered)
        exposition = client.get("/metrics").text
    if target == "duration":
        assert 'predictions_by_class_total{class="' in exposition
        assert "prediction_probability_count" in exposition
    else:
        assert "prediction_value_count 27.0" in exposition  # a positive target's buckets: none below 0
        assert "prediction_probability" not in exposition
    check_log(serve, len(rows), answered, served)
    with TestClient(create_app(serve, settings)) as client:  # every outcome arrives: the true ones
        observed = truth(test, predictor.bundle.contract.target)
        sent = [{"id": i, target: v} for i, v in zip(answered, observed, strict=True)]
        assert client.post("/feedback", json=sent).json() == {"recorded": len(sent)}
    check_monitoring(serve, settings, registry, tmp_path, out, predictor, answered, observed, served)


def truth(test: pl.DataFrame, target: Any) -> list[Any]:
    """The test rows' observed targets as /feedback takes them: a class by name, or a number."""
    values = test[target.name].to_list()
    return [target.classes[v] for v in values] if target.classes is not None else values


def check_monitoring(
    serve: ServeSettings,
    settings: Settings,
    registry: Any,
    tmp_path: Path,
    out: Path,
    predictor: Predictor,
    answered: list[str],
    observed: list[Any],
    served: Any,
) -> None:
    """The monitor reports the log in the task's terms and its gate compares the task's primary metric with the
    validation split's: healthy on the true outcomes, an alarm once they are far from the predictions."""
    target = predictor.bundle.contract.target
    config = MonitorConfig(
        replay=load_monitor_config(WHERE.monitor_config, WHERE).replay,
        reports=ReportsConfig(
            log_url=serve.prediction_log_url, min_rows=10, min_labels=10, cache_dir=tmp_path / "monitor-cache",
            reference_dir=out / "features", workspace=tmp_path / "workspace", out_dir=tmp_path / "monitoring",
            project="tasks",
        ),
        # Twenty rows: the features and the prediction drift by chance, and the score is noisy
        gate=GateConfig(max_drift_share=1.0, prediction_drift=False, max_error_increase=1.0),
    )  # fmt: skip
    result = run_monitor(config, settings, registry, target.task)
    summary = result.verdict.summary
    assert summary is not None
    quality = summary.quality
    assert quality is not None
    if target.classes is not None:
        assert (quality.metric, summary.prediction) == ("log_loss", "predicted class")
        each = served.drop(columns="label").to_numpy()
        index = [target.classes.index(c) for c in observed]
        expected = -np.mean(np.log(each[np.arange(len(index)), index]))
        assert quality.log_loss == pytest.approx(expected, rel=1e-3)
        assert set(quality.f1_by_class or {}) <= set(target.classes)
        wrong: list[Any] = [target.classes[(i + 1) % len(target.classes)] for i in index]  # never the true class
    else:
        assert (quality.metric, summary.prediction) == ("rmse", "predicted value")
        expected = float(np.sqrt(np.mean((served[target.name].to_numpy() - np.asarray(observed)) ** 2)))
        assert quality.rmse == pytest.approx(expected, rel=1e-6)
        wrong = [3 * v + 10 for v in observed]
    registered = Bundle.load(tmp_path / "monitor-cache" / registry.model_name / "1")  # fetched by the monitor
    assert registered.lineage is not None
    assert quality.reference_score == registered.lineage.metrics.valid_score
    assert result.verdict.status == "healthy", result.verdict.reasons
    assert (tmp_path / "monitoring" / "latest_quality.html").is_file()

    with TestClient(create_app(serve, settings)) as client:  # the outcomes move far from the predictions
        sent = [{"id": i, target.name: v} for i, v in zip(answered, wrong, strict=True)]
        assert client.post("/feedback", json=sent).json() == {"recorded": len(sent)}
    alarmed = run_monitor(config, settings, registry, target.task).verdict
    assert alarmed.status == "alarm"
    name = "log loss" if target.classes is not None else "RMSE"
    assert any(reason.startswith(f"{name} ") and "above the reference's" in reason for reason in alarmed.reasons)


def check_log(serve: ServeSettings, rows: int, answered: list[str], served: Any) -> None:
    """The prediction log holds every answer in its task's columns, and the outcomes recorded."""
    logged = {r["id"]: r for r in log_rows(serve)}
    assert len(logged) == rows + 1 + 2 * 3  # /predict (one and all), /invocations and V2 (3 rows each)
    first = logged[answered[0]]
    if "label" in served:
        assert (first["predicted_class"], first["label"], first["value"]) == (served["label"][0], None, None)
        assert np.allclose(orjson.loads(first["probabilities"]), served.drop(columns="label").iloc[0].to_numpy())
    else:
        assert (first["probability"], first["label"]) == (None, None)
        assert first["value"] == pytest.approx(served.iloc[0, 0])
    outcomes = {r["prediction_id"]: r for r in log_rows(serve, "feedback")}
    assert set(outcomes) == set(answered[:2])


def check_routes(client: TestClient, model: str, predictor: Predictor, rows: list[Any], served: Any) -> list[str]:
    """/predict, /invocations and the V2 protocol answer what the registered pyfunc answers (``served``, one frame
    row per test row); the ids of the /predict answer."""
    target = predictor.bundle.contract.target
    one = client.post("/predict", json=rows[0]).json()
    assert "threshold" not in one
    body = client.post("/predict", json=rows).json()
    answers = body["predictions"]
    single, first = one["predictions"][0][target.name], answers[0][target.name]
    assert single == (first if target.classes else pytest.approx(first, rel=1e-6))  # one row or many
    if target.classes is not None:
        assert [a[target.name] for a in answers] == served["label"].tolist()
        each = np.array([[a["probabilities"][c] for c in target.classes] for a in answers])
        assert np.allclose(each, served.drop(columns="label").to_numpy())
        assert [a["probability"] for a in answers] == pytest.approx(each.max(axis=1).tolist())
    else:
        assert set(answers[0]) == {"id", target.name}
        assert np.allclose([a[target.name] for a in answers], served[target.name].to_numpy())

    invoked = client.post("/invocations", json={"dataframe_records": rows[:3]}).json()["predictions"]
    expected = served.head(3).to_dict(orient="records")
    assert [list(r) for r in invoked] == [list(r) for r in expected]
    for got, want in zip(invoked, expected, strict=True):
        assert got.get("label") == want.get("label")
        numbers = {k: v for k, v in want.items() if k != "label"}
        assert {k: v for k, v in got.items() if k != "label"} == pytest.approx(numbers)

    inputs = [{"name": n, "shape": [3], "datatype": datatype_of(spec), "data": [r[n] for r in rows[:3]]}
              for n, spec in predictor.bundle.contract.features.items()]  # fmt: skip
    infer = client.post(f"/v2/models/{model}/infer", json={"inputs": inputs}).json()["outputs"]
    metadata = client.get(f"/v2/models/{model}").json()["outputs"]
    assert [(o["name"], o["datatype"]) for o in infer] == [(o["name"], o["datatype"]) for o in metadata]
    if target.classes is not None:
        assert [(o["name"], o["shape"]) for o in infer] == [("label", [3]), ("probabilities", [3, len(target.classes)])]
        assert infer[0]["data"] == served["label"].head(3).tolist()
        assert np.allclose(np.reshape(infer[1]["data"], (3, -1)), served.drop(columns="label").head(3).to_numpy())
    else:
        assert [(o["name"], o["datatype"], o["shape"]) for o in infer] == [(target.name, "FP64", [3])]
        assert np.allclose(infer[0]["data"], served[target.name].head(3).to_numpy())
    return [a["id"] for a in answers]


def check_feedback(client: TestClient, target: Any, ids: list[str]) -> None:
    """The observed class or number is recorded; a class the model does not know, or a number that is not finite,
    is a 422 naming the field, and nothing is recorded."""
    good = ["L", 3] if target.classes is not None else [12.5, 3]
    recorded = client.post("/feedback", json=[{"id": ids[0], target.name: good[0]}, {"id": ids[1], target.name: 2.0}])
    if target.classes is not None:  # 2.0 is no class
        assert recorded.status_code == 422
        recorded = client.post("/feedback", json=[{"id": i, target.name: "M"} for i in ids[:2]])
    assert recorded.json() == {"recorded": 2}
    bad = b'{"id": "%s", "%s": %s}' % (ids[2].encode(), target.name.encode(), b'"XL"' if target.classes else b"NaN")
    refused = client.post("/feedback", content=bad, headers={"Content-Type": "application/json"})
    assert refused.status_code == 422, refused.text
    assert target.name in refused.text
