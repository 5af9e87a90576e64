"""Replay: how fast the traffic replayer drives the service, and what a replay costs the service's other clients.

The service runs as in the serving benchmark: the champion from a throwaway registry holding the bundle
``make train`` built, one worker pinned to the first core, its prediction log in a temporary directory. The
replayer runs in this process on the second core, where ``wrk`` runs too. Measured:

- the anchor for throughput: ``wrk`` at concurrency 16 on ``POST /predict`` (single rows), the service's capacity;
- replay throughput: 10,000 rows with no rate limit, on a clock so fast that every row and outcome is due at
  once, at the same concurrency as ``wrk``: predictions and outcomes a second, how busy each core was, and whether
  the prediction log holds every prediction and outcome sent; alternated with ``wrk`` a few times, the median of
  the pairs' ratios (the goal: at least 1, the replayer keeps up with the service);
- pacing: a replay at the configured rate (``configs/monitor.yaml``), on the same clock, for a few seconds, and one
  at a quarter of the rate the replay reached without a limit (a rate it surely reaches): the rates achieved;
- the effect on serving: ``wrk`` at a moderate pace on ``POST /predict`` (a few connections, each pausing after
  every answer; the latency excludes the pause), alone (the anchor) and while a replay at the configured rate runs,
  alternately, a few times (the medians are reported);
  with the service's own mean time on a request (its ``/metrics``): the replayer shares ``wrk``'s core, so part of a
  rise in the latency ``wrk`` sees can be ``wrk`` waiting for its core rather than for the service.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import psutil

from monitoring.replay import Replayer, run_loop
from monitoring.replay_state import ReplayState, ReplaySummary
from monitoring.traffic import ReplayError, Traffic, load_traffic
from tabloop.config import load_data_config
from tabloop.config.monitor import ReplayConfig, load_monitor_config
from tools.benchmarks import serving
from tools.benchmarks.measure import BenchmarkError, where
from tools.benchmarks.replay_results import (
    LatencyPair,
    ReplayResult,
    ReplayRun,
    at_rate,
    summarise,
    throughput_pair,
    timed,
)

MAX_REQUESTS = 10_000
THROUGHPUT_PAIRS = 3  # wrk, then a replay without a rate limit, alternately
MAX_SECONDS = 120.0
UNBOUNDED_SPEEDUP = 1e9  # the two months pass in milliseconds: the clock never holds a flight or an outcome back
PACED_CONNECTIONS, PAUSE_MS = 8, 15  # wrk at a moderate pace: at most 8 / 15 ms, about 530 requests a second
REACHABLE_SHARE = 0.25  # of the rate reached without a limit: a rate the replay surely reaches
LOG_WAIT_S = 15.0


def run(duration_s: int = 10, pairs: int = 3, workdir: Path | None = None) -> ReplayResult:
    """Every replay measurement; needs ``make train`` to have run (the bundle and the test features). The latency
    comparison alternates ``pairs`` runs alone and with a replay, ``duration_s / 2`` each."""
    executable = shutil.which("wrk")
    if executable is None:
        raise BenchmarkError("wrk is not installed (Debian/Ubuntu: sudo apt-get install wrk)")
    if not where().bundle.is_dir() or not (where().features / "test.parquet").is_file():
        raise BenchmarkError("no trained model: run `make train` first")
    configured = load_monitor_config(where().monitor_config, where()).replay
    traffic = load_traffic(configured.traffic, load_data_config(where().data_config).contract, configured)
    bodies = [json.dumps(f) for f in serving.load_flights(where().features / "test.parquet")[:500]]
    if configured.rate is None:
        raise BenchmarkError(f"{where().monitor_config} sets no replay rate: nothing to pace at")
    with tempfile.TemporaryDirectory(prefix="bench-replay-", dir=workdir) as tmp:
        root = Path(tmp)
        database = root / "predictions.db"
        env = {
            **serving.server_environment(root, serving.build_registry(root)),
            "TABLOOP_SERVE_PREDICTION_LOG_URL": f"sqlite:///{database}",
        }
        base = configured.model_copy(
            update={"speedup": UNBOUNDED_SPEEDUP, "max_requests": None, "state": root / "replay" / "state.json"}
        )
        process, url = serving.start(serving.service_command(), env, "/health/ready", root / "server.log")
        try:
            serving.warm(url, "/health/ready")
            session = ReplaySession(traffic, url, database, psutil.Process(process.pid))
            unlimited = base.model_copy(
                update={
                    "rate": None,
                    "concurrency": serving.CONCURRENCY,
                    "max_requests": MAX_REQUESTS,
                    "max_seconds": MAX_SECONDS,
                }
            )
            throughput = []
            for _ in range(THROUGHPUT_PAIRS):
                capacity = serving.Wrk(executable, root).run(url, "/predict", bodies, duration_s / 2)
                like = ReplayLikeWrk(executable, root).run(url, "/predict", bodies, duration_s / 2)
                throughput.append(throughput_pair(capacity, like, session.replay(unlimited)))
            paced = base.model_copy(update={"max_seconds": float(duration_s)})
            at_configured = session.replay(paced)
            slowest = min(pair.unlimited.predictions_per_s for pair in throughput)
            reachable = max(1.0, round(slowest * REACHABLE_SHARE))
            at_reachable = session.replay(paced.model_copy(update={"rate": reachable}))
            wrk = PacedWrk(executable, root)
            latency = [latency_pair(session, wrk, bodies, paced, duration_s / 2) for _ in range(pairs)]
        except ReplayError as e:
            raise BenchmarkError(f"the replay failed: {e}") from e
        finally:
            serving.stop(process)
    return summarise(
        duration_s=duration_s,
        concurrency=base.concurrency,
        rate=configured.rate,
        wrk_connections=PACED_CONNECTIONS,
        wrk_pause_ms=PAUSE_MS,
        throughput=throughput,
        paced=at_rate(at_configured),
        paced_reachable=at_rate(at_reachable),
        pairs=latency,
    )


def latency_pair(
    session: ReplaySession, wrk: PacedWrk, bodies: list[str], paced: ReplayConfig, seconds: float
) -> LatencyPair:
    """``wrk`` on ``POST /predict`` for ``seconds`` alone, then as long while a replay at ``paced``'s rate runs; with
    the service's own mean time on a request during each."""
    url = session.url
    before = predict_time(url)
    alone = wrk.run(url, "/predict", bodies, seconds)
    between = predict_time(url)
    running = wrk.start(url, "/predict", bodies, seconds)
    replayed = session.replay(paced.model_copy(update={"max_seconds": seconds}))
    loaded = wrk.result(running)
    return LatencyPair(
        alone=timed(alone, mean_ms(before, between)),
        with_replay=timed(loaded, mean_ms(between, predict_time(url))),
        replay=at_rate(replayed),
    )


