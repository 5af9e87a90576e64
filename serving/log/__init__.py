"""The prediction log: every prediction and every outcome, in a journal before the answer leaves, then in SQL.

:class:`PredictionLog` is the facade the service uses. Recording a request appends one line to this process's
journal (:mod:`serving.log.journal`, lines as :mod:`serving.log.lines` spells them) on the event loop; the answer is
sent only after that write returned, so what was answered survives ``kill -9``. The loader
(:mod:`serving.log.loader`) takes the journal's lines in order into the database (:mod:`serving.log.store`), and
deletes journal segments once they are in it. A process that starts loads the journals of processes that died
first. The default database is a SQLite file (WAL mode, so monitoring reads while the service writes); any
SQLAlchemy URL, e.g. PostgreSQL, replaces it.

Memory is bounded: the journal is on disk, and what is held in memory for records not yet in the database (their
ids, for feedback and retries) is bounded by ``max_lag_rows``. When the loader falls that far behind, or the journal
cannot be written (a full disk), :meth:`PredictionLog.accepting` says why and the service refuses predictions with
503 instead of answering what it cannot record; readiness says the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import sqlalchemy as sa

from serving.log.journal import FsyncPolicy, Journal
from serving.log.lines import FeedbackRecord, Logged, PredictionBatch, outcomes_line
from serving.log.loader import Loader, LogHealth
from serving.log.store import Store
from tabloop.errors import ConfigError, TabloopError
from tabloop.prediction_tables import log_dialect

logger = logging.getLogger(__name__)

PROBE_BYTES = 4096


class LogUnavailableError(TabloopError):
    """The log cannot record a prediction now: the journal is not writable, or the loader is too far behind."""


class LogStatus(TypedDict):
    """The log's state, for readiness: ok, degraded (the database is failing) or refusing, and why."""

    status: Literal["ok", "degraded", "refusing"]
    queue: int  # records in the journal that are not in the database yet
    max_queue: int  # the queue at which predictions are refused
    reason: NotRequired[str]  # only when not ok


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
        self.journal_dir = _journal_dir(url, journal_dir)
        self.store = Store(url, engine_options)
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.fsync: FsyncPolicy = fsync
        self.max_lag_rows = max_lag_rows
        self.health = LogHealth()
        self.loader = Loader(self.store, self.health, flush_interval_s, loader_nice)
        self._journal: Journal | None = None  # opened at the first record
        self._appended = 0  # records (prediction rows and outcomes) appended to the journal
        self._pending_ids: set[str] = set()
        self._pending: dict[str, Logged] = {}  # requests with a client's id, in the journal but not yet loaded
        self._closed = False
        self.recovered = self.loader.recover(self.journal_dir)

    @property
    def engine(self) -> sa.Engine:
        """The database's engine."""
        return self.store.engine

    @property
    def written(self) -> int:
        """Prediction rows this process loaded into the database."""
        return self.loader.written

    @property
    def depth(self) -> int:
        """Records in the journal that are not in the database yet."""
        return self._appended - self.loader.loaded

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
                batch.answers,
                digest,
            )
        return None

    def record_feedback(self, rows: Iterable[FeedbackRecord]) -> None:
        """Append outcomes to the journal; recording the same prediction's outcome again replaces it."""
        outcomes = list(rows)
        if outcomes:
            self._append(outcomes_line(outcomes), len(outcomes))

    def known(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` are predictions in the log or on their way to it; a LogUnavailableError if that
        depends on a database that cannot be reached."""
        found = {i for i in ids if i in self._pending_ids}
        missing = [i for i in ids if i not in found]
        if missing:
            try:
                found |= self.store.known(missing)
            except sa.exc.SQLAlchemyError as e:
                self.health.store_failed(e)
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
        try:
            return self.store.lookup(request_id)
        except sa.exc.SQLAlchemyError as e:
            self.health.store_failed(e)
            return None

    async def run(self) -> None:
        """Load the journal into the database until closed; sleep only when there is nothing to load."""
        last_sync = time.monotonic()
        while not self._closed:
            if self.health.journal_error is not None:
                self._probe()
            loaded = await self.flush(limit=1)
            if self.fsync == "interval" and time.monotonic() - last_sync >= self.flush_interval_s:
                last_sync = time.monotonic()
                await self.loader.in_writer(self._sync)
            if not loaded:
                await asyncio.sleep(self.flush_interval_s)

    async def flush(self, limit: int | None = None) -> int:
        """Load what the journal holds (``limit`` transactions at most) into the database; the records loaded."""
        return await self.loader.flush(self._journal, self._forget_pending, limit)

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
        self.loader.shutdown()
        self.store.close()

    def _forget_pending(self, ids: list[str], request_ids: list[str]) -> None:
        self._pending_ids.difference_update(ids)
        for request_id in request_ids:
            self._pending.pop(request_id, None)

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

    def _sync(self) -> None:
        if self._journal is not None:
            self._journal.sync()


def _journal_dir(url: str, journal_dir: Path | None) -> Path:
    """Where the journal goes: as given, else beside a SQLite file; a ConfigError for a database without a file."""
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
    return journal_dir
