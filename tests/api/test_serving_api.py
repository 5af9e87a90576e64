"""The service's routes: predictions, MLflow and V2 protocols, feedback, health, metrics, and every bad input."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from helpers import MODEL_NAME as MODEL
from helpers import REPO_ROOT, TASK, V2_OUTPUTS, answer_number, log_rows
from profiles import configured_config
from serving.app import create_app
from serving.log import PredictionLog
from serving.routes.v2 import datatype_of
from serving.schemas import ModelInfo, Readiness, ReloadResult
from serving.settings import ServeSettings, key_weakness
from serving.v2_protocol import ModelMetadataResponse, ServerMetadataResponse
from synthetic import Probe
from tabloop.errors import ConfigError
from tabloop.runtime.bundle import Predictor
from tabloop.runtime.task import Answers

Rows = list[dict[str, Any]]
CONTRACT = configured_config().contract
PROBE = Probe.of(CONTRACT)
TARGET = PROBE.target
# Two observed values of the target, as /feedback takes them
OBSERVED: dict[str, tuple[Any, Any]] = {
    "binary": (True, False),
    "multiclass": tuple((CONTRACT.target.classes or ["", ""])[:2]),  # type: ignore[dict-item]
    "regression": (42.0, 7.5),
}


def expected_prediction(answers: Answers, i: int) -> dict[str, Any]:
    """What /predict says of row ``i`` (besides its id), from the predictor's answers."""
    lists = answers.lists
    if TASK == "binary":
        return {"probability": lists["probability"][i], TARGET: lists["label"][i]}
    if TASK == "multiclass":
        classes = CONTRACT.target.classes or []
        each = dict(zip(classes, lists["probabilities"][i], strict=True))
        return {TARGET: lists["predicted_class"][i], "probability": lists["probability"][i], "probabilities": each}
    return {TARGET: lists["value"][i]}


def invocation_number(record: dict[str, Any]) -> float:
    """The number of an /invocations record, as ``answer_number`` reads /predict's."""
    if "probability" in record or TASK == "regression":
        return float(record["probability"] if "probability" in record else record[TARGET])
    return max(v for k, v in record.items() if k.startswith("probability_"))


@pytest.fixture
def client(serve_settings: ServeSettings, registry_store: tuple) -> Iterator[TestClient]:
    with TestClient(create_app(serve_settings, registry_store[0])) as c:
        yield c


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"]


def test_one_example(client: TestClient, test_rows: Rows, trained: dict[str, Path]) -> None:
    response = client.post("/predict", json=test_rows[0])
    assert response.status_code == 200
    body = response.json()
    assert (body["model_name"], body["model_version"]) == (MODEL, "1")
    [prediction] = body["predictions"]
    assert prediction["id"] == body["request_id"]
    answers = Predictor.from_directory(trained["bundle"]).answer({k: [v] for k, v in test_rows[0].items()})
    expected = expected_prediction(answers, 0)
    assert set(prediction) == {"id", *expected}
    for key, value in expected.items():
        assert prediction[key] == pytest.approx(value, abs=1e-9)
        assert type(prediction[key]) is type(value)
    assert "app;dur=" in response.headers["server-timing"]


def test_a_list_of_examples_keeps_order_and_is_logged(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows
) -> None:
    rows = test_rows[:12]  # more than inline_rows: predicted in a worker thread
    with TestClient(create_app(serve_settings, registry_store[0])) as c:
        body = c.post("/predict", json=rows).json()
        single = [answer_number(c.post("/predict", json=r).json()["predictions"][0]) for r in rows[:3]]
    assert [answer_number(p) for p in body["predictions"][:3]] == pytest.approx(single)
    ids = [p["id"] for p in body["predictions"]]
    assert len(set(ids)) == 12
    assert all(i.startswith(body["request_id"]) for i in ids)
    logged = {row["id"]: row for row in log_rows(serve_settings)}  # the shutdown flushed the log
    assert len(logged) == 12 + 3
    row = logged[ids[0]]
    assert row["model_version"] == "1"
    assert row["route"] == "/predict"
    assert json.loads(row["features"]) == rows[0]
    logged_number = row["value"] if TASK == "regression" else row["probability"]
    assert logged_number == pytest.approx(answer_number(body["predictions"][0]))


