"""An append-only journal on local disk: what the service answered, written before the answer leaves.

Each process appends lines to its own segment files (``<owner>.<n>.jsonl``) and holds an exclusive ``flock`` on
``<owner>.lock`` for as long as it lives. A line is written with one ``write`` call on an ``O_APPEND`` descriptor, so
once the call returns the line is in the kernel's page cache and survives the process being killed (``kill -9``,
the OOM killer, a container stop past its grace period); ``fsync`` decides whether it also survives the machine
losing power. A failed or short write (a full disk) is undone with ``ftruncate`` and raised, so a line is either
whole in the journal or absent, and the caller refuses the request it could not record.

A reader (the prediction log's loader) takes whole lines from a position, never past what was appended, and
deletes a segment once it has taken everything in it and the writer has moved on. The lock tells a dead owner's
segments (the lock is free) from a live one's: a new process loads orphans before it starts answering.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tabloop.errors import TabloopError

logger = logging.getLogger(__name__)

FsyncPolicy = Literal["never", "interval", "always"]
SUFFIX = ".jsonl"


class JournalError(TabloopError, OSError):
    """A line could not be appended (e.g. the disk is full); it is not in the journal."""


@dataclass(frozen=True, order=True)
class Position:
    """Where a reader is: a segment number and a byte offset in it."""

    segment: int
    offset: int


class Journal:
    """One process's journal: segments it appends to, in ``directory``."""

    def __init__(self, directory: Path, fsync: FsyncPolicy = "never", segment_bytes: int = 16 << 20) -> None:
        self.directory = directory
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        # Locked under another name, then renamed: another process (a worker starting) never sees the lock free
        # between its creation and its locking, and never takes this live journal for a dead one's.
        unlocked = directory / f".{self.owner}.lock.new"
        self._lock_fd = os.open(unlocked, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        unlocked.rename(directory / f"{self.owner}.lock")
        self.segment = 0
        self.size = 0  # bytes appended to the current segment
        self._fd = -1
        self._unsynced = False
        self._open(0)

    def path(self, segment: int) -> Path:
        """The file of one of this journal's segments."""
        return self.directory / f"{self.owner}.{segment:08d}{SUFFIX}"

    @property
    def end(self) -> Position:
        """Everything appended so far ends here."""
        return Position(self.segment, self.size)

    def append(self, data: bytes) -> Position:
        """Append ``data`` (whole lines) in one write; where it ends. A JournalError leaves the journal unchanged."""
        if self.size >= self.segment_bytes:
            self._open(self.segment + 1)
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")
            if self.fsync == "always":
                os.fdatasync(self._fd)
        except OSError as e:
            self._undo()
            raise JournalError(e.errno, f"cannot append to the journal {self.path(self.segment)}: {e.strerror}") from e
        self.size += len(data)
        self._unsynced = True
        return self.end

    def sync(self) -> None:
        """Flush appended lines to the disk; safe from another thread (``fsync: interval`` calls it from the loader).

        It syncs through a descriptor of its own: the appending thread may close its descriptor at any time.
        """
        if not self._unsynced:
            return
        self._unsynced = False
        fd = os.open(self.path(self.segment), os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    def read(self, start: Position, max_bytes: int, end: Position) -> tuple[list[bytes], Position]:
        """Whole lines from ``start`` (about ``max_bytes``), never past ``end`` (taken from :attr:`end` by the
        appending thread); where they end. At the end of a finished segment the position moves to the next one.
        """
        if start.segment < end.segment:
            limit = None  # a finished segment: everything in it
        elif start.offset < end.offset:
            limit = end.offset
        else:
            return [], start
        path = self.path(start.segment)
        lines, offset = read_lines(path, start.offset, max_bytes, limit)
        if not lines and limit is None:
            if offset < path.stat().st_size:  # pragma: no cover - only a crash inside append leaves one
                logger.warning("%s ends with a torn line, skipped", path)
            return [], Position(start.segment + 1, 0)
        return lines, Position(start.segment, offset)

    def release(self, upto: Position) -> None:
        """Delete the finished segments before ``upto``: their lines are in the store."""
        for segment in range(upto.segment):
            self.path(segment).unlink(missing_ok=True)

    def close(self, *, delete: bool) -> None:
        """Close the files; with ``delete`` (everything is in the store) remove them and the lock."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if delete:
            for segment in range(self.segment + 1):
                self.path(segment).unlink(missing_ok=True)
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)

    def _open(self, segment: int) -> None:
        if self._fd >= 0:
            if self.fsync != "never":
                os.fdatasync(self._fd)
            os.close(self._fd)
        self._fd = os.open(self.path(segment), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
        self.segment, self.size = segment, 0

    def _undo(self) -> None:
        """Cut the current segment back to its last whole line."""
        try:
            os.ftruncate(self._fd, self.size)
        except OSError:  # pragma: no cover - the reader skips a torn last line anyway
            logger.exception("could not cut a partial line from %s", self.path(self.segment))


def read_lines(path: Path, offset: int, max_bytes: int, limit: int | None = None) -> tuple[list[bytes], int]:
    """Whole lines of ``path`` from ``offset`` (not past ``limit``), about ``max_bytes`` or one line at least;
    the offset after them. A torn last line (no newline: its write never returned) is left unread."""
    with path.open("rb") as f:
        f.seek(offset)
        chunk = b""
        while b"\n" not in chunk:
            size = max_bytes if limit is None else min(max_bytes, limit - offset - len(chunk))
            more = f.read(size) if size > 0 else b""
            if not more:
                break
            chunk += more
    whole = chunk.rfind(b"\n") + 1
    return chunk[:whole].splitlines(), offset + whole


@dataclass
class Orphan:
    """The journal of a process that is gone: its segments, in order, and its lock, now held by this process."""

    owner: str
    segments: list[Path]
    lock: Path | None
    fd: int = -1

    def forget(self) -> None:
        """Delete the segments (their lines are in the store) and the lock."""
        for path in self.segments:
            path.unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.unlink(missing_ok=True)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def orphans(directory: Path) -> list[Orphan]:
    """The journals of owners that are gone (their lock is free, or missing); their locks are taken until
    :meth:`Orphan.forget`, so two processes starting together never load the same orphan twice at once."""
    if not directory.is_dir():
        return []
    found: list[Orphan] = []
    live: set[str] = set()
    for lock in sorted(directory.glob("*.lock")):
        owner = lock.name.removesuffix(".lock")
        try:
            fd = os.open(lock, os.O_RDWR)
        except FileNotFoundError:  # another process has just loaded and forgotten it
            live.add(owner)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            live.add(owner)
            continue
        found.append(Orphan(owner, sorted(directory.glob(f"{owner}.*{SUFFIX}")), lock, fd))
    taken = {o.owner for o in found} | live
    stray: dict[str, list[Path]] = {}
    for path in sorted(directory.glob(f"*{SUFFIX}")):  # a lock deleted by hand, or a crash while forgetting
        owner = path.name.split(".")[0]
        if owner not in taken:
            stray.setdefault(owner, []).append(path)
    found.extend(Orphan(owner, paths, None) for owner, paths in stray.items())
    return found
