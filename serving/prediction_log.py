"""The prediction log: every prediction and every piece of feedback, written off the hot path in batches.

Records are queued in memory when a response is produced and written by a background task in one transaction
per batch; closing the log (on shutdown) writes whatever is still queued, so every answered request is recorded.
The default is a SQLite file (WAL mode, so monitoring can read while the service writes); any SQLAlchemy URL,
e.g. PostgreSQL, replaces it. A failed write keeps its batch queued and is retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

logger = logging.getLogger(__name__)

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(96), primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),  # when the service answered
    # When the prediction was wanted: the client's X-Event-Time (e.g. a replay's virtual clock), else created_at.
    # Monitoring windows are cut on this time.
    sa.Column("event_time", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("route", sa.String(64), nullable=False),
    sa.Column("model_name", sa.String(128), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False, index=True),
    sa.Column("features", sa.Text, nullable=False),  # JSON, serialised once when queued
    sa.Column("probability", sa.Float, nullable=False),
    sa.Column("label", sa.Boolean, nullable=False),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("prediction_id", sa.String(96), primary_key=True),
    sa.Column("late", sa.Boolean, nullable=False),
    sa.Column("arr_delay", sa.Float, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request, as the request produced them (columns), until the writer takes them."""

    request_id: str
    ids: list[str]
    created_at: dt.datetime
    event_time: dt.datetime | None  # None: the same as created_at
    route: str
    model_name: str
    model_version: str
    features: dict[str, list[Any]]
    probability: list[float]
    label: list[bool]

    def records(self, created_at: Any, event_time: Any) -> list[tuple[Any, ...]]:
        """One tuple per prediction in the column order of ``predictions``, features as JSON text."""
        names = list(self.features)
        head = (self.request_id, created_at, event_time, self.route, self.model_name, self.model_version)
        dumps = orjson.dumps
        return [
            (self.ids[i], *head, dumps(dict(zip(names, values, strict=True))).decode(), self.probability[i], label)
            for i, (values, label) in enumerate(zip(zip(*self.features.values(), strict=True), self.label, strict=True))
        ]


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


