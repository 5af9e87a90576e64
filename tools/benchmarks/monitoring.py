"""Monitoring: ``python -m monitoring monitor`` over a million logged predictions, against Evidently's own preset.

Set-up (not timed; cached under ``logs/benchmarks/monitoring`` until its inputs change): the November-December
flights resampled with replacement to a million predictions at their own departure times (the two months: ten
weekly windows, the first and the last partial), scored by the registered champion and written to a prediction log
in the service's format, one request per departure time, with the outcomes a replay leaves once its last flight is
sent: those of every flight landed by then.

Measured in one run, each command in a process of its own (wall time and peak memory of its whole process tree):

- the anchor: Evidently's ``DataDriftPreset`` on 300,000 rows a side of the real features (the validation months
  against the test months, each resampled), a cost measured on the same machine at the same time;
- ``python -m monitoring monitor``, the command ``make monitor`` runs, with the shipped configuration and a fresh
  workspace; goal: at most 60 s and 2 GiB on two cores;
- the same command with sampling off (``max_rows`` and ``judged_max_rows`` null: every row of every window against
  the whole reference), whose verdict must be the sampled run's: the same status and exit code, the same drifted
  features of the judged window, the same prediction drift.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import polars as pl
import sqlalchemy as sa
import yaml

from tools.benchmarks.measure import GIB, BenchmarkError, Run, run_command, where
from tools.benchmarks.monitoring_results import (
    AnchorDrift,
    AnchorRuns,
    FullData,
    GateVerdict,
    MonitoringMet,
    MonitoringResult,
    MonitorRuns,
    ReportsConfig,
)
from tools.benchmarks.workspace import REPO_ROOT, environment

if TYPE_CHECKING:
    from monitoring.monitor import MonitorResult

WALL_GOAL_S = 60.0
MEMORY_GOAL_BYTES = 2 * GIB
LOG_ROWS = 1_000_000
ANCHOR_ROWS = 300_000
SEED = 0
SAMPLE_S = 0.1  # between memory samples: walking the process tree more often takes CPU from the two cores
LOG_FORMAT = 1  # changed whenever the generated log changes, so that a cached one is rebuilt
SCRATCH = Path("logs/benchmarks/monitoring")  # git-ignored, like every prediction log


@dataclass(frozen=True)
class Champion:
    """The registered champion: the name and version the log records, and its bundle where the monitor finds it."""

    name: str
    version: str
    directory: Path


@dataclass(frozen=True)
class MonitorRun:
    """One run of the monitor: its wall time, peak memory, exit code, windows and verdict."""

    wall_s: float
    peak_bytes: int
    exit_code: int
    windows: int
    verdict: GateVerdict


def run(repeat: int = 1) -> MonitoringResult:
    """Every monitoring measurement; needs ``make train`` to have run (the champion and the feature tables)."""
    if (
        not (REPO_ROOT / where().features / "test.parquet").is_file()
        or not (REPO_ROOT / where().features / "valid.parquet").is_file()
    ):
        raise BenchmarkError("no feature tables: run `make train` first")
    scratch = REPO_ROOT / SCRATCH
    scratch.mkdir(parents=True, exist_ok=True)
    shipped = yaml.safe_load((REPO_ROOT / where().monitor_config).read_text())
    champion = find_champion(REPO_ROOT / shipped["reports"]["cache_dir"])
    log, setup_s = prepare_log(scratch, champion)
    env = environment()

    anchor_command = [sys.executable, "-m", "tools.benchmarks.monitoring"]
    anchors = [_measured(run_command(anchor_command, REPO_ROOT, env, SAMPLE_S), "the anchor")]
    fast_runs = []
    for _ in range(repeat):  # each monitoring run between two of the anchor's, as the machine's load moves
        fast_runs.append(monitor(scratch / "fast", log, shipped, env))
        anchors.append(_measured(run_command(anchor_command, REPO_ROOT, env, SAMPLE_S), "the anchor"))
    full = monitor(scratch / "full", log, shipped, env, max_rows=None, judged_max_rows=None)
    anchor = min(anchors, key=lambda r: r.wall_s)
    fast = min(fast_runs, key=lambda r: r.wall_s)
    fast_peak = max(r.peak_bytes for r in fast_runs)
    anchor_peak = max(r.peak_tree_bytes for r in anchors)
    reports = shipped["reports"]
    return MonitoringResult(
        rows=LOG_ROWS,
        model=f"{champion.name}/{champion.version}",
        windows=fast.windows,
        setup_s=round(setup_s, 1),
        anchor=AnchorRuns(
            what=f"Evidently DataDriftPreset, {ANCHOR_ROWS:,} rows a side (validation vs test months, resampled)",
            wall_s=round(anchor.wall_s, 2),
            wall_s_runs=tuple(round(r.wall_s, 2) for r in anchors),
            peak_gib=round(anchor_peak / GIB, 3),
            drift=AnchorDrift(**json.loads(anchor.output.strip().splitlines()[-1])),
        ),
        monitor=MonitorRuns(
            config=ReportsConfig(
                window=reports["window"],
                max_rows=reports["max_rows"],
                judged_max_rows=reports["judged_max_rows"],
                workers=reports["workers"],
            ),
            wall_s=round(fast.wall_s, 2),
            wall_s_runs=tuple(round(r.wall_s, 2) for r in fast_runs),
            peak_gib=round(fast_peak / GIB, 3),
            exit_code=fast.exit_code,
            verdict=fast.verdict,
            wall_vs_anchor=round(fast.wall_s / anchor.wall_s, 2),
            peak_vs_anchor=round(fast_peak / anchor_peak, 2),
            goal_wall_s=WALL_GOAL_S,
            goal_peak_gib=MEMORY_GOAL_BYTES / GIB,
        ),
        full_data=FullData(
            wall_s=round(full.wall_s, 2),
            peak_gib=round(full.peak_bytes / GIB, 3),
            exit_code=full.exit_code,
            verdict=full.verdict,
        ),
        met=MonitoringMet(
            wall=fast.wall_s <= WALL_GOAL_S,
            memory=fast_peak <= MEMORY_GOAL_BYTES,
            same_verdict=all(r.verdict == full.verdict for r in fast_runs),
        ),
    )


def monitor(root: Path, log: Path, shipped: dict[str, Any], env: dict[str, str], **changes: Any) -> MonitorRun:
    """``python -m monitoring monitor`` on ``log`` with the shipped configuration (and ``changes`` to its
    ``reports``), a fresh workspace and output under ``root``: wall time, peak memory, exit code, verdict."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    config = json.loads(json.dumps(shipped))
    config["reports"].update(
        log_url=f"sqlite:///{log}", workspace=str(root / "workspace"), out_dir=str(root / "out"), **changes
    )
    path = root / "monitor.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "monitoring", "monitor", "--config", str(path)]
    measured = run_command(command, REPO_ROOT, env, SAMPLE_S)
    from monitoring.monitor import MonitorResult  # not at the top: the anchor runs this module on its own

    verdict_file = root / "out" / "verdict.json"
    if measured.returncode not in (0, 3, 4) or not verdict_file.is_file():
        raise BenchmarkError(f"monitoring failed (exit {measured.returncode}):\n{measured.output[-3000:]}")
    result = MonitorResult.read(verdict_file)
    return MonitorRun(
        wall_s=measured.wall_s,
        peak_bytes=measured.peak_tree_bytes,
        exit_code=measured.returncode,
        windows=len(result.windows),
        verdict=verdict_of(result, measured.returncode),
    )