def test_a_client_names_its_request_and_when_it_happened(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows
) -> None:
    headers = {"X-Request-Id": "replay-2013-11-05-r1545", "X-Event-Time": "2013-11-05T10:15:00-05:00"}
    with TestClient(create_app(serve_settings, registry_store[0])) as c:
        first = c.post("/predict", json=test_rows[0], headers=headers).json()
        again = c.post("/predict", json=test_rows[0], headers=headers).json()  # a retry
        v2 = c.post("/invocations", json={"dataframe_records": test_rows[1:3]}, headers={"X-Request-Id": "batch-7"})
        for bad, path in (
            ({"X-Request-Id": "no spaces allowed"}, "headers.x-request-id"),
            ({"X-Request-Id": "x" * 65}, "headers.x-request-id"),
            ({"X-Event-Time": "yesterday"}, "headers.x-event-time"),
        ):
            response = c.post("/predict", json=test_rows[0], headers=bad)
            assert response.status_code == 400, bad
            assert error(response)["details"][0]["path"] == path
    assert first["request_id"] == again["request_id"] == "replay-2013-11-05-r1545"
    assert v2.status_code == 200
    logged = {row["id"]: row for row in log_rows(serve_settings)}
    assert set(logged) == {"replay-2013-11-05-r1545", "batch-7-0", "batch-7-1"}  # the retry is logged once
    assert str(logged["replay-2013-11-05-r1545"]["event_time"]).startswith("2013-11-05 15:15:00")  # in UTC


def test_unseen_category_is_accepted_and_impossible_values_are_not(client: TestClient, test_rows: Rows) -> None:
    unseen = dict.fromkeys(PROBE.open, "never-seen-before")  # none where every category is a closed set
    assert client.post("/predict", json={**test_rows[0], **unseen}).status_code == 200
    missing = dict.fromkeys(PROBE.nullable)
    assert client.post("/predict", json={**test_rows[0], **missing}).status_code == 200
    impossible = {PROBE.bounded: PROBE.outside}
    if PROBE.closed is not None:
        impossible[PROBE.closed] = "never-allowed"
    response = client.post("/predict", json={**test_rows[0], **impossible})
    assert response.status_code == 422
    paths = {d["path"]: d["reason"] for d in error(response)["details"]}
    assert set(paths) == {f"body.{name}" for name in impossible}
    if PROBE.closed is not None:
        assert PROBE.allowed_phrase() in paths[f"body.{PROBE.closed}"]
    reason = paths[f"body.{PROBE.bounded}"]
    stated, bound = PROBE.bound.rsplit(" ", 1)
    assert stated in reason
    assert float(reason.rsplit(" ", 1)[1]) == float(bound)


@pytest.mark.parametrize(
    ("body", "status", "code", "path"),
    [
        (f'{{"{PROBE.required}": "a",'.encode(), 400, "malformed_json", None),
        (b"", 400, "malformed_json", None),
        (f'{{"{PROBE.numeric}": "hot"}}'.encode(), 422, "invalid_request", f"body.{PROBE.numeric}"),
        (b"[]", 422, "invalid_request", "body"),
        (b'"a string"', 422, "invalid_request", "body"),
        (f'{{"{PROBE.numeric}": NaN}}'.encode(), None, None, None),
        (f'{{"{PROBE.numeric}": Infinity}}'.encode(), None, None, None),
    ],
)
def test_malformed_and_wrongly_typed_bodies_get_a_4xx(
    client: TestClient, test_rows: Rows, body: bytes, status: int | None, code: str | None, path: str | None
) -> None:
    if body.endswith((b"NaN}", b"Infinity}")):  # a valid row with a non-finite number in place of one value
        row = {k: v for k, v in test_rows[0].items() if k != PROBE.numeric}
        body = (json.dumps(row)[:-1] + ", " + body.decode()[1:]).encode()
    response = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status
        assert error(response)["code"] == code
    if path is not None:
        assert path in [d["path"] for d in error(response)["details"]]


def test_missing_and_unknown_fields(client: TestClient, test_rows: Rows) -> None:
    row = dict(test_rows[0])
    del row[PROBE.required]
    response = client.post("/predict", json={**row, "not_a_feature": "4L"})
    assert response.status_code == 422
    details = {d["path"]: d["reason"] for d in error(response)["details"]}
    assert details[f"body.{PROBE.required}"] == "Field required"
    assert details["body.not_a_feature"] == "Extra inputs are not permitted"


