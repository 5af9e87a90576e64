"""Serving: this service against ``mlflow models serve`` on the same registered model, side by side in one run.

Both servers load ``@champion`` from a throwaway registry that holds the bundle ``make train`` built, run one worker
pinned to the first core, and are loaded by ``wrk`` pinned to the second core (a load generator written in C, so
that it is never the bottleneck: a Python one needs a core of its own to produce a thousand requests a second).
Every single-row request carries a different test-month flight. Measured:

- throughput and latency percentiles at concurrency 16, single rows: the anchor on ``/invocations``, this service
  on ``/predict`` and on the same ``/invocations`` requests (it is a drop-in replacement);
- a batch of 1,000 rows, one request at a time: server-side time (this service's ``Server-Timing`` header) and
  round trip for both; and the same on an idle server (a pause before each request);
- durability: after a load run, flights predicted (the server's counter) against rows in the prediction log; a
  server sent SIGTERM in the middle of a load run, with every 2xx response ``wrk`` received against rows in the log;
  a server killed with SIGKILL at several moments of a saturating run, and one stopped as a container runtime does
  (SIGTERM, SIGKILL 2 s later): the request id of every 2xx answer ``wrk`` received, looked up in the log once the
  next process has started (and loaded the dead one's journal);
- MLServer (``mlserver`` with ``mlserver-mlflow``, the Open Inference Protocol server a user would pick instead)
  serving the same registered model in one process, against this service's V2 route, with the same V2 bodies
  (JSON tensors, flights without missing values since MLServer's JSON tensors cannot carry them). MLServer's
  dependencies clash with the project's (FastAPI, pandas), so it gets a virtual environment of its own, built on
  first use under ``logs/benchmarks/`` (about 1 GB, a minute with pip's cache), which falls back to the project's
  environment only for what the model's code imports (torch, polars);
- a 60 s saturating run: the prediction log's queue (journal records not yet in the database), sampled every second,
  and the server's resident memory, against the bounds the README states.

Validation, the prediction log and metrics are all on, as a user runs the service.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from tabloop.config import load_data_config, load_evaluate_config, load_registry_config
from tabloop.registry.candidate import RegisterInputs
from tabloop.settings import Settings
from tabloop.stages.register import run as register_candidate
from tools.benchmarks.measure import BenchmarkError, where
from tools.benchmarks.serving_results import (
    AfterLoad,
    Killed,
    RoundTrips,
    ServingResult,
    Sigterm,
    Soak,
    TimedRoundTrips,
    Unmeasured,
    WrkRun,
    summarise,
)

SOAK_S = 60
MLSERVER_PACKAGES = ("mlserver==1.7.1", "mlserver-mlflow==1.7.1")
MLSERVER_VENV = Path("logs/benchmarks/mlserver-venv")
V2_PATH = "/v2/models/{name}/infer"
KILL_AFTER_S = (1.0, 3.0, 6.0)
GRACE_S = 2.0
CONCURRENCY = 16
BATCH_ROWS = 1000
SERVER_CORE, CLIENT_CORE = 0, 1

WRK_REQUEST = """request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end"""
WRK_SCRIPT = """
local bodies = {%(bodies)s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
%(request)s
%(response)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"status_errors\\": %%d, \\"connect_errors\\": %%d, " ..
    "\\"read_errors\\": %%d, \\"write_errors\\": %%d, \\"timeouts\\": %%d, \\"p50_us\\": %%d, \\"p90_us\\": %%d, " ..
    "\\"p99_us\\": %%d, \\"max_us\\": %%d}\\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


# Appended to the script when the ids of answered requests are wanted: one line per 2xx, written as it arrives, so
# that a server killed mid-run is checked against exactly what the client received.
WRK_IDS = """
local ids = nil
init = function(args)
  ids = io.open("%s", "w")
  ids:setvbuf("line")
end
response = function(status, headers, body)
  if status == 200 then
    local id = body:match('"request_id":"([^"]+)"')
    if id then ids:write(id, "\\n") end
  end
end
"""


def run(duration_s: int = 10, workdir: Path | None = None) -> ServingResult:
    """Every serving measurement; needs ``make train`` to have run (the bundle and the test features)."""
    executable = shutil.which("wrk")
    if executable is None:
        raise BenchmarkError("wrk is not installed (Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk)")
    if not where().bundle.is_dir() or not (where().features / "test.parquet").is_file():
        raise BenchmarkError("no trained model: run `make train` first")
    flights = load_flights(where().features / "test.parquet")
    with tempfile.TemporaryDirectory(prefix="bench-serving-", dir=workdir) as tmp:
        root = Path(tmp)
        wrk = Wrk(executable, root)
        tracking_uri = build_registry(root)
        env = server_environment(root, tracking_uri)
        single = [json.dumps(f) for f in flights[:500]]
        records = [json.dumps({"dataframe_records": [f]}) for f in flights[:500]]
        batch = flights[:BATCH_ROWS]

        with server(anchor_command(), env, "/ping") as anchor_url:
            anchor = wrk.run(anchor_url, "/invocations", records, duration_s)
            anchor_batch = round_trips(anchor_url, "/invocations", {"dataframe_records": batch})

        log_url = f"sqlite:///{root}/predictions.db"
        with server(service_command(), {**env, "TABLOOP_SERVE_PREDICTION_LOG_URL": log_url}, "/health/ready") as url:
            predict = wrk.run(url, "/predict", single, duration_s)
            invocations = wrk.run(url, "/invocations", records, duration_s)
            served_batch = timed_round_trips(url, "/predict", batch)
            batch_idle = timed_round_trips(url, "/predict", batch, pause_s=0.5)
            predicted = predictions_counted(url)
            time.sleep(1.0)  # one flush interval and more
            after_load = AfterLoad(predicted=predicted, logged=logged_rows(root / "predictions.db"))

        # Two workers on both cores, wrk still pinned to the second: what a second worker buys on this machine.
        workers = {**env, "TABLOOP_SERVE_WORKERS": "2", "TABLOOP_SERVE_PREDICTION_LOG_URL": f"sqlite:///{root}/w2.db"}
        with server(service_command(), workers, "/health/ready", frozenset({SERVER_CORE, CLIENT_CORE})) as url:
            predict_2_workers = wrk.run(url, "/predict", single, duration_s)

        v2_bodies = v2_requests(flights[:500])
        v2_path = V2_PATH.format(name=load_registry_config(where().registry_config).model_name)
        with server(service_command(), env, "/health/ready") as url:
            v2 = wrk.run(url, v2_path, v2_bodies, duration_s)
        other: WrkRun | Unmeasured
        try:
            with mlserver(root, env) as url:
                other = wrk.run(url, v2_path, v2_bodies, duration_s)
        except BenchmarkError as e:
            other = Unmeasured(error=str(e))

        sigterm = sigterm_under_load(wrk, env, single)
        killed = tuple(killed_under_load(wrk, env, single, after, None) for after in KILL_AFTER_S)
        grace = killed_under_load(wrk, env, single, 2.0, GRACE_S)
        soaked = soak(wrk, env, single)
    return summarise(
        duration_s=duration_s,
        concurrency=CONCURRENCY,
        batch_rows=BATCH_ROWS,
        anchor=anchor,
        anchor_batch=anchor_batch,
        predict=predict,
        invocations=invocations,
        batch=served_batch,
        batch_idle=batch_idle,
        after_load=after_load,
        predict_2_workers=predict_2_workers,
        v2=v2,
        mlserver=other,
        sigterm=sigterm,
        killed=killed,
        grace=grace,
        soak=soaked,
    )


def load_flights(path: Path) -> list[dict[str, Any]]:
    """Test-month flights as a client would send them (the contract's features)."""
    contract = load_data_config(where().data_config).contract
    frame = pl.read_parquet(path, columns=list(contract.features)).sample(n=BATCH_ROWS, seed=0)
    return frame.to_dicts()


def build_registry(root: Path) -> str:
    """A registry in ``root`` holding the trained bundle as version 1, ``@champion``; its tracking URI."""
    settings = Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))
    registry = load_registry_config(where().registry_config)
    inputs = RegisterInputs(
        bundle_dir=where().bundle,
        features_dir=where().features,
        train_reports=where().train_reports,
        evaluation_dir=where().evaluation,
        lock_file=Path("dvc.lock"),
        root=Path.cwd(),
        params={},
        receipt=root / "registry.json",
        data_outputs=where().data_outputs,
    )
    outcome = register_candidate(settings, registry, load_evaluate_config(where().evaluate_config), inputs)
    if outcome.champion != outcome.version:
        raise BenchmarkError(f"the throwaway registry did not make version {outcome.version} the champion")
    return settings.tracking_uri


