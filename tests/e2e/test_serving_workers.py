"""The service as one process with two workers on one port: one log, one set of metrics, a model each."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from test_serving_process import answered_ids, logged_ids, run_load_then, start

from helpers import two_versions
from tabloop.registry.mlflow import CHAMPION
from tabloop.settings import Settings

WORKERS = 2
CLIENTS = 16  # concurrent connections
TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def service(
    registry_store: tuple[Settings, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[subprocess.Popen[bytes], str, str, Path]]:
    """The service with two workers, polling nothing; stopped (and checked for tracebacks) afterwards."""
    tmp_path = tmp_path_factory.mktemp("workers")
    process, url, log_url = start(
        tmp_path, *registry_store, TABLOOP_SERVE_WORKERS=str(WORKERS), TABLOOP_SERVE_POLL_INTERVAL_S="0"
    )
    try:
        yield process, url, log_url, tmp_path / "predictions.db.journal"
    finally:
        output = stop(process)
    assert "Traceback" not in output, output[-3000:]


def stop(process: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then the output; a kill if it does not stop in time."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=60)[0].decode()
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0].decode()


def post(url: str, row: dict[str, Any], request_id: str) -> tuple[int, Any]:
    """One prediction on a connection of its own (so the kernel may hand it to either worker)."""
    response = httpx.post(f"{url}/predict", json=row, headers={"X-Request-Id": request_id}, timeout=TIMEOUT_S)
    return response.status_code, response.json()


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda call: call(), calls))


def rows_of(log_url: str, request_ids: set[str]) -> dict[str, int]:
    """How many rows of the log each of ``request_ids`` has."""
    engine = sa.create_engine(log_url)
    with engine.connect() as conn:
        found = conn.execute(sa.text("select request_id, count(*) from predictions group by request_id")).all()
    engine.dispose()
    return {request_id: int(n) for request_id, n in found if request_id in request_ids}


def settled_rows(log_url: str, request_ids: set[str]) -> dict[str, int]:
    """The rows of ``request_ids`` once every one is in the database (the loaders run every 0.2 s)."""
    deadline = time.monotonic() + TIMEOUT_S
    while len(found := rows_of(log_url, request_ids)) < len(request_ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # a doubled row would come with the next rounds of the loaders
    return rows_of(log_url, request_ids) if found else found


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def worker_pids(process: subprocess.Popen[bytes], journal: Path) -> set[int]:
    """The processes that have a journal (opened at their first prediction) and are children of the service."""
    pids = {int(lock.name.split("-")[0]) for lock in journal.glob("*.lock")}
    return {pid for pid in pids if parent_of(pid) == process.pid}


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def test_distinct_request_ids_are_logged_once_each_and_both_workers_answer(
    service: tuple[subprocess.Popen[bytes], str, str, Path], test_rows: list
) -> None:
    process, url, log_url, journal = service
    n = 300
    ids = [f"distinct-{uuid.uuid4().hex[:12]}-{i}" for i in range(n)]
    answers = concurrently([lambda i=i: post(url, test_rows[i % len(test_rows)], ids[i]) for i in range(n)])
    assert [status for status, _ in answers] == [200] * n
    assert [body["request_id"] for _, body in answers] == ids
    found = settled_rows(log_url, set(ids))
    assert found == dict.fromkeys(ids, 1)
    pids = worker_pids(process, journal)
    assert len(pids) == WORKERS, pids  # both workers answered (and wrote a journal of their own)


def test_a_request_id_sent_again_to_any_worker_is_logged_once(
    service: tuple[subprocess.Popen[bytes], str, str, Path], test_rows: list
) -> None:
    _, url, log_url, _ = service
    ids = [f"again-{uuid.uuid4().hex[:12]}-{k}" for k in range(min(40, len(test_rows) - 1))]
    copies = 5
    calls = [lambda k=k: post(url, test_rows[k], ids[k]) for k in range(len(ids)) for _ in range(copies)]
    answers = concurrently(calls)
    assert {status for status, _ in answers} == {200}
    by_id: dict[str, set[float]] = {}
    for _, body in answers:
        by_id.setdefault(body["request_id"], set()).add(body["predictions"][0]["probability"])
    assert all(len(probabilities) == 1 for probabilities in by_id.values())  # every copy got the same answer
    assert settled_rows(log_url, set(ids)) == dict.fromkeys(ids, 1)
    retried = concurrently([lambda k=k: post(url, test_rows[k], ids[k]) for k in range(len(ids))])  # from the log
    assert [body["predictions"][0]["probability"] for _, body in retried] == [by_id[i].pop() for i in ids]
    assert rows_of(log_url, set(ids)) == dict.fromkeys(ids, 1)
    conflict = post(url, test_rows[len(ids)], ids[0])  # the same id with other rows, on whichever worker
    assert conflict[0] == 409


def test_every_scrape_counts_the_requests_of_every_worker(
    service: tuple[subprocess.Popen[bytes], str, str, Path], test_rows: list
) -> None:
    _, url, _, _ = service

    def scrape() -> str:
        return httpx.get(f"{url}/metrics", timeout=TIMEOUT_S).text  # a connection each: either worker answers

    before = scrape()
    n = 200
    answers = concurrently(
        [lambda i=i: post(url, test_rows[i % len(test_rows)], f"metrics-{uuid.uuid4().hex}") for i in range(n)]
    )
    assert {status for status, _ in answers} == {200}
    expected = sample(before, "http_requests_total", route="/predict", status="200") + n
    deadline = time.monotonic() + 2
    while sample(scrape(), "http_requests_total", route="/predict", status="200") < expected:
        assert time.monotonic() < deadline  # a request is counted just after its answer has left
        time.sleep(0.05)
    scrapes = concurrently([scrape] * 12)
    assert [sample(text, "http_requests_total", route="/predict", status="200") for text in scrapes] == [expected] * 12
    rows = sample(before, "predictions_total") + n
    assert [sample(text, "predictions_total") for text in scrapes] == [rows] * 12
    scores = sample(before, "prediction_probability_count") + n
    assert [sample(text, "prediction_probability_count") for text in scrapes] == [scores] * 12
    latencies = sample(before, "http_request_duration_seconds_count", route="/predict") + n
    assert {sample(text, "http_request_duration_seconds_count", route="/predict") for text in scrapes} == {latencies}
    assert {sample(text, "model_served_info", version="1") for text in scrapes} == {1.0}


def test_each_worker_follows_the_champion_on_its_own(
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    evaluate_config: Any,
    tmp_path: Path,
    test_rows: list,
) -> None:
    store = two_versions("workers", trained, evaluated, stage_outputs, evaluate_config, tmp_path)
    registry, first, second = store.registry, store.first, store.second

    process, url, _ = start(tmp_path, store.settings, store.config_path, TABLOOP_SERVE_WORKERS=str(WORKERS))
    try:
        registry.set_alias(CHAMPION, second)
        deadline = time.monotonic() + TIMEOUT_S
        # the gauge is 1 for a version while some live worker serves it: 0 once both have moved
        while sample(text := httpx.get(f"{url}/metrics").text, "model_served_info", version=first) > 0:
            assert time.monotonic() < deadline, text
            time.sleep(0.2)
        assert sample(text, "model_served_info", version=second) == 1
        answers = concurrently(
            [lambda i=i: post(url, test_rows[i % len(test_rows)], f"moved-{uuid.uuid4().hex}") for i in range(100)]
        )
        assert {body["model_version"] for _, body in answers} == {second}
    finally:
        output = stop(process)
    assert "Traceback" not in output, output[-3000:]


def test_workers_refuse_oversized_heads(service: tuple[subprocess.Popen[bytes], str, str, Path]) -> None:
    _, url, _, _ = service
    for _ in range(6):  # connections of their own: both workers bound the head
        response = httpx.get(f"{url}/health/live", headers={"X-Big": "a" * 40_000}, timeout=TIMEOUT_S)
        assert response.status_code == 431
        assert response.json()["error"]["code"] == "headers_too_large"


def test_a_worker_killed_under_load_loses_no_answered_prediction(
    service: tuple[subprocess.Popen[bytes], str, str, Path], test_rows: list
) -> None:
    """Runs last: it kills a worker of the module's service (uvicorn replaces it)."""
    process, url, log_url, journal = service
    deadline = time.monotonic() + TIMEOUT_S
    while len(pids := worker_pids(process, journal)) < WORKERS:  # both have a journal
        assert time.monotonic() < deadline, pids
        concurrently([lambda i=i: post(url, test_rows[i], f"warm-{uuid.uuid4().hex}") for i in range(CLIENTS)])
    victim = min(pids)

    def kill() -> None:
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.0)

    answered = answered_ids(run_load_then(0, url, test_rows, during=kill))
    assert len(answered) > 20
    deadline = time.monotonic() + 90  # the replacement imports everything, then loads the dead worker's journal
    while missing := answered - logged_ids(log_url):
        assert time.monotonic() < deadline, f"{len(missing)} of {len(answered)} answered predictions are not logged"
        time.sleep(0.5)
    # the victim may have stored everything before it died; its files go once the replacement has adopted them
    while leftovers := list(journal.glob(f"{victim}-*")):
        assert time.monotonic() < deadline, leftovers
        time.sleep(0.5)
    assert httpx.get(f"{url}/health/ready", timeout=TIMEOUT_S).status_code == 200
