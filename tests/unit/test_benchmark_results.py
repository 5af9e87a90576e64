"""The benchmarks' typed results: the JSON they save keeps its keys, each verdict follows its goals, and each
prints its table."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import TYPE_CHECKING

import pytest
from rich.console import Console

from tools.benchmarks import replay_results as rr
from tools.benchmarks import serving_results as sr
from tools.benchmarks.measure import BenchmarkError
from tools.benchmarks.stack import POSTGRESQL, SQLITE, TRACKING_SERVER, LogLoad, Registration, StackResult

if TYPE_CHECKING:
    from tools.benchmarks.__main__ import Result


def wrk(rps: float, failed: int = 0, p99_ms: float = 12.0) -> sr.WrkRun:
    return sr.WrkRun(
        requests=round(rps * 10),
        answered=round(rps * 10),
        failed=failed,
        connect_errors=0,
        rps=rps,
        p50_ms=5.0,
        p90_ms=9.0,
        p99_ms=p99_ms,
        max_ms=40.0,
    )


def serving(mlserver: sr.WrkRun | sr.Unmeasured, batch_ms: float = 12.0) -> sr.ServingResult:
    killed = sr.Killed(after_s=1.0, grace_s=None, answered=2000, journal_segments_left=1, missing=0)
    return sr.summarise(
        duration_s=10,
        concurrency=16,
        batch_rows=1000,
        anchor=wrk(120.0),
        anchor_batch=sr.RoundTrips(round_trip_median_ms=40.0, round_trip_p90_ms=50.0),
        predict=wrk(2400.0),
        invocations=wrk(2300.0),
        batch=sr.TimedRoundTrips(20.0, 25.0, batch_ms, 18.0),
        batch_idle=sr.TimedRoundTrips(21.0, 26.0, 13.0, 19.0),
        after_load=sr.AfterLoad(predicted=5000, logged=5000),
        predict_2_workers=wrk(1800.0),
        v2=wrk(1900.0),
        mlserver=mlserver,
        sigterm=sr.Sigterm(answered=700, logged=700, exit_code=-15, errors_after_shutdown=30),
        killed=(killed, dataclasses.replace(killed, after_s=3.0)),
        grace=dataclasses.replace(killed, after_s=2.0, grace_s=2.0, journal_segments_left=0),
        soak=sr.Soak(60, 2300.0, 14.0, 0, 900, 80.0, 0, 260.0, 270.0, 138000, 138000),
    )


def printed(result: Result) -> str:
    console = Console(file=io.StringIO(), width=250, color_system=None, record=True)
    result.show(console)
    return console.export_text()


def test_serving_saves_the_same_keys_with_its_ratios_goals_and_verdicts() -> None:
    result = serving(wrk(110.0))
    saved = json.loads(json.dumps(dataclasses.asdict(result)))
    assert list(saved)[-2:] == ["goals", "met"]
    assert saved["predict"]["ratio"] == pytest.approx(20.0)
    assert saved["predict_2_workers"]["vs_1_worker"] == pytest.approx(0.75)
    assert saved["anchor_batch"] == {"round_trip_median_ms": 40.0, "round_trip_p90_ms": 50.0}
    assert saved["killed"][1]["after_s"] == 3.0
    assert saved["goals"]["queue_bound"] == sr.QUEUE_BOUND
    assert all(saved["met"].values())
    assert result.met
    assert "POST /v2/models/…/infer" in printed(result)


def test_one_missed_goal_fails_serving_and_a_server_not_measured_is_not_beaten() -> None:
    slow = serving(wrk(110.0), batch_ms=16.0)
    assert not slow.met
    assert [name for name, ok in dataclasses.asdict(slow.met).items() if not ok] == ["batch"]
    unmeasured = serving(sr.Unmeasured(error="MLServer could not be installed"))
    assert dataclasses.asdict(unmeasured)["mlserver"] == {"error": "MLServer could not be installed"}
    assert not unmeasured.met.ahead_of_mlserver
    assert "not measured: MLServer could not be installed" in printed(unmeasured)


def replay(rate: float | None, per_s: float) -> rr.ReplayRun:
    sent = round(per_s * 10)
    return rr.ReplayRun(
        rate=rate,
        sent=sent,
        answered=sent,
        rejected=0,
        feedback=sent // 2,
        seconds=10.0,
        stopped_by="max_seconds",
        predictions_per_s=per_s,
        feedback_per_s=per_s / 2,
        client_busy=0.5,
        server_busy=0.9,
        client_cpu_ms_per_row=0.4,
        server_cpu_ms_per_row=0.6,
        logged=sent,
        recorded=sent // 2,
    )


@pytest.mark.parametrize(("reachable_per_s", "met"), [(170.0, True), (150.0, False)])
def test_replay_reports_the_median_pair_and_holds_the_rate(reachable_per_s: float, met: bool) -> None:
    throughput = [rr.throughput_pair(wrk(1000.0), wrk(800.0), replay(None, per_s)) for per_s in (700.0, 900.0, 1000.0)]
    pairs = [
        rr.LatencyPair(
            rr.timed(wrk(500.0), 1.0), rr.timed(wrk(480.0, p99_ms=15.0), 1.5), rr.at_rate(replay(250.0, 249.0))
        )
        for _ in range(3)
    ]
    result = rr.summarise(
        duration_s=10,
        concurrency=8,
        rate=250.0,
        wrk_connections=8,
        wrk_pause_ms=15,
        throughput=throughput,
        paced=rr.at_rate(replay(250.0, 248.0)),
        paced_reachable=rr.at_rate(replay(170.0, reachable_per_s)),
        pairs=pairs,
    )
    assert result.unlimited.predictions_per_s == 900.0
    assert result.unlimited.capacity_share == pytest.approx(900 / 800)
    assert result.unlimited.plain_share == pytest.approx(0.9)
    assert result.effect.p99_ms == pytest.approx(15 / 12)
    assert result.met.keeps_up
    assert result.met.no_errors
    assert result.met.rate_held is met
    assert bool(result.met) is met
    assert json.loads(json.dumps(dataclasses.asdict(result)))["paced_reachable"]["rate_ratio"] == reachable_per_s / 170
    assert "ratios 0.88, 1.12, 1.25" in printed(result)


def test_a_paced_replay_needs_a_rate() -> None:
    with pytest.raises(BenchmarkError, match="without a rate"):
        rr.at_rate(replay(None, 100.0))


def test_a_result_without_a_goal_is_met_and_saves_no_verdict() -> None:
    result = StackResult(
        dataset="flights",
        started=("mlflow",),
        stopped_after=True,
        log_rows=20_000,
        registry={SQLITE: Registration(1.0, 0.5), TRACKING_SERVER: Registration(2.0, 1.5)},
        log={SQLITE: LogLoad(0.5, 40_000), POSTGRESQL: LogLoad(1.0, 20_000)},
    )
    assert result.met
    assert "met" not in dataclasses.asdict(result)
    assert "2.00x the time" in printed(result)
