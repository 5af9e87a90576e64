"""The prediction log on its own: what it stores, with either kind of driver parameters, and what a failure keeps."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from helpers import REPO_ROOT
from serving.log import LogUnavailableError, PredictionLog, journal
from serving.log.lines import PredictionBatch, features_digest, parse_line
from tabloop.prediction_tables import feedback, predictions

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
        answers={"probability": [0.1, 0.5, 0.9][:n], "label": [False, True, True][:n]},
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
        log.record_feedback([{"prediction_id": "a-1", "actual": True, "outcome": 31.0, "received_at": _now()}])
        log.record_feedback([{"prediction_id": "a-1", "actual": False, "outcome": None, "received_at": _now()}])
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
    assert [(r["prediction_id"], r["actual"], r["outcome"]) for r in outcomes] == [("a-1", False, None)]  # replaced
    assert log.written == 3
    assert log.depth == 0


def test_a_failed_database_write_keeps_the_records_in_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db", flush_interval_s=0.01)
    original = log.store.write
    failures = iter([True])

    def flaky(lines: list[bytes]) -> Any:
        if next(failures, False):
            raise sa.exc.OperationalError("INSERT", {}, Exception("database is locked"))
        return original(lines)

    monkeypatch.setattr(log.store, "write", flaky)

    async def scenario() -> None:
        log.record_batch(batch("a"))
        log.record_batch(batch("b", 2))
        await log.flush()  # fails: nothing written, nothing dropped
        assert log.depth == 5
        assert log.written == 0
        assert log.status()["status"] == "degraded"
        assert "database is locked" in log.status()["reason"]
        assert log.accepting() is None  # the journal still records
        await log.close()  # retries
        assert log.status()["status"] == "ok"

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


def test_a_binary_log_from_before_the_task_kinds_takes_every_task(tmp_path: Path) -> None:
    """A log whose probability, label and actual were NOT NULL and that has no task columns: opened by this
    release, it keeps its rows and records a regression's and a multiclass model's answers and outcomes."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE predictions (id VARCHAR(96) PRIMARY KEY, request_id VARCHAR(64) NOT NULL, "
            "created_at DATETIME NOT NULL, event_time DATETIME NOT NULL, route VARCHAR(64) NOT NULL, "
            "model_name VARCHAR(128) NOT NULL, model_version VARCHAR(32) NOT NULL, features TEXT NOT NULL, "
            "probability FLOAT NOT NULL, label BOOLEAN NOT NULL)"
        )
        conn.execute(
            "CREATE TABLE feedback (prediction_id VARCHAR(96) PRIMARY KEY, actual BOOLEAN NOT NULL, "
            "outcome FLOAT, received_at DATETIME NOT NULL)"
        )
        conn.execute(
            "INSERT INTO predictions VALUES ('old-1', 'old-1', '2026-11-01 10:00:00.000000', "
            "'2026-11-01 10:00:00.000000', '/predict', 'm', '1', '{}', 0.3, 0)"
        )
    log = PredictionLog(f"sqlite:///{path}")
    value = replace(batch("price", 2), answers={"value": [101.5, 87.25]})
    classes = replace(
        batch("job", 1),
        answers={"predicted_class": ["M"], "probability": [0.6], "probabilities": [[0.1, 0.3, 0.6]]},
    )
    received = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    asyncio.run(_write_and_close(log, value, classes))
    log = PredictionLog(f"sqlite:///{path}")
    log.record_feedback([
        {"prediction_id": "price-1", "actual": None, "actual_class": None, "outcome": 90.0, "received_at": received},
        {"prediction_id": "job-0", "actual": None, "actual_class": "L", "outcome": None, "received_at": received},
    ])  # fmt: skip
    asyncio.run(log.flush())
    stored = {r["id"]: r for r in rows(log, predictions)}
    assert (stored["old-1"]["probability"], stored["old-1"]["label"], stored["old-1"]["value"]) == (0.3, False, None)
    assert (stored["price-1"]["value"], stored["price-1"]["probability"], stored["price-1"]["label"]) == (
        87.25, None, None
    )  # fmt: skip
    job = stored["job-0"]
    assert (job["predicted_class"], orjson.loads(job["probabilities"])) == ("M", [0.1, 0.3, 0.6])
    outcomes = {r["prediction_id"]: (r["actual"], r["actual_class"], r["outcome"]) for r in rows(log, feedback)}
    assert outcomes == {"price-1": (None, None, 90.0), "job-0": (None, "L", None)}
    for sent in (value, classes):
        found = log.lookup(sent.request_id)
        assert found is not None
        assert found.answers == sent.answers
    asyncio.run(log.close())


async def _write_and_close(log: PredictionLog, *batches: PredictionBatch) -> None:
    for b in batches:
        log.record_batch(b)
    await log.close()


