"""Serving: this service against ``mlflow models serve`` on the same registered model, side by side in one run.

Both servers load ``@champion`` from a throwaway registry that holds the bundle ``make train`` built, run one worker
pinned to the first core, and are loaded by ``wrk`` pinned to the second core (a load generator written in C, so
that it is never the bottleneck: a Python one needs a core of its own to produce a thousand requests a second).
Every single-row request carries a different test-month flight. Measured:

- throughput and latency percentiles at concurrency 16, single rows: the anchor on ``/invocations``, this service
  on ``/predict`` and on the same ``/invocations`` requests (it is a drop-in replacement);
- a batch of 1,000 rows, one request at a time: server-side time (this service's ``Server-Timing`` header) and
  round trip for both; and the same on an idle server (a pause before each request);
- durability: after a load run, flights predicted (the server's counter) against rows in the prediction log; and a
  server sent SIGTERM in the middle of a load run, with every 2xx response ``wrk`` received against rows in the log.

Validation, the prediction log and metrics are all on, as a user runs the service.
"""

from __future__ import annotations

import contextlib
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
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import polars as pl

from flightdelay.config import load_data_config, load_evaluate_config, load_registry_config
from flightdelay.register import RegisterInputs, register_candidate
from flightdelay.settings import Settings

GOAL_RATIO = 10.0
GOAL_P99_MS = 20.0
GOAL_BATCH_MS = 15.0
CONCURRENCY = 16
BATCH_ROWS = 1000
SERVER_CORE, CLIENT_CORE = 0, 1

WRK_SCRIPT = """
local bodies = {%(bodies)s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, "%(path)s", nil, bodies[i])
end
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


class BenchmarkError(RuntimeError):
    """The serving benchmark could not be run."""


def run(duration_s: int = 10, workdir: Path | None = None) -> dict[str, Any]:
    """Every serving measurement; needs ``make train`` to have run (the bundle and the test features)."""
    executable = shutil.which("wrk")
    if executable is None:
        raise BenchmarkError("wrk is not installed (Debian/Ubuntu: sudo apt-get install wrk; macOS: brew install wrk)")
    if not Path("models/bundle").is_dir() or not Path("data/features/test.parquet").is_file():
        raise BenchmarkError("no trained model: run `make train` first")
    flights = load_flights(Path("data/features/test.parquet"))
    with tempfile.TemporaryDirectory(prefix="bench-serving-", dir=workdir) as tmp:
        root = Path(tmp)
        wrk = Wrk(executable, root)
        tracking_uri = build_registry(root)
        env = server_environment(root, tracking_uri)
        single = [json.dumps(f) for f in flights[:500]]
        records = [json.dumps({"dataframe_records": [f]}) for f in flights[:500]]
        batch = flights[:BATCH_ROWS]
        results: dict[str, Any] = {"concurrency": CONCURRENCY, "duration_s": duration_s, "batch_rows": BATCH_ROWS}

        with server(anchor_command(), env, "/ping") as anchor:
            results["anchor"] = wrk.run(anchor, "/invocations", records, duration_s)
            results["anchor_batch"] = batch_round_trips(anchor, "/invocations", {"dataframe_records": batch})

        log_url = f"sqlite:///{root}/predictions.db"
        with server(
            service_command(), {**env, "FLIGHTDELAY_SERVE_PREDICTION_LOG_URL": log_url}, "/health/ready"
        ) as url:
            results["predict"] = wrk.run(url, "/predict", single, duration_s)
            results["invocations"] = wrk.run(url, "/invocations", records, duration_s)
            results["batch"] = batch_round_trips(url, "/predict", batch)
            results["batch_idle"] = batch_round_trips(url, "/predict", batch, pause_s=0.5)
            predicted = predictions_counted(url)
            time.sleep(1.0)  # one flush interval and more
            results["after_load"] = {"predicted": predicted, "logged": logged_rows(root / "predictions.db")}

        results["sigterm"] = sigterm_under_load(wrk, env, single)
    return summarise(results)


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Ratios against the anchor and the goals."""
    anchor_rps = results["anchor"]["rps"]
    for key in ("predict", "invocations"):
        results[key]["ratio"] = results[key]["rps"] / anchor_rps
    after, sigterm = results["after_load"], results["sigterm"]
    results["goals"] = {
        "throughput_ratio": GOAL_RATIO,
        "p99_ms": GOAL_P99_MS,
        "batch_server_ms": GOAL_BATCH_MS,
    }
    results["met"] = {
        "throughput": results["predict"]["ratio"] >= GOAL_RATIO,
        "p99": results["predict"]["p99_ms"] <= GOAL_P99_MS,
        "batch": results["batch"]["server_median_ms"] <= GOAL_BATCH_MS,
        "no_loss_after_load": after["predicted"] == after["logged"],
        # uvicorn re-raises the SIGTERM it handled once shutdown is complete, so -15 is a clean exit
        "no_loss_after_sigterm": sigterm["answered"] == sigterm["logged"] and sigterm["exit_code"] in (0, -15),
        "no_errors": all(results[k]["failed"] == 0 for k in ("anchor", "predict", "invocations")),
    }
    return results


def load_flights(path: Path) -> list[dict[str, Any]]:
    """Test-month flights as a client would send them (the contract's features)."""
    contract = load_data_config(Path("configs/data.yaml")).contract
    frame = pl.read_parquet(path, columns=list(contract.features)).sample(n=BATCH_ROWS, seed=0)
    return frame.to_dicts()


