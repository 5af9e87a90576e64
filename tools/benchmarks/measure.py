"""Measuring commands and functions: wall time and peak memory, repeated to tame a noisy machine."""

from __future__ import annotations

import functools
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from tabloop.errors import TabloopError
from tabloop.layout import Layout
from tabloop.settings import Settings, from_environment

GIB = 1024**3


class BenchmarkError(TabloopError):
    """A benchmark could not be measured (nothing trained, a tool missing, a command that failed); it says why."""


@functools.cache
def where() -> Layout:
    """The paths of the dataset the benchmarks measure: TABLOOP_DATASET's, else the default one."""
    return from_environment(Settings).layout()


@dataclass(frozen=True)
class Run:
    """One measured run of a command."""

    wall_s: float
    peak_tree_bytes: int
    returncode: int
    output: str


def run_command(command: list[str], cwd: Path, env: dict[str, str], interval_s: float = 0.01) -> Run:
    """Run ``command``, sampling the summed resident memory of its whole process tree."""
    log = cwd / ".bench-output.log"
    with log.open("w") as out:
        start = time.perf_counter()
        process = psutil.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while process.poll() is None:
            peak = max(peak, _tree_rss(process))
            time.sleep(interval_s)
        wall = time.perf_counter() - start
    output = log.read_text()
    log.unlink()
    return Run(wall_s=wall, peak_tree_bytes=peak, returncode=process.returncode, output=output)


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def best_of(function: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """Best and median wall time of ``repeat`` calls to ``function``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)