def test_limits_on_batch_and_body_size(client: TestClient, test_rows: Rows) -> None:
    response = client.post("/predict", json=test_rows[:1] * 51)  # max_batch is 50 in these tests
    assert response.status_code == 422
    assert "at most 50 items" in error(response)["details"][0]["reason"]
    big = json.dumps(test_rows[:1] * 40).encode() + b" " * 64_000
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert error(response)["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no content-length: the limit applies while reading
        for _ in range(100):
            yield b" " * 1000

    response = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "wrap",
    [
        lambda rows: {"dataframe_records": rows},
        lambda rows: {"dataframe_split": {"columns": list(rows[0]), "data": [list(r.values()) for r in rows]}},
        lambda rows: {"instances": rows},
        lambda rows: {"inputs": {k: [r[k] for r in rows] for k in rows[0]}},
    ],
    ids=["dataframe_records", "dataframe_split", "instances", "inputs"],
)
def test_mlflow_scoring_protocol(client: TestClient, test_rows: Rows, wrap: Any) -> None:
    rows = test_rows[:3]
    answered = client.post("/predict", json=rows).json()["predictions"]
    response = client.post("/invocations", json=wrap(rows))
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [invocation_number(p) for p in predictions] == pytest.approx([answer_number(p) for p in answered])
    if TASK != "regression":  # the class: a bool, or the class's name (as /predict names it)
        assert [p["label"] for p in predictions] == [p[TARGET] for p in answered]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"records": []}, "exactly one of"),
        ({"dataframe_records": [], "instances": []}, "exactly one of"),
        ({"dataframe_split": {"columns": [PROBE.required], "data": [["a", "b"]]}}, "must be a list of 1 values"),
        ({"inputs": dict(zip(CONTRACT.features, [["a"], ["a", "b"]], strict=False))}, "equal length"),
        ({"dataframe_records": [{PROBE.required: "a"}]}, "does not satisfy the feature contract"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_mlflow_protocol_errors(client: TestClient, payload: Any, message: str) -> None:
    response = client.post("/invocations", json=payload)
    assert response.status_code == 400
    assert message in error(response)["message"]


def test_mlflow_protocol_needs_json(client: TestClient) -> None:
    response = client.post("/invocations", content=b"name\nvalue", headers={"content-type": "text/csv"})
    assert response.status_code == 415


def v2_inputs(rows: Rows, shape_2d: bool = False) -> list[dict[str, Any]]:
    def datatype(value: Any) -> str:
        return "BYTES" if isinstance(value, str) else "INT64" if isinstance(value, int) else "FP64"

    return [
        {
            "name": name,
            "shape": [len(rows), 1] if shape_2d else [len(rows)],
            "datatype": datatype(next((r[name] for r in rows if r[name] is not None), 0.0)),
            "data": [[r[name]] for r in rows] if shape_2d else [r[name] for r in rows],
        }
        for name in rows[0]
    ]


def test_open_inference_protocol(client: TestClient, test_rows: Rows) -> None:
    assert client.get("/v2").json()["name"] == "tabloop"
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
    metadata = client.get(f"/v2/models/{MODEL}").json()
    assert metadata["versions"] == ["1"]
    datatypes = {i["name"]: i["datatype"] for i in metadata["inputs"]}
    assert datatypes == {name: datatype_of(spec) for name, spec in CONTRACT.features.items()}

    named = [(o["name"], o["datatype"]) for o in metadata["outputs"]]
    assert named == V2_OUTPUTS
    rows = test_rows[:4]
    expected = [answer_number(p) for p in client.post("/predict", json=rows).json()["predictions"]]
    for shape_2d in (False, True):
        response = client.post(f"/v2/models/{MODEL}/infer", json={"id": "r1", "inputs": v2_inputs(rows, shape_2d)})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == "r1"
        assert body["model_version"] == "1"
        assert [(o["name"], o["datatype"]) for o in body["outputs"]] == named
        number = body["outputs"][0 if TASK != "multiclass" else 1]
        assert number["shape"][0] == 4
        data = np.reshape(number["data"], number["shape"])
        assert (data if data.ndim == 1 else data.max(axis=1)).tolist() == pytest.approx(expected)
    last = named[-1][0]
    only = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": v2_inputs(rows), "outputs": [{"name": last}]})
    assert [o["name"] for o in only.json()["outputs"]] == [last]


def test_nullable_v2_inputs_may_be_left_out(client: TestClient, test_rows: Rows) -> None:
    inputs = [t for t in v2_inputs(test_rows[:2]) if t["name"] not in PROBE.nullable]
    assert client.post(f"/v2/models/{MODEL}/infer", json={"inputs": inputs}).status_code == 200


def bad_v2(rows: Rows, change: str) -> dict[str, Any]:
    inputs = v2_inputs(rows)
    at = {t["name"]: i for i, t in enumerate(inputs)}
    if change == "shape":
        inputs[0]["shape"] = [3]
    elif change == "datatype":
        inputs[at[PROBE.required]]["datatype"] = "BOOL"
    elif change == "missing":
        inputs = [t for t in inputs if t["name"] != PROBE.required]
    elif change == "unknown":
        inputs.append({"name": "runway", "shape": [2], "datatype": "BYTES", "data": ["4L", "4R"]})
    elif change == "batch":
        inputs[-1]["shape"], inputs[-1]["data"] = [1], inputs[-1]["data"][:1]  # any input: a table may have few
    elif change == "value":
        inputs[at[PROBE.bounded]]["data"][0] = PROBE.outside
    return {"inputs": inputs}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shape", "has shape [3] (3 values) but 2 data"),
        ("datatype", f"has datatype BOOL; send {datatype_of(CONTRACT.features[PROBE.required])}"),
        ("missing", f"missing input(s): {PROBE.required}"),
        ("unknown", "unknown input 'runway'"),
        ("batch", "inputs disagree on the batch size"),
        ("value", "does not satisfy the feature contract"),
    ],
)
def test_bad_v2_requests_get_a_400(client: TestClient, test_rows: Rows, change: str, message: str) -> None:
    response = client.post(f"/v2/models/{MODEL}/infer", json=bad_v2(test_rows[:2], change))
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


