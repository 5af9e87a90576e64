"""Replay the test split against the running service, in time order, with outcomes when they would be known.

Each row is sent to ``POST /predict`` as the request a client would have sent at its event time: the contract's
features, with ``X-Event-Time`` set to that time (so the prediction log and the monitoring windows follow the data's
calendar, not the replay's) and ``X-Request-Id`` set to an id derived from the example's id (so a request sent again
after an interruption is logged once). A dataset without an event time is sent in row order on a synthetic clock.
A virtual clock runs ``speedup`` times faster than the wall clock; a row is sent when the clock passes its event
time, and its outcome goes to ``POST /feedback`` when the clock passes the time the outcome is known.

Progress is saved to a state file every second and on exit, so an interrupted or bounded replay resumes where it
stopped; resent predictions and feedback are idempotent on the service's side, so nothing is counted twice. The
rows are copied beside the state when a replay starts, so that retraining, which moves the pipeline's split and
rewrites its feature tables, does not change the traffic a replay resumes with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import json
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypedDict, TypeVar
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import polars as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from monitoring.config import ReplayConfig
from tabloop.errors import TabloopError
from tabloop.records import ID, OUTCOME, OUTCOME_TIME, TIME
from tabloop.runtime.contract import FeatureContract

T = TypeVar("T")
SNAPSHOT_NAME = "traffic.parquet"  # beside the state file
MAX_REJECTED_KEPT = 50


class Rejection(TypedDict):
    """A row the service refused, as the replay state keeps the first few."""

    id: str  # the example's
    status: int
    error: str


class PendingOutcome(NamedTuple):
    """An answered row's observed outcome, to send once it is due (ordered by when: the replayer keeps a heap)."""

    due: float  # a UNIX time
    prediction_id: str
    actual: bool
    value: float | None  # the numeric outcome, where the dataset has one


class ReplayError(TabloopError):
    """The replay cannot start or go on (no traffic, a state from another replay, the service unreachable)."""


@dataclass(frozen=True)
class Traffic:
    """The rows to replay, in time order: bodies, times and outcomes."""

    source: str
    target: str  # the contract's name of the observed class, as /feedback takes it
    time_zone: str  # of the days named by `until`
    keys: list[str]  # the example's id: unique per row
    event_time: list[dt.datetime]  # when the prediction is wanted, UTC
    outcome_at: list[dt.datetime]  # when the outcome is known, UTC
    bodies: list[bytes]  # the request body: the contract's features as JSON
    labels: list[bool]
    outcomes: list[float | None]  # the label column's value, where it is a number

    def __len__(self) -> int:
        return len(self.keys)


def load_traffic(
    path: Path,
    contract: FeatureContract,
    config: ReplayConfig | None = None,
    *,
    time_zone: str = "UTC",
    source: str | None = None,
) -> Traffic:
    """The rows of ``path`` (a features table) as requests, in time order; ``source`` names where they came from
    (default ``path``).

    Rows with an event time (naive, local to ``time_zone``) are sent at it; a dataset without one is sent in row
    order on a synthetic clock (``config.synthetic_start``, one row every ``config.synthetic_interval_s``). The
    outcome is due at the outcome time where the dataset has one, else ``config.outcome_delay_s`` after the event.
    """
    config = config or ReplayConfig()
    frame = _read_rows(path, contract)
    frame = (
        frame.with_columns(event_time=_event_time(frame, config, time_zone), key=pl.col(ID).cast(pl.String))
        .drop_nulls("event_time")
        .with_columns(outcome_at=_outcome_time(frame, config, time_zone).fill_null(pl.col("event_time")))
        .sort("event_time", maintain_order=True)
    )
    features = list(contract.features)
    outcomes = frame[OUTCOME].to_list() if OUTCOME in frame.columns else [None] * frame.height
    return Traffic(
        source=source or str(path),
        target=contract.target.name,
        time_zone=time_zone,
        keys=frame["key"].to_list(),
        event_time=frame["event_time"].to_list(),
        outcome_at=frame["outcome_at"].to_list(),
        bodies=[orjson.dumps(row) for row in frame.select(features).iter_rows(named=True)],
        labels=frame[contract.target.name].to_list(),
        outcomes=[None if v is None else float(v) for v in outcomes],
    )


