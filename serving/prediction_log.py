"""The prediction log: every prediction and every outcome, in a journal before the answer leaves, then in SQL.

Recording a request appends one line to this process's journal (:mod:`serving.journal`) on the event loop; the
answer is sent only after that write returned, so what was answered survives ``kill -9``. A loader thread takes the
journal's lines in order and writes them to the database in one transaction per batch, idempotent by prediction id,
and deletes journal segments once they are in the database. A process that starts loads the journals of processes
that died first. The default database is a SQLite file (WAL mode, so monitoring reads while the service writes);
any SQLAlchemy URL, e.g. PostgreSQL, replaces it.

Memory is bounded: the journal is on disk, and what is held in memory for records not yet in the database (their
ids, for feedback and retries) is bounded by ``max_lag_rows``. When the loader falls that far behind, or the journal
cannot be written (a full disk), :meth:`PredictionLog.accepting` says why and the service refuses predictions with
503 instead of answering what it cannot record; readiness says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import orjson
import sqlalchemy as sa
from pydantic import JsonValue
from sqlalchemy.dialects import postgresql, sqlite

from serving.journal import FsyncPolicy, Journal, Position, orphans, read_lines
from tabloop.errors import ConfigError, TabloopError, redact
from tabloop.log_schema import feedback, metadata, predictions

logger = logging.getLogger(__name__)

PROBE_BYTES = 4096
READ_BYTES = 1 << 20  # journal bytes the loader takes per transaction, at most about
ROW_SUFFIX = re.compile(r"-(\d+)$")
LOG_DIALECTS = ("sqlite", "postgresql")


class LogUnavailableError(TabloopError):
    """The log cannot record a prediction now: the journal is not writable, or the loader is too far behind."""


class LogStatus(TypedDict):
    """The log's state, for readiness: ok, degraded (the database is failing) or refusing, and why."""

    status: Literal["ok", "degraded", "refusing"]
    queue: int  # records in the journal that are not in the database yet
    max_queue: int  # the queue at which predictions are refused
    reason: NotRequired[str]  # only when not ok


class FeedbackRecord(TypedDict):
    """One observed outcome of a logged prediction, as the feedback table holds it."""

    prediction_id: str
    actual: bool
    outcome: float | None
    received_at: dt.datetime


class BatchLine(TypedDict):
    """A journal line of a request's predictions, as parsed back (times as ISO 8601 text)."""

    k: Literal["p"]  # a prediction batch; an outcomes line has "f"
    r: str  # request id
    ids: list[str]
    c: str  # created at
    e: str | None  # event time
    route: str
    m: str  # model name
    v: str  # model version
    f: dict[str, list[JsonValue]]  # feature columns
    p: list[float]  # probabilities
    l: list[bool]  # noqa: E741 - labels: the journal's key since its first version


def features_digest(columns: dict[str, list[Any]]) -> str:
    """A short hash of a request's feature values, to tell a retried request from a different one."""
    return hashlib.blake2b(orjson.dumps(columns), digest_size=16).hexdigest()


