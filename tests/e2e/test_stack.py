"""The production-like stack for real: PostgreSQL, SeaweedFS and an MLflow server started, used, reported and
stopped through `make stack-*` and `python -m tools.stack`, on ports of this test's own, and the faults they must
survive: a taken port, stale PID files, a part that never answers, two commands at once.

The servers are always stopped: each test that may start them stops the stack when it ends, pass or fail, and the
module's teardown stops what any PID file still names and checks that nothing of the stack is left running.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from helpers import running_service
from monitoring.log_reader import read_features, read_log
from serving.settings import ServeSettings
from stack_helpers import PARTS, Stack, read_env
from tabloop.config import DataConfig
from tabloop.layout import load_datasets
from tabloop.prediction_tables import feedback, metadata, predictions
from tools.stack.credentials import MLFLOW, PREDICTIONS, Credentials, log_database, postgres_url
from tools.stack.processes import (
    PidRecord,
    Verdict,
    exclusive,
    process_facts,
    read_pid_file,
    stop_group,
)
from tools.stack.settings import StackSettings


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """Another program, which the stack must never stop."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _plant_stale_pid_files(stack: Stack, other: subprocess.Popen[bytes]) -> None:
    """A PID file of another program, one of a process that is gone, and one that is not a record at all."""
    paths = stack.settings.paths()
    gone = subprocess.Popen(["true"])
    gone.wait()
    other_record = PidRecord(pid=other.pid, create_time=psutil.Process(other.pid).create_time(), cmdline=("weed",))
    records = {"mlflow": other_record, "seaweedfs": PidRecord(pid=gone.pid, create_time=1.0, cmdline=("weed",))}
    for key, record in records.items():
        paths.pid_file(key).parent.mkdir(parents=True, exist_ok=True)
        paths.pid_file(key).write_text(record.model_dump_json())
    paths.pid_file("postgres").write_text("4242\n")


def _listening_addresses(pids: list[int]) -> set[str]:
    """The addresses the processes of the groups ``pids`` lead (and their children) listen on."""
    members = set(pids)
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            members |= {child.pid for child in psutil.Process(pid).children(recursive=True)}
    return {
        connection.laddr.ip
        for connection in psutil.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.pid in members
    }


def _s3_round_trip(env: dict[str, str], settings: StackSettings) -> Any:
    """An object written and read back with the generated key; anonymous and wrong-key requests refused."""
    import boto3
    import botocore
    from botocore.config import Config
    from botocore.exceptions import ClientError

    def client(**keys: Any) -> Any:
        return boto3.client(
            "s3", endpoint_url=env["AWS_ENDPOINT_URL_S3"], region_name=env["AWS_DEFAULT_REGION"], **keys
        )

    s3 = client(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    assert {settings.dvc_bucket, settings.mlflow_bucket} <= {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert env["TABLOOP_DVC_REMOTE_URL"] == f"s3://{settings.dvc_bucket}"
    body = os.urandom(4096)
    s3.put_object(Bucket=settings.dvc_bucket, Key="e2e/object.bin", Body=body)
    assert s3.get_object(Bucket=settings.dvc_bucket, Key="e2e/object.bin")["Body"].read() == body

    anonymous = client(config=Config(signature_version=botocore.UNSIGNED))
    with pytest.raises(ClientError, match="AccessDenied"):
        anonymous.get_object(Bucket=settings.dvc_bucket, Key="e2e/object.bin")
    wrong = client(aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key="not-the-secret-key-at-all")
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        wrong.list_buckets()
    return s3


def _mlflow_round_trip(env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A run with a parameter and an artifact logged through the server and read back; the run's id."""
    import mlflow
    from mlflow.tracking import MlflowClient

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)  # the client needs no S3 key: the server serves the artifacts
    uri = env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("stack-e2e"))
    client.log_param(run.info.run_id, "engine", "postgresql")
    artifact = tmp_path / "card.md"
    artifact.write_text("# served through the tracking server\n")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)

    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    assert client.get_run(run.info.run_id).data.params == {"engine": "postgresql"}
    back = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="card.md", dst_path=str(tmp_path / "back"), tracking_uri=uri
    )
    assert Path(back).read_text() == artifact.read_text()
    return run.info.run_id


