"""Start, stop and report the stack as a whole: PostgreSQL, then SeaweedFS, then MLflow (which needs both).

``up`` leaves a running part alone, cleans a stale PID file instead of trusting it, checks every port before it
starts anything, and stops whatever it started itself if a later step fails, so that a failed ``up`` leaves
nothing half-started. ``down`` stops only the processes its PID files prove to be the stack's own. Both hold the
stack's lock, so two commands never interleave.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.stack.credentials import Credentials, connection_settings, render_env, write_private
from tools.stack.errors import PortTakenError, StackError
from tools.stack.objectstore import ObjectStore
from tools.stack.part import Part
from tools.stack.postgres import Postgres
from tools.stack.processes import (
    PidRecord,
    Verdict,
    exclusive,
    judge,
    mark_log,
    port_holder,
    process_facts,
    read_pid_file,
    taken_ports,
    write_pid_file,
)
from tools.stack.settings import StackPaths, StackSettings
from tools.stack.tracking import TrackingServer

Report = Callable[[str], None]


@dataclass(frozen=True)
class PartState:
    """One line of ``stack status``."""

    name: str
    address: str
    state: Verdict
    pid: int | None
    answers: bool


def stack_parts(settings: StackSettings, credentials: Credentials | None) -> list[Part]:
    """The parts in the order they start."""
    paths = settings.paths()
    return [cls(settings, paths, credentials) for cls in (Postgres, ObjectStore, TrackingServer)]


def up(settings: StackSettings, report: Report) -> Path:
    """Start every part that is not running and wait until each answers; the env file with the connection
    settings."""
    paths = settings.paths()
    paths.root.mkdir(parents=True, exist_ok=True, mode=0o711)  # the PostgreSQL user must be able to enter it
    with exclusive(paths.lock):
        credentials = _credentials(paths)
        parts = stack_parts(settings, credentials)
        running = {part.key: _running(part, paths, report) for part in parts}
        _check_ports([part for part in parts if running[part.key] is None])
        started: list[tuple[Part, PidRecord]] = []
        try:
            for part in parts:
                record = running[part.key]
                if record is None:
                    record = _start(part, paths)
                    started.append((part, record))
                    report(f"{part.name}: started (PID {record.pid}), answering at {part.address()}")
                else:
                    part.wait_ready(None, record)
                    part.bootstrap()
                    report(f"{part.name}: already running (PID {record.pid}) at {part.address()}")
        except BaseException:  # an interrupt too: what this command started goes, then the error is re-raised
            _roll_back(started, paths, report)
            raise
        write_private(paths.env_file, render_env(connection_settings(settings, credentials)))
    return paths.env_file


def down(settings: StackSettings, report: Report) -> None:
    """Stop every part that this stack's PID files prove to be running; clean the stale PID files."""
    paths = settings.paths()
    if not paths.root.is_dir():
        report(f"nothing to stop: {paths.root} does not exist")
        return
    with exclusive(paths.lock):
        for part in reversed(stack_parts(settings, None)):
            verdict, record = read_pid_file(paths.pid_file(part.key))
            if verdict is Verdict.RUNNING and record is not None:
                _stop(part, record, paths)
                report(f"{part.name}: stopped (PID {record.pid})")
            elif verdict is Verdict.NONE:
                report(f"{part.name}: not running")
            else:
                paths.pid_file(part.key).unlink(missing_ok=True)
                report(f"{part.name}: not running ({verdict}; removed, nothing stopped)")


def status(settings: StackSettings) -> list[PartState]:
    """Each part's address, whether its PID file names a running process, and whether it answers now."""
    paths = settings.paths()
    credentials = Credentials.load(paths.credentials)
    states = []
    for part in stack_parts(settings, credentials):
        verdict, record = read_pid_file(paths.pid_file(part.key))
        answers = (credentials is not None or isinstance(part, TrackingServer)) and part.answers()
        pid = record.pid if record is not None and verdict is Verdict.RUNNING else None
        states.append(PartState(part.name, part.address(), verdict, pid, answers))
    return states


def _credentials(paths: StackPaths) -> Credentials:
    """The stack's credentials; generated at its first start."""
    existing = Credentials.load(paths.credentials)
    if existing is not None:
        return existing
    cluster = paths.part(Postgres.key) / "data"
    if cluster.exists():
        raise StackError(
            f"{paths.credentials} is missing but {cluster} exists (its superuser's password was in it): restore "
            f"the file, or remove {paths.root} to start over with empty data"
        )
    credentials = Credentials.generate()
    credentials.save(paths.credentials)
    return credentials


def _running(part: Part, paths: StackPaths, report: Report) -> PidRecord | None:
    """The record of ``part``'s running process, if any; a stale PID file is removed and reported, not trusted."""
    pid_file = paths.pid_file(part.key)
    verdict, record = read_pid_file(pid_file)
    if verdict is Verdict.RUNNING:
        return record
    if verdict is not Verdict.NONE:
        pid_file.unlink()
        report(f"{part.name}: {verdict} (PID {record.pid if record else '?'}); removed")
    adopted = part.adopt()
    if adopted is not None:
        write_pid_file(pid_file, adopted)
        report(f"{part.name}: found running on its own data without a PID file (PID {adopted.pid}); recorded")
    return adopted


def _check_ports(parts: list[Part]) -> None:
    """A PortTakenError for the first port of ``parts`` that another program holds: before anything starts."""
    for part in parts:
        for owner, port in taken_ports(part.ports()):
            holder = port_holder(port)
            raise PortTakenError(
                f"port {port} ({owner}) is already in use{f' by {holder}' if holder else ''}: stop that program "
                f"or move {part.name} with {part.port_setting}=<another port>; nothing was started"
            )


def _start(part: Part, paths: StackPaths) -> PidRecord:
    """Launch ``part``, record it, wait until it answers and bootstrap it; stopped again if any step fails."""
    mark_log(part.log)
    process, record = part.launch()
    write_pid_file(paths.pid_file(part.key), record)
    try:
        part.wait_ready(process, record)
        part.bootstrap()
    except BaseException:
        _stop(part, record, paths)
        raise
    return record


def _roll_back(started: list[tuple[Part, PidRecord]], paths: StackPaths, report: Report) -> None:
    """Stop what this command started, last first; a part that will not stop is reported, the others still go."""
    for part, record in reversed(started):
        try:
            _stop(part, record, paths)
        except StackError as e:
            report(f"{part.name}: could not be stopped again: {e}")
        else:
            report(f"{part.name}: stopped again (PID {record.pid})")


def _stop(part: Part, record: PidRecord, paths: StackPaths) -> None:
    """Stop ``part`` if ``record`` still names its running process, then remove its PID file."""
    if judge(record, process_facts(record.pid)) is Verdict.RUNNING:
        part.stop(record)
        if process_facts(record.pid) is not None:
            raise StackError(f"{part.name} (PID {record.pid}) is still running after the stop; see {part.log}")
    paths.pid_file(part.key).unlink(missing_ok=True)