@dataclass(frozen=True)
class ReplaySession:
    """Replays of ``traffic`` against the service at ``url``, each from the first flight under a run id of its own."""

    traffic: Traffic
    url: str
    database: Path
    server: psutil.Process

    def replay(self, config: ReplayConfig) -> ReplayRun:
        """One bounded replay, in this process on the client core: what it sent, how fast, and what the log holds."""
        server_cpu, started = cpu_seconds(self.server), time.monotonic()
        with pinned(serving.CLIENT_CORE):
            client_cpu = time.process_time()
            summary = run_loop(self._run(config))
            client_cpu = time.process_time() - client_cpu
        wall = time.monotonic() - started
        server_cpu = cpu_seconds(self.server) - server_cpu
        logged, recorded = wait_for_log(self.database, summary.state.run, summary.answered, summary.feedback)
        return ReplayRun(
            rate=config.rate,
            sent=summary.sent,
            answered=summary.answered,
            rejected=summary.rejected,
            feedback=summary.feedback,
            seconds=summary.seconds,
            stopped_by=summary.stopped_by,
            predictions_per_s=summary.sent / summary.seconds,
            feedback_per_s=summary.feedback / summary.seconds,
            client_busy=client_cpu / wall,
            server_busy=server_cpu / wall,
            client_cpu_ms_per_row=client_cpu / max(summary.sent, 1) * 1000,
            server_cpu_ms_per_row=server_cpu / max(summary.sent, 1) * 1000,
            logged=logged,
            recorded=recorded,
        )

    async def _run(self, config: ReplayConfig) -> ReplaySummary:
        connector = aiohttp.TCPConnector(limit=config.concurrency)
        timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            state = ReplayState.start(self.traffic)
            return await Replayer(config, self.traffic, state, session, url=self.url, state_path=config.state).run()