def server_environment(root: Path, tracking_uri: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "TABLOOP_TRACKING_URI": tracking_uri,
        "TABLOOP_SERVE_CACHE_DIR": str(root / "cache"),
        "TABLOOP_SERVE_POLL_INTERVAL_S": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def anchor_command() -> list[str]:
    model = f"models:/{load_registry_config(where().registry_config).model_name}@champion"
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [mlflow, "models", "serve", "-m", model, "--env-manager", "local", "--workers", "1", "-h", "127.0.0.1"]


def service_command() -> list[str]:
    return [sys.executable, "-m", "serving"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(
    command: list[str],
    env: dict[str, str],
    ready_path: str,
    log: Path,
    port: int | None = None,
    *,
    cores: frozenset[int] = frozenset({SERVER_CORE}),
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server on a free port (or ``port``, set by its own configuration), pinned to ``cores`` (the server
    core); wait until ``ready_path`` answers 200."""
    port = port or free_port()
    if command[0].endswith("mlflow"):
        command = [*command, "-p", str(port)]
    env = {**env, "PORT": str(port), "TABLOOP_SERVE_PORT": str(port)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: mlflow's server is a child of the mlflow command
            preexec_fn=lambda: os.sched_setaffinity(0, cores),  # noqa: PLW1509 (no threads started yet)
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(f"{' '.join(command)} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return process, url
        time.sleep(0.5)
    process.kill()
    raise BenchmarkError(f"{' '.join(command)} was not ready within 180 s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM the server's process group and wait for the server; its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


@contextlib.contextmanager
def server(
    command: list[str], env: dict[str, str], ready_path: str, cores: frozenset[int] = frozenset({SERVER_CORE})
) -> Iterator[str]:
    log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
    process, url = start(command, env, ready_path, log, cores=cores)
    try:
        warm(url, ready_path)
        yield url
    finally:
        stop(process)
        log.unlink(missing_ok=True)


def warm(url: str, ready_path: str) -> None:
    """A few hundred requests first, so neither server is measured while its caches fill."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(200):
            client.get(ready_path)


@dataclass(frozen=True)
class Wrk:
    """``wrk`` on the client core, writing its scripts in ``root``."""

    executable: str
    root: Path

    def start(
        self, url: str, path: str, bodies: list[str], duration_s: float, ids: Path | None = None
    ) -> subprocess.Popen[str]:
        """Start a run sending ``bodies`` in turn to ``path`` (writing answered ids to ``ids``); :meth:`result`
        waits for it."""
        script = self.root / f"wrk-{path.strip('/').replace('/', '-')}.lua"
        script.write_text(self.script(path, bodies, ids))
        command = [self.executable, "-t1", f"-c{CONCURRENCY}", f"-d{duration_s:g}s", "--timeout", "10s"]
        return subprocess.Popen(
            [*command, "-s", str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CORE}),  # noqa: PLW1509
        )

    def script(self, path: str, bodies: list[str], ids: Path | None) -> str:
        """The Lua script of a run."""
        lua_bodies = ",\n".join(f"[==[{b}]==]" for b in bodies)
        response = WRK_IDS % ids if ids is not None else ""
        return WRK_SCRIPT % {"bodies": lua_bodies, "request": self.request(path), "response": response}

    def request(self, path: str) -> str:
        """The Lua function that makes each request."""
        return WRK_REQUEST % {"path": path}

    @staticmethod
    def result(process: subprocess.Popen[str]) -> WrkRun:
        output, _ = process.communicate()
        match = re.search(r"^BENCH (\{.*\})$", output, re.MULTILINE)
        if process.returncode != 0 or match is None:
            raise BenchmarkError(f"wrk failed ({process.returncode}):\n{output}")
        raw = json.loads(match.group(1))
        failed = raw["status_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
        return WrkRun(
            requests=raw["requests"],
            answered=raw["requests"] - raw["status_errors"],
            failed=failed,
            connect_errors=raw["connect_errors"],
            rps=raw["requests"] / (raw["duration_us"] / 1e6),
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
        )

    def run(self, url: str, path: str, bodies: list[str], duration_s: float) -> WrkRun:
        return self.result(self.start(url, path, bodies, duration_s))


def batch_timings(
    url: str, path: str, body: object, repeat: int = 30, pause_s: float = 0.0
) -> tuple[list[float], list[float]]:
    """Milliseconds of each round trip of one large request, one at a time, and of the server's own time on each
    where its ``Server-Timing`` header gives it.

    Without ``pause_s`` each request follows the previous answer at once (concurrency 1): the server is warm and
    its prediction log writer, at the lowest priority, shares the core. With a pause the server is idle when each
    request arrives; on a virtual machine an idle core loses its caches, and such a request is slower.
    """
    payload = json.dumps(body).encode()
    rounds, server = [], []
    with httpx.Client(base_url=url, timeout=60, headers={"Content-Type": "application/json"}) as client:
        for i in range(repeat + 3):
            start = time.perf_counter()
            response = client.post(path, content=payload)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                raise BenchmarkError(f"POST {path} with {BATCH_ROWS} rows: {response.status_code} {response.text}")
            if pause_s:
                time.sleep(pause_s)
            if i < 3:
                continue  # warm-up
            rounds.append(elapsed * 1000)
            timing = re.search(r"app;dur=([\d.]+)", response.headers.get("server-timing", ""))
            if timing:
                server.append(float(timing.group(1)))
    return rounds, server


def round_trips(url: str, path: str, body: object) -> RoundTrips:
    """Round trips of one large request to ``path``, one at a time (see :func:`batch_timings`)."""
    rounds, _ = batch_timings(url, path, body)
    return RoundTrips(*median_p90(rounds))


def timed_round_trips(url: str, path: str, body: object, pause_s: float = 0.0) -> TimedRoundTrips:
    """The same, with this service's own time on each request (see :func:`batch_timings`)."""
    rounds, server = batch_timings(url, path, body, pause_s=pause_s)
    if not server:
        raise BenchmarkError(f"POST {path} answered without a Server-Timing header")
    return TimedRoundTrips(*median_p90(rounds), *median_p90(server))


def median_p90(values: list[float]) -> tuple[float, float]:
    """The median and the 90th percentile of ``values``."""
    return statistics.median(values), statistics.quantiles(values, n=10)[-1]


def predictions_counted(url: str) -> int:
    """Flights the server says it predicted (``predictions_total``, summed over versions)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return round(sum(float(v) for v in re.findall(r"^predictions_total\{[^}]*\} ([\d.e+]+)$", text, re.MULTILINE)))


def logged_rows(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return int(connection.execute("SELECT count(*) FROM predictions").fetchone()[0])


def sigterm_under_load(wrk: Wrk, env: dict[str, str], bodies: list[str], after_s: float = 3.0) -> Sigterm:
    """SIGTERM the service ``after_s`` into a load run; compare the 2xx responses received with the log."""
    database = wrk.root / "sigterm.db"
    env = {**env, "TABLOOP_SERVE_PREDICTION_LOG_URL": f"sqlite:///{database}"}
    process, url = start(service_command(), env, "/health/ready", wrk.root / "sigterm-server.log")
    warm(url, "/health/ready")
    client = wrk.start(url, "/predict", bodies, after_s + 4)
    time.sleep(after_s)
    exit_code = stop(process)
    result = wrk.result(client)
    return Sigterm(
        answered=result.answered,
        logged=logged_rows(database),
        exit_code=exit_code,
        errors_after_shutdown=result.failed,  # wrk keeps sending to the closed port until its run ends
    )


def logged_request_ids(database: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return {row[0] for row in connection.execute("SELECT request_id FROM predictions")}


def killed_under_load(
    wrk: Wrk, env: dict[str, str], bodies: list[str], after_s: float, grace_s: float | None
) -> Killed:
    """Kill the service ``after_s`` into a saturating run (SIGKILL; or SIGTERM and SIGKILL ``grace_s`` later, as a
    container runtime stops a container); start it again, stop it; every answered id looked up in the log."""
    name = f"kill-{after_s:g}" if grace_s is None else f"grace-{grace_s:g}"
    database, ids = wrk.root / f"{name}.db", wrk.root / f"{name}.ids"
    env = {**env, "TABLOOP_SERVE_PREDICTION_LOG_URL": f"sqlite:///{database}"}
    process, url = start(service_command(), env, "/health/ready", wrk.root / f"{name}-server.log")
    warm(url, "/health/ready")
    client = wrk.start(url, "/predict", bodies, after_s + 2, ids=ids)
    time.sleep(after_s)
    if grace_s is None:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wrk.result(client)
    answered = set(ids.read_text().split())
    journal = sum(1 for _ in database.with_name(database.name + ".journal").glob("*.jsonl"))
    restarted, _ = start(service_command(), env, "/health/ready", wrk.root / f"{name}-restart.log")
    stop(restarted)
    return Killed(
        after_s=after_s,
        grace_s=grace_s,
        answered=len(answered),
        journal_segments_left=journal,
        missing=len(answered - logged_request_ids(database)),
    )


def soak(wrk: Wrk, env: dict[str, str], bodies: list[str], duration_s: int = SOAK_S) -> Soak:
    """A saturating run of ``duration_s``: the log's queue and the server's memory, sampled every second."""
    import psutil

    database = wrk.root / "soak.db"
    env = {**env, "TABLOOP_SERVE_PREDICTION_LOG_URL": f"sqlite:///{database}"}
    process, url = start(service_command(), env, "/health/ready", wrk.root / "soak-server.log")
    try:
        warm(url, "/health/ready")
        server = psutil.Process(process.pid)
        rss_start = server.memory_info().rss
        client = wrk.start(url, "/predict", bodies, duration_s)
        queue, rss = [], []
        while client.poll() is None:
            time.sleep(1.0)
            rss.append(server.memory_info().rss)
            with contextlib.suppress(httpx.HTTPError):
                queue.append(queue_depth(url))
        result = wrk.result(client)
        time.sleep(2.0)
        drained = queue_depth(url)
    finally:
        stop(process)
    return Soak(
        duration_s=duration_s,
        rps=result.rps,
        p99_ms=result.p99_ms,
        failed=result.failed,
        queue_max=max(queue),
        queue_median=statistics.median(queue),
        queue_after=drained,
        rss_start_mb=rss_start / 2**20,
        rss_peak_mb=max(rss) / 2**20,
        logged=logged_rows(database),
        answered=result.answered,
    )


def queue_depth(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=5).text
    match = re.search(r"^prediction_log_queue_depth ([\d.e+]+)$", text, re.MULTILINE)
    return round(float(match.group(1))) if match else -1


def v2_requests(flights: list[dict[str, Any]]) -> list[str]:
    """Open Inference Protocol requests, one flight each as JSON tensors, for flights without missing values."""
    from serving.routes.v2 import datatype_of

    contract = load_data_config(where().data_config).contract
    complete = [f for f in flights if None not in f.values()]
    return [
        json.dumps(
            {
                "inputs": [
                    {"name": name, "datatype": datatype_of(spec), "shape": [1], "data": [flight[name]]}
                    for name, spec in contract.features.items()
                ]
            }
        )
        for flight in complete
    ]


def mlserver_environment() -> Path:
    """MLServer's own virtual environment (built once), which sees the project's packages after its own."""
    python = MLSERVER_VENV / "bin" / "python"
    stamp = MLSERVER_VENV / "installed.txt"
    wanted = "\n".join([*MLSERVER_PACKAGES, f"mlflow=={importlib.metadata.version('mlflow')}"])
    if not stamp.is_file() or stamp.read_text() != wanted:
        shutil.rmtree(MLSERVER_VENV, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
        install = [str(python), "-m", "pip", "install", "--quiet", *wanted.split("\n")]
        done = subprocess.run(install, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchmarkError(f"MLServer could not be installed:\n{done.stderr[-2000:]}")
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        project = sysconfig.get_paths()["purelib"]
        Path(site, "zz-project-packages.pth").write_text(project + "\n")  # after MLServer's own packages
        stamp.write_text(wanted)
    return MLSERVER_VENV / "bin" / "mlserver"


@contextlib.contextmanager
def mlserver(root: Path, env: dict[str, str]) -> Iterator[str]:
    """MLServer serving ``@champion`` with its MLflow runtime, in one process (``parallel_workers: 0``)."""
    executable = mlserver_environment()
    registry = load_registry_config(where().registry_config)
    home = root / "mlserver"
    (home / registry.model_name).mkdir(parents=True)
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "debug": False,
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,  # MLServer always starts gRPC
        "metrics_endpoint": None,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
    }
    (home / "settings.json").write_text(json.dumps(settings))
    model = {
        "name": registry.model_name,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": f"models:/{registry.model_name}@champion"},
    }
    (home / registry.model_name / "model-settings.json").write_text(json.dumps(model))
    log = root / "mlserver.log"
    process, url = start(
        [str(executable), "start", str(home)], env, f"/v2/models/{registry.model_name}/ready", log, port=port
    )
    try:
        warm(url, "/v2/health/ready")
        yield url
    finally:
        stop(process)