def _check_databases(stack: Stack, env: dict[str, str], run_id: str) -> None:
    """The run is in MLflow's PostgreSQL database; the prediction logs' role reaches their databases only."""
    credentials = Credentials.load(stack.settings.paths().credentials)
    assert credentials is not None
    mlflow_db = postgres_url(stack.settings, MLFLOW, credentials.mlflow_db_password, MLFLOW)
    with sa.create_engine(mlflow_db, poolclass=sa.NullPool).connect() as db:
        assert db.execute(sa.text("SELECT count(*) FROM runs WHERE run_uuid = :r"), {"r": run_id}).scalar() == 1
    for dataset in load_datasets().datasets:  # a log of its own per dataset, as a SQLite file per dataset is
        url = f"{env['TABLOOP_STACK_LOG_SERVER']}/{log_database(dataset)}"
        with sa.create_engine(url, poolclass=sa.NullPool).connect() as db:
            row = db.execute(sa.text("SELECT current_user, current_database()")).one()
            assert tuple(row) == (PREDICTIONS, f"predictions_{dataset}")
    elsewhere = postgres_url(stack.settings, PREDICTIONS, credentials.predictions_db_password, MLFLOW)
    with pytest.raises(sa.exc.OperationalError, match="permission denied"):
        sa.create_engine(elsewhere, poolclass=sa.NullPool).connect()


def _check_stopped(stack: Stack, pids: list[int]) -> None:
    assert stack.pid_files() == []
    assert stack.taken() == []
    assert [pid for pid in pids if process_facts(pid) is not None] == []
    assert stack.leftovers() == []