def test_unknown_v2_model_and_bad_v2_body(client: TestClient, test_rows: Rows) -> None:
    response = client.post("/v2/models/other/infer", json={"inputs": v2_inputs(test_rows[:1])})
    assert response.status_code == 404
    assert "unknown model 'other'" in response.json()["error"]
    assert client.get("/v2/models/other/ready").status_code == 404
    response = client.post(
        f"/v2/models/{MODEL}/infer", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    response = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [{"name": PROBE.required}]})
    assert response.status_code == 400
    assert "inputs[0].shape" in response.json()["details"][0]["path"]


def test_feedback_is_recorded_once_per_prediction(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows
) -> None:
    first, second = OBSERVED[TASK]
    number = {"outcome": 42} if TASK == "binary" else {}  # the number behind a binary target
    with TestClient(create_app(serve_settings, registry_store[0])) as c:
        request_id = c.post("/predict", json=test_rows[0]).json()["request_id"]
        batch_ids = [p["id"] for p in c.post("/predict", json=test_rows[1:3]).json()["predictions"]]
        assert c.post("/feedback", json={"id": request_id, TARGET: first, **number}).json() == {"recorded": 1}
        assert c.post("/feedback", json={"id": request_id, TARGET: second}).status_code == 200  # replaces
        response = c.post("/feedback", json=[{"id": batch_ids[0], TARGET: first}, {"id": "nope", TARGET: second}])
        assert response.status_code == 404
        assert error(response)["details"] == [{"path": "body[1].id", "reason": "no prediction 'nope'"}]
        refused = c.post("/feedback", json={"id": request_id, TARGET: "yes please"})
        assert refused.status_code == 422
        assert error(refused)["details"][0]["path"] == f"body.{TARGET}"
    feedback = {row["prediction_id"]: row for row in log_rows(serve_settings, "feedback")}
    assert list(feedback) == [request_id]  # the batch with an unknown id recorded nothing
    stored = feedback[request_id]
    if TASK == "binary":
        assert (stored["actual"] in (0, False), stored["outcome"]) == (True, None)
    elif TASK == "multiclass":
        assert (stored["actual_class"], stored["actual"], stored["outcome"]) == (second, None, None)
    else:
        assert (stored["outcome"], stored["actual"], stored["actual_class"]) == (second, None, None)