def verdict_of(result: MonitorResult, exit_code: int) -> GateVerdict:
    """What the gate decided in ``result``, and on what."""
    verdict = result.verdict
    summary = verdict.summary
    return GateVerdict(
        status=verdict.status,
        exit_code=exit_code,
        window=verdict.window,
        drifted_features=tuple(sorted(summary.drifted_features)) if summary else (),
        prediction_drift=bool(summary and summary.prediction_drift and summary.prediction_drift.drifted),
        reasons=len(verdict.reasons),
    )


def find_champion(cache_dir: Path) -> Champion:
    """The registry's champion, its bundle in ``cache_dir`` where the monitor looks first (fetched if missing)."""
    from tabloop.config import load_registry_config
    from tabloop.io import staged
    from tabloop.registry.mlflow import Registry
    from tabloop.settings import Settings

    registry = Registry(Settings(), load_registry_config(REPO_ROOT / where().registry_config))
    registry.connect()
    found = registry.by_alias("champion")
    if found is None:
        raise BenchmarkError("no champion in the registry: run `make train` first")
    version = Registry.number(found)
    directory = cache_dir / registry.name / version
    if not directory.is_dir():
        with tempfile.TemporaryDirectory(prefix="download-") as tmp, staged(directory) as (staging,):
            shutil.copytree(registry.fetch_bundle(version, Path(tmp)), staging)
    return Champion(registry.name, version, directory)


def prepare_log(scratch: Path, champion: Champion, rows: int = LOG_ROWS, seed: int = SEED) -> tuple[Path, float]:
    """The benchmark's prediction log, built unless the one there was built from the same inputs: its path and the
    seconds building it took (0 when it was there)."""
    inputs = {
        "format": LOG_FORMAT,
        "rows": rows,
        "seed": seed,
        "flights": _sha256(REPO_ROOT / where().features / "test.parquet"),
        "model": f"{champion.name}/{champion.version}",
        "weights": _sha256(champion.directory / "weights.safetensors"),
    }
    path, stamp = scratch / "predictions.db", scratch / "predictions.json"
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == inputs:
        return path, 0.0
    start = time.perf_counter()
    stamp.unlink(missing_ok=True)
    for old in scratch.glob("predictions.db*"):
        old.unlink()
    write_log(path, champion, rows, seed)
    stamp.write_text(json.dumps(inputs, indent=2) + "\n")
    return path, time.perf_counter() - start