def _read_rows(path: Path, contract: FeatureContract) -> pl.DataFrame:
    """The features table at ``path``; a ReplayError if there is none, it lacks a column the requests need, or it
    has no rows."""
    if not path.is_file():
        raise ReplayError(no_traffic(path))
    frame = pl.read_parquet(path)
    missing = [c for c in [ID, contract.target.name, *contract.features] if c not in frame.columns]
    if missing:
        raise ReplayError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.is_empty():
        raise ReplayError(f"{path}: nothing to replay")
    return frame


def _event_time(frame: pl.DataFrame, config: ReplayConfig, time_zone: str) -> pl.Expr:
    """When each row of ``frame`` is sent, in UTC: at its event time (naive, local to ``time_zone``) or, without
    one, on the synthetic clock."""
    if TIME in frame.columns:
        event = pl.col(TIME).dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
        return event.dt.convert_time_zone("UTC")
    start = config.synthetic_start.astimezone(dt.UTC)
    step = pl.int_range(pl.len(), dtype=pl.Int64) * int(config.synthetic_interval_s * 1e6)
    return pl.lit(start) + pl.duration(microseconds=step)


def _outcome_time(frame: pl.DataFrame, config: ReplayConfig, time_zone: str) -> pl.Expr:
    """When the outcome of each row of ``frame`` is due, in UTC: at its outcome time (never before its event
    time, the ``event_time`` column) or, without one, ``config.outcome_delay_s`` after the event."""
    if OUTCOME_TIME in frame.columns:
        due = pl.col(OUTCOME_TIME).dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
        return pl.max_horizontal(due.dt.convert_time_zone("UTC"), pl.col("event_time"))
    return pl.col("event_time") + pl.duration(microseconds=int(config.outcome_delay_s * 1e6))