class PredictionLog:
    """A queue of records in front of a SQL database."""

    def __init__(self, url: str, batch_size: int = 500, flush_interval_s: float = 0.2, **engine_options: Any) -> None:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, **engine_options)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        _add_event_time(self.engine)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self._queue: deque[tuple[str, Any]] = deque()
        self._pending: set[str] = set()
        self._queued_rows = 0
        self._closed = False
        self._writing = threading.Lock()  # one write at a time, whichever task or thread flushes
        # One writer thread at the lowest CPU priority: the database releases the GIL while it works, so with the
        # writer below the event loop, writing the log takes idle CPU rather than time from requests.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="prediction-log", initializer=_lowest_priority)
        # A prediction id seen before (a client retrying with the same X-Request-Id) is not recorded twice.
        self._insert = str(_insert_new(self.engine.dialect.name).compile(dialect=self.engine.dialect))
        self._columns = [c.name for c in predictions.c]
        dialect = self.engine.dialect
        processor: Callable[[Any], Any] | None = predictions.c.created_at.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        self._created_at: Callable[[Any], Any] = processor or (lambda t: t)
        self.written = 0

    @property
    def depth(self) -> int:
        """Records waiting to be written."""
        return self._queued_rows + sum(1 for kind, _ in self._queue if kind == "feedback")

    def record_batch(self, batch: PredictionBatch) -> None:
        """Queue the predictions of one request; they are expanded into rows by the writer, off the hot path."""
        self._queue.append(("batch", batch))
        self._pending.update(batch.ids)
        self._queued_rows += len(batch.ids)

    def record_feedback(self, rows: Iterable[dict[str, Any]]) -> None:
        """Queue outcomes; recording the same prediction's outcome again replaces it."""
        for row in rows:
            self._queue.append(("feedback", row))

    def known(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are predictions in the log or on their way to it."""
        found = {i for i in ids if i in self._pending}
        missing = [i for i in ids if i not in found]
        if missing:
            with self.engine.connect() as conn:
                query = sa.select(predictions.c.id).where(predictions.c.id.in_(missing))
                found |= set(conn.execute(query).scalars())
        return found

    async def run(self) -> None:
        """Write queued records every ``flush_interval_s`` until closed."""
        while not self._closed:
            await asyncio.sleep(self.flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Write everything queued so far (in batches), off the event loop."""
        while self._queue:
            items, rows = [], 0
            while self._queue and rows < self.batch_size:
                kind, item = self._queue.popleft()
                items.append((kind, item))
                rows += len(item.ids) if kind == "batch" else 1
            try:
                written = await asyncio.get_running_loop().run_in_executor(self._writer, self._write, items)
            except Exception:
                logger.exception("writing %d records to the prediction log failed; they stay queued", rows)
                self._queue.extendleft(reversed(items))
                return
            # bookkeeping on the event loop, never in the writer thread, so no counter update is lost
            for kind, item in items:
                if kind == "batch":
                    self._pending.difference_update(item.ids)
            self._queued_rows -= written
            self.written += written

    async def close(self) -> None:
        """Stop the background writer after writing every queued record."""
        self._closed = True
        for _ in range(3):
            await self.flush()
            if not self._queue:
                break
        if self._queue:
            logger.error("%d prediction-log records could not be written", len(self._queue))
        self._writer.shutdown()
        self.engine.dispose()

    def _write(self, items: list[tuple[str, Any]]) -> int:
        with self._writing:
            return self._write_locked(items)

    def _write_locked(self, items: list[tuple[str, Any]]) -> int:
        rows = [
            row
            for kind, batch in items
            if kind == "batch"
            for row in batch.records(
                self._created_at(batch.created_at), self._created_at(batch.event_time or batch.created_at)
            )
        ]
        outcomes = list({row["prediction_id"]: row for kind, row in items if kind == "feedback"}.values())
        with self.engine.begin() as conn:
            if rows:
                # The driver's executemany on plain tuples, without SQLAlchemy's per-parameter processing (a quarter
                # of the write's time at a thousand rows). The values already have the columns' Python types; the
                # one that needs converting (the time) is converted once per request by ``_created_at``.
                if not self.engine.dialect.positional:
                    rows = [dict(zip(self._columns, row, strict=True)) for row in rows]
                conn.exec_driver_sql(self._insert, rows)
            if outcomes:
                conn.execute(_upsert(self.engine.dialect.name, outcomes))
        return len(rows)


def _insert_new(dialect: str) -> Any:
    """An insert into ``predictions`` that skips ids already there."""
    if dialect == "sqlite":
        return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=[predictions.c.id])
    if dialect == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(index_elements=[predictions.c.id])
    raise ValueError(f"the prediction log supports SQLite and PostgreSQL, not {dialect}")


def _add_event_time(engine: sa.Engine) -> None:
    """Bring a log written before ``event_time`` existed up to date: the column, filled with ``created_at``."""
    columns = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    if "event_time" in columns:
        return
    logger.info("adding event_time to the prediction log %s", engine.url.render_as_string(hide_password=True))
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE predictions ADD COLUMN event_time TIMESTAMP"))
        conn.execute(sa.text("UPDATE predictions SET event_time = created_at"))
        conn.execute(sa.text("CREATE INDEX IF NOT EXISTS ix_predictions_event_time ON predictions (event_time)"))


def _lowest_priority() -> None:
    """Lower the calling thread's CPU priority (Linux sets it per thread); elsewhere do nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        logger.debug("could not lower the prediction-log writer's priority")


def _upsert(dialect: str, rows: list[dict[str, Any]]) -> Any:
    insert: Any = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise ValueError(f"feedback upserts are implemented for SQLite and PostgreSQL, not {dialect}")
    statement = insert(feedback).values(rows)
    return statement.on_conflict_do_update(
        index_elements=[feedback.c.prediction_id],
        set_={c: statement.excluded[c] for c in ("late", "arr_delay", "received_at")},
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
