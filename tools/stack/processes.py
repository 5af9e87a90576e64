"""The processes of the stack: PID files that prove which process is ours, ports, starting, stopping, the lock.

A PID file records the process's start time and command line next to its PID. A PID alone is not proof: after a
crash or a reboot the number may belong to any other program, and stopping that would be a disaster. A recorded
process is ours only while a process with that PID has the same start time and the same command line.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.stack.errors import StackBusyError
from tools.stack.settings import HOST

START_TIME_TOLERANCE_S = 0.5  # a process's start time, read twice, can differ by rounding only
POLL_S = 0.2
LOG_TAIL_LINES = 15
LOG_MARK = "==== tabloop stack: starting at"


class PidRecord(BaseModel):
    """A PID file's content: which process a part is, recorded right after it started."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pid: int = Field(gt=0)
    create_time: float
    cmdline: tuple[str, ...] = Field(min_length=1)


@dataclass(frozen=True)
class ProcessFacts:
    """What the system says about a live process."""

    create_time: float
    cmdline: tuple[str, ...]


class Verdict(StrEnum):
    NONE = "no PID file"
    RUNNING = "running"
    DEAD = "stale PID file: the process is gone"
    FOREIGN = "stale PID file: the PID belongs to another program"
    UNREADABLE = "stale PID file: not a PID record"


def judge(record: PidRecord, live: ProcessFacts | None) -> Verdict:
    """Whether ``record`` still describes a running process of ours, given what the system says about its PID."""
    if live is None:
        return Verdict.DEAD
    if abs(live.create_time - record.create_time) > START_TIME_TOLERANCE_S or live.cmdline != record.cmdline:
        return Verdict.FOREIGN
    return Verdict.RUNNING


def process_facts(pid: int) -> ProcessFacts | None:
    """The start time and command line of process ``pid``; None if there is none (a zombie counts as none)."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return ProcessFacts(process.create_time(), tuple(process.cmdline()))
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # someone else's process: never ours
        return ProcessFacts(0.0, ())


def record_of(pid: int) -> PidRecord | None:
    """A record of the live process ``pid``, or None if it is gone."""
    facts = process_facts(pid)
    if facts is None or not facts.cmdline:
        return None
    return PidRecord(pid=pid, create_time=facts.create_time, cmdline=facts.cmdline)


def read_pid_file(path: Path) -> tuple[Verdict, PidRecord | None]:
    """The verdict on the PID file at ``path`` and its record (None if there is no file or it is unreadable)."""
    try:
        record = PidRecord.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return Verdict.NONE, None
    except (OSError, ValidationError):
        return Verdict.UNREADABLE, None
    return judge(record, process_facts(record.pid)), record


def write_pid_file(path: Path, record: PidRecord) -> None:
    """``record`` at ``path``, written beside it and renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.staging")
    staging.write_text(record.model_dump_json() + "\n", encoding="utf-8")
    staging.replace(path)


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on ``host:port`` now (as servers do, with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def taken_ports(ports: Iterable[tuple[str, int]], host: str = HOST) -> list[tuple[str, int]]:
    """The (owner, port) pairs of ``ports`` that no server could listen on now."""
    return [(owner, port) for owner, port in ports if not port_is_free(port, host)]


def port_holder(port: int) -> str | None:
    """The program listening on ``port``, as ``name (PID n)``, if the system tells."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for connection in connections:
        if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
            if connection.pid is None:
                return None
            with contextlib.suppress(psutil.Error):
                return f"{psutil.Process(connection.pid).name()} (PID {connection.pid})"
    return None


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path
) -> tuple[subprocess.Popen[bytes], PidRecord]:
    """``argv`` started as the leader of a new session (so it outlives this command and stops as a group), its
    output appended to ``log``; the process and its record."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    # Popen may return a moment before the kernel shows the new command line: read it once it does
    found: list[PidRecord] = []

    def recorded() -> bool:
        record = record_of(process.pid)
        if record is not None:
            found.append(record)
        return record is not None or process.poll() is not None

    wait_for(recorded, 5.0)
    return process, found[0] if found else PidRecord(pid=process.pid, create_time=time.time(), cmdline=tuple(argv))


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    members = []
    for process in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
    return members


def stop_group(record: PidRecord, timeout_s: float) -> None:
    """Stop the process of ``record``, and every process of its group if it leads one: SIGTERM, then SIGKILL after
    ``timeout_s``.

    Only call this for a record :func:`judge` found running: the group is the one its leader started.
    """
    try:
        leads_group = os.getpgid(record.pid) == record.pid
    except ProcessLookupError:
        return

    def gone() -> bool:
        return not group_members(record.pid) if leads_group else process_facts(record.pid) is None

    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            (os.killpg if leads_group else os.kill)(record.pid, sig)
        if wait_for(gone, wait_s):
            return


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether ``condition`` became true within ``timeout_s`` (checked every :data:`POLL_S`)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def mark_log(log: Path) -> None:
    """Append a line to ``log`` that says a new start begins here (:func:`log_tail` shows what follows it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as file:
        file.write(f"\n{LOG_MARK} {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n")


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines ``log`` got since the latest start, indented, for an error message."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"  ({log}: no log)"
    latest = text.rsplit(LOG_MARK, 1)[-1].split("\n", 1)[-1] if LOG_MARK in text else text
    tail = [line for line in latest.splitlines() if line.strip()][-lines:]
    return "\n".join(f"  | {line}" for line in tail) or f"  ({log}: nothing written since the start)"


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold the stack's lock for the block; a StackBusyError naming the holder if another command holds it.

    An flock dies with its process, so a command that was killed never leaves a stale lock behind.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StackBusyError(
                f"another `python -m tools.stack` command is running (PID {holder}; lock {lock}): wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