def write_log(path: Path, champion: Champion, rows: int, seed: int) -> None:
    """``rows`` test-month flights drawn with replacement, predicted and logged at their departure times, one
    request per departure time, as the service writes them; outcomes for every flight landed by the last one."""
    from monitoring.traffic import load_traffic
    from serving.log import PredictionLog
    from serving.log.lines import PredictionBatch
    from tabloop.config.monitor import load_monitor_config
    from tabloop.layout import Layout
    from tabloop.prediction_tables import feedback, predictions
    from tabloop.runtime.bundle import Predictor

    predictor = Predictor.from_directory(champion.directory)
    contract = predictor.bundle.contract
    layout = Layout.of(where().dataset, REPO_ROOT)
    traffic = load_traffic(
        layout.features / "test.parquet", contract, load_monitor_config(layout.monitor_config, layout).replay
    )
    flights = pl.DataFrame([orjson.loads(b) for b in traffic.bodies], schema=list(contract.features), orient="row")
    columns = {name: flights[name].to_list() for name in contract.features}
    probability, label = predictor.predict(columns)
    drawn = np.sort(np.random.default_rng(seed).integers(0, len(traffic), rows))  # flights in time order
    departure = np.asarray([t.timestamp() for t in traffic.event_time])[drawn]
    bounds = np.flatnonzero(np.r_[True, np.diff(departure) != 0, True])
    last = traffic.event_time[int(drawn[-1])]
    answered = dt.datetime(2014, 1, 1, tzinfo=dt.UTC)

    # The service's own tables and its rows (PredictionBatch.records), inserted in one transaction.
    PredictionLog(f"sqlite:///{path}").engine.dispose()
    dialect = sa.create_engine("sqlite://").dialect
    processor = predictions.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    to_db: Callable[[Any], Any] = processor or (lambda t: t)

    requests = [(f"bench-{n:07d}", drawn[begin:end].tolist()) for n, (begin, end) in enumerate(pairwise(bounds))]

    def records() -> Iterator[tuple[Any, ...]]:
        for request_id, chosen in requests:
            batch = PredictionBatch(
                request_id=request_id,
                ids=[f"{request_id}-{n}" for n in range(len(chosen))],
                created_at=answered,
                event_time=traffic.event_time[chosen[0]],
                route="/predict",
                model_name=champion.name,
                model_version=champion.version,
                features={name: [values[i] for i in chosen] for name, values in columns.items()},
                answers={
                    "probability": [float(probability[i]) for i in chosen],
                    "label": [bool(label[i]) for i in chosen],
                },
            )
            yield from batch.records(to_db(batch.created_at), to_db(batch.event_time))

    received = to_db(answered)
    outcomes = (
        (f"{request_id}-{n}", traffic.labels[i], traffic.outcomes[i], received)
        for request_id, chosen in requests
        for n, i in enumerate(chosen)
        if traffic.outcome_at[i] <= last
    )
    with sqlite3.connect(path) as conn:
        conn.executemany(str(sa.insert(predictions).compile(dialect=dialect)), records())
        conn.executemany(str(sa.insert(feedback).compile(dialect=dialect)), outcomes)
    conn.close()


def anchor(rows: int = ANCHOR_ROWS, seed: int = SEED) -> AnchorDrift:
    """Evidently's ``DataDriftPreset`` on ``rows`` rows a side of the contract's features, the validation months
    as the reference and the test months as the current data, each resampled with replacement."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from tabloop.config import load_data_config

    contract = load_data_config(REPO_ROOT / where().data_config).contract
    features = list(contract.features)
    categorical = contract.of_kind("categorical")
    definition = DataDefinition(
        numerical_columns=[n for n in features if n not in categorical], categorical_columns=categorical
    )

    def side(path: Path, side_seed: int) -> Dataset:
        frame = pl.read_parquet(path, columns=features).sample(n=rows, with_replacement=True, seed=side_seed)
        return Dataset.from_pandas(frame.to_pandas(), data_definition=definition)

    snapshot = Report([DataDriftPreset()]).run(
        current_data=side(REPO_ROOT / where().features / "test.parquet", seed + 1),
        reference_data=side(REPO_ROOT / where().features / "valid.parquet", seed),
    )
    counted = next(m for m in snapshot.dict()["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount"))
    return AnchorDrift(drifted_columns=int(counted["value"]["count"]), share=float(counted["value"]["share"]))


def _measured(result: Run, what: str) -> Run:
    if result.returncode != 0:
        raise BenchmarkError(f"{what} failed (exit {result.returncode}):\n{result.output[-3000:]}")
    return result


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":  # the anchor, in a process of its own
    print(json.dumps(asdict(anchor())))
