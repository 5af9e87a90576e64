"""The prediction log's database: SQLite by default, PostgreSQL behind any SQLAlchemy URL.

Writes are idempotent by prediction id (a retried request is stored once) and an outcome recorded again replaces
the one before; reads answer the service's questions (is this prediction known, what did this request get).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from serving.log.lines import ANSWER_KEYS, OUTCOMES, Logged, PredictionBatch, features_digest, parse_line
from tabloop.errors import ConfigError
from tabloop.prediction_tables import feedback, log_dialect, metadata, predictions
from tabloop.runtime.task import AnswerLists

logger = logging.getLogger(__name__)

ROW_SUFFIX = re.compile(r"-(\d+)$")

Stored = tuple[int, list[str], list[str]]  # records written, prediction ids, request ids


class Store:
    """The tables of the log in one database, created (and brought up to date) when opened."""

    def __init__(self, url: str, engine_options: dict[str, Any]) -> None:
        backend = log_dialect(url)
        self.engine = _engine(url, backend, engine_options)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)
        _add_event_time(self.engine)
        _add_task_columns(self.engine)
        # A prediction id seen before (a client retrying with the same X-Request-Id) is not recorded twice.
        self._insert = str(_insert_new(self.engine.dialect.name).compile(dialect=self.engine.dialect))
        self._columns = [c.name for c in predictions.c]
        dialect = self.engine.dialect
        processor: Callable[[Any], Any] | None = predictions.c.created_at.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        self._time: Callable[[Any], Any] = processor or (lambda t: t)

    def write(self, lines: list[bytes]) -> Stored:
        """Journal lines written in one transaction; (records, prediction ids, request ids)."""
        rows: list[tuple[Any, ...]] = []
        outcomes: dict[str, dict[str, Any]] = {}
        ids: list[str] = []
        request_ids: list[str] = []
        received = 0
        for raw in lines:
            if not raw:
                continue  # a probe of the journal
            try:
                item = parse_line(raw)
            except orjson.JSONDecodeError:
                logger.error("skipping a line of the journal that is not JSON: %r", raw[:200])
                continue
            if item["kind"] == OUTCOMES:
                received += len(item["rows"])
                for outcome in item["rows"]:
                    outcome["received_at"] = dt.datetime.fromisoformat(outcome["received_at"])
                    outcome.setdefault("actual_class", None)  # a line written before multiclass existed
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

    def known(self, ids: list[str]) -> set[str]:
        """Which of ``ids`` the database holds; raises SQLAlchemy's error if it cannot be read."""
        with self.engine.connect() as conn:
            query = sa.select(predictions.c.id).where(predictions.c.id.in_(ids))
            return set(conn.execute(query).scalars())

    def lookup(self, request_id: str) -> Logged | None:
        """The request of this id, if the database holds it; raises SQLAlchemy's error if it cannot be read."""
        query = sa.select(
            predictions.c.id,
            predictions.c.features,
            predictions.c.model_name,
            predictions.c.model_version,
            *(predictions.c[key] for key in ANSWER_KEYS),
        ).where(predictions.c.request_id == request_id)
        with self.engine.connect() as conn:
            found = list(conn.execute(query).all())
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
            _answers(found),
            features_digest(columns),
        )

    def close(self) -> None:
        """Close the database's connections."""
        self.engine.dispose()


def _answers(found: list[sa.Row[Any]]) -> AnswerLists:
    """The answers of a request's rows: the columns its task filled."""
    answers: AnswerLists = {}
    first = found[0]
    if first.probability is not None:
        answers["probability"] = [r.probability for r in found]
    if first.label is not None:
        answers["label"] = [bool(r.label) for r in found]
    if first.predicted_class is not None:
        answers["predicted_class"] = [r.predicted_class for r in found]
    if first.probabilities is not None:
        answers["probabilities"] = [orjson.loads(r.probabilities) for r in found]
    if first.value is not None:
        answers["value"] = [r.value for r in found]
    return answers


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


def _add_task_columns(engine: sa.Engine) -> None:
    """Bring a log written before multiclass and regression existed up to date: their columns, and the binary
    columns nullable (SQLite cannot relax NOT NULL in place: Alembic's batch mode copies the table)."""
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    found = {name: {c["name"] for c in sa.inspect(engine).get_columns(name)} for name in ("predictions", "feedback")}
    wanted = {"predictions": ("value", "predicted_class", "probabilities"), "feedback": ("actual_class",)}
    if all(set(columns) <= found[table] for table, columns in wanted.items()):
        return
    logger.info("adding the task columns to the prediction log %s", engine.url.render_as_string(hide_password=True))
    relax = {"predictions": ("probability", "label"), "feedback": ("actual",)}
    tables = {"predictions": predictions, "feedback": feedback}
    with engine.begin() as conn:
        operations = Operations(MigrationContext.configure(conn))
        for name, columns in wanted.items():
            with operations.batch_alter_table(name) as batch:
                for column in columns:
                    if column not in found[name]:
                        batch.add_column(sa.Column(column, tables[name].c[column].type, nullable=True))
                for column in relax[name]:
                    batch.alter_column(column, existing_type=tables[name].c[column].type, nullable=True)


def _upsert(dialect: str, rows: list[dict[str, Any]]) -> Any:
    insert: Any = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise ConfigError(f"feedback upserts are implemented for SQLite and PostgreSQL, not {dialect}")
    statement = insert(feedback).values(rows)
    return statement.on_conflict_do_update(
        index_elements=[feedback.c.prediction_id],
        set_={c: statement.excluded[c] for c in ("actual", "actual_class", "outcome", "received_at")},
    )


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")  # first: with workers, other processes write the same file
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
