"""The prediction log on its own: what it stores, with either kind of driver parameters, and what a failure keeps."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from serving.prediction_log import PredictionBatch, PredictionLog, feedback, predictions


def batch(request_id: str, n: int = 3) -> PredictionBatch:
    return PredictionBatch(
        request_id=request_id,
        ids=[f"{request_id}-{i}" for i in range(n)],
        created_at=dt.datetime(2013, 11, 5, 14, 30, tzinfo=dt.UTC),
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
    assert stored[0]["created_at"].replace(tzinfo=dt.UTC) == dt.datetime(2013, 11, 5, 14, 30, tzinfo=dt.UTC)
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
