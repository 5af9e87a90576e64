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
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from monitoring.replay_state import MAX_REJECTED_KEPT, PendingOutcome, Rejection, ReplayState, ReplaySummary
from monitoring.traffic import ReplayError, Traffic, end_of_day, load_traffic, traffic_snapshot
from tabloop.config.monitor import ReplayConfig
from tabloop.errors import TabloopError
from tabloop.runtime.contract import FeatureContract

T = TypeVar("T")


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
        body = orjson.dumps([self.traffic.feedback(i, actual, value) for _, i, actual, value in due])

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