@dataclass(frozen=True)
class PredictionBatch:
    """The predictions of one request, as the request produced them (columns)."""

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

    def line(self) -> bytes:
        """The batch as one journal line."""
        return orjson.dumps(
            {
                "k": "p",
                "r": self.request_id,
                "ids": self.ids,
                "c": self.created_at,
                "e": self.event_time,
                "route": self.route,
                "m": self.model_name,
                "v": self.model_version,
                "f": self.features,
                "p": self.probability,
                "l": self.label,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )

    @classmethod
    def from_line(cls, item: BatchLine) -> PredictionBatch:
        """The batch of a parsed journal line."""
        created = dt.datetime.fromisoformat(item["c"])
        return cls(
            request_id=item["r"],
            ids=item["ids"],
            created_at=created,
            event_time=dt.datetime.fromisoformat(item["e"]) if item["e"] else None,
            route=item["route"],
            model_name=item["m"],
            model_version=item["v"],
            features=item["f"],
            probability=item["p"],
            label=item["l"],
        )

    def records(self, created_at: Any, event_time: Any) -> list[tuple[Any, ...]]:
        """One tuple per prediction in the column order of ``predictions``, features as JSON text."""
        names = list(self.features)
        head = (self.request_id, created_at, event_time, self.route, self.model_name, self.model_version)
        dumps = orjson.dumps
        return [
            (self.ids[i], *head, dumps(dict(zip(names, values, strict=True))).decode(), self.probability[i], label)
            for i, (values, label) in enumerate(zip(zip(*self.features.values(), strict=True), self.label, strict=True))
        ]


@dataclass(frozen=True)
class Logged:
    """A request already in the log: what was answered, and a digest of what was asked."""

    request_id: str
    ids: list[str]
    model_name: str
    model_version: str
    probability: list[float]
    label: list[bool]
    digest: str


@dataclass
class LogHealth:
    """Whether the log can record, and what went wrong last."""

    journal_error: str | None = None
    failed_bytes: int = 0  # the size of the write that failed
    store_error: str | None = None


def now() -> dt.datetime:
    """The current time in UTC."""
    return dt.datetime.now(dt.UTC)


class PredictionLog:
    """A journal on local disk in front of a SQL database."""

    def __init__(
        self,
        url: str,
        journal_dir: Path | None = None,
        *,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        fsync: FsyncPolicy = "never",
        max_lag_rows: int = 100_000,
        loader_nice: int = 10,
        **engine_options: Any,
    ) -> None:
        backend = log_dialect(url)
        database = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
        if journal_dir is None:
            if database is None or database == ":memory:":
                raise ConfigError(
                    f"a prediction log in {'memory' if backend == 'sqlite' else 'a server database'} needs a journal "
                    "directory on local disk: set one (TABLOOP_SERVE_LOG_JOURNAL_DIR for the service)"
                )
            journal_dir = Path(f"{database}.journal")
        if database is not None and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.journal_dir = journal_dir
        self.engine = _engine(url, backend, engine_options)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        _add_event_time(self.engine)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.fsync: FsyncPolicy = fsync
        self.max_lag_rows = max_lag_rows
        self.health = LogHealth()
        self._journal: Journal | None = None  # opened at the first record
        self._read_at = Position(0, 0)
        self._appended = 0  # records (prediction rows and outcomes) appended to the journal
        self._loaded = 0
        self._pending_ids: set[str] = set()
        self._pending: dict[str, Logged] = {}  # requests with a client's id, in the journal but not yet loaded
        self._closed = False
        # The loader below the event loop (a higher nice value; Linux sets it per thread): it takes the CPU the
        # loop leaves, with a share large enough to keep up with a saturated loop (see the README's figures).
        self._writer = ThreadPoolExecutor(
            1, thread_name_prefix="prediction-log", initializer=_lower_priority, initargs=(loader_nice,)
        )
        # A prediction id seen before (a client retrying with the same X-Request-Id) is not recorded twice.
        self._insert = str(_insert_new(self.engine.dialect.name).compile(dialect=self.engine.dialect))
        self._columns = [c.name for c in predictions.c]
        dialect = self.engine.dialect
        processor: Callable[[Any], Any] | None = predictions.c.created_at.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        self._time: Callable[[Any], Any] = processor or (lambda t: t)
        self.written = 0
        self.recovered = self._recover()

    @property
    def depth(self) -> int:
        """Records in the journal that are not in the database yet."""
        return self._appended - self._loaded

    def accepting(self) -> str | None:
        """Why a prediction cannot be recorded now, or None if it can."""
        if self.health.journal_error is not None:
            return f"the journal cannot be written: {self.health.journal_error}"
        if self.depth >= self.max_lag_rows:
            reason = f"the database is {self.depth} records behind the journal (at most {self.max_lag_rows})"
            if self.health.store_error is not None:
                reason += f"; last error: {self.health.store_error}"
            return reason
        return None

    def status(self) -> LogStatus:
        """The log's state for readiness: ok, degraded (the database is failing) or refusing, and why."""
        refusing = self.accepting()
        state: Literal["ok", "degraded", "refusing"] = (
            "refusing" if refusing else "degraded" if self.health.store_error else "ok"
        )
        details: LogStatus = {"status": state, "queue": self.depth, "max_queue": self.max_lag_rows}
        if refusing:
            details["reason"] = refusing
        elif self.health.store_error:
            details["reason"] = f"writing to the database failed: {self.health.store_error}"
        return details

    def record_batch(self, batch: PredictionBatch, digest: str | None = None) -> Logged | None:
        """Append the predictions of one request to the journal; raise LogUnavailableError if it cannot.

        With a ``digest`` (the client named the request), an earlier request of the same id still on its way to the
        database is returned instead, and nothing is appended.
        """
        if digest is not None:
            earlier = self._pending.get(batch.request_id)
            if earlier is not None:
                return earlier
        self._append(batch.line(), len(batch.ids))
        self._pending_ids.update(batch.ids)
        if digest is not None:
            self._pending[batch.request_id] = Logged(
                batch.request_id,
                batch.ids,
                batch.model_name,
                batch.model_version,
                batch.probability,
                batch.label,
                digest,
            )
        return None

    def record_feedback(self, rows: Iterable[FeedbackRecord]) -> None:
        """Append outcomes to the journal; recording the same prediction's outcome again replaces it."""
        outcomes = list(rows)
        if outcomes:
            self._append(orjson.dumps({"k": "f", "rows": outcomes}, option=orjson.OPT_APPEND_NEWLINE), len(outcomes))

    def known(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are predictions in the log or on their way to it; a LogUnavailableError if that
        depends on a database that cannot be reached."""
        found = {i for i in ids if i in self._pending_ids}
        missing = [i for i in ids if i not in found]
        if missing:
            try:
                with self.engine.connect() as conn:
                    query = sa.select(predictions.c.id).where(predictions.c.id.in_(missing))
                    found |= set(conn.execute(query).scalars())
            except sa.exc.SQLAlchemyError as e:
                self._store_failed(e)
                raise LogUnavailableError(
                    f"whether the predictions exist cannot be checked: the database cannot be read "
                    f"({self.health.store_error})"
                ) from e
        return found

    def pending(self, request_id: str) -> Logged | None:
        """A request of this id that is in the journal but not yet in the database."""
        return self._pending.get(request_id)

    def lookup(self, request_id: str) -> Logged | None:
        """The request of this id in the database, if any (blocking: call it in a thread).

        None too while the database cannot be read: the request is then answered as new, and recorded under ids
        that the loader's insert skips if the database already holds them, so that nothing is lost or doubled;
        only a different request reusing an id already in the database goes without its 409 meanwhile.
        """
        query = sa.select(
            predictions.c.id,
            predictions.c.features,
            predictions.c.probability,
            predictions.c.label,
            predictions.c.model_name,
            predictions.c.model_version,
        ).where(predictions.c.request_id == request_id)
        try:
            with self.engine.connect() as conn:
                found = list(conn.execute(query).all())
        except sa.exc.SQLAlchemyError as e:
            self._store_failed(e)
            return None
        if not found:
            return None
        found.sort(key=lambda r: int(m.group(1)) if (m := ROW_SUFFIX.search(r.id[len(request_id) :])) else -1)
        features = [orjson.loads(r.features) for r in found]
        columns = {name: [f.get(name) for f in features] for name in features[0]}
        return Logged(
            request_id,
            [r.id for r in found],
            found[0].model_name,
            found[0].model_version,
            [r.probability for r in found],
            [bool(r.label) for r in found],
            features_digest(columns),
        )

    async def run(self) -> None:
        """Load the journal into the database until closed; sleep only when there is nothing to load."""
        last_sync = time.monotonic()
        while not self._closed:
            if self.health.journal_error is not None:
                self._probe()
            loaded = await self.flush(limit=1)
            if self.fsync == "interval" and time.monotonic() - last_sync >= self.flush_interval_s:
                last_sync = time.monotonic()
                await self._in_writer(self._sync)
            if not loaded:
                await asyncio.sleep(self.flush_interval_s)

    async def flush(self, limit: int | None = None) -> int:
        """Load what the journal holds (``limit`` transactions at most) into the database; the records loaded."""
        total, rounds = 0, 0
        while self._journal is not None and self._read_at < self._journal.end and (limit is None or rounds < limit):
            rounds += 1
            end = self._journal.end
            try:
                done = await self._in_writer(self._load, self._read_at, end)
            except Exception as e:  # the database may fail in any way: the journal keeps the records, readiness tells
                self._store_failed(e)
                await asyncio.sleep(min(1.0, self.flush_interval_s * 5))
                return total
            self.health.store_error = None
            position, records, ids, request_ids = done
            self._read_at = position
            self._loaded += records
            self._pending_ids.difference_update(ids)
            for request_id in request_ids:
                self._pending.pop(request_id, None)
            self.written += len(ids)
            total += records
        return total

    async def close(self) -> None:
        """Stop the loader after loading everything the journal holds; the journal is deleted once loaded."""
        self._closed = True
        for _ in range(3):
            await self.flush()
            if self.depth == 0:
                break
        journal = self._journal
        if journal is not None:
            if self.depth:
                logger.error(
                    "%d prediction-log records are not in the database yet; they stay in the journal %s and are "
                    "loaded when the service starts again",
                    self.depth,
                    self.journal_dir,
                )
            journal.close(delete=self.depth == 0)
            self._journal = None
        self._writer.shutdown()
        self.engine.dispose()

    def _append(self, line: bytes, records: int) -> None:
        if self._closed:
            raise LogUnavailableError("the prediction log is closed: the service is stopping")
        try:
            if self._journal is None:
                self._journal = Journal(self.journal_dir, self.fsync)
            self._journal.append(line)
        except OSError as e:
            if self.health.journal_error is None:
                logger.error("the prediction log cannot record: %s", e)
            self.health.journal_error = str(e)
            self.health.failed_bytes = len(line)
            raise LogUnavailableError(f"the journal cannot be written: {e}") from e
        if self.health.journal_error is not None:
            logger.info("the prediction log's journal is writable again")
            self.health.journal_error = None
        self._appended += records

    def _probe(self) -> None:
        """Try the journal again after a failed write, so that readiness follows a disk that was freed even while
        no request arrives. The probe is as large as the write that failed (at least a page) of empty lines, which
        the loader skips: a byte would fit in the last page of a full disk and say it had room again."""
        with contextlib.suppress(LogUnavailableError):
            self._append(b"\n" * max(PROBE_BYTES, self.health.failed_bytes), 0)

    async def _in_writer(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    def _sync(self) -> None:
        if self._journal is not None:
            self._journal.sync()

    def _load(self, start: Position, end: Position) -> tuple[Position, int, list[str], list[str]]:
        assert self._journal is not None
        lines, position = self._journal.read(start, READ_BYTES, end)
        records, ids, request_ids = self._store(lines)
        if position.segment > start.segment or not lines:
            self._journal.release(position)
        return position, records, ids, request_ids

    def _store(self, lines: list[bytes]) -> tuple[int, list[str], list[str]]:
        """Write journal lines to the database in one transaction; (records, prediction ids, request ids)."""
        rows: list[tuple[Any, ...]] = []
        outcomes: dict[str, dict[str, Any]] = {}
        ids: list[str] = []
        request_ids: list[str] = []
        received = 0
        for raw in lines:
            if not raw:
                continue  # a probe of the journal
            try:
                item = orjson.loads(raw)
            except orjson.JSONDecodeError:
                logger.error("skipping a line of the journal that is not JSON: %r", raw[:200])
                continue
            if item["k"] == "f":
                received += len(item["rows"])
                for outcome in item["rows"]:
                    outcome["received_at"] = dt.datetime.fromisoformat(outcome["received_at"])
                    outcomes[outcome["prediction_id"]] = outcome
                continue
            batch = PredictionBatch.from_line(item)
            rows.extend(batch.records(self._time(batch.created_at), self._time(batch.event_time or batch.created_at)))
            ids.extend(batch.ids)
            request_ids.append(batch.request_id)
        with self.engine.begin() as conn:  # only the one loader thread (or start-up, before it) writes
            if rows:
                # The driver's executemany on plain tuples, without SQLAlchemy's per-parameter processing (a quarter
                # of the write's time at a thousand rows).
                parameters: list[Any] = rows
                if not self.engine.dialect.positional:
                    parameters = [dict(zip(self._columns, row, strict=True)) for row in rows]
                conn.exec_driver_sql(self._insert, parameters)
            if outcomes:
                conn.execute(_upsert(self.engine.dialect.name, list(outcomes.values())))
        return len(rows) + received, ids, request_ids

    def _store_failed(self, error: Exception) -> None:
        message = redact(str(error).splitlines()[0][:300]) if str(error) else type(error).__name__
        if self.health.store_error != message:
            logger.error("writing the prediction log to the database failed (%s); the journal keeps them", message)
        self.health.store_error = message

    def _recover(self) -> int:
        """Load the journals of processes that died before loading them; the records loaded."""
        total = 0
        for orphan in orphans(self.journal_dir):
            for path in orphan.segments:
                total += self._recover_segment(path)
            orphan.forget()
        if total:
            logger.info("loaded %d records from the journal of a process that stopped before loading them", total)
        return total

    def _recover_segment(self, path: Path) -> int:
        """Load one segment of a dead process's journal; the records loaded."""
        total, offset = 0, 0
        while True:
            try:
                lines, offset = read_lines(path, offset, READ_BYTES)
            except FileNotFoundError:  # a journal without a lock that another worker starting has just loaded
                return total
            if not lines:
                return total
            total += self._store(lines)[0]


def log_dialect(url: str) -> str:
    """The database a prediction log URL names; a ConfigError unless it is a URL of SQLite or PostgreSQL."""
    try:
        dialect = sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError as e:  # not quoted: the URL may hold a password
        raise ConfigError(
            "the prediction log's URL is not a database URL; e.g. sqlite:///logs/predictions.db or "
            "postgresql+psycopg://db-host/predictions"
        ) from e
    if dialect not in LOG_DIALECTS:
        raise ConfigError(f"the prediction log supports SQLite and PostgreSQL, not {dialect}")
    return dialect


def _engine(url: str, dialect: str, options: dict[str, Any]) -> sa.Engine:
    """The log's database engine; a ConfigError if the URL's driver is not installed."""
    try:
        return sa.create_engine(url, **options)
    except (ImportError, sa.exc.NoSuchModuleError) as e:
        raise ConfigError(f"the prediction log's {dialect} driver cannot be loaded ({e}): install it") from e


def _insert_new(dialect: str) -> Any:
    """An insert into ``predictions`` that skips ids already there."""
    if dialect == "sqlite":
        return sqlite.insert(predictions).on_conflict_do_nothing(index_elements=[predictions.c.id])
    if dialect == "postgresql":
        return postgresql.insert(predictions).on_conflict_do_nothing(index_elements=[predictions.c.id])
    raise ConfigError(f"the prediction log supports SQLite and PostgreSQL, not {dialect}")


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


def _lower_priority(nice: int) -> None:
    """Give the calling thread a nice value (Linux sets it per thread); elsewhere do nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        logger.debug("could not set the prediction-log loader's priority")


def _upsert(dialect: str, rows: list[dict[str, Any]]) -> Any:
    insert: Any = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise ConfigError(f"feedback upserts are implemented for SQLite and PostgreSQL, not {dialect}")
    statement = insert(feedback).values(rows)
    return statement.on_conflict_do_update(
        index_elements=[feedback.c.prediction_id],
        set_={c: statement.excluded[c] for c in ("actual", "outcome", "received_at")},
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")  # first: with workers, other processes write the same file
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
