"""The embedded stores against the stack's servers, side by side in one run.

- Registration: the register stage's own call (log the run and the model, register a version, run the gate) for
  the dataset's trained bundle, into a fresh SQLite registry (the anchor) and into the stack's MLflow server, under
  a model name of the benchmark's own (deleted from the server afterwards).
- Champion resolution: what the service does at start: resolve ``@champion`` and download the bundle.
- Prediction log: single-row prediction batches, as the service records them under load, appended to the journal
  and then loaded into SQLite (the anchor) and into the stack's PostgreSQL by the log's own loader; rows per second
  of the load (the journal append is the same for both and is not counted).

The stack is the one of ``make stack-up`` (``TABLOOP_STACK_*``): the parts that are not running are started, and
stopped again afterwards only if no part was running before (a part that was running is never stopped).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from rich.console import Console

from serving.log import PredictionLog
from serving.log.lines import PredictionBatch
from tabloop.config import load_data_config, load_evaluate_config, load_registry_config
from tabloop.registry.candidate import RegisterInputs
from tabloop.registry.mlflow import Registry
from tabloop.settings import Settings, from_environment
from tabloop.stages.register import run as register_candidate
from tools.benchmarks.display import table
from tools.benchmarks.measure import BenchmarkError, where
from tools.stack.control import down, up
from tools.stack.credentials import Credentials, connection_settings, log_database
from tools.stack.settings import StackSettings

LOG_ROWS = 20_000
SQLITE, TRACKING_SERVER, POSTGRESQL = "sqlite (anchor)", "tracking server", "postgresql"


@dataclass(frozen=True)
class Registration:
    """Seconds to register a bundle as a new model's first version, and to resolve and download its champion."""

    register_s: float
    resolve_s: float


@dataclass(frozen=True)
class LogLoad:
    """The prediction log's loader writing a journal of single rows into one database."""

    seconds: float
    rows_per_s: int


@dataclass(frozen=True)
class StackResult:
    """The stack benchmark: registration and log loading per store, keyed by the store."""

    dataset: str
    started: tuple[str, ...]
    stopped_after: bool
    log_rows: int
    registry: dict[str, Registration]
    log: dict[str, LogLoad]

    @property
    def met(self) -> bool:
        """Always: there is no goal, the figures are reported side by side."""
        return True

    def show(self, console: Console) -> None:
        """Each store's figures beside the embedded one's, as a table."""
        shown = table(
            f"Embedded stores against the stack's servers ({self.dataset})",
            ("measurement", "embedded (anchor)", "stack", "ratio"),
        )
        local, server = self.registry[SQLITE], self.registry[TRACKING_SERVER]
        for label, embedded, remote in (
            ("register a version (run, model, gate)", local.register_s, server.register_s),
            ("resolve @champion, download", local.resolve_s, server.resolve_s),
        ):
            shown.add_row(
                f"{label}: SQLite vs MLflow server",
                f"{embedded:.2f} s",
                f"{remote:.2f} s",
                f"{remote / embedded:.2f}x the time",
            )
        sqlite, postgres = self.log[SQLITE], self.log[POSTGRESQL]
        shown.add_row(
            f"prediction log, {self.log_rows:,} single-row requests loaded: SQLite vs PostgreSQL",
            f"{sqlite.rows_per_s:,} rows/s",
            f"{postgres.rows_per_s:,} rows/s",
            f"{postgres.rows_per_s / sqlite.rows_per_s:.2f}x the rate",
        )
        console.print(shown)