def test_records_of_a_process_that_died_are_loaded_by_the_next(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"
    script = f"""
import datetime as dt, os
from serving.log import PredictionLog
from serving.log.lines import PredictionBatch
log = PredictionLog({url!r})
for k in range(50):
    log.record_batch(PredictionBatch(
        request_id=f"r{{k}}", ids=[f"r{{k}}-0", f"r{{k}}-1"], created_at=dt.datetime.now(dt.UTC), event_time=None,
        route="/predict", model_name="m", model_version="1", features={{"x": [1.0, None]}},
        answers={{"probability": [0.1, 0.9], "label": [False, True]}}))
log.record_feedback([{{"prediction_id": "r3-1", "actual": True, "outcome": 40.0,
                      "received_at": dt.datetime.now(dt.UTC)}}])
os.kill(os.getpid(), 9)  # nothing was loaded into the database: it is all in the journal
"""
    died = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()
    assert list((tmp_path / "log.db.journal").glob("*.jsonl"))

    log = PredictionLog(url)  # the next process
    assert log.recovered == 101
    assert len(rows(log, predictions)) == 100
    assert [(r["prediction_id"], r["actual"]) for r in rows(log, feedback)] == [("r3-1", True)]
    assert not list((tmp_path / "log.db.journal").iterdir())  # loaded, then deleted
    asyncio.run(log.close())
    assert PredictionLog(url).recovered == 0  # loaded once


def test_a_live_process_journal_is_not_taken_by_another(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"
    first = PredictionLog(url)
    first.record_batch(batch("a"))
    second = PredictionLog(url)  # e.g. a second worker starting: the first holds its journal's lock
    assert second.recovered == 0
    asyncio.run(first.close())
    assert len(rows(second, predictions)) == 3


def test_a_full_disk_refuses_records_loses_none_and_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db")
    log.record_batch(batch("before"))
    real_write = os.write
    full = {"on": True}

    def write(fd: int, data: bytes) -> int:
        if full["on"]:
            return real_write(fd, data[: len(data) // 2])  # a short write, as on a disk that fills mid-line
        return real_write(fd, data)

    monkeypatch.setattr(journal.os, "write", write)
    with pytest.raises(LogUnavailableError, match="cannot be written"):
        log.record_batch(batch("during"))
    assert log.accepting() is not None
    assert "journal" in log.accepting()
    assert log.status()["status"] == "refusing"
    full["on"] = False
    log.record_batch(batch("after"))  # space again: accepted, and the journal has no torn line
    assert log.accepting() is None
    asyncio.run(log.close())
    assert [r["id"] for r in rows(log, predictions)] == [
        "after-0",
        "after-1",
        "after-2",
        "before-0",
        "before-1",
        "before-2",
    ]


def test_a_database_far_behind_stops_the_log_accepting(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db", max_lag_rows=5)
    log.record_batch(batch("a"))
    assert log.accepting() is None
    log.record_batch(batch("b"))
    assert "6 records behind" in (log.accepting() or "")
    asyncio.run(log.flush())
    assert log.accepting() is None
    asyncio.run(log.close())


def test_a_named_request_is_found_pending_and_in_the_database(tmp_path: Path) -> None:
    log = PredictionLog(f"sqlite:///{tmp_path}/log.db")
    sent = batch("client-7", 3)
    digest = features_digest(sent.features)
    assert log.record_batch(sent, digest) is None
    pending = log.pending("client-7")
    assert pending is not None
    assert pending.digest == digest
    assert log.record_batch(batch("client-7", 3), digest) == pending  # raced in: the first answer, not logged again
    asyncio.run(log.flush())
    assert log.pending("client-7") is None
    stored = log.lookup("client-7")
    assert stored is not None
    assert (stored.ids, stored.answers, stored.model_version) == (sent.ids, sent.answers, "7")
    assert stored.digest == digest  # the logged features hash like the request's
    assert log.lookup("client-8") is None
    asyncio.run(log.close())


def test_a_journal_written_before_the_keys_were_spelled_out_is_loaded_after_the_upgrade(tmp_path: Path) -> None:
    """The lines of a journal a service of the earlier release left behind (one-letter keys), loaded by this one."""
    journal_dir = tmp_path / "log.db.journal"
    journal_dir.mkdir()
    created = "2026-11-05T14:30:00+00:00"
    old_lines = [
        {"k": "p", "r": "old", "ids": ["old-0", "old-1"], "c": created, "e": None, "route": "/predict",
         "m": "model", "v": "3", "f": {"x": [1.5, None], "kind": ["a", "b"]}, "p": [0.2, 0.7], "l": [False, True]},
        {"k": "f", "rows": [{"prediction_id": "old-1", "actual": True, "outcome": 12.0, "received_at": created}]},
    ]  # fmt: skip
    segment = journal_dir / "0123456789abcdef.0.jsonl"  # a dead process's segment: no live lock beside it
    segment.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in old_lines))

    log = PredictionLog(f"sqlite:///{tmp_path}/log.db")
    assert log.recovered == 3
    stored = rows(log, predictions)
    assert [(r["id"], r["request_id"], r["model_version"], r["label"]) for r in stored] == [
        ("old-0", "old", "3", False),
        ("old-1", "old", "3", True),
    ]
    assert orjson.loads(stored[1]["features"]) == {"x": None, "kind": "b"}
    assert stored[0]["event_time"] == stored[0]["created_at"]
    assert [(r["prediction_id"], r["actual"], r["outcome"]) for r in rows(log, feedback)] == [("old-1", True, 12.0)]
    assert not segment.exists()
    asyncio.run(log.close())


def test_a_journal_line_spells_out_its_keys() -> None:
    line = orjson.loads(batch("r", 1).line())
    assert set(line) == {
        "kind", "request_id", "ids", "created_at", "event_time", "route", "model_name", "model_version", "features",
        "probability", "label",
    }  # fmt: skip
    assert parse_line(batch("r", 1).line()) == line