def test_health_model_and_metrics(client: TestClient, test_rows: Rows) -> None:
    assert client.get("/health/live").json() == {"status": "live"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["model"] == {"name": MODEL, "version": "1", "alias": "champion", "source": "registry"}
    model = client.get("/model").json()
    assert model["version"] == "1"
    assert len(model["lineage"]["bundle_sha256"]) == 64
    assert PROBE.required in model["contract"]["features"]
    client.post("/predict", json=test_rows[:5])
    client.post("/predict", json={"bad": 1})
    text = client.get("/metrics").text
    assert 'http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'http_requests_total{method="POST",route="/predict",status="422"} 1.0' in text
    distribution = "prediction_value" if TASK == "regression" else "prediction_probability"
    assert f'{distribution}_bucket{{le="+Inf"}} 5.0' in text
    assert f'model_served_info{{name="{MODEL}",source="registry",version="1"}} 1.0' in text
    assert "prediction_log_queue_depth" in text
    assert 'http_request_duration_seconds_bucket{le="0.5",method="POST",route="/predict"}' in text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert CONTRACT.entity in spec["components"]["schemas"]
    assert spec["components"]["schemas"][CONTRACT.entity]["examples"]


def test_the_openapi_document_describes_each_health_model_and_metadata_answer(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    answers = {
        ("GET", "/health/ready"): Readiness,
        ("GET", "/model"): ModelInfo,
        ("POST", "/admin/reload"): ReloadResult,
        ("GET", "/v2"): ServerMetadataResponse,
        ("GET", "/v2/models/{name}"): ModelMetadataResponse,
    }
    for (method, path), model in answers.items():
        documented = spec["paths"][path][method.lower()]["responses"]["200"]["content"]["application/json"]
        assert documented["schema"] == {"$ref": f"#/components/schemas/{model.__name__}"}, path
        assert model.__name__ in spec["components"]["schemas"]
        response = client.request(method, path.replace("{name}", MODEL))
        assert response.status_code == 200, path
        assert model.model_validate_json(response.content).model_dump(mode="json") == response.json(), path


def test_unknown_route_and_method(client: TestClient) -> None:
    assert error(client.get("/nope"))["code"] == "not_found"
    assert client.get("/predict").status_code == 405


def test_api_key_guards_prediction_feedback_and_admin_routes(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows
) -> None:
    key = "Zq4tV9xLr2Wm8KpB3nYc6HsJ1dGf7TaE"
    settings = serve_settings.model_copy(update={"api_key": key})
    with TestClient(create_app(ServeSettings(**{**settings.model_dump(), "api_key": key}), registry_store[0])) as c:
        assert c.post("/predict", json=test_rows[0]).status_code == 401
        assert c.post("/predict", json=test_rows[0], headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/predict", json=test_rows[0], headers={"X-API-Key": key}).status_code == 200
        assert c.post("/predict", json=test_rows[0], headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.post("/feedback", json={"id": "x", TARGET: True}).status_code == 401
        assert c.get("/model").status_code == 401
        assert c.post("/admin/reload").status_code == 401
        assert c.post("/invocations", json={"dataframe_records": [test_rows[0]]}).status_code == 401
        assert c.get("/health/ready").status_code == 200
        assert c.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("changeme", "8 characters, fewer than 32"),
        (" " * 40, "spaces at its ends"),
        ("a" * 40, "bits of entropy"),
        ("abab" * 10, "bits of entropy"),
        ("password12345678password12345678", "mostly common words"),
        ("Welcome-Admin-Changeme-Secret-Token-Qwerty1", "mostly common words"),
    ],
)
def test_weak_api_keys_are_refused_at_start_without_echoing_them(key: str, why: str) -> None:
    with pytest.raises(ValidationError, match="the API key is too weak") as refused:
        ServeSettings(api_key=key)
    assert why in str(refused.value)
    assert key not in refused.value.errors(include_input=False)[0]["msg"]


def test_random_api_keys_are_accepted() -> None:
    draw = random.Random(20261201)
    hex_keys = [f"{draw.getrandbits(128):032x}" for _ in range(2000)]
    urlsafe_keys = [base64.urlsafe_b64encode(draw.randbytes(32)).decode().rstrip("=") for _ in range(2000)]
    assert [k for k in hex_keys + urlsafe_keys if key_weakness(k) is not None] == []
    assert ServeSettings(api_key=hex_keys[0]).api_key is not None  # the rule is the one the settings apply
    assert ServeSettings(api_key=urlsafe_keys[0]).api_key is not None


@pytest.mark.parametrize("word", ["abcde", "12345", "Admin", "token"])
def test_a_random_key_is_not_refused_for_a_common_word_it_contains_by_chance(word: str) -> None:
    key = f"{random.Random(word).getrandbits(128):032x}"
    assert ServeSettings(api_key=key[:10] + word + key[10 + len(word) :]).api_key is not None


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("TABLOOP_SERVE_API_KEY", "password12345678password12345678", "the API key is too weak"),
        ("TABLOOP_LOG_LEVEL", "LOUD", "Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("TABLOOP_SERVE_PORT", "eighty", "Input should be a valid integer"),
        (
            "TABLOOP_SERVE_PREDICTION_LOG_URL",
            "mysql://root:hunter2@db-host/predictions",
            "the prediction log supports SQLite and PostgreSQL, not mysql",
        ),
        (
            "TABLOOP_SERVE_PREDICTION_LOG_URL",
            "db-host:5432/predictions",
            "the prediction log's URL is not a database URL",
        ),
    ],
)
def test_a_bad_environment_value_stops_the_service_with_one_line(variable: str, value: str, says: str) -> None:
    env = {**os.environ, variable: value}
    done = subprocess.run(
        [sys.executable, "-m", "serving"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{variable}: {says}" in " ".join(done.stderr.split())
    assert value not in done.stderr + done.stdout  # a secret is never echoed, nor any other value


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://root:hunter2@db-host/predictions", "the prediction log supports SQLite and PostgreSQL, not mysql"),
        ("db-host:5432/predictions", "the prediction log's URL is not a database URL"),
        ("postgresql+nodriver://root:hunter2@db-host/predictions", "the prediction log's postgresql driver cannot be"),
        ("sqlite:///:memory:", "a prediction log in memory needs a journal directory"),
    ],
)
def test_a_prediction_log_that_cannot_be_kept_is_a_configuration_error(url: str, says: str, tmp_path: Path) -> None:
    """What the entry point reports as one line (tabloop.commands.boundary.entry_point), with no password in it."""
    with pytest.raises(ConfigError, match=says) as refused:
        PredictionLog(url, None if url.startswith("sqlite") else tmp_path / "journal")
    assert "hunter2" not in str(refused.value)


def test_without_any_model_the_service_is_live_but_not_ready(
    serve_settings: ServeSettings, tmp_path: Path, test_rows: Rows
) -> None:
    from tabloop.settings import Settings

    empty = Settings(tracking_uri=f"sqlite:///{tmp_path}/empty.db", artifact_root=str(tmp_path / "artifacts"))
    with TestClient(create_app(serve_settings, empty)) as c:
        assert c.get("/health/live").status_code == 200
        ready = c.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["model"] is None
        response = c.post("/predict", json=test_rows[0])
        assert response.status_code == 503
        assert "no model is loaded yet" in error(response)["message"]
        assert c.get("/v2/health/ready").status_code == 503
        assert c.post(f"/v2/models/{MODEL}/infer", json={"inputs": v2_inputs(test_rows[:1])}).status_code == 503


def test_registry_down_at_start_serves_the_cached_champion(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows
) -> None:
    with TestClient(create_app(serve_settings, registry_store[0])) as c:  # fills the cache
        expected = answer_number(c.post("/predict", json=test_rows[0]).json()["predictions"][0])
    from tabloop.settings import Settings

    down = Settings(tracking_uri="http://admin:hunter2-secret@127.0.0.1:9")
    with TestClient(create_app(serve_settings, down)) as c:
        response = c.get("/health/ready")
        ready = response.json()
        assert ready["model"]["source"] == "cache"
        assert ready["registry"].startswith("unreachable")
        assert "hunter2" not in response.text  # an open route shows no credentials
        assert "hunter2" not in c.post("/admin/reload").text
        assert "cached" in ready["note"]
        body = c.post("/predict", json=test_rows[0]).json()
        assert body["model_version"] == "1"
        assert answer_number(body["predictions"][0]) == expected
        assert c.post("/admin/reload").status_code == 503
        assert c.post("/predict", json=test_rows[0]).status_code == 200  # still serving


def test_answers_fit_the_task(client: TestClient, test_rows: Rows) -> None:
    """Probabilities are probabilities (a multiclass model's sum to one), classes are the target's, values finite."""
    predictions = client.post("/predict", json=test_rows[:50]).json()["predictions"]
    numbers = np.array([answer_number(p) for p in predictions])
    assert np.isfinite(numbers).all()
    if TASK != "regression":
        assert ((numbers > 0) & (numbers < 1)).all()
    if CONTRACT.target.classes is not None:
        assert {p[TARGET] for p in predictions} <= set(CONTRACT.target.classes)
        for p in predictions:
            assert list(p["probabilities"]) == CONTRACT.target.classes
            assert sum(p["probabilities"].values()) == pytest.approx(1.0)
            assert p["probability"] == max(p["probabilities"].values())
