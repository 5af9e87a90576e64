"""The production-like stack as the end-to-end tests start it: a directory and free ports of a test module's own,
passed to every command as variables."""

from __future__ import annotations

import random
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from helpers import REPO_ROOT
from tools.stack.processes import Verdict, port_is_free, read_pid_file, stop_group
from tools.stack.settings import StackSettings

PARTS = ("postgres", "seaweedfs", "mlflow")
COMMAND_TIMEOUT_S = 300


@dataclass
class Stack:
    """A stack of this test module's own: a directory and free ports, passed to every command as variables."""

    root: Path
    settings: StackSettings
    env: dict[str, str]

    def cli(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """``python -m tools.stack <args>``."""
        return self._run([sys.executable, "-m", "tools.stack", *args], extra)

    def make(self, target: str) -> subprocess.CompletedProcess[str]:
        return self._run(["make", target], {})

    def _run(self, command: list[str], extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )

    def pid_files(self) -> list[Path]:
        run = self.settings.paths().root / "run"
        return sorted(run.glob("*.pid")) if run.is_dir() else []

    def taken(self) -> list[tuple[str, int]]:
        return [(owner, port) for owner, port in self.settings.ports() if not port_is_free(port)]

    def leftovers(self) -> list[psutil.Process]:
        """Processes working in the stack's directory: every server of the stack does, nothing else does."""
        found = []
        for process in psutil.process_iter(["cwd", "cmdline"]):
            where = process.info["cwd"] or ""
            if where.startswith(str(self.root)) or str(self.root) in " ".join(process.info["cmdline"] or ()):
                found.append(process)
        return found

    def stop(self) -> None:
        """``python -m tools.stack down``; if that fails, stop what the PID files still prove to be the stack's."""
        if self.cli("down").returncode == 0:
            return
        for path in self.pid_files():
            verdict, record = read_pid_file(path)
            if verdict is Verdict.RUNNING and record is not None:
                stop_group(record, 10)


def free_block() -> int:
    """A base port whose SeaweedFS block (base..base+4, and each + 10000) is free."""
    for _ in range(200):
        base = random.randrange(20_000, 40_000)
        if all(port_is_free(port) for i in range(5) for port in (base + i, base + i + 10_000)):
            return base
    raise AssertionError("no free block of ports for SeaweedFS")


def read_env(path: Path) -> dict[str, str]:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {name: shlex.split(value)[0] for name, value in pairs}
