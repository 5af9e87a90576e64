"""Request edge cases: media types, event times out of range, reused request ids, huge headers, and V2 clients."""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from helpers import MODEL_NAME as MODEL
from helpers import TASK, V2_OUTPUTS, answer_number, running_service
from profiles import configured_config
from serving.app import create_app
from serving.routes.v2 import datatype_of
from serving.settings import ServeSettings
from synthetic import Probe
from tabloop.runtime.contract import FeatureContract

Rows = list[dict[str, Any]]
PROBE = Probe.of(configured_config().contract)


@pytest.fixture
def client(serve_settings: ServeSettings, registry_store: tuple) -> Iterator[TestClient]:
    with TestClient(create_app(serve_settings, registry_store[0])) as c:
        yield c


def logged(settings: ServeSettings, request_id: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(settings.prediction_log_url)
    with engine.connect() as conn:
        query = sa.text("select * from predictions where request_id = :r order by id")
        rows = [dict(r._mapping) for r in conn.execute(query, {"r": request_id})]
    engine.dispose()
    return rows


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded", None])
def test_json_routes_require_json(client: TestClient, test_rows: Rows, media: str | None) -> None:
    headers = {"content-type": media} if media else {}
    body = orjson.dumps(test_rows[0])
    for route, payload in [
        ("/predict", body),
        ("/invocations", orjson.dumps({"dataframe_records": [test_rows[0]]})),
        ("/feedback", orjson.dumps({"id": "x", PROBE.target: True})),
    ]:
        response = client.post(route, content=payload, headers=headers)
        assert response.status_code == 415, (route, response.text)
        assert response.json()["error"]["code"] == "unsupported_media_type"
    assert client.post("/predict", content=body, headers={"content-type": "application/json; charset=utf-8"}).is_success


@pytest.mark.parametrize(
    "when",
    ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1800-01-01T00:00:00", "2200-01-01T00:00:00Z", "soon"],
)
def test_event_times_out_of_range_are_refused(client: TestClient, test_rows: Rows, when: str) -> None:
    response = client.post("/predict", json=test_rows[0], headers={"X-Event-Time": when})
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["path"] == "headers.x-event-time"


def test_a_reused_request_id_gets_the_logged_answer_or_a_409(
    client: TestClient, serve_settings: ServeSettings, test_rows: Rows
) -> None:
    headers = {"X-Request-Id": "client-42"}
    first = client.post("/predict", json=test_rows[:3], headers=headers)
    assert first.status_code == 200
    again = client.post("/predict", json=test_rows[:3], headers=headers)  # still on its way to the database
    assert again.json() == first.json()
    other = client.post("/predict", json=test_rows[3:6], headers=headers)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "request_id_conflict"
    client.portal.call(client.app.state.service.log.flush)  # type: ignore[union-attr]
    from_database = client.post("/predict", json=test_rows[:3], headers=headers)
    assert from_database.json() == first.json()
    assert client.post("/predict", json=test_rows[3:6], headers=headers).status_code == 409
    assert client.post("/predict", json=test_rows[0], headers=headers).status_code == 409  # one example of three
    rows = logged(serve_settings, "client-42")
    logged_numbers = [r["value"] if TASK == "regression" else r["probability"] for r in rows]
    assert logged_numbers == [answer_number(p) for p in first.json()["predictions"]]


def raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the server closes after its 431
            s.sendall(head + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"content-length" in answer.lower():
                length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                if len(answer.split(b"\r\n\r\n", 1)[1]) >= length:
                    break
    return answer


def test_request_heads_are_bounded(serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows) -> None:
    body = orjson.dumps((test_rows * 50)[:50])  # max_batch
    serve_settings = serve_settings.model_copy(update={"max_header_bytes": min(8192, len(body) // 2)})
    assert len(body) > serve_settings.max_header_bytes  # a body larger than the head bound is not a head
    with running_service(serve_settings, registry_store[0]) as url:
        big = b"X-Big: " + b"a" * (serve_settings.max_header_bytes + 10) + b"\r\n"
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        refused = raw_request(url, head + big + f"Content-Length: {len(body)}\r\n\r\n".encode(), body)
        assert refused.startswith(b"HTTP/1.1 431 ")
        assert b"headers_too_large" in refused
        many = b"".join(f"X-H{i}: {'b' * 1000}\r\n".encode() for i in range(10))
        assert raw_request(url, head + many + b"Content-Length: 2\r\n\r\n", b"{}").startswith(b"HTTP/1.1 431 ")
        ok = raw_request(url, head + f"Content-Length: {len(body)}\r\n\r\n".encode(), body)
        assert ok.startswith(b"HTTP/1.1 200 ")


def v2_inputs(contract: FeatureContract, rows: Rows, binary: bool) -> list[Any]:
    import tritonclient.http as triton

    inputs = []
    for name, spec in contract.features.items():
        datatype = datatype_of(spec)
        values = [r[name] for r in rows]
        if datatype == "BYTES":
            array = np.array([v.encode() for v in values], dtype=np.object_)
        elif datatype == "INT64":
            array = np.array(values, dtype=np.int64)
        else:
            array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        tensor = triton.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False])
def test_a_real_v2_client_works_with_its_defaults(
    serve_settings: ServeSettings, registry_store: tuple, test_rows: Rows, binary: bool
) -> None:
    import tritonclient.http as triton

    complete = [r for r in test_rows if None not in r.values()][:5]
    with (
        running_service(serve_settings, registry_store[0]) as url,
        TestClient(create_app(serve_settings, registry_store[0])) as reference,
    ):
        contract = reference.app.state.service.store.expected_contract  # type: ignore[attr-defined]
        answered = reference.post("/predict", json=complete).json()["predictions"]
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        names = [name for name, _ in V2_OUTPUTS]
        outputs = None if binary else [triton.InferRequestedOutput(o, binary_data=False) for o in names]
        result = client.infer(MODEL, v2_inputs(contract, complete, binary), outputs=outputs)
        client.close()
    expected = [answer_number(p) for p in answered]
    if TASK == "binary":
        assert result.as_numpy("probability").tolist() == pytest.approx(expected, abs=1e-12)
        assert result.as_numpy("label").dtype == np.bool_
    elif TASK == "multiclass":  # BYTES labels and an [n, classes] tensor, decoded by the client itself
        probabilities = result.as_numpy("probabilities")
        assert probabilities.shape == (len(complete), len(contract.target.classes))
        assert probabilities.max(axis=1).tolist() == pytest.approx(expected, abs=1e-12)
        labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
        assert labels == [p[contract.target.name] for p in answered]  # bytes from binary data, text from JSON
    else:
        assert result.as_numpy(contract.target.name).tolist() == pytest.approx(expected, abs=1e-12)
    assert result.get_response()["model_version"] == "1"


def binary_request(client: TestClient, header: dict[str, Any], data: bytes, length: int | None = None) -> Any:
    json_part = orjson.dumps(header)
    declared = len(json_part) if length is None else length
    return client.post(
        f"/v2/models/{MODEL}/infer",
        content=json_part + data,
        headers={"Inference-Header-Content-Length": str(declared), "content-type": "application/octet-stream"},
    )


def test_malformed_binary_v2_requests_get_a_clear_400(client: TestClient) -> None:
    tensor = {"name": "distance", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}}
    two = struct.pack("<2d", 100.0, 200.0)
    cases = {
        "header longer than the body": binary_request(client, {"inputs": [tensor]}, two, length=10_000),
        "size not matching the shape": binary_request(
            client, {"inputs": [{**tensor, "parameters": {"binary_data_size": 8}}]}, two[:8]
        ),
        "fewer bytes than declared": binary_request(client, {"inputs": [tensor]}, two[:8]),
        "bytes left over": binary_request(client, {"inputs": [tensor]}, two + b"\0"),
        "not a byte count": client.post(
            f"/v2/models/{MODEL}/infer", content=b"{}", headers={"Inference-Header-Content-Length": "ten"}
        ),
        "a cut BYTES element": binary_request(
            client,
            {
                "inputs": [
                    {"name": PROBE.required, "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}
                ]
            },
            struct.pack("<I", 9) + b"UA",
        ),
    }
    for case, response in cases.items():
        assert response.status_code == 400, (case, response.text)
        assert "error" in response.json(), case
    assert "10000" in cases["header longer than the body"].json()["error"]
    assert "16 bytes" in cases["size not matching the shape"].json()["error"]