def run() -> StackResult:
    """Seconds to register and to resolve the champion, and log rows per second, per store."""
    stack = from_environment(StackSettings)
    said: list[str] = []
    try:
        env_file = up(stack, said.append)
    except Exception as e:
        raise BenchmarkError(f"the stack did not start: {e}") from e
    started = [line.split(":")[0] for line in said if ": started (PID" in line]
    # Stopped again only if none of it ran before: `tabloop stack down` stops every part, and what ran before stays.
    stop_after = bool(started) and not any(": already running" in line for line in said)
    try:
        credentials = Credentials.load(stack.paths().credentials)
        if credentials is None:
            raise BenchmarkError(f"{env_file.parent}: the stack has no credentials")
        env = connection_settings(stack, credentials)  # what the env file says, from the stack's own records
        with tempfile.TemporaryDirectory(prefix="bench-stack-") as tmp:
            root = Path(tmp)
            sqlite = Settings(tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts"))
            server = Settings(tracking_uri=env["TABLOOP_TRACKING_URI"])
            registry = {
                SQLITE: _registration(sqlite, root / "sqlite"),
                TRACKING_SERVER: _registration(server, root / "server"),
            }
            log = {
                SQLITE: _log_rows(f"sqlite:///{root}/predictions.db", root / "journal-sqlite"),
                POSTGRESQL: _log_rows(
                    f"{env['TABLOOP_STACK_LOG_SERVER']}/{log_database(where().dataset)}", root / "journal-pg"
                ),
            }
    finally:
        if stop_after:
            down(stack, said.append)
    return StackResult(
        dataset=where().dataset,
        started=tuple(started),
        stopped_after=stop_after,
        log_rows=LOG_ROWS,
        registry=registry,
        log=log,
    )


def _registration(settings: Settings, root: Path) -> Registration:
    """Seconds to register the dataset's bundle as a new model's first version, and to resolve and download it."""
    layout = where()
    config = load_registry_config(layout.registry_config)
    name = f"bench-{config.model_name}-{uuid.uuid4().hex[:8]}"
    config = config.model_copy(update={"model_name": name, "experiment": "benchmarks"})
    inputs = RegisterInputs(
        bundle_dir=layout.bundle,
        features_dir=layout.features,
        train_reports=layout.train_reports,
        evaluation_dir=layout.evaluation,
        lock_file=Path("dvc.lock"),
        root=Path.cwd(),
        params={},
        receipt=root / "registry.json",
        data_outputs=layout.data_outputs,
    )
    Registry(settings, config).connect()  # a registry that exists: a new SQLite file's schema is made here, untimed
    start = time.perf_counter()
    register_candidate(settings, config, load_evaluate_config(layout.evaluate_config), inputs)
    registered = time.perf_counter() - start
    registry = Registry(settings, config)
    start = time.perf_counter()
    registry.connect()
    champion = registry.by_alias("champion")
    if champion is None:
        raise BenchmarkError(f"{config.model_name} has no @champion after its first registration")
    registry.fetch_bundle(Registry.number(champion), root / "download")
    resolved = time.perf_counter() - start
    if not registry.is_local:
        from mlflow import MlflowClient

        MlflowClient(settings.tracking_uri).delete_registered_model(config.model_name)
    return Registration(register_s=round(registered, 2), resolve_s=round(resolved, 2))


def _log_rows(url: str, journal: Path) -> LogLoad:
    """Rows per second the log's loader writes into the database at ``url``, from a journal of single rows."""
    features = list(load_data_config(where().data_config).contract.features)
    rows = pl.read_parquet(where().features / "test.parquet", columns=features).head(LOG_ROWS).to_dicts()
    log = PredictionLog(url, journal, flush_interval_s=0.05)
    run_id = uuid.uuid4().hex[:8]
    created = dt.datetime.now(dt.UTC)
    for i in range(LOG_ROWS):
        row = rows[i % len(rows)]
        log.record_batch(
            PredictionBatch(
                request_id=f"bench-{run_id}-{i}",
                ids=[f"bench-{run_id}-{i}"],
                created_at=created,
                event_time=None,
                route="/predict",
                model_name="bench",
                model_version="1",
                features={name: [value] for name, value in row.items()},
                answers={"probability": [0.5], "label": [False]},
            )
        )
    start = time.perf_counter()
    written = asyncio.run(log.flush())
    seconds = time.perf_counter() - start
    asyncio.run(log.close())
    with sa.create_engine(url, poolclass=sa.NullPool).begin() as db:  # leave the database as it was found
        db.execute(sa.text("DELETE FROM predictions WHERE model_name = 'bench'"))
    if written != LOG_ROWS:
        raise BenchmarkError(f"{url.split(':', maxsplit=1)[0]}: {written} of {LOG_ROWS} rows loaded")
    return LogLoad(seconds=round(seconds, 2), rows_per_s=round(LOG_ROWS / seconds))