@dataclass
class ReplayState:
    """Where a replay is: saved as JSON after every step, so that it can resume."""

    run: str
    source: str
    rows: int
    next: int = 0  # rows[:next] have been answered (or rejected)
    virtual_time: str | None = None
    answered: int = 0
    rejected: int = 0
    feedback_sent: int = 0
    pending: list[PendingOutcome] = field(default_factory=list)  # outcomes of answered rows not yet sent
    rejected_examples: list[Rejection] = field(default_factory=list)

    @classmethod
    def start(cls, traffic: Traffic) -> ReplayState:
        return cls(run=uuid.uuid4().hex[:8], source=traffic.source, rows=len(traffic))

    @classmethod
    def load(cls, path: Path, traffic: Traffic) -> ReplayState:
        """The saved state at ``path``, or a fresh one if there is none."""
        if not path.is_file():
            return cls.start(traffic)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**data)
        except (json.JSONDecodeError, TypeError) as e:
            raise ReplayError(f"{path}: not a replay state ({e}); delete it or pass --restart") from e
        state.pending = [PendingOutcome(*p) for p in state.pending]
        if (state.source, state.rows) != (traffic.source, len(traffic)):
            raise ReplayError(
                f"{path} belongs to a replay of {state.rows:,} rows from {state.source}, not of "
                f"{len(traffic):,} from {traffic.source}; pass --restart to start over"
            )
        return state

    def save(self, path: Path) -> None:
        """Write atomically: a crash leaves the previous state, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self)), encoding="utf-8")
        temporary.replace(path)

    @property
    def done(self) -> bool:
        return self.next >= self.rows and not self.pending


@dataclass(frozen=True)
class ReplaySummary:
    """What one invocation of the replay did."""

    sent: int
    answered: int
    rejected: int
    feedback: int
    seconds: float
    finished: bool
    stopped_by: str
    state: ReplayState

    def describe(self, state_path: Path) -> list[str]:
        """What the replay did and where it is, line by line; how to resume it (from ``state_path``) if it
        stopped early."""
        state = self.state
        lines = [
            f"replay {state.run}: {self.sent:,} rows sent in {self.seconds:.1f} s "
            f"({self.sent / max(self.seconds, 1e-9):,.0f} req/s), {self.rejected:,} rejected, "
            f"{self.feedback:,} outcomes sent; in all {state.next:,} of {state.rows:,} rows, "
            f"{state.feedback_sent:,} outcomes; virtual time {state.virtual_time}"
        ]
        if state.rejected_examples and self.rejected:
            lines.append(f"rejected, e.g.: {state.rejected_examples[-1]}")
        if not self.finished:
            lines.append(f"stopped by {self.stopped_by}; run it again to resume ({state_path})")
        return lines


class Replayer:
    """Sends ``traffic`` to the service at ``url`` as ``config`` says, recording progress in ``state``.

    Up to ``concurrency`` requests are outstanding at once, each started as soon as its row is due and a slot is
    free (no lockstep batches); outcomes go in batches of ``feedback_batch`` beside them. ``state.next`` only moves
    past rows that have all been answered, so a replay that stops or dies resends at most the outstanding ones.
    """

    def __init__(
        self,
        config: ReplayConfig,
        traffic: Traffic,
        state: ReplayState,
        session: aiohttp.ClientSession,
        *,
        url: str,
        state_path: Path,
        progress: Progress | None = None,
    ) -> None:
        self.config, self.traffic, self.state, self.session = config, traffic, state, session
        self.url = url.rstrip("/")
        self.state_path, self.progress = state_path, progress
        self.pending: list[PendingOutcome] = [PendingOutcome(*p) for p in state.pending]
        heapq.heapify(self.pending)
        self._next_slot = 0.0
        self._saved_at = 0.0
        self._cursor = state.next  # the next row to send
        self._finished: dict[int, Rejection | None] = {}  # rows past state.next: None answered, else rejected
        self._tasks: set[asyncio.Task[None]] = set()
        self._feedback_busy = False  # a batch of outcomes is outstanding
        self._counts = {"sent": 0, "answered": 0, "rejected": 0, "feedback": 0}

    def request_id(self, index: int) -> str:
        return f"r{self.state.run}-{self.traffic.keys[index]}"

    async def run(self) -> ReplaySummary:
        """Replay until done, a bound is reached, or the service stays unreachable (then a ReplayError)."""
        config, state, traffic = self.config, self.state, self.traffic
        start_wall = time.monotonic()
        start_virtual = dt.datetime.fromisoformat(state.virtual_time) if state.virtual_time else traffic.event_time[0]
        until = end_of_day(config.until, traffic.time_zone) if config.until is not None else None
        stopped_by = "finished"
        rows_task = self.progress.add_task("rows", total=len(traffic), completed=state.next) if self.progress else None
        try:
            while state.next < len(traffic) or self.pending or self._tasks:  # rows or outcomes still to send
                elapsed = time.monotonic() - start_wall
                now = start_virtual + dt.timedelta(seconds=elapsed * config.speedup)
                if until is not None:
                    now = min(now, until)  # what is due by then is still sent, nothing later
                if bound := self._bound_reached(elapsed, now, until):
                    stopped_by = bound
                    break
                state.virtual_time = now.isoformat()
                self._start_due(now)
                await self._step(now, rows_task)
                self._maybe_save()
            await self._drain()  # a bound stops new requests; the ones already sent are seen through
        finally:
            await self._cancel()
            state.pending = sorted(self.pending)
            state.save(self.state_path)
        return self._summary(stopped_by, time.monotonic() - start_wall)

    def _bound_reached(self, elapsed: float, now: dt.datetime, until: dt.datetime | None) -> str | None:
        """The bound that stops the replay ``elapsed`` seconds in, at virtual time ``now``, if one does."""
        config = self.config
        if config.max_seconds is not None and elapsed >= config.max_seconds:
            return f"max_seconds ({config.max_seconds:g} s)"
        if config.max_requests is not None and self._counts["sent"] >= config.max_requests:
            return f"max_requests ({config.max_requests:,})"
        if until is not None and now >= until and self._quiet_until(until):
            return f"until ({config.until})"
        return None

    async def _step(self, now: dt.datetime, rows_task: TaskID | None) -> None:
        """Wait until a request finishes (then show the progress on ``rows_task``) or, with a slot free, until the
        next row or outcome is due."""
        if not self._tasks:
            await asyncio.sleep(self._wait(now))
            return
        full = len(self._tasks) >= self.config.concurrency
        done, _ = await asyncio.wait(
            self._tasks, timeout=None if full else self._wait(now), return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            self._tasks.discard(task)
            task.result()  # a ReplayError stops the replay
        if rows_task is not None and self.progress:
            self.progress.update(rows_task, completed=self.state.next)

    def _summary(self, stopped_by: str, seconds: float) -> ReplaySummary:
        counts = self._counts
        return ReplaySummary(
            sent=counts["sent"],
            answered=counts["answered"],
            rejected=counts["rejected"],
            feedback=counts["feedback"],
            seconds=seconds,
            finished=self.state.done,
            stopped_by=stopped_by,
            state=self.state,
        )

    def _start_due(self, now: dt.datetime) -> None:
        """Fill the free slots: a batch of due outcomes (one batch outstanding at a time, started first so that a
        stream of due rows never holds outcomes back), then due rows."""
        config, traffic = self.config, self.traffic
        stamp = now.timestamp()
        if config.feedback and not self._feedback_busy and self.pending and self.pending[0].due <= stamp:
            due: list[PendingOutcome] = []
            while self.pending and self.pending[0].due <= stamp and len(due) < config.feedback_batch:
                due.append(heapq.heappop(self.pending))
            self._feedback_busy = True
            self._spawn(self._feedback(due))
        while len(self._tasks) < config.concurrency and self._cursor < len(traffic):
            if traffic.event_time[self._cursor] > now:
                break
            if config.max_requests is not None and self._counts["sent"] >= config.max_requests:
                break
            self._spawn(self._row(self._cursor))
            self._cursor += 1
            self._counts["sent"] += 1

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.add(asyncio.get_running_loop().create_task(work))

    async def _drain(self) -> None:
        while self._tasks:
            done, self._tasks = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()

    async def _cancel(self) -> None:
        """Stop what is still outstanding (after an error): those rows are sent again on resume."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _row(self, index: int) -> None:
        result = await self._with_retries(lambda: self._predict(index))
        self._counts["answered" if result is None else "rejected"] += 1
        self._finished[index] = result
        while self.state.next in self._finished:  # the answered prefix moves on
            self._settle(self.state.next, self._finished.pop(self.state.next))
            self.state.next += 1

    def _settle(self, index: int, result: Rejection | None) -> None:
        """Record a row of the answered prefix: its count, and its outcome to send when due."""
        if result is None:
            self.state.answered += 1
            if self.config.feedback:
                due = self.traffic.outcome_at[index].timestamp()
                outcome = PendingOutcome(
                    due, self.request_id(index), self.traffic.labels[index], self.traffic.outcomes[index]
                )
                heapq.heappush(self.pending, outcome)
        else:
            self.state.rejected += 1
            if len(self.state.rejected_examples) < MAX_REJECTED_KEPT:
                self.state.rejected_examples.append(result)

    def _quiet_until(self, until: dt.datetime) -> bool:
        """Whether every row and outcome due by ``until`` has been sent and answered."""
        row_due = self._cursor < len(self.traffic) and self.traffic.event_time[self._cursor] <= until
        outcome_due = self.config.feedback and bool(self.pending) and self.pending[0].due <= until.timestamp()
        return not row_due and not outcome_due and not self._tasks

    def _wait(self, now: dt.datetime) -> float:
        """Wall-clock seconds until the next row or outcome is due (at most half a second)."""
        upcoming = []
        if self._cursor < len(self.traffic):
            upcoming.append(self.traffic.event_time[self._cursor])
        if self.pending:
            upcoming.append(dt.datetime.fromtimestamp(self.pending[0].due, dt.UTC))
        if not upcoming:
            return 0.5
        return max(0.0, min(0.5, (min(upcoming) - now).total_seconds() / self.config.speedup))

    async def _paced(self) -> None:
        """Wait for this request's slot so that at most ``rate`` requests start per second (no wait without one)."""
        if self.config.rate is None:
            return
        now = time.monotonic()
        slot = max(self._next_slot, now)
        self._next_slot = slot + 1.0 / self.config.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _predict(self, index: int) -> Rejection | None:
        """None when answered; the rejection when the service refused the row."""
        await self._paced()
        headers = {
            "Content-Type": "application/json",
            "X-Request-Id": self.request_id(index),
            "X-Event-Time": self.traffic.event_time[index].isoformat(),
        }
        async with self.session.post(f"{self.url}/predict", data=self.traffic.bodies[index], headers=headers) as r:
            body = await r.read()
        _raise_for_service(r.status, body)
        if r.status == 200:
            return None
        return Rejection(id=self.traffic.keys[index], status=r.status, error=_error_text(body))

    async def _feedback(self, due: list[PendingOutcome]) -> None:
        target = self.traffic.target
        body = orjson.dumps([{"id": i, target: actual, "outcome": value} for _, i, actual, value in due])

        async def send() -> tuple[int, bytes]:
            headers = {"Content-Type": "application/json"}
            async with self.session.post(f"{self.url}/feedback", data=body, headers=headers) as response:
                answer = await response.read()
            _raise_for_service(response.status, answer)
            return response.status, answer

        try:
            status, answer = await self._with_retries(send)
        except BaseException:  # not sent (the service is gone, or the replay stops): kept for the next run
            for item in due:
                heapq.heappush(self.pending, item)
            raise
        finally:
            self._feedback_busy = False
        if status != 200:
            for item in due:
                heapq.heappush(self.pending, item)
            raise ReplayError(f"the service refused feedback: {status} {_error_text(answer)}")
        self.state.feedback_sent += len(due)
        self._counts["feedback"] += len(due)

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retried while the service is unreachable or unavailable, up to ``retry_seconds``."""
        deadline = time.monotonic() + self.config.retry_seconds
        delay = 0.25
        while True:
            try:
                return await call()
            except (aiohttp.ClientError, TimeoutError, _UnavailableError) as e:
                if time.monotonic() + delay > deadline:
                    raise ReplayError(
                        f"the service at {self.url} did not answer for {self.config.retry_seconds:g} s "
                        f"({_describe(e)}); progress is saved in {self.state_path}: run the replay again to resume"
                    ) from e
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _maybe_save(self) -> None:
        now = time.monotonic()
        if now - self._saved_at >= 1.0:
            self.state.pending = list(self.pending)
            self.state.save(self.state_path)
            self._saved_at = now


class _UnavailableError(TabloopError):
    """The service answered 503 (no model yet) or 5xx: worth retrying."""


def _raise_for_service(status: int, body: bytes) -> None:
    if status in (401, 403):
        raise ReplayError(
            f"the service refused the replay's credentials ({status}): set SERVICE_API_KEY to the service's API key"
        )
    if status >= 500:
        raise _UnavailableError(f"{status} {_error_text(body)}")


def _error_text(body: bytes) -> str:
    try:
        error = orjson.loads(body).get("error", {})
        return str(error.get("message") or body[:200].decode(errors="replace"))
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode(errors="replace")


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__


def no_traffic(path: Path) -> str:
    return f"{path}: nothing to replay; run `make train` first (it builds the features)"


def end_of_day(day: dt.date, time_zone: str) -> dt.datetime:
    """The first instant after the local ``day``, in UTC."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=ZoneInfo(time_zone))
    return local.astimezone(dt.UTC)


