"""The service as a real process under concurrent load: SIGTERM loses nothing; a moving alias fails nothing."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from helpers import REPO_ROOT, free_port, two_versions
from tabloop.registry.mlflow import CHAMPION
from tabloop.runtime.bundle import Bundle
from tabloop.settings import Settings

POLL_S = 0.1


@dataclass
class Answer:
    start: float
    end: float
    status: int  # 0: no answer (connection refused or reset)
    version: str | None
    request_id: str | None = None


def start(
    tmp_path: Path, settings: Settings, registry_config: Path, wrap: list[str] | None = None, **extra: str
) -> tuple[subprocess.Popen[bytes], str, str]:
    """The service as ``python -m serving`` (inside ``wrap``, a command prefix, if given), once it is ready."""
    port = free_port()
    log_url = f"sqlite:///{tmp_path}/predictions.db"
    env = {
        **os.environ,
        "TABLOOP_TRACKING_URI": settings.tracking_uri,
        "TABLOOP_SERVE_PORT": str(port),
        "TABLOOP_SERVE_REGISTRY_CONFIG": str(registry_config),
        "TABLOOP_SERVE_CACHE_DIR": str(tmp_path / "cache"),
        "TABLOOP_SERVE_PREDICTION_LOG_URL": log_url,
        "TABLOOP_SERVE_POLL_INTERVAL_S": str(POLL_S),
        **extra,
    }
    command = [sys.executable, "-m", "serving"]
    process = subprocess.Popen(
        [*wrap[:-1], f"{wrap[-1]} {shlex.join(command)}"] if wrap else command,  # wrap ends in a shell script
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process, url, log_url
        except httpx.TransportError:
            pass
        assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the service did not become ready")


def load(url: str, flights: list[dict[str, Any]], stop: threading.Event, workers: int = 8) -> list[Answer]:
    answers: list[Answer] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            i = k
            while not stop.is_set():
                start = time.monotonic()
                try:
                    response = client.post("/predict", json=flights[i % len(flights)])
                    status = response.status_code
                    body = response.json() if status == 200 else {}
                    version, request_id = body.get("model_version"), body.get("request_id")
                except httpx.TransportError:
                    status, version, request_id = 0, None, None
                with lock:
                    answers.append(Answer(start, time.monotonic(), status, version, request_id))
                i += workers

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join()
    return answers


def logged_ids(log_url: str) -> set[str]:
    engine = sa.create_engine(log_url)
    with engine.connect() as conn:
        ids = set(conn.execute(sa.text("select request_id from predictions")).scalars())
    engine.dispose()
    return ids


def logged(log_url: str) -> int:
    engine = sa.create_engine(log_url)
    with engine.connect() as conn:
        count = int(conn.execute(sa.text("select count(*) from predictions")).scalar_one())
    engine.dispose()
    return count


def run_load_then(seconds: float, url: str, flights: list, during: Any = None) -> list[Answer]:
    stop = threading.Event()
    result: list[Answer] = []
    runner = threading.Thread(target=lambda: result.extend(load(url, flights, stop)))
    runner.start()
    if during is not None:
        during()
    else:
        time.sleep(seconds)
    stop.set()
    runner.join()
    return result


def test_sigterm_under_load_completes_requests_and_loses_no_record(
    registry_store: tuple[Settings, Path], tmp_path: Path, test_rows: list
) -> None:
    process, url, log_url = start(tmp_path, *registry_store)

    def stop_midway() -> None:
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(1.0)  # requests keep coming while the server drains and stops

    answers = run_load_then(0, url, test_rows, during=stop_midway)
    output = process.communicate(timeout=60)[0].decode()
    # uvicorn drains, runs the shutdown (which flushes the log), then exits by the signal it received
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete." in output
    assert "Traceback" not in output
    ok = [a for a in answers if a.status == 200]
    assert len(ok) > 50
    assert all(a.status in (0, 200) for a in answers), {a.status for a in answers}
    assert logged(log_url) == len(ok)  # every answered request is in the log, none twice


def test_champion_moving_under_load_fails_nothing(
    trained: dict[str, Path],
    evaluated: Path,
    stage_outputs: dict[str, Path],
    evaluate_config: Any,
    tmp_path: Path,
    test_rows: list,
) -> None:
    store = two_versions("moving", trained, evaluated, stage_outputs, evaluate_config, tmp_path)
    registry, first, second = store.registry, store.first, store.second
    assert Bundle.load(store.second_bundle).digest() != Bundle.load(trained["bundle"]).digest()

    process, url, log_url = start(tmp_path, store.settings, store.config_path)
    timeline = [(0.0, first)]

    def flip() -> None:
        for k in range(6):
            time.sleep(0.6)
            version = second if k % 2 == 0 else first
            registry.set_alias(CHAMPION, version)
            timeline.append((time.monotonic(), version))
        time.sleep(0.6)

    answers = run_load_then(0, url, test_rows, during=flip)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)

    assert answers
    assert all(a.status == 200 for a in answers), {a.status for a in answers}
    assert {a.version for a in answers} == {first, second}

    def champions_between(start: float, end: float) -> set[str]:
        """Versions that were champion at some moment in [start, end]."""
        current = [v for t, v in timeline if t <= start][-1]
        return {current} | {v for t, v in timeline if start < t <= end}

    slack = POLL_S + 1.0  # the service notices a move within a poll, plus the time to load the new version
    late = [a for a in answers if a.version not in champions_between(a.start - slack, a.end)]
    assert not late, late[:3]
    assert logged(log_url) == len(answers)


def answered_ids(answers: list[Answer]) -> set[str]:
    return {a.request_id for a in answers if a.status == 200 and a.request_id is not None}


def restart_and_stop(tmp_path: Path, registry_store: tuple[Settings, Path]) -> str:
    """Start the service on the same log (it loads what a dead process left in the journal), then stop it."""
    process, _, _ = start(tmp_path, *registry_store)
    process.send_signal(signal.SIGTERM)
    return process.communicate(timeout=60)[0].decode()


@pytest.mark.parametrize("after_s", [0.7, 2.5])
def test_kill_9_under_load_loses_no_answered_prediction(
    registry_store: tuple[Settings, Path], tmp_path: Path, test_rows: list, after_s: float
) -> None:
    process, url, log_url = start(tmp_path, *registry_store)

    def kill() -> None:
        time.sleep(after_s)
        process.kill()
        process.wait()
        time.sleep(0.3)

    answers = run_load_then(0, url, test_rows, during=kill)
    answered = answered_ids(answers)
    assert len(answered) > 50
    output = restart_and_stop(tmp_path, registry_store)
    assert "loaded" in output
    assert "from the journal" in output
    missing = answered - logged_ids(log_url)
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions are not in the log"
    assert not list((tmp_path / "predictions.db.journal").glob("*.jsonl"))


def test_a_container_stop_with_a_short_grace_period_loses_nothing(
    registry_store: tuple[Settings, Path], tmp_path: Path, test_rows: list
) -> None:
    process, url, log_url = start(tmp_path, *registry_store)

    def stop_like_a_container_runtime() -> None:
        time.sleep(1.5)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=2)  # the grace period
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    answers = run_load_then(0, url, test_rows, during=stop_like_a_container_runtime)
    answered = answered_ids(answers)
    restart_and_stop(tmp_path, registry_store)
    assert answered
    assert answered <= logged_ids(log_url)


def test_a_disk_that_fills_while_serving_refuses_loses_nothing_and_recovers(
    registry_store: tuple[Settings, Path], tmp_path: Path, test_rows: list
) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    # The journal on a small tmpfs of the service's own mount namespace (unshare: no root needed).
    wrap = [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        f"mount -t tmpfs -o size=32m tmpfs {journal} && exec",
    ]
    process, url, log_url = start(tmp_path, *registry_store, wrap=wrap, TABLOOP_SERVE_LOG_JOURNAL_DIR=str(journal))
    seen = Path(f"/proc/{process.pid}/root") / journal.relative_to("/")
    answers: list[Answer] = []
    try:
        answers += run_load_then(0.5, url, test_rows)
        filler = seen / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        during = run_load_then(0.5, url, test_rows)
        answers += during
        # a few lines may still fit in the journal's last page (those are answered and recorded); then 503s
        assert {a.status for a in during} <= {200, 503}
        assert sum(a.status == 200 for a in during) < 20 < sum(a.status == 503 for a in during)
        ready = httpx.get(f"{url}/health/ready")
        assert ready.status_code == 503
        assert "journal cannot be written" in ready.json()["prediction_log"]["reason"]
        filler.unlink()
        deadline = time.monotonic() + 5
        while httpx.get(f"{url}/health/ready").status_code != 200:  # readiness follows without any request
            assert time.monotonic() < deadline, httpx.get(f"{url}/health/ready").text
            time.sleep(0.1)
        answers += run_load_then(0.5, url, test_rows)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0].decode()
    assert "Traceback" not in output
    answered = answered_ids(answers)
    assert len(answered) > 20
    assert answered <= logged_ids(log_url)
