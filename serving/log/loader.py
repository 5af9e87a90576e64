"""The loader: the journal's lines, in order, into the database, in one thread below the event loop.

One transaction per batch of lines; a segment is deleted once it is in the database. At start it first loads the
journals of processes that died before loading them. A database that fails leaves the lines in the journal and
says so in :class:`LogHealth`; the next round tries again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.log.journal import Journal, Position, orphans, read_lines
from serving.log.store import Store
from tabloop.errors import redact

logger = logging.getLogger(__name__)

READ_BYTES = 1 << 20  # journal bytes the loader takes per transaction, at most about


@dataclass
class LogHealth:
    """Whether the log can record, and what went wrong last."""

    journal_error: str | None = None
    failed_bytes: int = 0  # the size of the write that failed
    store_error: str | None = None

    def store_failed(self, error: Exception) -> None:
        """Record (and log, once per new message) that the database failed."""
        message = redact(str(error).splitlines()[0][:300]) if str(error) else type(error).__name__
        if self.store_error != message:
            logger.error("writing the prediction log to the database failed (%s); the journal keeps them", message)
        self.store_error = message


Loaded = Callable[[list[str], list[str]], None]  # told the prediction ids and request ids now in the database


class Loader:
    """Moves the journal's lines into the store; ``read_at`` is how far it got, ``loaded`` how many records."""

    def __init__(self, store: Store, health: LogHealth, flush_interval_s: float, nice: int) -> None:
        self.store = store
        self.health = health
        self.flush_interval_s = flush_interval_s
        self.read_at = Position(0, 0)
        self.loaded = 0  # records (prediction rows and outcomes) in the database
        self.written = 0  # prediction rows in the database
        # Below the event loop (a higher nice value; Linux sets it per thread): it takes the CPU the loop leaves,
        # with a share large enough to keep up with a saturated loop (see the README's figures).
        self._writer = ThreadPoolExecutor(
            1, thread_name_prefix="prediction-log", initializer=lower_priority, initargs=(nice,)
        )

    async def flush(self, journal: Journal | None, loaded: Loaded, limit: int | None = None) -> int:
        """Load what the journal holds (``limit`` transactions at most) into the database; the records loaded."""
        total, rounds = 0, 0
        while journal is not None and self.read_at < journal.end and (limit is None or rounds < limit):
            rounds += 1
            end = journal.end
            try:
                position, records, ids, request_ids = await self.in_writer(self._load, journal, self.read_at, end)
            except Exception as e:  # the database may fail in any way: the journal keeps the records, readiness tells
                self.health.store_failed(e)
                await asyncio.sleep(min(1.0, self.flush_interval_s * 5))
                return total
            self.health.store_error = None
            self.read_at = position
            self.loaded += records
            loaded(ids, request_ids)
            self.written += len(ids)
            total += records
        return total

    async def in_writer(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)`` in the loader's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._writer, function, *args)

    def recover(self, journal_dir: Path) -> int:
        """Load the journals of processes that died before loading them; the records loaded."""
        total = 0
        for orphan in orphans(journal_dir):
            for path in orphan.segments:
                total += self._recover_segment(path)
            orphan.forget()
        if total:
            logger.info("loaded %d records from the journal of a process that stopped before loading them", total)
        return total

    def shutdown(self) -> None:
        """Stop the loader's thread."""
        self._writer.shutdown()

    def _load(self, journal: Journal, start: Position, end: Position) -> tuple[Position, int, list[str], list[str]]:
        lines, position = journal.read(start, READ_BYTES, end)
        records, ids, request_ids = self.store.write(lines)
        if position.segment > start.segment or not lines:
            journal.release(position)
        return position, records, ids, request_ids

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
            total += self.store.write(lines)[0]


def lower_priority(nice: int) -> None:
    """Give the calling thread a nice value (Linux sets it per thread); elsewhere do nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # pragma: no cover - not Linux, or not permitted
        logger.debug("could not set the prediction-log loader's priority")