# Any valid time does: the service checks an event time's form and range, not what it means for the dataset.
EVENT_TIME = "2001-01-01T00:00:00"
REPLAY_REQUEST = """local n = 0
request = function()
  i = i %% #bodies + 1
  n = n + 1
  local headers = {["Content-Type"] = "application/json", ["X-Request-Id"] = "%(run)s-" .. n,
                   ["X-Event-Time"] = "%(event_time)s"}
  return wrk.format(nil, "%(path)s", headers, bodies[i])
end"""


@dataclass(frozen=True)
class ReplayLikeWrk(serving.Wrk):
    """``wrk`` sending what a replay sends: every request with an ``X-Request-Id`` of its own and an
    ``X-Event-Time``, so that the service does the same work on it (the look-up that makes a retried id idempotent)
    as on a replayed row. The service's capacity for the replay's requests."""

    def request(self, path: str) -> str:
        return REPLAY_REQUEST % {"run": uuid.uuid4().hex[:8], "path": path, "event_time": EVENT_TIME}


@dataclass(frozen=True)
class PacedWrk(serving.Wrk):
    """``wrk`` with a few connections, each pausing after every answer: a moderate load, not the most it can send.

    Still a closed loop: a slower server gets fewer requests. The pause is not part of the latency ``wrk`` records.
    """

    connections: int = PACED_CONNECTIONS
    pause_ms: int = PAUSE_MS

    def start(
        self, url: str, path: str, bodies: list[str], duration_s: float, ids: Path | None = None
    ) -> subprocess.Popen[str]:
        script = self.root / "wrk-paced.lua"
        lua_bodies = ",\n".join(f"[==[{b}]==]" for b in bodies)
        pause = f"delay = function()\n  return {self.pause_ms}\nend\n"
        response = serving.WRK_IDS % ids if ids is not None else ""
        plain = serving.WRK_SCRIPT % {"bodies": lua_bodies, "request": self.request(path), "response": response}
        script.write_text(plain + pause)
        command = [self.executable, "-t1", f"-c{self.connections}", f"-d{duration_s:g}s", "--timeout", "10s"]
        return subprocess.Popen(
            [*command, "-s", str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {serving.CLIENT_CORE}),  # noqa: PLW1509
        )


@contextlib.contextmanager
def pinned(core: int) -> Iterator[None]:
    """This thread (and the threads it starts) on ``core`` only; as before afterwards."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of ``process`` and its children so far."""
    times = [p.cpu_times() for p in (process, *process.children(recursive=True))]
    return float(sum(t.user + t.system for t in times))


def predict_time(url: str) -> tuple[float, int]:
    """Seconds the service has spent on ``POST /predict`` requests so far (to the start of each response), and how
    many there were: from its ``/metrics``."""
    text = httpx.get(url + "/metrics", timeout=10).text
    found = {
        kind: float(value)
        for kind, labels, value in re.findall(r"^http_request_duration_seconds_(sum|count)\{(.*)\} (\S+)$", text, re.M)
        if 'route="/predict"' in labels and 'method="POST"' in labels
    }
    return found.get("sum", 0.0), round(found.get("count", 0.0))


def mean_ms(before: tuple[float, int], after: tuple[float, int]) -> float:
    """The service's mean time on a ``POST /predict`` between two readings of :func:`predict_time`."""
    return (after[0] - before[0]) / max(after[1] - before[1], 1) * 1000


def wait_for_log(database: Path, run: str, predictions: int, outcomes: int) -> tuple[int, int]:
    """The predictions and outcomes of replay ``run`` in the log, once they reach the counts sent (or a time limit:
    the log is written in the background)."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        with contextlib.closing(sqlite3.connect(database)) as connection:
            pattern = f"r{run}-%"
            logged = connection.execute("SELECT count(*) FROM predictions WHERE id LIKE ?", (pattern,)).fetchone()[0]
            recorded = connection.execute(
                "SELECT count(*) FROM feedback WHERE prediction_id LIKE ?", (pattern,)
            ).fetchone()[0]
        if (logged >= predictions and recorded >= outcomes) or time.monotonic() > deadline:
            return int(logged), int(recorded)
        time.sleep(0.25)
