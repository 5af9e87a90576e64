"""What every part of the stack is: ports, an address, a way to start, a readiness check, a way to stop."""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from tools.stack.credentials import Credentials
from tools.stack.errors import NotReadyError, StackError
from tools.stack.processes import PidRecord, log_tail, process_facts, stop_group, wait_for
from tools.stack.settings import StackPaths, StackSettings

Launched = tuple[subprocess.Popen[bytes] | None, PidRecord]


class Part(ABC):
    """One server of the stack. ``credentials`` is None only where a command runs without them (stop, status)."""

    key: ClassVar[str]  # its directory, PID file and log are named after it
    name: ClassVar[str]
    port_setting: ClassVar[str]  # the variable that moves it to other ports

    def __init__(self, settings: StackSettings, paths: StackPaths, credentials: Credentials | None) -> None:
        self.settings = settings
        self.paths = paths
        self._credentials = credentials

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            raise StackError(f"{self.paths.credentials}: not found; `make stack-up` creates it")
        return self._credentials

    @property
    def log(self) -> Path:
        return self.paths.log(self.key)

    @property
    @abstractmethod
    def timeout_s(self) -> float:
        """How long it may take to answer after it was launched."""

    @abstractmethod
    def ports(self) -> list[tuple[str, int]]:
        """Every port it listens on, with what listens there."""

    @abstractmethod
    def address(self) -> str:
        """Where clients reach it."""

    @abstractmethod
    def launch(self) -> Launched:
        """Start it; the process (if this command is its parent) and its record. If this raises, nothing of the
        part is left running."""

    @abstractmethod
    def answers(self) -> bool:
        """Whether it answers a real request now (with the stack's credentials)."""

    @abstractmethod
    def bootstrap(self) -> None:
        """Create what the other parts and the pipeline expect in it (databases, buckets); safe to repeat."""

    def adopt(self) -> PidRecord | None:
        """Its server, if one of this stack's runs without a PID file (found in its own data directory)."""
        return None

    def stop(self, record: PidRecord) -> None:
        """Stop the process ``record`` names (found running) and what it started."""
        stop_group(record, self.settings.stop_timeout_s)

    def wait_ready(self, process: subprocess.Popen[bytes] | None, record: PidRecord) -> None:
        """Return once it answers; a NotReadyError with its log's tail if it exits or the timeout passes first."""

        def ready() -> bool:
            if self.answers():
                return True
            exited = process.poll() is not None if process is not None else process_facts(record.pid) is None
            if exited:
                raise NotReadyError(
                    f"{self.name} exited while starting; last lines of {self.log}:\n{log_tail(self.log)}"
                )
            return False

        if not wait_for(ready, self.timeout_s):
            raise NotReadyError(
                f"{self.name} did not answer at {self.address()} within {self.timeout_s:g} s; last lines of "
                f"{self.log}:\n{log_tail(self.log)}"
            )
