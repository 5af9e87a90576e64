"""The prediction log on its own: what it stores, with either kind of driver parameters, and what a failure keeps."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from serving.prediction_log import PredictionBatch, PredictionLog, feedback, predictions

ANSWERED = dt.datetime(2026, 11, 5, 14, 30, tzinfo=dt.UTC)


def batch(request_id: str, n: int = 3, event_time: dt.datetime | None = None) -> PredictionBatch:
    return PredictionBatch(
        request_id=request_id,
        ids=[f"{request_id}-{i}" for i in range(n)],
        created_at=ANSWERED,
        event_time=event_time,
        route="/predict",
        model_name="flight-delay",
        model_version="7",
        features={"origin": ["JFK", None, "EWR"][:n], "distance": [1028.0, 200.5, None][:n]},
        probability=[0.1, 0.5, 0.9][:n],
        label=[False, True, True][:n],
    )


def rows(log: PredictionLog, table: sa.Table) -> list[dict[str, Any]]:
    with log.engine.connect() as conn:
        key = next(iter(table.primary_key.columns))
        return [dict(r._mapping) for r in conn.execute(sa.select(table).order_by(key))]


@pytest.mark.parametrize("paramstyle", ["qmark", "named"])  # positional (SQLite's) and named (PostgreSQL drivers')
def test_predictions_and_feedback_round_trip(tmp_path: Path, paramstyle: str) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db", paramstyle=paramstyle)
    assert log.engine.dialect.positional is (paramstyle == "qmark")

    async def scenario() -> None:
        log.record_batch(batch("a"))
        assert log.depth == 3
        assert log.known(["a-0", "zzz"]) == {"a-0"}  # queued, not yet written
        await log.flush()
        log.record_feedback([{"prediction_id": "a-1", "late": True, "arr_delay": 31.0, "received_at": _now()}])
        log.record_feedback([{"prediction_id": "a-1", "late": False, "arr_delay": None, "received_at": _now()}])
        await log.close()

    asyncio.run(scenario())
    stored = rows(log, predictions)
    assert [r["id"] for r in stored] == ["a-0", "a-1", "a-2"]
    assert [orjson.loads(r["features"]) for r in stored] == [
        {"origin": "JFK", "distance": 1028.0},
        {"origin": None, "distance": 200.5},
        {"origin": "EWR", "distance": None},
    ]
    assert [(r["probability"], r["label"], r["model_version"]) for r in stored] == [
        (0.1, False, "7"),
        (0.5, True, "7"),
        (0.9, True, "7"),
    ]
    assert stored[0]["created_at"].replace(tzinfo=dt.UTC) == ANSWERED
    assert stored[0]["event_time"].replace(tzinfo=dt.UTC) == ANSWERED  # no event time given: when answered
    outcomes = rows(log, feedback)
    assert [(r["prediction_id"], r["late"], r["arr_delay"]) for r in outcomes] == [("a-1", False, None)]  # replaced
    assert log.written == 3
    assert log.depth == 0


def test_a_failed_write_keeps_its_records_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db")
    original = log._write_locked
    failures = iter([True])

    def flaky(items: list[tuple[str, Any]]) -> int:
        if next(failures, False):
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return original(items)

    monkeypatch.setattr(log, "_write_locked", flaky)

    async def scenario() -> None:
        log.record_batch(batch("a"))
        log.record_batch(batch("b", 2))
        await log.flush()  # fails: nothing written, nothing dropped
        assert log.depth == 5
        assert log.written == 0
        await log.close()  # retries

    asyncio.run(scenario())
    assert [r["id"] for r in rows(log, predictions)] == ["a-0", "a-1", "a-2", "b-0", "b-1"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_event_time_is_kept_and_a_retried_request_is_logged_once(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db")
    scheduled = dt.datetime(2013, 11, 5, 6, 0, tzinfo=dt.UTC)

    async def scenario() -> None:
        log.record_batch(batch("replay-1", 2, scheduled))
        await log.flush()
        log.record_batch(batch("replay-1", 2, scheduled))  # the same request sent again
        await log.close()

    asyncio.run(scenario())
    stored = rows(log, predictions)
    assert [r["id"] for r in stored] == ["replay-1-0", "replay-1-1"]
    assert {r["event_time"].replace(tzinfo=dt.UTC) for r in stored} == {scheduled}


def test_a_log_from_before_event_time_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE predictions (id VARCHAR(96) PRIMARY KEY, request_id VARCHAR(64) NOT NULL, "
            "created_at DATETIME NOT NULL, route VARCHAR(64) NOT NULL, model_name VARCHAR(128) NOT NULL, "
            "model_version VARCHAR(32) NOT NULL, features TEXT NOT NULL, probability FLOAT NOT NULL, "
            "label BOOLEAN NOT NULL)"
        )
        conn.execute(
            "INSERT INTO predictions VALUES ('old-1', 'old-1', '2026-11-01 10:00:00.000000', '/predict', "
            "'flight-delay', '1', '{}', 0.3, 0)"
        )
    log = PredictionLog(f"sqlite:///{path}")
    asyncio.run(_write_and_close(log, batch("new", 1)))
    stored = {r["id"]: r for r in rows(log, predictions)}
    assert stored["old-1"]["event_time"] == dt.datetime(2026, 11, 1, 10, 0)  # filled from created_at
    assert stored["new-0"]["event_time"].replace(tzinfo=dt.UTC) == ANSWERED


async def _write_and_close(log: PredictionLog, *batches: PredictionBatch) -> None:
    for b in batches:
        log.record_batch(b)
    await log.close()