def traffic_snapshot(config: ReplayConfig, *, fresh: bool) -> Path:
    """The replay's own copy of ``config.traffic``, taken when a replay starts and kept while it resumes."""
    snapshot = config.state.with_name(SNAPSHOT_NAME)
    if fresh or not snapshot.is_file():
        if not config.traffic.is_file():
            raise ReplayError(no_traffic(config.traffic))
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        temporary = snapshot.with_suffix(".tmp")
        shutil.copyfile(config.traffic, temporary)
        temporary.replace(snapshot)
    return snapshot


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    )


async def replay(
    config: ReplayConfig,
    contract: FeatureContract,
    url: str,
    *,
    time_zone: str = "UTC",
    api_key: str | None = None,
    restart: bool = False,
    show_progress: bool = True,
) -> ReplaySummary:
    """Replay ``config.traffic`` against the service at ``url``, resuming from ``config.state`` unless ``restart``;
    event times without a zone are local to ``time_zone``."""
    snapshot = traffic_snapshot(config, fresh=restart or not config.state.is_file())
    traffic = load_traffic(snapshot, contract, config, time_zone=time_zone, source=str(config.traffic))
    state = ReplayState.start(traffic) if restart else ReplayState.load(config.state, traffic)
    headers = {"X-API-Key": api_key} if api_key else {}
    connector = aiohttp.TCPConnector(limit=config.concurrency)
    timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:
        progress = progress_bar() if show_progress else None
        replayer = Replayer(config, traffic, state, session, url=url, state_path=config.state, progress=progress)
        if progress is None:
            return await replayer.run()
        with progress:
            return await replayer.run()


def run_loop(work: Coroutine[Any, Any, T]) -> T:
    """``work`` run to the end on uvloop (uvicorn's event loop, faster for many small requests) where it is
    installed, else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)
