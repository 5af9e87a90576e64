"""Stage commands do not depend on PATH: the project's DVC, called by its path with nothing activated, runs the
stages with the project's Python (pipelines/run), not with whatever python comes first on PATH."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import WHERE
from tools.benchmarks.workspace import copy_repository, environment


def test_the_projects_dvc_runs_a_stage_without_the_environment_on_path(tmp_path: Path) -> None:
    repo = copy_repository(tmp_path / "repo")
    (repo / ".venv").symlink_to(Path(sys.executable).parents[1])  # the environment `make setup` builds
    env = {name: value for name, value in environment().items() if name != "VIRTUAL_ENV"}
    env["PATH"] = "/usr/bin:/bin"  # nothing of the project's environment on it
    done = subprocess.run(
        [str(repo / ".venv" / "bin" / "dvc"), "repro", f"ingest@{WHERE.dataset}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "ModuleNotFoundError" not in output
    assert any((repo / "data" / WHERE.dataset / "raw").glob("*.parquet"))