def test_up_status_up_again_then_store_and_track_then_down(
    stopped_after: Stack, sleeper: subprocess.Popen[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack, settings = stopped_after, stopped_after.settings
    _plant_stale_pid_files(stack, sleeper)

    start = time.monotonic()
    up = stack.make("stack-up")
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"stack-up (first start, initdb included): {time.monotonic() - start:.1f} s")
    assert up.stdout.count(": started (PID") == 3, up.stdout
    assert "the PID belongs to another program" in up.stdout
    assert "the process is gone" in up.stdout
    assert "not a PID record" in up.stdout
    assert sleeper.poll() is None  # its PID was in a PID file: cleaned up, never signalled
    pids = {key: read_pid_file(settings.paths().pid_file(key)) for key in PARTS}
    assert all(verdict is Verdict.RUNNING for verdict, _ in pids.values())
    leaders = [record.pid for _, record in pids.values() if record is not None]

    status = stack.cli("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for address in (
        f"postgresql://127.0.0.1:{settings.postgres_port}",
        f"http://127.0.0.1:{settings.s3_port}",
        f"http://127.0.0.1:{settings.mlflow_port}",
    ):
        assert address in status.stdout
    assert status.stdout.count(" yes ") == 3, status.stdout

    again = stack.cli("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count(": already running (PID") == 3, again.stdout
    assert [read_pid_file(settings.paths().pid_file(key))[1] for key in PARTS] == [r for _, r in pids.values()]
    assert _listening_addresses(leaders) == {"127.0.0.1"}

    env = read_env(settings.paths().env_file)
    assert stat.S_IMODE(settings.paths().credentials.stat().st_mode) == 0o600
    s3 = _s3_round_trip(env, settings)
    run_id = _mlflow_round_trip(env, tmp_path, monkeypatch)
    stored = s3.list_objects_v2(Bucket=settings.mlflow_bucket).get("Contents", [])
    assert [o["Key"] for o in stored if run_id in o["Key"]] == [f"1/{run_id}/artifacts/card.md"]
    _check_databases(stack, env, run_id)

    down = stack.make("stack-down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert down.stdout.count(": stopped (PID") == 3, down.stdout
    _check_stopped(stack, leaders)
    assert stack.cli("status").returncode == 3


@pytest.mark.parametrize("owner", ["PostgreSQL", "SeaweedFS s3 gRPC", "MLflow"])
def test_a_taken_port_stops_up_before_anything_starts(stopped_after: Stack, owner: str) -> None:
    stack = stopped_after
    port = dict(stack.settings.ports())[owner]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = stack.cli("up")
    assert result.returncode == 1
    error = result.stderr.strip()
    assert "\n" not in error
    assert f"port {port} ({owner}) is already in use by " in error
    assert "nothing was started" in error
    assert result.stdout == ""
    _check_stopped(stack, [])


def test_down_cleans_stale_pid_files_and_never_stops_another_program(
    stopped_after: Stack, sleeper: subprocess.Popen[bytes]
) -> None:
    stack = stopped_after
    _plant_stale_pid_files(stack, sleeper)
    status = stack.cli("status")
    assert status.returncode == 3
    assert status.stdout.count("stale PID file") == 3, status.stdout

    down = stack.cli("down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.count("removed, nothing stopped") == 3, down.stdout
    assert sleeper.poll() is None
    assert stack.pid_files() == []


def test_a_part_that_does_not_answer_in_time_stops_with_everything_this_up_started(stopped_after: Stack) -> None:
    stack = stopped_after
    result = stack.cli("up", TABLOOP_STACK_MLFLOW_TIMEOUT_S="1")
    assert result.returncode == 1
    first, *tail = result.stderr.strip().splitlines()
    assert f"MLflow did not answer at http://127.0.0.1:{stack.settings.mlflow_port} within 1 s" in first
    assert f"last lines of {stack.settings.paths().log('mlflow')}" in first
    assert tail
    assert all(line.startswith("  ") for line in tail)
    assert "PostgreSQL: stopped again" in result.stdout
    assert "SeaweedFS (S3): stopped again" in result.stdout
    _check_stopped(stack, [])


def test_a_second_command_at_the_same_time_is_refused(stopped_after: Stack) -> None:
    stack = stopped_after
    with exclusive(stack.settings.paths().lock):
        for command in ("up", "down"):
            result = stack.cli(command)
            assert result.returncode == 1
            assert f"another `python -m tools.stack` command is running (PID {os.getpid()}" in result.stderr
    _check_stopped(stack, [])


def test_the_prediction_log_on_postgresql_reads_like_sqlite_and_outlives_a_killed_database(
    stopped_after: Stack,
    started: dict[str, str],
    serve_settings: ServeSettings,
    registry_store: tuple[Any, Path],
    test_rows: list[dict[str, Any]],
    replayed_log: tuple[Path, Path],
    config: DataConfig,
    tmp_path: Path,
) -> None:
    stack = stopped_after
    server = started["TABLOOP_STACK_LOG_SERVER"]

    # The fast reader (the driver's rows, typed once per distinct value) reads PostgreSQL's log as SQLite's.
    sqlite_log, pg_log = f"sqlite:///{replayed_log[0]}", f"{server}/{log_database('credit')}"
    _copy_log(sqlite_log, pg_log)
    expected, got = read_log(sqlite_log), read_log(pg_log)
    assert got.height == expected.height > 100
    assert_frame_equal(got, expected)
    ids = expected["id"].sample(50, seed=0).to_list()
    assert_frame_equal(read_features(pg_log, ids).sort("id"), read_features(sqlite_log, ids).sort("id"))

    # The service writes to PostgreSQL; PostgreSQL is killed (every process, SIGKILL); the service answers from its
    # journal, says so in readiness, refuses once the queue is full, and loads the queue when the database is back.
    settings = serve_settings.model_copy(
        update={
            "prediction_log_url": f"{server}/{log_database('flights')}",
            "log_journal_dir": tmp_path / "journal",
            "log_max_queue": 40,
            "log_flush_interval_s": 0.05,
        }
    )
    with running_service(settings, registry_store[0]) as url, httpx.Client(base_url=url, timeout=30) as client:
        for i in range(10):
            assert client.post("/predict", json=test_rows[i], headers={"X-Request-Id": f"before-{i}"}).is_success
        _wait(lambda: client.get("/health/ready").json()["prediction_log"]["queue"] == 0)
        _kill_postgres(stack)
        answered = 0
        for i in range(30):
            if client.post("/predict", json=test_rows[i], headers={"X-Request-Id": f"during-{i}"}).is_success:
                answered += 1
        assert answered == 30
        _wait(lambda: client.get("/health/ready").json()["prediction_log"]["status"] == "degraded")
        ready = client.get("/health/ready").json()
        assert ready["status"] == "ready"
        assert ready["prediction_log"]["queue"] == 30
        assert "writing to the database failed" in ready["prediction_log"]["reason"]
        # An outcome of a queued prediction is queued too; one of a prediction only the database knows cannot be
        # checked now: 503, not a 500 or a 404.
        outcome = {"id": "during-0", config.contract.target.name: True}
        assert client.post("/feedback", json=outcome).is_success
        unchecked = client.post("/feedback", json={**outcome, "id": "before-0"})
        assert unchecked.status_code == 503
        assert "cannot be checked" in unchecked.json()["error"]["message"]
        for i in range(9):  # 30 + 1 queued + 9 = 40, the bound: the next is refused, not answered without a record
            assert client.post("/predict", json=test_rows[i], headers={"X-Request-Id": f"more-{i}"}).is_success
        refused = client.post("/predict", json=test_rows[0], headers={"X-Request-Id": "over"})
        assert refused.status_code == 503
        assert "behind the journal (at most 40)" in refused.text
        assert client.get("/health/ready").status_code == 503

        again = stack.cli("up")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "PostgreSQL: started" in again.stdout
        drained = {"status": "ok", "queue": 0, "max_queue": 40}
        _wait(lambda: client.get("/health/ready").json()["prediction_log"] == drained)
    with sa.create_engine(settings.prediction_log_url, poolclass=sa.NullPool).connect() as db:
        stored = db.execute(sa.text("SELECT request_id FROM predictions")).scalars().all()
        outcomes = db.execute(sa.text("SELECT prediction_id FROM feedback")).scalars().all()
    assert sorted(stored) == sorted(
        [f"before-{i}" for i in range(10)] + [f"during-{i}" for i in range(30)] + [f"more-{i}" for i in range(9)]
    )
    assert outcomes == ["during-0"]


def test_a_push_to_an_object_store_that_is_down_fails_clearly_and_resumes(
    stopped_after: Stack, started: dict[str, str], tmp_path: Path
) -> None:
    stack = stopped_after
    env = {**stack.env, **started}
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "data").mkdir()
    contents = {f"part-{i}.bin": os.urandom(200_000) for i in range(5)}
    for name, body in contents.items():
        (repo / "data" / name).write_bytes(body)
    dvc = str(Path(sys.executable).parent / "dvc")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)

    for command in (
        ("git", "init", "-q"),
        (dvc, "init", "-q"),
        (dvc, "remote", "add", "-d", "stack", env["TABLOOP_DVC_REMOTE_URL"] + "/" + tmp_path.name),
        (dvc, "remote", "modify", "stack", "endpointurl", env["AWS_ENDPOINT_URL_S3"]),
        (dvc, "add", "-q", "data"),
    ):
        assert run(*command).returncode == 0, command

    verdict, record = read_pid_file(stack.settings.paths().pid_file("seaweedfs"))
    assert verdict is Verdict.RUNNING
    assert record is not None
    stop_group(record, 10)
    start = time.monotonic()
    failed = run(dvc, "push")
    assert failed.returncode != 0
    assert "Could not connect to the endpoint URL" in failed.stderr
    assert time.monotonic() - start < 60  # an error in seconds, not a wait on retries

    again = stack.cli("up")
    assert again.returncode == 0, again.stdout + again.stderr
    pushed = run(dvc, "push")
    assert pushed.returncode == 0, pushed.stderr
    assert "in sync" in run(dvc, "status", "--cloud").stdout
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data")
    assert run(dvc, "pull").returncode == 0
    assert {path.name: path.read_bytes() for path in (repo / "data").iterdir()} == contents


def _copy_log(source: str, target: str) -> None:
    """Every prediction and outcome of the log at ``source`` into an empty log at ``target``."""
    reading, writing = sa.create_engine(source), sa.create_engine(target, poolclass=sa.NullPool)
    metadata.drop_all(writing)
    metadata.create_all(writing)
    with reading.connect() as src, writing.begin() as dst:
        for table in (predictions, feedback):
            rows = [dict(row) for row in src.execute(sa.select(table)).mappings()]
            dst.execute(sa.insert(table), rows)
    reading.dispose()


def _kill_postgres(stack: Stack) -> None:
    """SIGKILL to the postmaster and every process of its group: a crash, not a shutdown."""
    verdict, record = read_pid_file(stack.settings.paths().pid_file("postgres"))
    assert verdict is Verdict.RUNNING
    assert record is not None
    group = os.getpgid(record.pid)
    os.killpg(group, signal.SIGKILL)
    _wait(lambda: not any(p.info["pid"] for p in psutil.process_iter(["pid"]) if _in_group(p, group)))


def _in_group(process: psutil.Process, group: int) -> bool:
    with contextlib.suppress(psutil.Error, ProcessLookupError):
        return os.getpgid(process.pid) == group
    return False


def _wait(condition: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