def build_registry(root: Path) -> str:
    """A registry in ``root`` holding the trained bundle as version 1, ``@champion``; its tracking URI."""
    settings = Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))
    registry = load_registry_config(Path("configs/registry.yaml"))
    inputs = RegisterInputs(
        bundle_dir=Path("models/bundle"),
        features_dir=Path("data/features"),
        train_reports=Path("reports/train"),
        evaluation_dir=Path("reports/evaluation"),
        lock_file=Path("dvc.lock"),
        root=Path.cwd(),
        params={},
        receipt=root / "registry.json",
    )
    outcome = register_candidate(settings, registry, load_evaluate_config(Path("configs/evaluate.yaml")), inputs)
    if outcome.champion != outcome.version:
        raise BenchmarkError(f"the throwaway registry did not make version {outcome.version} the champion")
    return settings.tracking_uri


def server_environment(root: Path, tracking_uri: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "FLIGHTDELAY_TRACKING_URI": tracking_uri,
        "FLIGHTDELAY_SERVE_CACHE_DIR": str(root / "cache"),
        "FLIGHTDELAY_SERVE_POLL_INTERVAL_S": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }


def anchor_command() -> list[str]:
    model = f"models:/{load_registry_config(Path('configs/registry.yaml')).model_name}@champion"
    mlflow = str(Path(sys.executable).parent / "mlflow")
    return [mlflow, "models", "serve", "-m", model, "--env-manager", "local", "--workers", "1", "-h", "127.0.0.1"]


def service_command() -> list[str]:
    return [sys.executable, "-m", "serving"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(command: list[str], env: dict[str, str], ready_path: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server on a free port, pinned to the server core; wait until ``ready_path`` answers 200."""
    port = free_port()
    if command[0].endswith("mlflow"):
        command = [*command, "-p", str(port)]
    env = {**env, "PORT": str(port), "FLIGHTDELAY_SERVE_PORT": str(port)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: mlflow's server is a child of the mlflow command
            preexec_fn=lambda: os.sched_setaffinity(0, {SERVER_CORE}),  # noqa: PLW1509 (no threads started yet)
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
def server(command: list[str], env: dict[str, str], ready_path: str) -> Iterator[str]:
    log = Path(tempfile.mkstemp(prefix="bench-server-", suffix=".log")[1])
    process, url = start(command, env, ready_path, log)
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

    def start(self, url: str, path: str, bodies: list[str], duration_s: float) -> subprocess.Popen[str]:
        """Start a run sending ``bodies`` in turn to ``path``; :meth:`result` waits for it."""
        script = self.root / f"wrk-{path.strip('/').replace('/', '-')}.lua"
        lua_bodies = ",\n".join(f"[==[{b}]==]" for b in bodies)
        script.write_text(WRK_SCRIPT % {"bodies": lua_bodies, "path": path})
        command = [self.executable, "-t1", f"-c{CONCURRENCY}", f"-d{duration_s:g}s", "--timeout", "10s"]
        return subprocess.Popen(
            [*command, "-s", str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {CLIENT_CORE}),  # noqa: PLW1509
        )

    @staticmethod
    def result(process: subprocess.Popen[str]) -> dict[str, Any]:
        output, _ = process.communicate()
        match = re.search(r"^BENCH (\{.*\})$", output, re.MULTILINE)
        if process.returncode != 0 or match is None:
            raise BenchmarkError(f"wrk failed ({process.returncode}):\n{output}")
        raw = json.loads(match.group(1))
        failed = raw["status_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
        return {
            "requests": raw["requests"],
            "answered": raw["requests"] - raw["status_errors"],
            "failed": failed,
            "connect_errors": raw["connect_errors"],
            "rps": raw["requests"] / (raw["duration_us"] / 1e6),
            "p50_ms": raw["p50_us"] / 1000,
            "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000,
        }

    def run(self, url: str, path: str, bodies: list[str], duration_s: float) -> dict[str, Any]:
        return self.result(self.start(url, path, bodies, duration_s))


def batch_round_trips(url: str, path: str, body: Any, repeat: int = 30, pause_s: float = 0.0) -> dict[str, Any]:
    """Round trip of one large request, one at a time; server-side time from ``Server-Timing`` where given.

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
    result: dict[str, Any] = {
        "round_trip_median_ms": statistics.median(rounds),
        "round_trip_p90_ms": statistics.quantiles(rounds, n=10)[-1],
    }
    if server:
        result |= {
            "server_median_ms": statistics.median(server),
            "server_p90_ms": statistics.quantiles(server, n=10)[-1],
        }
    return result


def predictions_counted(url: str) -> int:
    """Flights the server says it predicted (``predictions_total``, summed over versions)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    return round(sum(float(v) for v in re.findall(r"^predictions_total\{[^}]*\} ([\d.e+]+)$", text, re.MULTILINE)))


def logged_rows(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as connection:
        return int(connection.execute("SELECT count(*) FROM predictions").fetchone()[0])


def sigterm_under_load(wrk: Wrk, env: dict[str, str], bodies: list[str], after_s: float = 3.0) -> dict[str, Any]:
    """SIGTERM the service ``after_s`` into a load run; compare the 2xx responses received with the log."""
    database = wrk.root / "sigterm.db"
    env = {**env, "FLIGHTDELAY_SERVE_PREDICTION_LOG_URL": f"sqlite:///{database}"}
    process, url = start(service_command(), env, "/health/ready", wrk.root / "sigterm-server.log")
    warm(url, "/health/ready")
    client = wrk.start(url, "/predict", bodies, after_s + 4)
    time.sleep(after_s)
    exit_code = stop(process)
    result = wrk.result(client)
    return {
        "answered": result["answered"],
        "logged": logged_rows(database),
        "exit_code": exit_code,
        "errors_after_shutdown": result["failed"],  # wrk keeps sending to the closed port until its run ends
    }
